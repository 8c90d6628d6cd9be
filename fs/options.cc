// SPDX-License-Identifier: Apache-2.0
#include "fs/options.h"

#include <array>
#include <cctype>
#include <limits>
#include <span>

#include "core/text_file.h"
#include "fs/descriptor_cache.h"
#include "core/tier_uploader.h"
#include "fs/settings.h"

namespace hpfs {
namespace {

std::optional<uint64_t> ParseNumberWithUnit(std::string_view text, std::string_view units,
                                            std::span<const uint64_t> multipliers) {
  if (text.empty()) return std::nullopt;
  uint64_t multiplier = 1;
  const char last = static_cast<char>(std::tolower(static_cast<unsigned char>(text.back())));
  if (auto pos = units.find(last); pos != std::string_view::npos) {
    multiplier = multipliers[pos];
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  const auto value = hpfile::ParseUnsigned(text);
  if (!value || *value > std::numeric_limits<uint64_t>::max() / multiplier) return std::nullopt;
  return *value * multiplier;
}

std::string BadValue(std::string_view key, std::string_view value, std::string_view expected) {
  return "hpfs: bad value for option '" + std::string(key) + "': '" + std::string(value) +
         "' (expected " + std::string(expected) + ")";
}

// The tier_* and local_retain_* options; nullopt for any other key.
std::optional<std::expected<bool, std::string>> ApplyTierOption(std::string_view key, bool has_value,
                                                                std::string_view value, Config::Tier& tier) {
  auto bad = [&](std::string_view expected) -> std::expected<bool, std::string> {
    return std::unexpected(BadValue(key, value, expected));
  };
  if (key == "tier_url") {
    if (!has_value || !hpfile::ParseTierUrl(value)) return bad("s3://BUCKET or s3://BUCKET/PREFIX");
    tier.url = std::string(value);
    return true;
  }
  if (key == "tier_endpoint") {
    if (!has_value || !(value.starts_with("http://") || value.starts_with("https://")) || value.size() <= 8) {
      return bad("http://HOST[:PORT] or https://HOST[:PORT]");
    }
    tier.endpoint = std::string(value);
    return true;
  }
  if (key == "tier_region") {
    if (!has_value || value.empty()) return bad("a region name, e.g. us-east-1");
    tier.region = std::string(value);
    return true;
  }
  if (key == "tier_credentials") {
    if (!has_value || value.empty()) return bad("the path of an AWS shared-credentials file");
    tier.credentials = std::string(value);
    return true;
  }
  if (key == "tier_cache") {
    const auto size = has_value ? ParseSize(value) : std::nullopt;
    if (!size || *size == 0) return bad("a nonzero size with optional K/M/G/T suffix");
    tier.cache_bytes = *size;
    return true;
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> ParseSize(std::string_view text) {
  static constexpr std::array<uint64_t, 4> kMultipliers = {1ull << 10, 1ull << 20, 1ull << 30,
                                                           1ull << 40};
  return ParseNumberWithUnit(text, "kmgt", kMultipliers);
}

std::optional<uint64_t> ParseDuration(std::string_view text) {
  static constexpr std::array<uint64_t, 4> kMultipliers = {1, 60, 3600, 86400};
  return ParseNumberWithUnit(text, "smhd", kMultipliers);
}

bool ValidLogLevel(std::string_view level) {
  for (std::string_view name : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    if (level == name) return true;
  }
  return false;
}

std::expected<bool, std::string> ApplyHpfsOption(std::string_view option, DaemonOptions& options) {
  const auto pair = hpfile::SplitKeyValue(option);
  const bool has_value = pair.has_value();
  const std::string_view key = has_value ? pair->key : option;
  const std::string_view value = has_value ? pair->value : std::string_view();

  if (key == "xattr") {
    if (has_value) return std::unexpected("hpfs: option 'xattr' takes no value");
    options.config.xattr = true;
    return true;
  }
  if (key == "writeback") {
    if (has_value) return std::unexpected("hpfs: option 'writeback' takes no value");
    options.config.writeback = true;
    return true;
  }
  if (key == "max_open_files") {
    const auto n = has_value ? hpfile::ParseUnsigned(value) : std::nullopt;
    if (!n || *n < kMinOpenFiles || *n > kMaxOpenFiles) {
      return std::unexpected(BadValue(key, value,
                                      "a number of descriptors from " + std::to_string(kMinOpenFiles) + " to " +
                                          std::to_string(kMaxOpenFiles)));
    }
    options.config.max_open_files = static_cast<size_t>(*n);
    return true;
  }
  if (key == "commit") {
    auto seconds = ParseDuration(value);
    if (!has_value || !seconds) {
      return std::unexpected(BadValue(key, value, "seconds with optional s/m/h/d suffix, 0 for the kernel's own"));
    }
    options.config.commit_seconds = *seconds;
    return true;
  }
  if (key == "gap_wait") {
    auto seconds = ParseDuration(value);
    if (!has_value || !seconds || *seconds < kMinGapWaitSeconds || *seconds > kMaxGapWaitSeconds) {
      return std::unexpected(BadValue(key, value,
                                      "seconds from " + std::to_string(kMinGapWaitSeconds) + " to " +
                                          std::to_string(kMaxGapWaitSeconds) + ", optional s/m suffix"));
    }
    options.config.gap_wait_seconds = *seconds;
    return true;
  }
  if (key == "spool_max") {
    const auto size = has_value ? ParseSize(value) : std::nullopt;
    if (!size) return std::unexpected(BadValue(key, value, "a size with optional K/M/G/T suffix, 0 for no spool"));
    options.config.spool_bound = *size;
    return true;
  }
  if (const Setting* setting = FindSetting(key)) {
    const auto parsed = has_value ? ParseSetting(*setting, value) : std::nullopt;
    if (!parsed) return std::unexpected(BadValue(key, value, setting->expected));
    SetDefault(options.config, *setting, *parsed);
    return true;
  }
  if (auto tier = ApplyTierOption(key, has_value, value, options.config.tier)) return *tier;
  if (key == "allow_other" || key == "noallow_other") {
    if (has_value) return std::unexpected("hpfs: option '" + std::string(key) + "' takes no value");
    options.allow_other = key == "allow_other";
    return true;
  }
  // libfuse refuses allow_root together with allow_other, so it turns the
  // default off; libfuse still gets it.
  if (key == "allow_root") {
    if (!options.allow_other) options.allow_other = false;
    return false;
  }
  if (key == "log_file") {
    if (!has_value || value.empty()) return std::unexpected(BadValue(key, value, "a file path"));
    options.log_file = std::string(value);
    return true;
  }
  if (key == "log_level") {
    if (!has_value || !ValidLogLevel(value)) {
      return std::unexpected(BadValue(key, value, "trace, debug, info, warn, error, critical or off"));
    }
    options.log_level = std::string(value);
    return true;
  }
  return false;
}

std::string HpfsOptionsHelp() {
  return "hpfs options (for files created through this mount; each file keeps its own):\n"
         "    -o segment_size=SIZE   segment size (default 64M; 4K to 1T, K/M/G/T suffixes)\n"
         "    -o retain_bytes=SIZE   keep at least the newest SIZE bytes, drop older\n"
         "                           segments (default 0 or none: no limit; K/M/G/T)\n"
         "    -o retain_seconds=N    drop segments last written more than N seconds ago\n"
         "                           (default 0 or none: no limit; s/m/h/d suffixes)\n"
         "hpfs options for the mount:\n"
         "    -o xattr               serve user.hpfs.* extended attributes (default off:\n"
         "                           xattr calls fail with ENOSYS, which keeps writes fast)\n"
         "    -o writeback           let the kernel collect appends in its page cache and\n"
         "                           send them in batches (fast small appends; a daemon\n"
         "                           crash loses up to the commit interval)\n"
         "    -o commit=SECONDS      with writeback: write dirty pages back at least this\n"
         "                           often (default 1; 0: when the kernel decides)\n"
         "    -o max_open_files=N    descriptors the files and directories the kernel\n"
         "                           remembers hold while idle (default a quarter of\n"
         "                           `ulimit -n`, 16 to 4096; at least 16)\n"
         "    -o gap_wait=SECONDS    with writeback: how long fsync, close and reads wait\n"
         "                           for bytes in front of held ones (default 2; 1 to 60)\n"
         "    -o spool_max=SIZE      with writeback: disk space for held bytes past the\n"
         "                           64M in memory (default 1G; 0: none; K/M/G/T)\n"
         "    -o log_level=LEVEL     trace, debug, info, warn, error, critical or off\n"
         "                           (default info; -d means debug)\n"
         "    -o log_file=PATH       log to PATH instead of syslog or stderr; reopened\n"
         "                           on SIGHUP (for logrotate)\n"
         "    -o allow_other         let other users in (default when run as root; the\n"
         "                           kernel checks each access against the file's mode)\n"
         "    -o noallow_other       only the mounting user (and with allow_root, root)\n"
         "tiered storage (old sealed segments move to an S3-compatible bucket):\n"
         "    -o tier_url=s3://BUCKET[/PREFIX]  where the objects go (turns tiering on)\n"
         "    -o tier_endpoint=URL   http(s)://HOST[:PORT] (default AWS S3 of the region)\n"
         "    -o tier_region=NAME    signing region (default us-east-1)\n"
         "    -o tier_credentials=FILE  AWS shared-credentials file (default: the\n"
         "                           AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment)\n"
         "    -o tier_cache=SIZE     local cache of remote data (default 1G)\n"
         "    -o local_retain_bytes=SIZE, local_retain_seconds=N  what stays on local\n"
         "                           disk, for files without their own (default: all)\n";
}

bool AllowOther(const DaemonOptions& options, uid_t euid) { return options.allow_other.value_or(euid == 0); }

std::optional<std::string> CheckTierOptions(const Config& config) {
  const Config::Tier& tier = config.tier;
  if (tier.enabled()) return std::nullopt;
  const Config::Tier defaults;
  if (!tier.endpoint.empty() || !tier.credentials.empty() || tier.region != defaults.region ||
      tier.cache_bytes != defaults.cache_bytes || tier.local_retain_bytes || tier.local_retain_seconds) {
    return "hpfs: the tier_* and local_retain_* options need tier_url=s3://BUCKET[/PREFIX]";
  }
  return std::nullopt;
}

bool IsMountUtilityOption(std::string_view option) {
  if (option.starts_with("x-") || option.starts_with("X-") || option.starts_with("comment=")) return true;
  for (std::string_view name : {"defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group",
                                "nofail", "_netdev"}) {
    if (option == name) return true;
  }
  return false;
}

}  // namespace hpfs
