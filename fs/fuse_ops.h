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
#include "fs/test_hooks.h"

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

  // The max_read mount option; libfuse wants the INIT reply to say the same.
  unsigned max_read = 0;

  // Unset outside tests.
  std::unique_ptr<DelayedWrite> delayed_write;
};

// Releases every handle the kernel did not release before the session ended:
// unlinked files still open at unmount are deleted now.
void ReleaseAllHandles(SessionContext& context);

// The largest write request: 1 MiB.
inline constexpr unsigned kMaxRequestSize = 1u << 20;

// The largest read request unless -o max_read says otherwise: 1008 KiB.
// Replies are spliced through a pipe of at most 1 MiB (pipe-max-size,
// without CAP_SYS_RESOURCE), and libfuse splices only when the reply plus
// a page for the header and for each buffer fits in it; a 1 MiB read does
// not and is copied through the daemon instead (docs/FILESYSTEM.md "Read-ahead").
inline constexpr unsigned kMaxReadSize = 1008u << 10;

// The callback table. Without `xattr` the xattr callbacks stay unset, so
// libfuse answers ENOSYS and the kernel stops asking (DESIGN.md section 4).
fuse_lowlevel_ops MakeLowlevelOps(bool xattr);

}  // namespace hpfs
