// SPDX-License-Identifier: Apache-2.0
#include "fs/closed_file_stat.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/recovery.h"
#include "fs/backing_dir.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::LastErrno;

bool Later(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

// The read-only calls of hpfile::ScanStore, on paths relative to one
// directory descriptor: no walk through /proc/self/fd per call, and the
// segments' stats kept for their blocks and times. Refuses to list a
// directory of more than kClosedStatMaxEntries entries (E2BIG), before any
// per-entry call, and every call that would change something (EROFS).
class ScanIo final : public hpfile::Io {
 public:
  explicit ScanIo(int dir_fd) : dir_fd_(dir_fd) {}

  const struct stat* StatOf(const std::string& path) const {
    auto it = stats_.find(path);
    return it == stats_.end() ? nullptr : &it->second;
  }

  Result<int> Open(const std::string& path, int flags, mode_t) override {
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0) return Errno(EROFS);
    const int fd = ::openat(dir_fd_, path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return LastErrno();
    return fd;
  }
  void Close(int fd) override { ::close(fd); }
  Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override {
    return hpfile::PosixIo::Default().Pread(fd, buf, offset);
  }
  Result<struct stat> Fstat(int fd) override { return hpfile::PosixIo::Default().Fstat(fd); }
  Result<struct stat> Stat(const std::string& path) override {
    auto st = StatAt(dir_fd_, path);
    if (st) stats_.insert_or_assign(path, *st);
    return st;
  }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    if (path != ".") return Errno(EINVAL);
    auto entries = ListOwnEntries(dir_fd_, kClosedStatMaxEntries);
    if (!entries) return std::unexpected(entries.error());
    std::vector<std::string> names;
    names.reserve(entries->size());
    for (auto& entry : *entries) names.push_back(std::move(entry.name));
    return names;
  }
  Result<size_t> Pwrite(int, std::span<const std::byte>, uint64_t) override { return Errno(EROFS); }
  Result<void> Fdatasync(int) override { return Errno(EROFS); }
  Result<void> Fsync(int) override { return Errno(EROFS); }
  Result<void> Syncfs(int) override { return Errno(EROFS); }
  Result<void> Ftruncate(int, uint64_t) override { return Errno(EROFS); }
  Result<void> Fallocate(int, int, uint64_t, uint64_t) override { return Errno(EROFS); }
  Result<void> Unlink(const std::string&) override { return Errno(EROFS); }
  Result<void> Rename(const std::string&, const std::string&) override { return Errno(EROFS); }
  Result<void> Mkdir(const std::string&, mode_t) override { return Errno(EROFS); }
  Result<void> Rmdir(const std::string&) override { return Errno(EROFS); }
  Result<void> TryLockExclusive(int) override { return Errno(EROFS); }

 private:
  const int dir_fd_;
  std::unordered_map<std::string, struct stat> stats_;
};

}  // namespace

struct stat FileStat(const struct stat& dir, const hpfile::Meta& meta, uint64_t size, blkcnt_t blocks,
                     const struct stat* tail, bool unlinked) {
  struct stat st = dir;
  st.st_mode = S_IFREG | (meta.mode.value_or(kDefaultFileMode) & 07777);
  if (meta.uid) st.st_uid = *meta.uid;
  if (meta.gid) st.st_gid = *meta.gid;
  st.st_nlink = unlinked ? 0 : 1;
  st.st_size = static_cast<off_t>(size);
  st.st_blksize = kFileBlockSize;
  st.st_blocks = blocks;
  st.st_rdev = 0;
  // Every append lands in the tail segment, so its times are the file's;
  // chmod and friends rewrite the meta and must not count as a data change.
  if (tail != nullptr) {
    st.st_mtim = tail->st_mtim;
    st.st_atim = tail->st_atim;
    if (Later(tail->st_ctim, st.st_ctim)) st.st_ctim = tail->st_ctim;
  }
  return st;
}

KeptStat KeptStat::Of(const struct stat& st) {
  return KeptStat{st.st_size, st.st_blocks, st.st_atim, st.st_mtim, st.st_ctim, st.st_mode, st.st_uid, st.st_gid};
}

struct stat KeptStat::ToStat(dev_t dev, ino_t ino, bool unlinked) const {
  struct stat st {};
  st.st_dev = dev;
  st.st_ino = ino;
  st.st_mode = mode;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_nlink = unlinked ? 0 : 1;
  st.st_size = size;
  st.st_blocks = blocks;
  st.st_blksize = kFileBlockSize;
  st.st_atim = atim;
  st.st_mtim = mtim;
  st.st_ctim = ctim;
  return st;
}

Result<std::optional<struct stat>> StatClosedFile(int dir_fd, const struct stat& dir) {
  ScanIo io(dir_fd);
  auto scan = hpfile::ScanStore(io, ".");
  if (!scan) {
    if (hpfile::IsErrno(scan.error(), E2BIG)) return std::nullopt;
    return std::unexpected(scan.error());
  }
  // Tiered files answer with their TieredFile's view; anything recovery
  // would do or report is for HPFile::Open to do and log.
  if (!scan->meta || scan->meta->file_id || !scan->temp_files.empty() || !scan->problems.empty()) {
    return std::nullopt;
  }
  const hpfile::RecoveryPlan plan = hpfile::PlanRecovery(*scan);
  if (plan.damage || !plan.remove.empty() || !plan.pruned.empty() || plan.rewrite_meta || !plan.log.empty()) {
    return std::nullopt;
  }
  // As HPFile::Open: the file ends where its last segment does, or at the
  // head when it has none.
  uint64_t size = plan.head;
  blkcnt_t blocks = 0;
  const struct stat* tail = nullptr;
  for (const auto& segment : plan.segments) {
    const struct stat* st = io.StatOf("./" + segment.file_name);
    if (st == nullptr) return std::nullopt;
    blocks += st->st_blocks;
    tail = st;
    size = segment.name.base + std::min(segment.length, segment.name.capacity);
  }
  return FileStat(dir, *scan->meta, size, blocks, tail, /*unlinked=*/false);
}

}  // namespace hpfs
