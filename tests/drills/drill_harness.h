// SPDX-License-Identifier: Apache-2.0
// What the mounted drills share: the mount fixture with hpfsctl at hand, a
// byte pattern written and checked through the mount (every byte a function
// of its offset, so truncating and appending again writes the same bytes, and
// any byte read anywhere can be checked), a SIGKILL of the daemon, and the
// daemon's descriptor count and resident memory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "tests/mount/mount_harness.h"

namespace hpfs::drills {

using mount_test::CtlPath;
using mount_test::KeyValues;
using mount_test::ShellResult;

using mount_test::Eventually;

// Appends PatternByte(offset) bytes for [offset, offset + length) with one
// write(2) on `fd` (opened O_APPEND, whose end is `offset`). Returns what
// write returned; errno is kept.
ssize_t AppendPattern(int fd, uint64_t offset, size_t length);

// Checks [offset, offset + length) of `fd` with pread: each byte must be the
// pattern byte, except below `head` (dropped bytes, which read as zeros but
// may also still be the old bytes from a cache). Stops at end of file.
// Returns a description of the first wrong byte or failed read, or nullopt;
// `*checked` (optional) gets the count of bytes read.
std::optional<std::string> VerifyPattern(int fd, uint64_t offset, uint64_t length, uint64_t head,
                                         uint64_t* checked = nullptr);

// head and size of an open hpfs file through HPFS_IOC_STAT; nullopt on error.
struct HeadSize {
  uint64_t head = 0;
  uint64_t size = 0;
};
std::optional<HeadSize> StatHeadSize(int fd);

// The daemon's open descriptors (/proc/PID/fd) and resident set
// (/proc/PID/status VmRSS, KiB); -1 when unreadable.
long CountFds(pid_t pid);
long ResidentKib(pid_t pid);

class DrillTest : public mount_test::MountedTest {
 protected:
  // Runs `script` in the mount point under `set -e -o pipefail`, with $CTL
  // naming hpfsctl and $B the backing directory.
  ShellResult Run(const std::string& script, std::chrono::seconds timeout = std::chrono::seconds(60));
  // `hpfsctl stat FILE` (relative to the mount point) as key=value pairs.
  std::map<std::string, std::string> StatOf(const std::string& file);
  // `hpfsctl check [args] BACKING`.
  ShellResult Check(const std::string& args = "");
  // SIGKILLs the daemon, reaps it and clears the dead mount it leaves.
  void KillDaemon();
  // Whether the daemon is still alive (not exited, not a zombie).
  bool DaemonAlive() const;
};

}  // namespace hpfs::drills
