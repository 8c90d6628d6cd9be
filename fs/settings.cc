// SPDX-License-Identifier: Apache-2.0
#include "fs/settings.h"

#include <array>
#include <limits>

#include "core/format.h"

namespace hpfs {
namespace {

constexpr uint64_t kNoMax = std::numeric_limits<uint64_t>::max();

constexpr std::array<Setting, 5> kSettings = {{
    {"segment_size", HPFS_SET_SEGMENT_SIZE, Setting::Unit::kBytes, /*clearable=*/false, kMinSegmentSize,
     hpfile::format::kMaxSegmentSize, kSegmentSizeRange},
    {"retain_bytes", HPFS_SET_RETAIN_BYTES, Setting::Unit::kBytes, /*clearable=*/true, 1, kNoMax,
     "a size with optional K/M/G/T suffix, or 0 or none for no limit"},
    {"retain_seconds", HPFS_SET_RETAIN_SECONDS, Setting::Unit::kSeconds, /*clearable=*/true, 1, kNoMax,
     "seconds with optional s/m/h/d suffix, or 0 or none for no limit"},
    {"local_retain_bytes", HPFS_SET_LOCAL_RETAIN_BYTES, Setting::Unit::kBytes, /*clearable=*/true, 1, kNoMax,
     "a size with optional K/M/G/T suffix, or 0 or none for the mount's"},
    {"local_retain_seconds", HPFS_SET_LOCAL_RETAIN_SECONDS, Setting::Unit::kSeconds, /*clearable=*/true, 1,
     kNoMax, "seconds with optional s/m/h/d suffix, or 0 or none for the mount's"},
}};

}  // namespace

std::span<const Setting> Settings() { return kSettings; }

const Setting* FindSetting(std::string_view name) {
  for (const Setting& setting : kSettings) {
    if (setting.name == name) return &setting;
  }
  return nullptr;
}

std::optional<uint64_t> ParseSetting(const Setting& setting, std::string_view text) {
  if (setting.clearable && text == "none") return 0;
  const auto value = setting.unit == Setting::Unit::kBytes ? ParseSize(text) : ParseDuration(text);
  if (!value || !ValidSettingValue(setting, *value)) return std::nullopt;
  return value;
}

bool ValidSettingValue(const Setting& setting, uint64_t value) {
  if (value == 0) return setting.clearable;
  return value >= setting.min && value <= setting.max;
}

uint64_t& RequestField(hpfs_set& request, const Setting& setting) {
  switch (setting.mask) {
    case HPFS_SET_SEGMENT_SIZE:
      return request.segment_size;
    case HPFS_SET_RETAIN_BYTES:
      return request.retain_bytes;
    case HPFS_SET_LOCAL_RETAIN_BYTES:
      return request.local_retain_bytes;
    case HPFS_SET_LOCAL_RETAIN_SECONDS:
      return request.local_retain_seconds;
    default:
      return request.retain_seconds;
  }
}

uint64_t RequestField(const hpfs_set& request, const Setting& setting) {
  return RequestField(const_cast<hpfs_set&>(request), setting);
}

bool ValidRequest(const hpfs_set& request) {
  uint32_t known = 0;
  for (const Setting& setting : kSettings) {
    known |= setting.mask;
    if ((request.mask & setting.mask) && !ValidSettingValue(setting, RequestField(request, setting))) return false;
  }
  return (request.mask & ~known) == 0;
}

void SetDefault(Config& config, const Setting& setting, uint64_t value) {
  const std::optional<uint64_t> limit = value == 0 ? std::nullopt : std::optional<uint64_t>(value);
  switch (setting.mask) {
    case HPFS_SET_SEGMENT_SIZE:
      config.segment_size = value;
      break;
    case HPFS_SET_RETAIN_BYTES:
      config.retain_bytes = limit;
      break;
    // Mount-wide: for every file without a local retention of its own.
    case HPFS_SET_LOCAL_RETAIN_BYTES:
      config.tier.local_retain_bytes = limit;
      break;
    case HPFS_SET_LOCAL_RETAIN_SECONDS:
      config.tier.local_retain_seconds = limit;
      break;
    default:
      config.retain_seconds = limit;
      break;
  }
}

}  // namespace hpfs
