// SPDX-License-Identifier: Apache-2.0
// Filesystem: the namespace operations (lookup and forget, mkdir, symlink,
// unlink, rmdir, rename, link, mknod) and the trash bookkeeping of the files
// they let go.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include <spdlog/spdlog.h>

#include "fs/backing_dir.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::LastErrno;

bool UidGidDiffer(const Caller& caller) { return caller.uid != ::geteuid() || caller.gid != ::getegid(); }

}  // namespace

Result<void> Filesystem::TrashFile(int parent_fd, std::string_view name, const struct stat& st) {
  const std::string trash_name = NewTrashName();
  if (::renameat(parent_fd, std::string(name).c_str(), trash_fd_.get(), trash_name.c_str()) != 0) return LastErrno();
  auto inode = inodes_.FindByBacking(st.st_dev, st.st_ino);
  if (!inode) {
    deleter_.Enqueue(trash_name);
    return {};
  }
  inodes_.Unbind(*inode);
  {
    std::lock_guard lock(inode->mu);
    inode->unlinked = true;
    inode->trash_name = trash_name;
  }
  DeleteIfUnreachable(std::move(inode));
  return {};
}


Result<Entry> Filesystem::Lookup(InodeId parent_id, std::string_view name) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  auto inode = LoadChild(**parent, name);
  if (!inode) return std::unexpected(inode.error());
  return MakeEntry(*inode);
}

void Filesystem::Forget(InodeId id, uint64_t n) {
  if (id == kRootInode) return;
  // A file's HPFile must be closed before a lookup can open the same backing
  // directory again: two HPFiles on one directory would both write its meta.
  // Loads of files happen under load_mu_, so the last forget takes it too.
  std::unique_lock load_lock(load_mu_, std::defer_lock);
  if (auto inode = inodes_.Get(id); inode && inode->kind == Kind::kFile) load_lock.lock();
  auto gone = inodes_.Forget(id, n);
  if (!gone) return;
  descriptors_.Erase(gone->serial);
  {
    std::lock_guard idle_lock(idle_mu_);
    (void)idle_files_.Erase(gone->serial);
  }
  // Open handles keep an inode alive even after the kernel forgot it (the
  // kernel sends release before the last forget, but be safe).
  std::shared_ptr<hpfile::HPFile> closing;  // closed before load_mu_ is released
  {
    std::lock_guard lock(gone->mu);
    gone->forgotten = true;
    if (gone->open_handles > 0) return;
    if (!gone->unlinked) closing = std::move(gone->file);
  }
  DeleteIfUnreachable(std::move(gone));
}

Result<Entry> Filesystem::Mkdir(InodeId parent_id, std::string_view name, mode_t mode, const Caller& caller) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  if (auto r = CheckNewName(**parent, name); !r) return std::unexpected(r.error());
  auto parent_fd = Descriptor(**parent);
  if (!parent_fd) return std::unexpected(parent_fd.error());
  const int pfd = (*parent_fd)->get();
  if (::mkdirat(pfd, std::string(name).c_str(), 0700) != 0) return LastErrno();
  auto fd = OpenAt(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return std::unexpected(fd.error());
  // The daemon's umask must not matter: the kernel already applied the caller's.
  if (::fchmod(fd->get(), mode & 07777) != 0) return LastErrno();
  if (UidGidDiffer(caller) && ::fchown(fd->get(), caller.uid, caller.gid) != 0) {
    spdlog::debug("cannot give new directory '{}' to {}:{}: {}", name, caller.uid, caller.gid,
                  std::strerror(errno));
  }
  auto inode = LoadChild(**parent, name);
  if (!inode) return std::unexpected(inode.error());
  return MakeEntry(*inode);
}

Result<Entry> Filesystem::Symlink(std::string_view target, InodeId parent_id, std::string_view name,
                                  const Caller& caller) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  if (auto r = CheckNewName(**parent, name); !r) return std::unexpected(r.error());
  auto parent_fd = Descriptor(**parent);
  if (!parent_fd) return std::unexpected(parent_fd.error());
  const int pfd = (*parent_fd)->get();
  if (::symlinkat(std::string(target).c_str(), pfd, std::string(name).c_str()) != 0) return LastErrno();
  // A link the caller does not own could not be removed by them later.
  if (UidGidDiffer(caller) && ::fchownat(pfd, std::string(name).c_str(), caller.uid, caller.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    const int error = errno;
    ::unlinkat(pfd, std::string(name).c_str(), 0);
    return Errno(error);
  }
  auto inode = LoadChild(**parent, name);
  if (!inode) return std::unexpected(inode.error());
  return MakeEntry(*inode);
}

Result<std::string> Filesystem::ReadLink(InodeId id) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  if ((*inode)->kind != Kind::kSymlink) return Errno(EINVAL);
  std::string buf(PATH_MAX, '\0');
  auto fd = Descriptor(**inode);
  if (!fd) return std::unexpected(fd.error());
  const ssize_t n = ::readlinkat((*fd)->get(), "", buf.data(), buf.size());
  if (n < 0) return LastErrno();
  buf.resize(static_cast<size_t>(n));
  return buf;
}

Result<Filesystem::VisibleEntry> Filesystem::FindVisible(InodeId parent_id, std::string_view name) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  VisibleEntry entry{std::move(*parent), {}, Kind::kDirectory};
  auto st = StatVisible(*entry.parent, name, &entry.kind);
  if (!st) return std::unexpected(st.error());
  entry.st = *st;
  return entry;
}

void Filesystem::UnbindBacking(const struct stat& st) {
  if (auto inode = inodes_.FindByBacking(st.st_dev, st.st_ino)) inodes_.Unbind(*inode);
}

Result<void> Filesystem::Unlink(InodeId parent_id, std::string_view name) {
  auto found = FindVisible(parent_id, name);
  if (!found) return std::unexpected(found.error());
  auto held_fd = Descriptor(*found->parent);
  if (!held_fd) return std::unexpected(held_fd.error());
  const int parent_fd = (*held_fd)->get();
  switch (found->kind) {
    case Kind::kDirectory:
      return Errno(EISDIR);
    case Kind::kSymlink:
      if (::unlinkat(parent_fd, std::string(name).c_str(), 0) != 0) return LastErrno();
      UnbindBacking(found->st);
      return {};
    case Kind::kFile:
      break;
  }
  return TrashFile(parent_fd, name, found->st);
}

Result<void> Filesystem::Rmdir(InodeId parent_id, std::string_view name) {
  auto found = FindVisible(parent_id, name);
  if (!found) return std::unexpected(found.error());
  if (found->kind != Kind::kDirectory) return Errno(ENOTDIR);
  auto parent_fd = Descriptor(*found->parent);
  if (!parent_fd) return std::unexpected(parent_fd.error());
  if (::unlinkat((*parent_fd)->get(), std::string(name).c_str(), AT_REMOVEDIR) != 0) return LastErrno();
  UnbindBacking(found->st);
  return {};
}

Result<void> Filesystem::Rename(InodeId parent_id, std::string_view name, InodeId new_parent_id,
                                std::string_view new_name, unsigned flags) {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
      flags == (RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    return Errno(EINVAL);
  }
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  auto new_parent = GetDirectory(new_parent_id);
  if (!new_parent) return std::unexpected(new_parent.error());
  auto from_held = Descriptor(**parent);
  if (!from_held) return std::unexpected(from_held.error());
  auto to_held = Descriptor(**new_parent);
  if (!to_held) return std::unexpected(to_held.error());
  const int from_fd = (*from_held)->get();
  const int to_fd = (*to_held)->get();
  const std::string from = std::string(name);
  const std::string to = std::string(new_name);

  Kind kind;
  auto st = StatVisible(**parent, name, &kind);
  if (!st) return std::unexpected(st.error());
  if (auto r = CheckNewName(**new_parent, new_name); !r) return std::unexpected(r.error());

  if (flags & RENAME_EXCHANGE) {
    Kind other_kind;
    if (auto other = StatVisible(**new_parent, new_name, &other_kind); !other) {
      return std::unexpected(other.error());
    }
    return CheckRc(::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_EXCHANGE));
  }

  Kind target_kind;
  auto target = StatVisible(**new_parent, new_name, &target_kind);
  if (!target) {
    if (!hpfile::IsErrno(target.error(), ENOENT)) return std::unexpected(target.error());
    // A hidden backing entry of that name is not replaced behind the user's back.
    return CheckRc(::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_NOREPLACE));
  }
  if (flags & RENAME_NOREPLACE) return Errno(EEXIST);
  if (target->st_ino == st->st_ino && target->st_dev == st->st_dev) return {};

  if (target_kind == Kind::kDirectory) {
    if (kind != Kind::kDirectory) return Errno(EISDIR);
    if (::renameat(from_fd, from.c_str(), to_fd, to.c_str()) != 0) return LastErrno();
    UnbindBacking(*target);
    return {};
  }
  if (kind == Kind::kDirectory) return Errno(ENOTDIR);
  if (kind == Kind::kSymlink && target_kind == Kind::kSymlink) {
    if (::renameat(from_fd, from.c_str(), to_fd, to.c_str()) != 0) return LastErrno();
    UnbindBacking(*target);
    return {};
  }

  // A file is involved, so the backing side is a non-empty directory that
  // rename(2) will not replace. Swap the two entries atomically (the new name
  // never disappears), then take the old target away from the old name.
  if (::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL) return LastErrno();
    // The backing filesystem cannot exchange: readers may briefly miss the
    // name, which is the best it allows.
    spdlog::warn("backing filesystem cannot RENAME_EXCHANGE; replacing '{}' is not atomic", to);
    if (target_kind == Kind::kFile) {
      if (auto r = TrashFile(to_fd, to, *target); !r) return r;
    } else if (::unlinkat(to_fd, to.c_str(), 0) != 0) {
      return LastErrno();
    }
    return CheckRc(::renameat(from_fd, from.c_str(), to_fd, to.c_str()));
  }
  if (target_kind == Kind::kFile) return TrashFile(from_fd, from, *target);
  if (::unlinkat(from_fd, from.c_str(), 0) != 0) return LastErrno();
  UnbindBacking(*target);
  return {};
}

Result<Entry> Filesystem::Link(InodeId, InodeId, std::string_view) { return Errno(EPERM); }

Result<Entry> Filesystem::Mknod(InodeId parent_id, std::string_view name, mode_t mode, dev_t,
                                const Caller& caller) {
  // mknod(2) of a regular file is creat(2) without the descriptor.
  if ((mode & S_IFMT) != S_IFREG && (mode & S_IFMT) != 0) return Errno(EPERM);
  auto created = Create(parent_id, name, mode & 07777, O_WRONLY | O_CREAT | O_EXCL, caller);
  if (!created) return std::unexpected(created.error());
  Release(std::move(created->second));
  return created->first;
}

}  // namespace hpfs
