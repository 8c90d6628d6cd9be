// SPDX-License-Identifier: Apache-2.0
// Filesystem: attributes (getattr, setattr, statfs) and how a file's stat is
// made from its HPFile and backing directory.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/meta.h"
#include "fs/backing_dir.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::LastErrno;

}  // namespace

Result<struct stat> Filesystem::Stat(const Inode& inode) {
  struct stat st;
  switch (inode.kind) {
    case Kind::kDirectory: {
      auto fd = Descriptor(inode);
      if (!fd) return std::unexpected(fd.error());
      if (::fstat((*fd)->get(), &st) != 0) return LastErrno();
      return st;
    }
    case Kind::kSymlink: {
      auto fd = Descriptor(inode);
      if (!fd) return std::unexpected(fd.error());
      if (::fstatat((*fd)->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
      return st;
    }
    case Kind::kFile:
      break;
  }
  {
    std::lock_guard lock(inode.mu);
    if (inode.evicted && inode.evicted_stat) {
      // Kept from before an unlink, maybe: the links are today's.
      return inode.evicted_stat->ToStat(inode.backing_dev, inode.backing_ino, inode.unlinked);
    }
  }
  auto opened = FileOf(inode);
  std::shared_ptr<hpfile::HPFile> file = opened ? *opened : nullptr;
  if (!file) {
    // Deleted: only the kernel's reference is left.
    auto fd = Descriptor(inode);
    if (!fd || ::fstat((*fd)->get(), &st) != 0) std::memset(&st, 0, sizeof st);
    st.st_ino = inode.backing_ino;
    st.st_mode = S_IFREG;
    st.st_nlink = 0;
    st.st_size = 0;
    st.st_blocks = 0;
    return st;
  }
  return StatFile(inode, *file);
}

Result<struct stat> Filesystem::StatFile(const Inode& inode, const hpfile::HPFile& file) {
  auto fd = Descriptor(inode);
  if (!fd) return std::unexpected(fd.error());
  struct stat dir;
  if (::fstat((*fd)->get(), &dir) != 0) return LastErrno();
  const hpfile::Meta meta = file.GetMeta();
  const auto segments = file.Segments();
  // A grow that write-back mode has not landed yet is the size already.
  const uint64_t size = std::max(file.Size(), inode.WritebackEnd());

  blkcnt_t blocks = 0;
  bool unlinked;
  std::optional<struct stat> tail;
  {
    // Held across a few fstatat calls at most: sealed segments come from the cache.
    std::lock_guard lock(inode.mu);
    unlinked = inode.unlinked;
    // Names start with the zero-padded base, so name order is base order:
    // whatever sorts before the first segment was pruned (by a punch or by
    // retention) and is gone for good.
    if (!inode.sealed_blocks && segments.size() > 2) {
      inode.sealed_blocks = std::make_unique<std::map<std::string, blkcnt_t>>();
    }
    if (auto& cached = inode.sealed_blocks) {
      cached->erase(cached->begin(),
                    segments.empty() ? cached->end() : cached->lower_bound(segments.front().file_name));
    }
    for (size_t i = 0; i < segments.size(); ++i) {
      const bool sealed_middle = i > 0 && i + 1 < segments.size();
      if (sealed_middle) {
        auto it = inode.sealed_blocks->find(segments[i].file_name);
        if (it != inode.sealed_blocks->end()) {
          blocks += it->second;
          continue;
        }
      }
      auto seg = StatAt((*fd)->get(), segments[i].file_name, 0);
      if (!seg) continue;  // pruned or truncated away since Segments()
      blocks += seg->st_blocks;
      if (sealed_middle) inode.sealed_blocks->emplace(segments[i].file_name, seg->st_blocks);
      if (i + 1 == segments.size()) tail = *seg;
    }
  }
  // Pruned segments the deleter has not reached yet still hold their space:
  // `du` shows it going down as they go (their slots: at most what they hold).
  blocks += static_cast<blkcnt_t>(file.PrunedSegments().bytes / 512);
  return FileStat(dir, meta, size, blocks, tail ? &*tail : nullptr, unlinked);
}


void Filesystem::SetFileTimes(const Inode& inode, const hpfile::HPFile& file, const timespec times[2]) {
  auto fd = Descriptor(inode);
  if (!fd) {
    spdlog::debug("setting a file's times: {}", fd.error().message());
    return;
  }
  if (::futimens((*fd)->get(), times) != 0) {
    spdlog::debug("futimens on a file's backing directory: {}", std::strerror(errno));
  }
  const auto segments = file.Segments();
  if (!segments.empty()) {
    ::utimensat((*fd)->get(), segments.back().file_name.c_str(), times, 0);
  }
}

void Filesystem::TouchFile(const Inode& inode, const hpfile::HPFile& file) {
  {
    // Called after every truncate and prune: a segment name may come back
    // with other contents, so cached block counts go.
    std::lock_guard lock(inode.mu);
    inode.sealed_blocks.reset();
  }
  const timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  SetFileTimes(inode, file, times);
}


Result<struct stat> Filesystem::GetAttr(InodeId id) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  return Stat(**inode);
}

Result<struct stat> Filesystem::SetAttr(InodeId id, const AttrChange& change, FileHandle*) {
  auto found = GetInode(id);
  if (!found) return std::unexpected(found.error());
  Inode& inode = **found;
  const bool times = change.atime || change.mtime;
  timespec ts[2] = {change.atime.value_or(timespec{0, UTIME_OMIT}),
                    change.mtime.value_or(timespec{0, UTIME_OMIT})};
  const uid_t uid = change.uid.value_or(static_cast<uid_t>(-1));
  const gid_t gid = change.gid.value_or(static_cast<gid_t>(-1));

  auto dir_fd = Descriptor(inode);
  if (!dir_fd) return std::unexpected(dir_fd.error());
  const int fd = (*dir_fd)->get();
  switch (inode.kind) {
    case Kind::kDirectory:
      if (change.size) return Errno(EISDIR);
      if (change.mode && ::fchmod(fd, *change.mode & 07777) != 0) return LastErrno();
      if ((change.uid || change.gid) && ::fchown(fd, uid, gid) != 0) return LastErrno();
      if (times && ::futimens(fd, ts) != 0) return LastErrno();
      return Stat(inode);
    case Kind::kSymlink:
      if (change.size) return Errno(EINVAL);
      if (change.mode) return Errno(EOPNOTSUPP);
      if ((change.uid || change.gid) &&
          ::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        return LastErrno();
      }
      // The magic link of an O_PATH descriptor names the symlink itself.
      if (times && ::utimensat(AT_FDCWD, ProcFdPath(fd).c_str(), ts, 0) != 0) return LastErrno();
      return Stat(inode);
    case Kind::kFile:
      break;
  }

  auto opened = FileOf(inode);
  if (!opened) return std::unexpected(opened.error());
  auto file = *opened;
  if (!file) return Errno(ENOENT);
  // However this ends, a stat kept from an eviction meanwhile is stale.
  struct Changed {
    Filesystem* fs;
    const Inode& inode;
    ~Changed() { fs->ChangedWithoutHandle(inode); }
  } changed{this, inode};
  if (change.size) {
    std::lock_guard lock(inode.write_mu);
    // The kernel takes the size from this answer: its end and the stored
    // one meet again.
    if (inode.writeback_queue) inode.writeback().broken.reset();
    if (config_.writeback) {
      TrimHeldLocked(inode, *change.size);
      if (auto deferred = DeferGrowLocked(inode, *file, *change.size); !deferred) {
        return std::unexpected(deferred.error());
      } else if (*deferred) {
        return Stat(inode);
      }
    }
    if (*change.size != file->Size()) {
      // Below the local head: EPERM, remote objects are not cut.
      auto tiered = inode.Tiered();
      if (auto r = tiered ? tiered->Truncate(*change.size) : file->Truncate(*change.size); !r) {
        return std::unexpected(r.error());
      }
      TouchFile(inode, *file);
    }
  }
  if (change.mode || change.uid || change.gid) {
    struct stat before;
    const bool have_before = ::fstat(fd, &before) == 0;
    auto r = file->UpdateMeta([&](hpfile::Meta& meta) {
      if (change.mode) meta.mode = *change.mode & 07777;
      if (change.uid) meta.uid = *change.uid;
      if (change.gid) meta.gid = *change.gid;
    });
    if (!r) return std::unexpected(r.error());
    // Replacing the meta touched the backing directory, whose times stand for
    // the file's when it has no segment; an attribute change is not a write.
    if (have_before && file->Segments().empty() && !times) {
      const timespec keep[2] = {before.st_atim, before.st_mtim};
      ::futimens(fd, keep);
    }
  }
  if (times) SetFileTimes(inode, *file, ts);
  return Stat(inode);
}

Result<struct statvfs> Filesystem::StatFs() {
  struct statvfs st;
  if (::fstatvfs(root_fd_.get(), &st) != 0) return LastErrno();
  return st;
}

}  // namespace hpfs
