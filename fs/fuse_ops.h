// SPDX-License-Identifier: Apache-2.0
// The libfuse low-level callbacks: each turns one request into a call on the
// Filesystem and its result into exactly one reply. No decisions live here.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "fs/filesystem.h"

namespace hpfs {

// The session userdata.
struct SessionContext {
  Filesystem* fs = nullptr;
  // Set once the session exists; used for cache invalidation notices.
  fuse_session* session = nullptr;
  // The kernel may cache names and attributes this long: nothing changes
  // them behind its back except retention, which notifies it.
  double entry_timeout = 86400.0;
  double attr_timeout = 86400.0;

  // Handles given to the kernel (fi->fh). The kernel sends RELEASE
  // asynchronously and may not get to it before the session ends, so the
  // daemon releases what is left at shutdown (see ReleaseAllHandles).
  std::mutex handles_mu;
  std::unordered_set<FileHandle*> file_handles;
  std::unordered_set<DirHandle*> dir_handles;

  // Write-back mode: open handles that write through the page cache. While
  // there are none the kernel holds no dirty pages (close flushes them).
  std::atomic<int> cached_writers{0};
};

// Releases every handle the kernel did not release before the session ended:
// unlinked files still open at unmount are deleted now.
void ReleaseAllHandles(SessionContext& context);

// The largest write (and read) request: 1 MiB.
inline constexpr unsigned kMaxRequestSize = 1u << 20;

// The callback table. Without `xattr` the xattr callbacks stay unset, so
// libfuse answers ENOSYS and the kernel stops asking (DESIGN.md section 4).
fuse_lowlevel_ops MakeLowlevelOps(bool xattr);

}  // namespace hpfs
