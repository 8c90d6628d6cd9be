// SPDX-License-Identifier: Apache-2.0
// The hpfs-specific mount options (`-o segment_size=...` and friends) and the
// settings they produce. FUSE's own options are left to libfuse.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "core/format.h"

namespace hpfs {

// What the filesystem layer needs to know about the mount.
// -o gap_wait: a request handler waits that long, holding one of the
// daemon's threads, so it stays short.
inline constexpr uint64_t kMinGapWaitSeconds = 1;
inline constexpr uint64_t kMaxGapWaitSeconds = 60;

struct Config {
  // Defaults for files created through the mount.
  uint64_t segment_size = hpfile::format::kDefaultSegmentSize;
  std::optional<uint64_t> retain_bytes;
  std::optional<uint64_t> retain_seconds;
  // Answer user.hpfs.* xattrs instead of ENOSYS.
  bool xattr = false;
  // The kernel's write-back cache (docs/FILESYSTEM.md, "Write-back mode"):
  // appends wait in its page cache and reach the daemon in batches.
  bool writeback = false;
  // Write-back mode: the daemon makes the kernel write back dirty pages at
  // least this often; 0 leaves it to the kernel's own write-back.
  uint64_t commit_seconds = 1;
  // Write-back mode: bytes of WRITE requests that arrived before the bytes
  // in front of them, held in memory until those come, over the whole
  // mount. Past it held bytes go to spool files in the backing directory's
  // trash, up to spool_bound (-o spool_max=SIZE); past that a further early
  // request fails with ENOSPC (the writer sees it at fsync and close).
  uint64_t reorder_bound = uint64_t{64} << 20;
  uint64_t spool_bound = uint64_t{1} << 30;
  // Write-back mode: how long an fsync, a close or a read past the stored
  // end waits for the gap in front of held bytes (-o gap_wait=SECONDS).
  uint64_t gap_wait_seconds = 2;
  // Segment descriptors each open file keeps cached. Small: a mount may hold
  // many files open at once.
  size_t max_open_segments = 8;
  // Bound on the descriptors the inodes the kernel remembers hold while idle
  // (fs/descriptor_cache.h); 0: DefaultMaxOpenFiles().
  size_t max_open_files = 0;
  // Tiered storage (docs/FILESYSTEM.md, "Tiered storage"): on when
  // tier_url is set. Credentials are read at mount time, never kept here.
  struct Tier {
    std::string url;          // s3://BUCKET[/PREFIX], as given
    std::string endpoint;     // http(s)://HOST[:PORT]
    std::string region = "us-east-1";
    std::string credentials;  // a credentials file; empty: the AWS_* environment
    uint64_t cache_bytes = uint64_t{1} << 30;
    // Mount-wide local retention: how much of each file stays on disk.
    std::optional<uint64_t> local_retain_bytes;
    std::optional<uint64_t> local_retain_seconds;
    bool enabled() const { return !url.empty(); }
  } tier;
};

struct DaemonOptions {
  Config config;
  std::string log_level = "info";
  // allow_other / noallow_other as given (allow_root counts as "no"); unset
  // means the default of AllowOther.
  std::optional<bool> allow_other;
  // log_file=PATH as given; main makes it absolute before daemonizing.
  std::string log_file;
};

// Whether the mount lets users other than the daemon's in. By default only
// for a daemon run as root: services that drop privileges (a web server's
// workers) must reach their logs in a mount root made, and the kernel checks
// every access against the file's mode (default_permissions). A user's mount
// stays private unless asked, since allow_other needs user_allow_other in
// /etc/fuse.conf and would fail the mount without it.
bool AllowOther(const DaemonOptions& options, uid_t euid);

// The smallest segment size hpfs takes from its users (fs/settings.h): a
// smaller segment holds less than the block its file occupies, and a file of
// a few MiB would need thousands of segment files. libhpfile itself takes
// any size from 1 byte.
inline constexpr uint64_t kMinSegmentSize = 4096;
// kMinSegmentSize to format::kMaxSegmentSize, as messages name it.
inline constexpr std::string_view kSegmentSizeRange = "a size from 4K to 1T, with optional K/M/G/T suffix";

// "4096", "64K", "64M", "1G", "1T" (binary multiples, case-insensitive).
// nullopt for anything else, including overflow.
std::optional<uint64_t> ParseSize(std::string_view text);

// Seconds, with an optional unit: "30", "30s", "15m", "12h", "7d".
std::optional<uint64_t> ParseDuration(std::string_view text);

// True for the level names spdlog knows (trace, debug, info, warn, error,
// critical, off).
bool ValidLogLevel(std::string_view level);

// Applies one option of a `-o` list ("segment_size=64M", "xattr"). Returns
// false when the option is not an hpfs option (libfuse gets it), true when it
// was applied, and an error message naming the option when its value is bad.
[[nodiscard]] std::expected<bool, std::string> ApplyHpfsOption(std::string_view option, DaemonOptions& options);

// The message for tier_* or local_retain_* options given without tier_url
// (nothing would act on them), or nullopt.
std::optional<std::string> CheckTierOptions(const Config& config);

// Options that mount(8) and mount.fuse3 define for themselves (fstab's
// nofail, _netdev, x-systemd.*, ...). Both strip most of them before running
// hpfs, but a unit or script that hands an fstab option string to hpfs
// directly passes them on, and libfuse would refuse the mount over them.
bool IsMountUtilityOption(std::string_view option);

// The usage text for the hpfs options.
std::string HpfsOptionsHelp();

}  // namespace hpfs
