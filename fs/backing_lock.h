// SPDX-License-Identifier: Apache-2.0
// The single-mount lock: the daemon that serves a backing directory holds an
// exclusive flock on BACKING/.hpfs.lock for as long as it runs, so a second
// daemon (or `hpfsctl check`) on the same directory fails at once.
#pragma once

#include <string>

#include "core/io.h"
#include "core/result.h"

namespace hpfs {

class BackingLock {
 public:
  // Creates the lock file if needed and takes the lock without waiting.
  // EWOULDBLOCK when another process holds it; other errnos from open(2).
  [[nodiscard]] static hpfile::Result<BackingLock> Acquire(const std::string& backing_dir);

  BackingLock(BackingLock&&) = default;
  BackingLock& operator=(BackingLock&&) = default;

 private:
  explicit BackingLock(hpfile::Fd fd) : fd_(std::move(fd)) {}
  // The lock lives as long as this descriptor (and its copies in children).
  hpfile::Fd fd_;
};

}  // namespace hpfs
