// SPDX-License-Identifier: Apache-2.0
#include "core/segment_name.h"

#include <cstdio>

#include "core/format.h"
#include "core/text_file.h"

namespace hpfile {

std::string FormatSegmentName(SegmentName name) {
  char text[64];
  int n = std::snprintf(text, sizeof(text), "%0*llu%c%llu", format::kSegmentBaseDigits,
                        static_cast<unsigned long long>(name.base), format::kSegmentSeparator,
                        static_cast<unsigned long long>(name.capacity));
  return std::string(text, static_cast<size_t>(n)) + std::string(format::kSegmentSuffix);
}

bool LooksLikeSegment(std::string_view file_name) { return file_name.ends_with(format::kSegmentSuffix); }

bool MarksHPFileDirectory(std::string_view file_name) {
  return file_name == format::kMetaName || file_name == format::kMetaTempName ||
         file_name == format::kRemoteManifestName || LooksLikeSegment(file_name);
}

std::optional<SegmentName> ParseSegmentName(std::string_view file_name) {
  if (!LooksLikeSegment(file_name)) return std::nullopt;
  file_name.remove_suffix(format::kSegmentSuffix.size());
  size_t separator = file_name.find(format::kSegmentSeparator);
  if (separator != static_cast<size_t>(format::kSegmentBaseDigits)) return std::nullopt;
  std::string_view base_text = file_name.substr(0, separator);
  std::string_view capacity_text = file_name.substr(separator + 1);
  const auto base = ParseUnsigned(base_text);
  const auto capacity = ParseUnsigned(capacity_text);
  if (!base || !capacity) return std::nullopt;
  const SegmentName name{.base = *base, .capacity = *capacity};
  if (name.capacity == 0 || name.capacity > format::kMaxSlotEnd) return std::nullopt;
  if (name.base > format::kMaxSlotEnd - name.capacity) return std::nullopt;
  // Exactly one spelling per segment, so two files can never claim one slot:
  // the base has its fixed width (the separator's position) and digits only
  // (from_chars takes no sign or space), so only a capacity's leading zero
  // is left to refuse. Checked here rather than by formatting the name
  // again, which cost a file of a million segments a second on open.
  if (capacity_text.front() == '0') return std::nullopt;
  return name;
}

}  // namespace hpfile
