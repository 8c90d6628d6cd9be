// SPDX-License-Identifier: Apache-2.0
#include "core/tier_uploader.h"

#include <fcntl.h>

#include <algorithm>
#include <thread>

#include "core/str_cat.h"

namespace hpfile {

TierError TierErrorOf(const ObjectStoreError& error) {
  return TierError{.err = error.errno_value(), .retryable = error.retryable(), .message = error.message};
}

TierError TierErrorOf(const std::error_code& error, std::string_view what) {
  // Local failures that pass (a full disk, a descriptor limit) are worth
  // another try; the uploader's caller decides when.
  return TierError{.err = error.value(), .retryable = true, .message = StrCat(what, ": ", error.message())};
}

std::optional<TierUrl> ParseTierUrl(std::string_view url) {
  constexpr std::string_view kScheme = "s3://";
  if (!url.starts_with(kScheme)) return std::nullopt;
  url.remove_prefix(kScheme.size());
  const size_t slash = url.find('/');
  TierUrl parsed{.bucket = std::string(url.substr(0, slash))};
  if (parsed.bucket.empty()) return std::nullopt;
  std::string_view prefix = slash == std::string_view::npos ? std::string_view() : url.substr(slash + 1);
  while (prefix.starts_with('/')) prefix.remove_prefix(1);
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (prefix.find("//") != std::string_view::npos) return std::nullopt;
  parsed.prefix = std::string(prefix);
  return parsed;
}

void SleepFor(std::chrono::milliseconds duration) { std::this_thread::sleep_for(duration); }

std::vector<SegmentInfo> SegmentsToOffload(const std::vector<SegmentInfo>& segments, uint64_t size,
                                           const RetentionPolicy& local, int64_t now,
                                           const std::function<int64_t(const SegmentInfo&)>& last_write) {
  std::vector<SegmentInfo> chosen;
  if (local.empty()) return chosen;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const SegmentInfo& s = segments[i];
    const bool go = local.BytesAllowDrop(s.base + s.capacity, size) ||
                    (local.retain_seconds && local.AgeAllowsDrop(last_write(s), now));
    // Oldest first without a gap: what stays local is one range to the end.
    if (!go) break;
    chosen.push_back(s);
  }
  return chosen;
}

namespace {

// Reads [offset, offset + out.size()) of the segment file, which must hold
// all of it: a sealed segment shorter than its length is damaged.
TierResult<void> ReadPiece(Io& io, int fd, const std::string& path, uint64_t offset, std::span<std::byte> out) {
  auto n = ReadFull(io, fd, out, offset);
  if (!n) return std::unexpected(TierErrorOf(n.error(), StrCat("read ", path)));
  if (*n != out.size()) {
    return std::unexpected(TierError{.err = EIO, .retryable = false,
                                     .message = StrCat("read ", path, ": the segment ends at ", offset + *n,
                                                       ", before its length")});
  }
  return {};
}

// Appends the checksums of `piece`, which starts on a chunk boundary.
void AddCrcs(std::vector<uint32_t>& crcs, std::span<const std::byte> piece, uint64_t chunk_size) {
  auto more = ChunkCrcs(piece, chunk_size);
  crcs.insert(crcs.end(), more.begin(), more.end());
}

}  // namespace

TierResult<RemoteSegment> UploadSegment(Io& io, const TierStoreConfig& config, const std::string& dir,
                                        std::string_view file_id, uint64_t chunk_size,
                                        const SegmentInfo& segment) {
  ObjectStore& store = *config.store;
  const std::string key = TierObjectKey(config.prefix, file_id, {.base = segment.base, .capacity = segment.capacity});
  const std::string path = StrCat(dir, "/", segment.file_name);
  const UploadOptions& upload = config.upload;
  const bool multipart = segment.length > upload.multipart_threshold;
  if (chunk_size == 0 || (multipart && (upload.part_size == 0 || upload.part_size % chunk_size != 0))) {
    return std::unexpected(TierError{.err = EINVAL, .retryable = false,
                                     .message = StrCat("upload ", key, ": part size ", upload.part_size,
                                                       " is not a multiple of the chunk size ", chunk_size)});
  }
  if (segment.length == 0) {
    return std::unexpected(TierError{.err = EINVAL, .retryable = false,
                                     .message = StrCat("upload ", key, ": the segment is empty")});
  }
  auto fd = Fd::Open(io, path, O_RDONLY);
  if (!fd) return std::unexpected(TierErrorOf(fd.error(), StrCat("open ", path)));

  RemoteSegment remote{.base = segment.base, .capacity = segment.capacity, .size = segment.length};
  auto store_error = [&](const ObjectStoreError& e) { return std::unexpected(TierErrorOf(e)); };
  if (!multipart) {
    std::vector<std::byte> data(segment.length);
    if (auto read = ReadPiece(io, fd->get(), path, 0, data); !read) return std::unexpected(read.error());
    remote.chunk_crcs = ChunkCrcs(data, chunk_size);
    auto etag = WithRetries(config.retry, [&] { return store.Put(key, data); });
    if (!etag) return store_error(etag.error());
    remote.etag = std::move(*etag);
  } else {
    auto upload_id = WithRetries(config.retry, [&] { return store.CreateMultipartUpload(key); });
    if (!upload_id) return store_error(upload_id.error());
    auto abort = [&] {
      // The parts stored so far cost money until aborted; the upload's own
      // error is what the caller needs.
      (void)WithRetries(config.retry, [&] { return store.AbortMultipartUpload(key, *upload_id); });
    };
    std::vector<UploadedPart> parts;
    std::vector<std::byte> buffer(std::min<uint64_t>(upload.part_size, segment.length));
    for (uint64_t offset = 0; offset < segment.length; offset += upload.part_size) {
      const auto piece = std::span(buffer).first(std::min<uint64_t>(upload.part_size, segment.length - offset));
      if (auto read = ReadPiece(io, fd->get(), path, offset, piece); !read) {
        abort();
        return std::unexpected(read.error());
      }
      AddCrcs(remote.chunk_crcs, piece, chunk_size);
      const int number = static_cast<int>(parts.size()) + 1;
      auto etag = WithRetries(config.retry, [&] { return store.UploadPart(key, *upload_id, number, piece); });
      if (!etag) {
        abort();
        return store_error(etag.error());
      }
      parts.push_back(UploadedPart{.number = number, .etag = std::move(*etag)});
    }
    auto etag = WithRetries(config.retry, [&] { return store.CompleteMultipartUpload(key, *upload_id, parts); });
    if (!etag) {
      abort();
      return store_error(etag.error());
    }
    remote.etag = std::move(*etag);
  }
  // The store checked every byte it got; the HEAD checks that what it keeps
  // under the name is the whole segment, not an older or partial object.
  auto size = WithRetries(config.retry, [&] { return store.Head(key); });
  if (!size) return store_error(size.error());
  if (*size != segment.length) {
    return std::unexpected(TierError{.err = EIO, .retryable = true,
                                     .message = StrCat("upload ", key, ": HEAD reports ", *size,
                                                       " bytes, the segment has ", segment.length)});
  }
  // The manifest's fields are separated by spaces; S3's ETags have none,
  // but a store that answers none at all still gets a field.
  std::replace(remote.etag.begin(), remote.etag.end(), ' ', '_');
  if (remote.etag.empty()) remote.etag.push_back('-');
  return remote;
}

}  // namespace hpfile
