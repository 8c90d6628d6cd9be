// SPDX-License-Identifier: Apache-2.0
// Segment file names: the only code that formats or parses them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hpfile {

struct SegmentName {
  uint64_t base = 0;
  uint64_t capacity = 0;

  friend bool operator==(const SegmentName&, const SegmentName&) = default;
};

std::string FormatSegmentName(SegmentName name);
// nullopt unless `file_name` is exactly what FormatSegmentName produces for
// some base and a capacity in (0, format::kMaxSlotEnd] whose slot ends by
// format::kMaxSlotEnd.
std::optional<SegmentName> ParseSegmentName(std::string_view file_name);
// True for names that look like segments (".seg" suffix), parseable or not.
bool LooksLikeSegment(std::string_view file_name);
// True when a regular file of this name is found only in an HPFile's
// directory (meta, meta temp, segments): a directory holding one but no meta
// is an HPFile that lost its meta, not a plain directory.
bool MarksHPFileDirectory(std::string_view file_name);

}  // namespace hpfile
