// SPDX-License-Identifier: Apache-2.0
#include "fs/backing_lock.h"

#include <fcntl.h>

#include "core/format.h"

namespace hpfs {

hpfile::Result<BackingLock> BackingLock::Acquire(const std::string& backing_dir) {
  auto& io = hpfile::PosixIo::Default();
  auto fd = hpfile::Fd::Open(io, backing_dir + "/" + std::string(hpfile::format::kLockName),
                             O_RDWR | O_CREAT, 0600);
  if (!fd) return std::unexpected(fd.error());
  // flock, not fcntl locks: it belongs to the open file description, so it
  // survives the daemon's fork into the background and is not dropped when
  // some other descriptor of the file is closed.
  if (auto locked = io.TryLockExclusive(fd->get()); !locked) {
    // Io says EBUSY for a lock held elsewhere; callers know flock's word.
    if (hpfile::IsErrno(locked.error(), EBUSY)) return hpfile::Errno(EWOULDBLOCK);
    return std::unexpected(locked.error());
  }
  return BackingLock(std::move(*fd));
}

}  // namespace hpfs
