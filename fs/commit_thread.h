// SPDX-License-Identifier: Apache-2.0
// Write-back mode's commit: a thread of the daemon that makes the kernel
// write back the mount's dirty pages at least every `interval` (syncfs on the
// mount), so a daemon crash loses at most about that much of acknowledged
// appends. Never runs from a request handler: syncfs waits for WRITE
// requests that the handlers answer.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "fs/filesystem.h"

namespace hpfs {

// syncfs of the mount `fd` is open on, from a child process that holds no
// other descriptor. syncfs sleeps, unkillably, until the kernel's WRITE
// requests are answered; in the daemon's own process a SIGKILL then left
// that thread behind, its /dev/fuse descriptors open, so the connection
// never ended, nothing answered the requests, and the mount, the writers
// and the dead daemon hung for good (Linux 6.18). The parent's wait (vfork)
// is killable: its death closes /dev/fuse, the kernel fails the requests,
// and the child's syncfs returns. Returns syncfs's errno, 0 on success.
// The commit and the write-back before a graceful stop both use it.
[[nodiscard]] int SyncfsOutsideTheDaemon(int fd);

class CommitThread {
 public:
  // `interval` zero: commits only when the Filesystem asks (a held direct
  // write), the rest is left to the kernel's own write-back. `has_dirty`
  // says whether the kernel can hold dirty pages at all; without them a
  // periodic commit is skipped (it would cost a directory open on the mount).
  CommitThread(Filesystem& fs, std::string mountpoint, std::chrono::seconds interval,
               std::function<bool()> has_dirty);
  // Stops and joins; call once the session can no longer answer requests
  // only after the mount is gone (a commit in progress waits for answers).
  ~CommitThread();
  CommitThread(const CommitThread&) = delete;
  CommitThread& operator=(const CommitThread&) = delete;

  // Asks for a commit as soon as possible.
  void Request();
  // Commits now and returns once the kernel's dirty pages are answered.
  void CommitNow();

 private:
  void Loop();

  Filesystem& fs_;
  const std::string mountpoint_;
  const std::chrono::seconds interval_;
  const std::function<bool()> has_dirty_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;  // mu_
  bool stop_ = false;       // mu_
  std::mutex commit_mu_;    // one commit at a time
  std::thread thread_;
};

}  // namespace hpfs
