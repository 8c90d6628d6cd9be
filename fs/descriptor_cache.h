// SPDX-License-Identifier: Apache-2.0
// The bounds on what the daemon keeps open for the inodes the kernel
// remembers (`-o max_open_files=N`, docs/FILESYSTEM.md "Descriptors").
//
// The kernel keeps an inode for every name it has looked up for as long as
// memory allows, so whatever the daemon holds per inode must be given back
// and taken again on demand:
// - an inode's backing descriptor (the directory of a directory or a file,
//   the O_PATH descriptor of a symlink) lives in a DescriptorCache, and is
//   opened again from the entry's file handle (name_to_handle_at(2)) when it
//   was evicted: a handle follows the entry through renames and into the
//   trash, as the descriptor did;
// - the HPFile of an idle file (no open handle, not unlinked) lives in an
//   LRU of its own and is closed when evicted; the next request opens it
//   again (fs/filesystem.h: FileOf).
// Open handles, and unlinked files the kernel still knows, keep their HPFile
// and descriptors outside these bounds: they are the files in use.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/io.h"
#include "core/result.h"

namespace hpfs {

// At most `capacity` values by key, least recently used out first. Values
// evicted by an insertion are handed back, so the caller can release them
// (close a descriptor, an HPFile) after it dropped its own locks.
// Not synchronized.
template <typename Value>
class BoundedLru {
 public:
  explicit BoundedLru(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // The value under `key`, now the most recently used; nullopt when absent.
  std::optional<Value> Touch(uint64_t key) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }
  // Sets `key` to `value` as the most recently used; returns what had to go.
  [[nodiscard]] std::vector<Value> Insert(uint64_t key, Value value) {
    std::vector<Value> evicted;
    if (auto it = index_.find(key); it != index_.end()) {
      evicted.push_back(std::exchange(it->second->second, std::move(value)));
      order_.splice(order_.begin(), order_, it->second);
      return evicted;
    }
    order_.emplace_front(key, std::move(value));
    index_.emplace(key, order_.begin());
    while (order_.size() > capacity_) {
      evicted.push_back(std::move(order_.back().second));
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    return evicted;
  }
  // Drops `key`; its value, if it was there.
  std::optional<Value> Erase(uint64_t key) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    Value value = std::move(it->second->second);
    order_.erase(it->second);
    index_.erase(it);
    return value;
  }
  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  std::list<std::pair<uint64_t, Value>> order_;  // most recently used first
  std::unordered_map<uint64_t, typename std::list<std::pair<uint64_t, Value>>::iterator> index_;
};

// A backing entry's file handle, to open it again without a path.
struct BackingHandle {
  std::vector<unsigned char> bytes;  // a struct file_handle
};

// The handle of what `fd` refers to; an error where the backing filesystem
// has no handles (EOPNOTSUPP) or the process may not use them.
[[nodiscard]] hpfile::Result<BackingHandle> HandleOf(int fd);
// Opens `handle` on the filesystem of `mount_fd` with `flags`. Needs
// CAP_DAC_READ_SEARCH (EPERM without); ESTALE once the entry is deleted.
[[nodiscard]] hpfile::Result<hpfile::Fd> OpenHandle(int mount_fd, const BackingHandle& handle, int flags);

// A thread-safe BoundedLru of shared descriptors: an evicted descriptor
// closes once the last request still using it lets go, after the cache's
// lock was released.
class DescriptorCache {
 public:
  using SharedFd = std::shared_ptr<const hpfile::Fd>;
  explicit DescriptorCache(size_t capacity) : lru_(capacity) {}

  SharedFd Find(uint64_t key);
  void Insert(uint64_t key, SharedFd fd);
  void Erase(uint64_t key);
  size_t size() const;
  size_t capacity() const { return lru_.capacity(); }

 private:
  mutable std::mutex mu_;
  BoundedLru<SharedFd> lru_;  // mu_
};

// The default of `-o max_open_files`: a quarter of the descriptor limit
// (RLIMIT_NOFILE as the daemon runs with it), within [kMinOpenFiles, 4096].
size_t DefaultMaxOpenFiles();
// The smallest max_open_files that leaves each of the bounds above a few
// entries to work with.
inline constexpr size_t kMinOpenFiles = 16;
// The largest accepted: far beyond any descriptor limit a system grants.
inline constexpr size_t kMaxOpenFiles = size_t{1} << 24;

}  // namespace hpfs
