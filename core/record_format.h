// SPDX-License-Identifier: Apache-2.0
// Record log format 1: every name, key and constant of a record log's on-disk
// layout (docs/RECORDS.md). No logic.
#pragma once

#include <cstdint>
#include <string_view>

namespace hpfile::record_format {

inline constexpr int kVersion = 1;

// LOG/CURRENT names the live generation; it is replaced by writing
// kCurrentTempName, fsyncing it, renaming it over kCurrentName and fsyncing LOG.
inline constexpr std::string_view kCurrentName = "CURRENT";
inline constexpr std::string_view kCurrentTempName = "CURRENT.tmp";

// A generation directory: "gen-<number:20 decimal digits>", holding the data
// HPFile and, for variable-size elements, the index HPFile.
inline constexpr std::string_view kGenerationPrefix = "gen-";
inline constexpr int kGenerationDigits = 20;
inline constexpr std::string_view kDataName = "data";
inline constexpr std::string_view kIndexName = "index";

// CURRENT keys (key=value per line).
inline constexpr std::string_view kKeyFormat = "format";
inline constexpr std::string_view kKeyGeneration = "generation";
// Bytes per element; 0 means variable-size elements with an index.
inline constexpr std::string_view kKeyElementSize = "element_size";
// Position of the generation's element 0 (its first index entry / data byte).
inline constexpr std::string_view kKeyBase = "base";

// An index entry: offset of the element in the data HPFile (u64), its size
// (u32) and a check of both and the position (u32), little-endian. Entry k of
// a generation lies at index offset k * kIndexEntrySize.
inline constexpr uint64_t kIndexEntrySize = 16;
inline constexpr uint64_t kMaxElementSize = 0xffffffffull;

}  // namespace hpfile::record_format
