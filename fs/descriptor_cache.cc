// SPDX-License-Identifier: Apache-2.0
#include "fs/descriptor_cache.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hpfs {

hpfile::Result<BackingHandle> HandleOf(int fd) {
  // MAX_HANDLE_SZ: room for any filesystem's handle.
  constexpr size_t kMaxHandle = 128;
  BackingHandle handle;
  handle.bytes.resize(sizeof(struct file_handle) + kMaxHandle);
  auto* fh = reinterpret_cast<struct file_handle*>(handle.bytes.data());
  fh->handle_bytes = kMaxHandle;
  int mount_id = 0;
  if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) != 0) return hpfile::LastErrno();
  handle.bytes.resize(sizeof(struct file_handle) + fh->handle_bytes);
  handle.bytes.shrink_to_fit();
  return handle;
}

hpfile::Result<hpfile::Fd> OpenHandle(int mount_fd, const BackingHandle& handle, int flags) {
  // open_by_handle_at takes a non-const handle but does not change it.
  std::vector<unsigned char> copy = handle.bytes;
  const int fd =
      ::open_by_handle_at(mount_fd, reinterpret_cast<struct file_handle*>(copy.data()), flags | O_CLOEXEC);
  if (fd < 0) return hpfile::LastErrno();
  return hpfile::Fd(hpfile::PosixIo::Default(), fd);
}

DescriptorCache::SharedFd DescriptorCache::Find(uint64_t key) {
  std::lock_guard lock(mu_);
  return lru_.Touch(key).value_or(nullptr);
}

void DescriptorCache::Insert(uint64_t key, SharedFd fd) {
  std::vector<SharedFd> evicted;
  {
    std::lock_guard lock(mu_);
    evicted = lru_.Insert(key, std::move(fd));
  }
  // Closed here, outside the lock, unless a request still holds one.
}

void DescriptorCache::Erase(uint64_t key) {
  std::optional<SharedFd> gone;
  std::lock_guard lock(mu_);
  gone = lru_.Erase(key);
}

size_t DescriptorCache::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

size_t DefaultMaxOpenFiles() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 4096;
  return std::clamp<size_t>(static_cast<size_t>(limit.rlim_cur / 4), kMinOpenFiles, 4096);
}

}  // namespace hpfs
