// SPDX-License-Identifier: Apache-2.0
// The read-ahead of the daemon's own mount. The kernel gives a FUSE mount
// the default read-ahead of any new backing device (128 KiB), and the INIT
// reply's max_readahead can only lower that, never raise it. Sequential
// reads through a FUSE mount then run at about half the disk's speed (one
// request of 128 KiB at a time, each a round trip through the daemon). The
// window lives in the mount's bdi, /sys/class/bdi/MAJOR:MINOR/read_ahead_kb,
// which root may write like any block device's (docs/FILESYSTEM.md "Read-ahead").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace hpfs {

// What the daemon sets: 1 MiB requests (max_read, below) with the next
// ones already on their way.
inline constexpr unsigned kMountReadAheadKib = 4096;

// The device ("MAJOR:MINOR") of the mount at `mountpoint` (absolute,
// canonical) in /proc/self/mountinfo text: the last one listed there, which
// is the one on top.
std::optional<std::string> MountDevice(std::string_view mountinfo, std::string_view mountpoint);

// Sets the read-ahead of the mount at `mountpoint` to `kib`. Reads
// /proc/self/mountinfo rather than stat'ing the mount point: right after
// mounting, the daemon would have to answer that stat itself. Fails with
// EACCES when not root (the file is root's).
[[nodiscard]] hpfile::Result<void> SetMountReadAhead(const std::string& mountpoint, unsigned kib);

// Write-back mode: lowers the most the kernel lets the mount's pages be
// dirty (the bdi's max_bytes; the kernel's default is 1% of its dirty limit,
// so it grows with memory) to `bytes` if it is above; returns the cap now in
// force. The kernel's write-back passes of a file may send its later pages
// before the earlier ones, up to about what was dirty, and the daemon holds
// those in its reorder buffer and spool: past both bounds they fail. Below
// the cap (the common case) it only reads, which any user may; lowering it
// is root's (EACCES otherwise).
[[nodiscard]] hpfile::Result<uint64_t> CapMountDirtyBytes(const std::string& mountpoint, uint64_t bytes);

}  // namespace hpfs
