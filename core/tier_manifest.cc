// SPDX-License-Identifier: Apache-2.0
#include "core/tier_manifest.h"

#include <sys/random.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "core/format.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "core/str_cat.h"
#include "core/text_file.h"

namespace hpfile {
namespace {

constexpr std::string_view kKeyFormat = "format";
constexpr std::string_view kKeyFileId = "file_id";
constexpr std::string_view kKeyChunkSize = "chunk_size";
constexpr std::string_view kKeyHead = "head";
constexpr std::string_view kKeySegment = "segment";
constexpr std::string_view kKeyDeleting = "deleting";
// The largest chunk size a manifest may name: a chunk is read into memory whole.
constexpr uint64_t kMaxChunkSize = 64ull << 20;

std::string Hex64(uint64_t value, int width) {
  char text[32];
  const int n = std::snprintf(text, sizeof(text), "%0*llx", width, static_cast<unsigned long long>(value));
  return std::string(text, static_cast<size_t>(n));
}

std::vector<std::string_view> SplitSpaces(std::string_view text) {
  std::vector<std::string_view> fields;
  while (!text.empty()) {
    const size_t space = text.find(' ');
    fields.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return fields;
}

// "BASE CAPACITY" in hex, as both line kinds start.
std::optional<SegmentName> ParseSlot(std::string_view base_text, std::string_view capacity_text) {
  const auto base = ParseUnsigned(base_text, 16);
  const auto capacity = ParseUnsigned(capacity_text, 16);
  if (!base || !capacity || *capacity == 0 || *capacity > format::kMaxSlotEnd ||
      *base > format::kMaxSlotEnd - *capacity) {
    return std::nullopt;
  }
  return SegmentName{.base = *base, .capacity = *capacity};
}

uint64_t ChunkCount(uint64_t size, uint64_t chunk_size) { return size / chunk_size + (size % chunk_size != 0); }

}  // namespace

const RemoteSegment* Manifest::Find(uint64_t offset) const {
  auto it = std::upper_bound(segments.begin(), segments.end(), offset,
                             [](uint64_t value, const RemoteSegment& s) { return value < s.base; });
  if (it == segments.begin()) return nullptr;
  --it;
  return offset < it->slot_end() ? &*it : nullptr;
}

uint64_t Manifest::RemoteBytes() const {
  uint64_t total = 0;
  for (const RemoteSegment& s : segments) total += s.size;
  return total;
}

uint32_t Crc32(std::span<const std::byte> data, uint32_t crc) {
  // zlib takes a uInt length: feed it in pieces that fit.
  constexpr size_t kStep = 1u << 30;
  uLong value = crc;
  for (size_t done = 0; done < data.size(); done += kStep) {
    const size_t n = std::min(kStep, data.size() - done);
    value = ::crc32(value, reinterpret_cast<const Bytef*>(data.data() + done), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(value);
}

std::vector<uint32_t> ChunkCrcs(std::span<const std::byte> data, uint64_t chunk_size) {
  std::vector<uint32_t> crcs;
  for (uint64_t offset = 0; offset < data.size(); offset += chunk_size) {
    crcs.push_back(Crc32(data.subspan(offset, std::min<uint64_t>(chunk_size, data.size() - offset))));
  }
  return crcs;
}

Result<std::string> NewFileId() {
  std::array<unsigned char, format::kFileIdHexDigits / 2> bytes{};
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return LastErrno();
    }
    got += static_cast<size_t>(n);
  }
  std::string id;
  for (unsigned char b : bytes) id += Hex64(b, 2);
  return id;
}

Result<std::string> EnsureFileId(HPFile& file) {
  if (auto id = file.GetMeta().file_id) return *id;
  auto id = NewFileId();
  if (!id) return id;
  std::string chosen;
  auto updated = file.UpdateMeta([&](Meta& meta) {
    // Another caller may have given it one meanwhile: that one stays.
    if (!meta.file_id) meta.file_id = *id;
    chosen = *meta.file_id;
  });
  if (!updated) return std::unexpected(updated.error());
  return chosen;
}

std::string TierFilePrefix(std::string_view prefix, std::string_view file_id) {
  return prefix.empty() ? StrCat(file_id, "/") : StrCat(prefix, "/", file_id, "/");
}

std::string TierObjectKey(std::string_view prefix, std::string_view file_id, SegmentName segment) {
  return StrCat(TierFilePrefix(prefix, file_id), Hex64(segment.base, 16), "-", Hex64(segment.capacity, 1),
                format::kSegmentSuffix);
}

std::optional<TierObjectName> ParseTierObjectKey(std::string_view prefix, std::string_view key) {
  if (!prefix.empty()) {
    if (!key.starts_with(prefix) || key.size() <= prefix.size() || key[prefix.size()] != '/') return std::nullopt;
    key.remove_prefix(prefix.size() + 1);
  }
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view file_id = key.substr(0, slash);
  std::string_view name = key.substr(slash + 1);
  if (!ValidFileId(file_id) || !name.ends_with(format::kSegmentSuffix)) return std::nullopt;
  name.remove_suffix(format::kSegmentSuffix.size());
  const size_t dash = name.find('-');
  if (dash != 16) return std::nullopt;
  auto slot = ParseSlot(name.substr(0, dash), name.substr(dash + 1));
  if (!slot) return std::nullopt;
  TierObjectName parsed{.file_id = std::string(file_id), .segment = *slot};
  // One spelling per object, as for segment files.
  if (TierObjectKey(prefix, parsed.file_id, parsed.segment) != StrCat(prefix.empty() ? "" : StrCat(prefix, "/"), key)) {
    return std::nullopt;
  }
  return parsed;
}

std::string SerializeManifest(const Manifest& manifest) {
  std::string text;
  AppendKeyValue(text, kKeyFormat, std::to_string(kManifestVersion));
  AppendKeyValue(text, kKeyFileId, manifest.file_id);
  AppendKeyValue(text, kKeyChunkSize, std::to_string(manifest.chunk_size));
  AppendKeyValue(text, kKeyHead, std::to_string(manifest.head));
  for (const RemoteSegment& s : manifest.segments) {
    std::string value = StrCat(Hex64(s.base, 1), " ", Hex64(s.capacity, 1), " ", s.size, " ", s.last_write, " ", s.etag, " ");
    for (size_t i = 0; i < s.chunk_crcs.size(); ++i) {
      if (i > 0) value += ',';
      value += Hex64(s.chunk_crcs[i], 8);
    }
    AppendKeyValue(text, kKeySegment, value);
  }
  for (const SegmentName& d : manifest.deleting) {
    AppendKeyValue(text, kKeyDeleting, StrCat(Hex64(d.base, 1), " ", Hex64(d.capacity, 1)));
  }
  return text;
}

std::expected<Manifest, std::string> ParseManifest(std::string_view text) {
  auto lines = ParseKeyValueLines(text);
  if (!lines) {
    return std::unexpected(StrCat(format::kRemoteManifestName, " line ", lines.error().number, ": not key=value"));
  }
  Manifest manifest;
  bool has_format = false;
  bool has_file_id = false;
  bool has_chunk_size = false;
  for (const KeyValueLine& line : *lines) {
    auto fail = [&](std::string_view why) {
      return std::unexpected(StrCat(format::kRemoteManifestName, " line ", line.number, ": ", why));
    };
    if (line.key == kKeyFormat) {
      if (has_format) return fail("format repeated");
      if (ParseUnsigned(line.value) != static_cast<uint64_t>(kManifestVersion)) {
        return fail(StrCat("format ", line.value, " is not supported (this version reads format ", kManifestVersion, ")"));
      }
      has_format = true;
    } else if (line.key == kKeyFileId) {
      if (has_file_id) return fail("file_id repeated");
      if (!ValidFileId(line.value)) return fail("file_id must be 32 lowercase hex digits");
      manifest.file_id = std::string(line.value);
      has_file_id = true;
    } else if (line.key == kKeyChunkSize) {
      if (has_chunk_size) return fail("chunk_size repeated");
      auto size = ParseUnsigned(line.value);
      if (!size || *size == 0 || *size > kMaxChunkSize) return fail("chunk_size must be 1..64 MiB");
      manifest.chunk_size = *size;
      has_chunk_size = true;
    } else if (line.key == kKeyHead) {
      auto head = ParseUnsigned(line.value);
      if (!head || *head > format::kMaxSlotEnd) return fail("head is not a valid offset");
      manifest.head = *head;
    } else if (line.key == kKeySegment) {
      if (!has_chunk_size) return fail("segment before chunk_size");
      const auto fields = SplitSpaces(line.value);
      if (fields.size() != 6) return fail("a segment is BASE CAPACITY SIZE LAST_WRITE ETAG CRCS");
      auto slot = ParseSlot(fields[0], fields[1]);
      auto size = ParseUnsigned(fields[2]);
      auto last_write = ParseUnsigned(fields[3]);
      if (!slot) return fail("bad base or capacity");
      if (!size || *size == 0 || *size > slot->capacity) return fail("size must be 1..capacity");
      if (!last_write || *last_write > static_cast<uint64_t>(INT64_MAX)) return fail("bad last write time");
      if (fields[4].empty()) return fail("empty ETag");
      RemoteSegment s{.base = slot->base, .capacity = slot->capacity, .size = *size,
                      .last_write = static_cast<int64_t>(*last_write), .etag = std::string(fields[4])};
      std::string_view crcs = fields[5];
      while (!crcs.empty()) {
        const size_t comma = crcs.find(',');
        auto crc = ParseUnsigned32(crcs.substr(0, comma), 16);
        if (!crc) return fail("bad checksum");
        s.chunk_crcs.push_back(*crc);
        if (comma == std::string_view::npos) break;
        crcs.remove_prefix(comma + 1);
      }
      if (s.chunk_crcs.size() != ChunkCount(s.size, manifest.chunk_size)) return fail("checksum count does not match the size");
      if (s.slot_end() <= manifest.head) return fail("segment wholly below the head");
      if (!manifest.segments.empty() && manifest.segments.back().slot_end() > s.base) {
        return fail("segments out of order or overlapping");
      }
      manifest.segments.push_back(std::move(s));
    } else if (line.key == kKeyDeleting) {
      const auto fields = SplitSpaces(line.value);
      auto slot = fields.size() == 2 ? ParseSlot(fields[0], fields[1]) : std::nullopt;
      if (!slot) return fail("a deleting line is BASE CAPACITY");
      manifest.deleting.push_back(*slot);
    } else {
      return fail(StrCat("unknown key \"", line.key, "\""));
    }
  }
  if (!has_format) return std::unexpected(StrCat(format::kRemoteManifestName, " has no format line"));
  if (!has_file_id) return std::unexpected(StrCat(format::kRemoteManifestName, " has no file_id line"));
  if (!has_chunk_size) return std::unexpected(StrCat(format::kRemoteManifestName, " has no chunk_size line"));
  return manifest;
}

Result<std::optional<Manifest>> ReadManifest(Io& io, const std::string& dir, std::string* damage) {
  auto text = ReadSmallFile(io, StrCat(dir, "/", format::kRemoteManifestName), kMaxManifestBytes);
  if (!text) {
    if (IsErrno(text.error(), ENOENT)) return std::optional<Manifest>();
    return std::unexpected(text.error());
  }
  auto manifest = ParseManifest(*text);
  if (!manifest) {
    if (damage != nullptr) *damage = manifest.error();
    return Errno(EIO);
  }
  return std::optional<Manifest>(std::move(*manifest));
}

Result<void> WriteManifest(Io& io, const std::string& dir, const Manifest& manifest) {
  return ReplaceFileAtomically(io, dir, format::kRemoteManifestName, format::kRemoteManifestTempName,
                               SerializeManifest(manifest));
}

}  // namespace hpfile
