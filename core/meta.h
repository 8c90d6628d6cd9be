// SPDX-License-Identifier: Apache-2.0
// hpfile.meta: the per-file key=value record (format.h names the keys).
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/format.h"
#include "core/io.h"
#include "core/result.h"

namespace hpfile {

struct Meta {
  uint64_t segment_size = format::kDefaultSegmentSize;
  uint64_t head = 0;
  // Attributes kept for the filesystem layer; the library only stores them.
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> retain_bytes;
  std::optional<uint64_t> retain_seconds;
  // Tiered storage's local retention (how much stays on disk); stored only.
  std::optional<uint64_t> local_retain_bytes;
  std::optional<uint64_t> local_retain_seconds;
  // The identity a tiered file's objects are named by (format 2, see
  // format::kKeyFileId); unset for an untiered file.
  std::optional<std::string> file_id;
  // Keys this version does not know, kept in order and written back unchanged.
  std::vector<std::pair<std::string, std::string>> unknown;

  friend bool operator==(const Meta&, const Meta&) = default;
};

// Parses the text of a meta file. On failure the error is a sentence naming
// the offending line, for a damaged-file report.
[[nodiscard]] std::expected<Meta, std::string> ParseMeta(std::string_view text);
std::string SerializeMeta(const Meta& meta);

// Whether `id` is a well-formed file id: format::kFileIdHexDigits lowercase
// hex digits.
bool ValidFileId(std::string_view id);

// Checks a segment size for use: nonzero and at most format::kMaxSegmentSize.
bool ValidSegmentSize(uint64_t segment_size);

// Replaces DIR/hpfile.meta atomically: writes the temp name, fsyncs it, renames
// it over the meta file and fsyncs DIR. A crash leaves the old or the new meta.
// Durability::kDeferred as for ReplaceFileAtomically (core/text_file.h).
[[nodiscard]] Result<void> WriteMetaAtomically(Io& io, const std::string& dir, const Meta& meta,
                                               Durability durability = Durability::kSynced);

// Reads DIR/hpfile.meta whole. ENOENT when it is missing.
[[nodiscard]] Result<std::string> ReadMetaText(Io& io, const std::string& dir);
// Reads the meta-sized text file at `path` whole (EFBIG past 1 MiB: no meta
// is that large), e.g. a meta temp file.
[[nodiscard]] Result<std::string> ReadMetaFile(Io& io, const std::string& path);

}  // namespace hpfile
