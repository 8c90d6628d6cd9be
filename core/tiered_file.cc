// SPDX-License-Identifier: Apache-2.0
#include "core/tiered_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "core/str_cat.h"

namespace hpfile {
namespace {

std::unexpected<TierError> Failure(int err, std::string message) {
  return std::unexpected(TierError{.err = err, .retryable = false, .message = std::move(message)});
}

}  // namespace

TieredFile::TieredFile(HPFile& file, TieredFileOptions options, std::string file_id, Manifest manifest)
    : file_(file),
      options_(std::move(options)),
      io_(options_.io != nullptr ? *options_.io : PosixIo::Default()),
      file_id_(std::move(file_id)),
      manifest_(std::make_shared<const Manifest>(std::move(manifest))) {}

TierResult<std::unique_ptr<TieredFile>> TieredFile::Open(HPFile& file, TieredFileOptions options) {
  Io& io = options.io != nullptr ? *options.io : PosixIo::Default();
  if (options.config.store == nullptr) return Failure(EINVAL, "tiered file " + file.dir() + ": no object store");
  auto id = EnsureFileId(file);
  if (!id) return std::unexpected(TierErrorOf(id.error(), "give " + file.dir() + " a file id"));
  std::string damage;
  auto read = ReadManifest(io, file.dir(), &damage);
  if (!read) {
    return Failure(read.error().value(),
                   StrCat(file.dir(), "/", format::kRemoteManifestName, ": ",
                          damage.empty() ? read.error().message() : damage));
  }
  Manifest manifest;
  if (read->has_value()) {
    manifest = std::move(**read);
    if (manifest.file_id != *id) {
      return Failure(EIO, StrCat(file.dir(), "/", format::kRemoteManifestName, " names file ", manifest.file_id,
                                 ", the meta ", *id));
    }
  } else {
    manifest = Manifest{.file_id = *id, .chunk_size = options.config.chunk_size, .head = file.Head()};
  }
  const uint64_t remote_end = manifest.segments.empty() ? 0 : manifest.segments.back().slot_end();
  std::unique_ptr<TieredFile> tiered(new TieredFile(file, std::move(options), *id, std::move(manifest)));
  // A crash after an upload was recorded but before its local copy went.
  if (file.Head() < remote_end) {
    if (auto pruned = tiered->DropLocalCopyTo(remote_end); !pruned) return std::unexpected(pruned.error());
  }
  return tiered;
}

uint64_t TieredFile::Head() const {
  const uint64_t local_head = file_.Head();
  std::lock_guard lock(manifest_mu_);
  return manifest_->segments.empty() ? local_head : std::min(manifest_->head, local_head);
}

Manifest TieredFile::GetManifest() const {
  std::lock_guard lock(manifest_mu_);
  return *manifest_;
}

TierStats TieredFile::Stats() const {
  TierStats stats;
  for (const SegmentInfo& s : file_.Segments()) {
    stats.local_bytes += s.length;
    ++stats.local_segments;
  }
  std::lock_guard lock(manifest_mu_);
  stats.remote_bytes = manifest_->RemoteBytes();
  stats.remote_segments = manifest_->segments.size();
  stats.deleting = manifest_->deleting.size();
  return stats;
}

Result<size_t> TieredFile::ReadAt(uint64_t offset, std::span<std::byte> buf) const {
  const uint64_t size = Size();
  if (offset >= size || buf.empty()) return 0;
  if (offset < Head()) return Errno(ENODATA);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - offset));
  size_t filled = 0;
  while (filled < want) {
    const uint64_t pos = offset + filled;
    const auto rest = buf.subspan(filled, want - filled);
    const uint64_t local_head = file_.Head();
    if (pos >= local_head) {
      auto n = file_.ReadAt(pos, rest);
      if (n) {
        if (*n == 0) break;
        filled += *n;
        continue;
      }
      // An offload pruned the local copy meanwhile: the bytes are remote now.
      if (!IsErrno(n.error(), ENODATA)) return n;
    }
    auto n = ReadBelowLocalHead(pos, rest.first(std::min<uint64_t>(rest.size(), std::max(local_head, pos + 1) - pos)));
    if (!n) return n;
    filled += *n;
  }
  return filled;
}

Result<size_t> TieredFile::ReadBelowLocalHead(uint64_t offset, std::span<std::byte> out) const {
  std::shared_ptr<const Manifest> manifest;
  {
    std::lock_guard lock(manifest_mu_);
    manifest = manifest_;
  }
  if (offset < manifest->head) return Errno(ENODATA);
  const RemoteSegment* segment = manifest->Find(offset);
  if (segment == nullptr) {
    // A gap a local prune left between the remote segments and the local
    // range reads as zeros, as the range below a head does.
    auto next = std::upper_bound(manifest->segments.begin(), manifest->segments.end(), offset,
                                 [](uint64_t value, const RemoteSegment& s) { return value < s.base; });
    const uint64_t end = next == manifest->segments.end() ? offset + out.size() : next->base;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), end - offset));
    std::memset(out.data(), 0, n);
    return n;
  }
  const uint64_t in_segment = offset - segment->base;
  if (in_segment >= segment->size) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), segment->slot_end() - offset));
    std::memset(out.data(), 0, n);
    return n;
  }
  const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), segment->size - in_segment));
  if (options_.source == nullptr) return Errno(EIO);
  auto read = options_.source->ReadRemote(manifest->file_id, *segment, manifest->chunk_size, in_segment, out.first(n));
  if (!read) {
    // A prune that ran meanwhile may have deleted the object: the range is
    // below the head now, as a read after the prune would find.
    if (offset < Head()) return Errno(ENODATA);
    return Errno(read.error().err);
  }
  return n;
}

TierResult<void> TieredFile::CommitManifestLocked(Manifest next) {
  if (auto written = WriteManifest(io_, file_.dir(), next); !written) {
    return std::unexpected(TierErrorOf(written.error(), StrCat("write ", file_.dir(), "/", format::kRemoteManifestName)));
  }
  std::lock_guard lock(manifest_mu_);
  manifest_ = std::make_shared<const Manifest>(std::move(next));
  return {};
}

TierResult<void> TieredFile::PruneLocalTo(uint64_t n) {
  if (auto pruned = file_.PruneHead(n); !pruned) {
    return std::unexpected(TierErrorOf(pruned.error(), StrCat("prune the local copy of ", file_.dir())));
  }
  return {};
}

TierResult<void> TieredFile::DropLocalCopyTo(uint64_t n) {
  if (auto pruned = PruneLocalTo(n); !pruned) return pruned;
  // A prune leaves segment files to a later deletion; freeing the disk is
  // what an offload is for, so its own copy goes now. A bigger backlog (a
  // user's prune) is left in part to the next call or the file's deleter.
  constexpr uint64_t kMaxDeletesPerOffload = 1024;
  if (auto deleted = file_.DeletePrunedSegments(kMaxDeletesPerOffload); !deleted) {
    return std::unexpected(TierErrorOf(deleted.error(), StrCat("delete the local copy of ", file_.dir())));
  }
  return {};
}

TierResult<bool> TieredFile::OffloadOldest() {
  std::lock_guard writer(writer_mu_);
  const std::vector<SegmentInfo> segments = file_.Segments();
  if (segments.size() < 2) return false;  // the tail stays
  const SegmentInfo& oldest = segments.front();
  auto manifest = GetManifest();
  const uint64_t slot_end = oldest.base + oldest.capacity;
  if (manifest.Find(oldest.base) != nullptr) {
    // Recorded already; only the local copy is left to go.
    if (auto pruned = DropLocalCopyTo(slot_end); !pruned) return std::unexpected(pruned.error());
    return true;
  }
  if (oldest.length == 0) {
    // Nothing to keep: a sealed empty segment (a gap a grow made sparse
    // reads as zeros from the manifest's gaps).
    if (auto pruned = DropLocalCopyTo(slot_end); !pruned) return std::unexpected(pruned.error());
    return true;
  }
  const std::string path = StrCat(file_.dir(), "/", oldest.file_name);
  auto st = io_.Stat(path);
  if (!st) return std::unexpected(TierErrorOf(st.error(), "stat " + path));
  auto remote = UploadSegment(io_, options_.config, file_.dir(), file_id_, manifest.chunk_size, oldest);
  if (!remote) return std::unexpected(remote.error());
  const auto step = [this](OffloadStep done) {
    if (options_.after_step) options_.after_step(done);
  };
  step(OffloadStep::kPut);
  remote->last_write = st->st_mtim.tv_sec;
  if (manifest.segments.empty()) manifest.head = file_.Head();
  manifest.segments.push_back(std::move(*remote));
  if (auto committed = CommitManifestLocked(std::move(manifest)); !committed) return std::unexpected(committed.error());
  step(OffloadStep::kRecord);
  if (auto pruned = DropLocalCopyTo(slot_end); !pruned) return std::unexpected(pruned.error());
  step(OffloadStep::kDelete);
  return true;
}

TierResult<size_t> TieredFile::OffloadDue(const RetentionPolicy& local, int64_t now) {
  const auto due = SegmentsToOffload(file_.Segments(), Size(), local, now, [&](const SegmentInfo& s) -> int64_t {
    auto st = io_.Stat(StrCat(file_.dir(), "/", s.file_name));
    // A segment that cannot be examined is not old enough to go.
    return st ? st->st_mtim.tv_sec : now;
  });
  size_t done = 0;
  for (size_t i = 0; i < due.size(); ++i) {
    auto one = OffloadOldest();
    if (!one) return std::unexpected(one.error());
    if (!*one) break;
    ++done;
  }
  return done;
}

TierResult<void> TieredFile::PruneHeadLocked(uint64_t n) {
  n = std::min(std::max(Head(), n), Size());
  Manifest next = GetManifest();
  const Manifest before = next;
  if (!next.segments.empty()) next.head = std::max(next.head, n);
  auto first_kept = std::find_if(next.segments.begin(), next.segments.end(),
                                 [&](const RemoteSegment& s) { return s.slot_end() > n; });
  for (auto it = next.segments.begin(); it != first_kept; ++it) next.deleting.push_back(it->name());
  next.segments.erase(next.segments.begin(), first_kept);
  if (next.segments.empty()) next.head = n;
  if (next != before && (!before.segments.empty() || !before.deleting.empty())) {
    if (auto committed = CommitManifestLocked(std::move(next)); !committed) return std::unexpected(committed.error());
    if (options_.source != nullptr) {
      for (const SegmentName& d : GetManifest().deleting) options_.source->Forget(file_id_, d);
    }
  }
  if (n > file_.Head()) return PruneLocalTo(n);
  return {};
}

TierResult<void> TieredFile::PruneHead(uint64_t n, DropObjects drop) {
  std::lock_guard writer(writer_mu_);
  if (auto pruned = PruneHeadLocked(n); !pruned) return pruned;
  if (drop == DropObjects::kNow) (void)DeleteDroppedLocked();
  return {};
}

TierResult<size_t> TieredFile::ApplyRetention(int64_t now) {
  std::lock_guard writer(writer_mu_);
  const RetentionPolicy policy = RetentionPolicy::FromMeta(file_.GetMeta());
  if (policy.empty()) return 0;
  const Manifest manifest = GetManifest();
  const uint64_t size = Size();
  uint64_t n = 0;
  size_t dropped = 0;
  for (const RemoteSegment& s : manifest.segments) {
    if (!policy.BytesAllowDrop(s.slot_end(), size) && !policy.AgeAllowsDrop(s.last_write, now)) break;
    n = s.slot_end();
    ++dropped;
  }
  if (dropped > 0) {
    if (auto pruned = PruneHeadLocked(n); !pruned) return std::unexpected(pruned.error());
    (void)DeleteDroppedLocked();
  }
  const RetentionResult local = file_.ApplyRetention(now);
  if (local.error) return std::unexpected(TierErrorOf(local.error, "retention of " + file_.dir()));
  return dropped;
}

TierResult<size_t> TieredFile::DeleteDroppedObjects() {
  std::lock_guard writer(writer_mu_);
  return DeleteDroppedLocked();
}

TierResult<size_t> TieredFile::DeleteDroppedLocked() {
  Manifest next = GetManifest();
  if (next.deleting.empty()) return 0;
  std::optional<TierError> first_error;
  std::vector<SegmentName> remaining;
  for (const SegmentName& d : next.deleting) {
    const std::string key = TierObjectKey(options_.config.prefix, file_id_, d);
    auto deleted = WithRetries(options_.config.retry, [&] { return options_.config.store->Delete(key); });
    if (!deleted) {
      remaining.push_back(d);
      if (!first_error) first_error = TierErrorOf(deleted.error());
    }
  }
  const size_t left = remaining.size();
  if (left != next.deleting.size()) {
    next.deleting = std::move(remaining);
    if (auto committed = CommitManifestLocked(std::move(next)); !committed) return std::unexpected(committed.error());
  }
  if (first_error) return std::unexpected(*first_error);
  return left;
}

Result<void> TieredFile::Truncate(uint64_t n) {
  std::lock_guard writer(writer_mu_);
  const bool has_remote = !GetManifest().segments.empty();
  if (has_remote && n < file_.Head()) return Errno(EPERM);
  return file_.Truncate(n);
}

TierResult<void> DeleteTieredFileObjects(Io& io, const TierStoreConfig& config, const std::string& dir) {
  auto read = ReadManifest(io, dir);
  if (!read) return std::unexpected(TierErrorOf(read.error(), StrCat("read ", dir, "/", format::kRemoteManifestName)));
  if (!read->has_value()) return {};
  Manifest manifest = std::move(**read);
  // The listing first: a store that does not answer leaves the manifest as
  // it was, every object still recorded.
  auto listed = WithRetries(config.retry, [&] {
    return ListAllObjects(*config.store, TierFilePrefix(config.prefix, manifest.file_id));
  });
  if (!listed) return std::unexpected(TierErrorOf(listed.error()));
  if (!manifest.segments.empty()) {
    for (const RemoteSegment& s : manifest.segments) manifest.deleting.push_back(s.name());
    manifest.segments.clear();
    if (auto written = WriteManifest(io, dir, manifest); !written) {
      return std::unexpected(TierErrorOf(written.error(), StrCat("write ", dir, "/", format::kRemoteManifestName)));
    }
  }
  std::vector<std::string> keys;
  for (const SegmentName& d : manifest.deleting) keys.push_back(TierObjectKey(config.prefix, manifest.file_id, d));
  for (ObjectInfo& o : *listed) keys.push_back(std::move(o.key));
  std::ranges::sort(keys);
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const std::string& key : keys) {
    auto deleted = WithRetries(config.retry, [&] { return config.store->Delete(key); });
    if (!deleted) return std::unexpected(TierErrorOf(deleted.error()));
  }
  if (auto removed = io.Unlink(StrCat(dir, "/", format::kRemoteManifestName)); !removed) {
    return std::unexpected(TierErrorOf(removed.error(), StrCat("remove ", dir, "/", format::kRemoteManifestName)));
  }
  return {};
}

TierResult<RemoteCheckReport> CheckRemote(const TierStoreConfig& config, const std::vector<Manifest>& manifests,
                                          bool repair) {
  ObjectStore& store = *config.store;
  const std::string prefix = config.prefix.empty() ? "" : config.prefix + "/";
  auto objects = WithRetries(config.retry, [&] { return ListAllObjects(store, prefix); });
  if (!objects) return std::unexpected(TierErrorOf(objects.error()));
  std::map<std::string, uint64_t> recorded;
  for (const Manifest& m : manifests) {
    for (const RemoteSegment& s : m.segments) recorded.emplace(TierObjectKey(config.prefix, m.file_id, s.name()), s.size);
  }
  RemoteCheckReport report;
  std::set<std::string> seen;
  for (const ObjectInfo& object : *objects) {
    auto it = recorded.find(object.key);
    if (it != recorded.end()) {
      seen.insert(object.key);
      if (object.size != it->second) {
        report.wrong_size.push_back(StrCat(object.key, ": ", object.size, " bytes, the manifest says ", it->second));
      }
    } else if (ParseTierObjectKey(config.prefix, object.key)) {
      // Only names of this layout: anything else under the prefix is not
      // ours to judge or delete.
      report.orphans.push_back(object.key);
    }
  }
  for (const auto& [key, size] : recorded) {
    if (!seen.contains(key)) report.missing.push_back(key);
  }
  if (repair) {
    for (const std::string& key : report.orphans) {
      if (WithRetries(config.retry, [&] { return store.Delete(key); })) ++report.deleted;
    }
  }
  return report;
}

}  // namespace hpfile
