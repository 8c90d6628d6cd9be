// SPDX-License-Identifier: Apache-2.0
// Filesystem: the operations on open files (create, open, read, write,
// fsync, release, fallocate, lseek).
#include "fs/filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "core/format.h"
#include "core/meta.h"
#include "fs/backing_dir.h"
#include "fs/setid.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::LastErrno;

// Backing directories of files are the daemon's business, not the users'.
constexpr mode_t kBackingFileDirMode = 0700;

}  // namespace

Result<std::pair<Entry, std::unique_ptr<FileHandle>>> Filesystem::Create(InodeId parent_id,
                                                                         std::string_view name, mode_t mode,
                                                                         int flags, const Caller& caller) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  if (auto r = CheckNewName(**parent, name); !r) return std::unexpected(r.error());
  auto parent_fd = Descriptor(**parent);
  if (!parent_fd) return std::unexpected(parent_fd.error());
  const int pfd = (*parent_fd)->get();

  // Built in the trash and renamed into place, so that the name appears
  // complete (with its meta) or not at all, also across a crash.
  const std::string temp = NewTrashName();
  if (::mkdirat(trash_fd_.get(), temp.c_str(), kBackingFileDirMode) != 0) return LastErrno();
  // Best effort: what a failure leaves in the trash goes with the next
  // mount's sweep of it.
  auto discard_temp = [&] { (void)hpfile::RemoveTreeAt(trash_fd_.get(), temp); };
  auto fd = OpenAt(trash_fd_.get(), temp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) {
    discard_temp();
    return std::unexpected(fd.error());
  }
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) {
    const auto error = LastErrno();
    discard_temp();
    return error;
  }
  auto inode = std::make_shared<Inode>(Kind::kFile, st.st_dev, st.st_ino, std::move(*fd));
  Adopt(*inode);
  std::shared_lock creating(creating_);
  auto file = OpenHPFile(inode, /*create=*/true, mode, caller);
  if (!file) {
    discard_temp();
    return std::unexpected(file.error());
  }
  // Before the rename, so that a file whose tiering cannot start never
  // shows up under its name.
  if (auto attached = AttachTiered(*inode, *file); !attached) {
    file->reset();
    discard_temp();
    return std::unexpected(attached.error());
  }
  if (::renameat2(trash_fd_.get(), temp.c_str(), pfd, std::string(name).c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    creating.unlock();
    inode->tiered.reset();
    file->reset();
    discard_temp();
    if (err == EEXIST && !(flags & O_EXCL)) {
      // Lost a race with another creator: open what is there, as open(2) would.
      auto entry = Lookup(parent_id, name);
      // The name is taken by a backing entry the mount does not show (a
      // plain file): it exists, it just cannot be opened through the mount.
      if (!entry && hpfile::IsErrno(entry.error(), ENOENT)) return Errno(EEXIST);
      if (!entry) return std::unexpected(entry.error());
      auto handle = OpenFile(entry->id, flags & ~O_TRUNC);
      if (!handle) {
        Forget(entry->id, 1);
        return std::unexpected(handle.error());
      }
      return std::make_pair(*entry, std::move(*handle));
    }
    return Errno(err);
  }
  inode->create_seq = creates_.fetch_add(1) + 1;
  creating.unlock();
  inode->file = std::move(*file);
  inode->open_handles = 1;
  inode = inodes_.Insert(std::move(inode));
  auto handle = std::make_unique<FileHandle>(FileHandle{inode, flags});
  auto entry = MakeEntry(inode);
  if (!entry) {
    Release(std::move(handle));
    return std::unexpected(entry.error());
  }
  return std::make_pair(*entry, std::move(handle));
}

Result<std::unique_ptr<FileHandle>> Filesystem::OpenFile(InodeId id, int flags) {
  auto found = GetInode(id);
  if (!found) return std::unexpected(found.error());
  auto inode = *found;
  if (inode->kind == Kind::kDirectory) return Errno(EISDIR);
  if (inode->kind == Kind::kSymlink) return Errno(ELOOP);
  std::shared_ptr<hpfile::HPFile> file;
  for (;;) {
    auto opened = FileOf(*inode);
    if (!opened) return std::unexpected(opened.error());
    // Unlinked files stay open until the kernel forgets them, so only a
    // file deleted behind the kernel's back ends up here.
    if (!*opened) return Errno(ESTALE);
    std::lock_guard lock(inode->mu);
    // Evicted again between FileOf and here: open it once more.
    if (inode->file != *opened) continue;
    file = inode->file;
    ++inode->open_handles;
    break;
  }
  PinFile(*inode);
  auto handle = std::make_unique<FileHandle>(FileHandle{inode, flags});
  if (handle->writable() && (flags & O_TRUNC)) {
    std::lock_guard lock(inode->write_mu);
    auto tiered = inode->Tiered();
    if (file->Size() != 0 || file->Head() != 0 || (tiered && tiered->Head() != 0)) {
      if (auto r = tiered ? tiered->Truncate(0) : file->Truncate(0); !r) {
        Release(std::move(handle));
        return std::unexpected(r.error());
      }
      TouchFile(*inode, *file);
    }
  }
  return handle;
}

Result<ReadPlan> Filesystem::Read(FileHandle& handle, uint64_t offset, size_t size) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (config_.writeback && offset + size > file->Size()) WaitForHeldBelow(*handle.inode, offset + size);
  // Below the local head lie the remote segments (which PlanRead would
  // answer with zeros).
  if (auto tiered = handle.inode->Tiered(); tiered && offset < file->Head()) {
    return ReadTiered(*tiered, offset, size);
  }
  auto plan = file->PlanRead(offset, size);
  if (!plan) return plan;
  // Short of the file's end (a range running into a lost segment): a short
  // reply would tell the kernel that the file ends there, so the request
  // fails, and the kernel's retry of single pages reads up to the gap.
  const uint64_t in_file = plan->eof > offset ? std::min<uint64_t>(size, plan->eof - offset) : 0;
  if (plan->size() < in_file) return Errno(EIO);
  return plan;
}

Result<ReadPlan> Filesystem::ReadTiered(const hpfile::TieredFile& tiered, uint64_t offset, size_t size) {
  ReadPlan plan;
  plan.eof = tiered.Size();
  if (offset >= plan.eof) return plan;
  size = static_cast<size_t>(std::min<uint64_t>(size, plan.eof - offset));
  const uint64_t head = tiered.Head();
  if (offset < head) {
    plan.zeros = std::min<uint64_t>(size, head - offset);
    offset += plan.zeros;
    size -= static_cast<size_t>(plan.zeros);
  }
  plan.buffered.resize(size);
  size_t done = 0;
  while (done < size) {
    auto n = tiered.ReadAt(offset + done, std::span(plan.buffered).subspan(done));
    // A prune moved the head past us meanwhile: the rest reads as the zeros
    // below a head (already there).
    if (!n && hpfile::IsErrno(n.error(), ENODATA)) break;
    if (!n) return std::unexpected(n.error());
    if (*n == 0) {
      plan.buffered.resize(done);
      break;
    }
    done += *n;
  }
  // Short of the end (a truncate meanwhile) is the end; a short reply
  // elsewhere would tell the kernel the file ends there.
  return plan;
}

Result<size_t> Filesystem::Write(FileHandle& handle, uint64_t offset, std::span<const std::byte> data,
                                 bool append, const Caller& writer, bool* setid_cleared) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (data.empty()) return size_t{0};
  // The conditional append orders the write against truncates, prunes,
  // grows and other writes by itself, so write-through mode takes no lock of
  // its own. Write-back mode's queue compares held bytes with the stored ones
  // and then appends the rest (fs/writeback.cc), and a write landing in
  // between would break that: there write_mu orders this write too.
  std::unique_lock<std::mutex> writeback_order(handle.inode->write_mu, std::defer_lock);
  if (config_.writeback) writeback_order.lock();
  // Bytes that exist are never overwritten. A write past the end fills the
  // gap with zeros first, as a growing ftruncate would: that is what cp and
  // rsync do for a sparse source, and nothing written is changed by it.
  if (!append && offset < file->Size()) return Errno(EPERM);
  // As on a local filesystem, the bits go before the bytes land: a write
  // that fails after this has still cleared them.
  auto dropped = DropSetIdForWriter(*handle.inode, *file, writer);
  if (!dropped) return std::unexpected(dropped.error());
  if (setid_cleared != nullptr) *setid_cleared = *dropped;
  auto start = append ? file->Append(data) : file->AppendAt(offset, data, hpfile::HPFile::Gap::kFillZeros);
  // ESTALE: another write got past `offset` first.
  if (!start && hpfile::IsErrno(start.error(), ESTALE)) return Errno(EPERM);
  if (!start) return std::unexpected(start.error());
  return data.size();
}

Result<void> Filesystem::Fsync(FileHandle& handle) {
  auto file = handle.inode->File();
  if (!file) return {};
  // Write-back mode: the kernel sent its dirty pages before this; what it
  // answered early must be stored (or have failed) before the sync.
  Result<void> settled;
  if (config_.writeback) {
    LandGrow(*handle.inode, *file);
    settled = SettleHeld(*handle.inode);
  }
  const bool failed_before = file->SyncFailure().has_value();
  auto synced = file->Sync();
  if (!synced && !failed_before) {
    // Once: from now on every fsync of the file fails the same way.
    if (auto failure = file->SyncFailure()) {
      spdlog::error("{}: {}; every fsync of the file fails from now on, until the daemon restarts", file->dir(),
                    *failure);
    } else {
      spdlog::warn("{}: fsync failed: {}", file->dir(), synced.error().message());
    }
  }
  if (!synced) return synced;
  // A new file's name is durable once its directory is: as ext4 and xfs do,
  // the file's own fsync makes it so.
  if (handle.inode->create_seq > creates_durable_.load()) {
    if (auto named = MakeCreatesDurable(handle.inode->create_seq); !named) return named;
    // On a filesystem mounted inside BACKING, which that syncfs did not reach.
    if (handle.inode->backing_dev != root_dev_) {
      auto fd = Descriptor(*handle.inode);
      if (!fd) return std::unexpected(fd.error());
      if (::syncfs((*fd)->get()) != 0) return LastErrno();
    }
  }
  return settled;
}

Result<void> Filesystem::Flush(FileHandle& handle) {
  if (!config_.writeback || !handle.inode->File()) return {};
  return SettleHeld(*handle.inode);
}

void Filesystem::Release(std::unique_ptr<FileHandle> handle) {
  if (!handle) return;
  auto inode = std::move(handle->inode);
  handle.reset();
  std::shared_ptr<hpfile::HPFile> idle;
  {
    std::lock_guard lock(inode->mu);
    if (--inode->open_handles > 0) return;
    if (!inode->unlinked || !inode->forgotten) idle = inode->file;
  }
  if (idle) AddIdle(*inode);
  if (idle) {
    // The kernel keeps the inodes of files it has seen for as long as memory
    // allows; an idle one holds no segment descriptors, so the daemon's
    // descriptors grow with open files, not with files ever read.
    if (auto r = idle->CloseDescriptors(); !r) {
      spdlog::warn("{}: closing descriptors of an idle file: {}", idle->dir(), r.error().message());
    }
    return;
  }
  DeleteIfUnreachable(std::move(inode));
}

Result<void> Filesystem::Fallocate(FileHandle& handle, int mode, uint64_t offset, uint64_t length) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (!handle.writable()) return Errno(EBADF);
  if (length == 0) return Errno(EINVAL);
  if (offset > hpfile::format::kMaxFileSize || length > hpfile::format::kMaxFileSize - offset) {
    return Errno(EFBIG);
  }
  const uint64_t end = offset + length;
  switch (mode) {
    case 0: {
      // write_mu keeps the write-back queue's view of the end still; a
      // write-through append does not take it, and GrowTo never cuts one off.
      std::lock_guard lock(handle.inode->write_mu);
      if (end <= file->Size()) return {};
      // Write-back mode: the kernel answers this before it sends the dirty
      // pages below `end`, and zeros stored now would refuse them later.
      if (config_.writeback && handle.inode->cached_writers.load() > 0) return Errno(EOPNOTSUPP);
      if (auto r = file->GrowTo(end); !r) return r;
      TouchFile(*handle.inode, *file);
      return {};
    }
    case FALLOC_FL_KEEP_SIZE:
      return {};
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: {
      std::lock_guard lock(handle.inode->write_mu);
      auto tiered = handle.inode->Tiered();
      const uint64_t head = tiered ? tiered->Head() : file->Head();
      if (offset > head) return Errno(EOPNOTSUPP);
      const uint64_t new_head = std::min(end, file->Size());
      if (new_head <= head) return {};
      if (tiered) {
        // The dropped objects go on the tiering thread: no store call here.
        if (auto r = tiered->PruneHead(new_head, hpfile::TieredFile::DropObjects::kLater); !r) {
          spdlog::error("head punch of a tiered file: {}", r.error().message);
          return Errno(r.error().err);
        }
      } else if (auto r = file->PruneHead(new_head); !r) {
        return r;
      }
      deleter_.EnqueueHeadPunch(file, handle.inode);
      TouchFile(*handle.inode, *file);
      return {};
    }
    default:
      return Errno(EOPNOTSUPP);
  }
}

Result<uint64_t> Filesystem::Lseek(FileHandle& handle, uint64_t offset, int whence) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  const uint64_t size = file->Size();
  auto tiered = handle.inode->Tiered();
  const uint64_t head = tiered ? tiered->Head() : file->Head();
  switch (whence) {
    case SEEK_DATA: {
      const uint64_t start = std::max(offset, head);
      if (start >= size) return Errno(ENXIO);
      return start;
    }
    case SEEK_HOLE:
      if (offset >= size) return Errno(ENXIO);
      return offset < head ? offset : size;
    default:
      return Errno(EINVAL);
  }
}


Result<bool> Filesystem::DropSetIdForWriter(const Inode& inode, hpfile::HPFile& file, const Caller& writer) {
  const mode_t mode = file.Mode().value_or(kDefaultFileMode);
  if ((mode & (S_ISUID | S_ISGID)) == 0) return false;  // nearly every write: no meta copy, no /proc read
  const hpfile::Meta meta = file.GetMeta();
  gid_t file_gid = kNoGroup;
  if (meta.gid) {
    file_gid = *meta.gid;
  } else if (auto fd = Descriptor(inode)) {
    if (struct stat st; ::fstat((*fd)->get(), &st) == 0) file_gid = st.st_gid;
  }
  const mode_t kept = ModeAfterWrite(mode, file_gid, CredentialsOfThread(writer.pid));
  if (kept == mode) return false;
  if (auto r = file.UpdateMeta([kept](hpfile::Meta& m) { m.mode = kept; }); !r) return std::unexpected(r.error());
  return true;
}

}  // namespace hpfs
