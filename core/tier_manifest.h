// SPDX-License-Identifier: Apache-2.0
// Tiered storage's records: a file's identity, the names of its objects, and
// DIR/hpfile.remote, the manifest of its segments that live in the object
// store (layout in docs/FORMAT.md).
//
// The manifest is the one truth about what is remote: a segment is remote
// once its line is durable there, and never before (the uploader writes it
// only after the object is confirmed). Each line carries what a reader needs
// to trust an object without asking the store: its size, its ETag and a
// CRC-32 of every chunk_size piece, so a short or damaged answer is caught.
//
// Thread-safety: plain values and free functions; callers serialize writes
// of one directory's manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io.h"
#include "core/result.h"
#include "core/segment_name.h"

namespace hpfile {

class HPFile;

// The piece size checksums cover and the chunk cache stores. Fixed per
// manifest so that an object's checksums stay valid whatever a later
// configuration says.
inline constexpr uint64_t kDefaultTierChunkSize = 1ull << 20;
inline constexpr int kManifestVersion = 1;
// A manifest holds one line per remote segment (~600 bytes for a 64 MiB
// segment at 1 MiB chunks): this bounds what a read of one may cost.
inline constexpr size_t kMaxManifestBytes = 64ull << 20;

struct RemoteSegment {
  uint64_t base = 0;
  uint64_t capacity = 0;
  // Bytes the object holds: the segment's length when it was sealed.
  uint64_t size = 0;
  // The segment file's last write (mtime, seconds since the epoch), for the
  // age limit of the total retention.
  int64_t last_write = 0;
  // As the store returned it, without quotes or spaces.
  std::string etag;
  // CRC-32 (zlib's) of each chunk_size piece of the object, the last one
  // possibly shorter: ceil(size / chunk_size) values.
  std::vector<uint32_t> chunk_crcs;

  uint64_t slot_end() const { return base + capacity; }
  SegmentName name() const { return {.base = base, .capacity = capacity}; }
  friend bool operator==(const RemoteSegment&, const RemoteSegment&) = default;
};

struct Manifest {
  std::string file_id;
  uint64_t chunk_size = kDefaultTierChunkSize;
  // The file's head: below the HPFile's own (local) head once segments are
  // remote, since the HPFile holds only the local range.
  uint64_t head = 0;
  // Remote segments, in base order, slots not overlapping.
  std::vector<RemoteSegment> segments;
  // Objects dropped from the file (by a prune or retention) whose deletion
  // from the store has not been confirmed; never read again.
  std::vector<SegmentName> deleting;

  // The segment whose slot holds `offset`, or null.
  const RemoteSegment* Find(uint64_t offset) const;
  uint64_t RemoteBytes() const;
  friend bool operator==(const Manifest&, const Manifest&) = default;
};

// CRC-32 of `data` continued from `crc` (0 to start).
uint32_t Crc32(std::span<const std::byte> data, uint32_t crc = 0);
// The checksums of `data` in `chunk_size` pieces, as RemoteSegment keeps them.
std::vector<uint32_t> ChunkCrcs(std::span<const std::byte> data, uint64_t chunk_size);

// A new random file id (format::kFileIdHexDigits hex digits, from
// getrandom(2)).
[[nodiscard]] Result<std::string> NewFileId();
// The file's id, giving it one first (the meta becomes format 2, durably)
// when it has none.
[[nodiscard]] Result<std::string> EnsureFileId(HPFile& file);

// The object of a segment: PREFIX/<file id>/<base, 16 hex>-<capacity hex>.seg
// ("PREFIX/" left out for an empty prefix), so a listing sorts by file and
// offset and names the slot without the manifest.
std::string TierObjectKey(std::string_view prefix, std::string_view file_id, SegmentName segment);
// Where the objects of one file live: PREFIX/<file id>/.
std::string TierFilePrefix(std::string_view prefix, std::string_view file_id);
struct TierObjectName {
  std::string file_id;
  SegmentName segment;
};
// Parses a key TierObjectKey made with `prefix`; nullopt for anything else.
std::optional<TierObjectName> ParseTierObjectKey(std::string_view prefix, std::string_view key);

// The manifest's text and back. A parse error is a sentence naming the line.
std::string SerializeManifest(const Manifest& manifest);
[[nodiscard]] std::expected<Manifest, std::string> ParseManifest(std::string_view text);

// DIR/hpfile.remote: nullopt when the file has none (it is not tiered, or
// nothing went remote yet). EIO when it does not parse, with the reason in
// `*damage` when given; other errors as reading fails.
[[nodiscard]] Result<std::optional<Manifest>> ReadManifest(Io& io, const std::string& dir,
                                                           std::string* damage = nullptr);
// Replaces DIR/hpfile.remote atomically and durably (ReplaceFileAtomically).
[[nodiscard]] Result<void> WriteManifest(Io& io, const std::string& dir, const Manifest& manifest);

}  // namespace hpfile
