// SPDX-License-Identifier: Apache-2.0
#include "fs/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "fs/hpfs_ioctl.h"
#include "fs/kernel_features.h"
#include "fs/readahead.h"

namespace hpfs {
namespace {

SessionContext& Ctx(fuse_req_t req) { return *static_cast<SessionContext*>(fuse_req_userdata(req)); }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid, ctx->pid};
}

int Errno(const std::error_code& ec) { return ec.value() > 0 ? ec.value() : EIO; }

FileHandle* HandleOf(const fuse_file_info* fi) { return reinterpret_cast<FileHandle*>(fi->fh); }
DirHandle* DirHandleOf(const fuse_file_info* fi) { return reinterpret_cast<DirHandle*>(fi->fh); }

// Ownership of a handle passes to the kernel (fi->fh) and comes back at
// release; the context keeps track of it in between.
std::unordered_set<FileHandle*>& Owned(SessionContext& ctx, FileHandle*) { return ctx.file_handles; }
std::unordered_set<DirHandle*>& Owned(SessionContext& ctx, DirHandle*) { return ctx.dir_handles; }

template <class Handle>
uint64_t Adopt(SessionContext& ctx, std::unique_ptr<Handle> handle) {
  std::lock_guard lock(ctx.handles_mu);
  Owned(ctx, handle.get()).insert(handle.get());
  return reinterpret_cast<uint64_t>(handle.release());
}

template <class Handle>
std::unique_ptr<Handle> Reclaim(SessionContext& ctx, uint64_t fh) {
  auto* handle = reinterpret_cast<Handle*>(fh);
  std::lock_guard lock(ctx.handles_mu);
  Owned(ctx, handle).erase(handle);
  return std::unique_ptr<Handle>(handle);
}

// Runs one callback body. Exceptions never cross into libfuse's C frames;
// bodies reply as their last step, so an exception means no reply was sent.
template <class Body>
void Guarded(fuse_req_t req, Body&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

fuse_entry_param EntryParam(const SessionContext& ctx, const Entry& entry) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = entry.id;
  // Ids are never reused while the daemon runs.
  e.generation = 1;
  e.attr = entry.attr;
  e.attr_timeout = ctx.attr_timeout;
  e.entry_timeout = ctx.entry_timeout;
  return e;
}

void ReplyEntry(fuse_req_t req, const Result<Entry>& entry, bool negative_ok) {
  SessionContext& ctx = Ctx(req);
  if (!entry) {
    if (negative_ok && hpfile::IsErrno(entry.error(), ENOENT)) {
      // Cache the absence too: every creation goes through this kernel.
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      e.entry_timeout = ctx.entry_timeout;
      fuse_reply_entry(req, &e);
      return;
    }
    fuse_reply_err(req, Errno(entry.error()));
    return;
  }
  const fuse_entry_param e = EntryParam(ctx, *entry);
  if (fuse_reply_entry(req, &e) != 0) ctx.fs->Forget(entry->id, 1);
}

void ReplyVoid(fuse_req_t req, const Result<void>& r) { fuse_reply_err(req, r ? 0 : Errno(r.error())); }

void ReplyAttr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st) {
    fuse_reply_err(req, Errno(st.error()));
    return;
  }
  fuse_reply_attr(req, &*st, Ctx(req).attr_timeout);
}

// --- callbacks ---

void OnInit(void* userdata, fuse_conn_info* conn) {
  const SessionContext& ctx = *static_cast<SessionContext*>(userdata);
  const bool writeback = ctx.fs->config().writeback;
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // Reads are replied from segment descriptors; splicing moves their pages
  // to the kernel without a copy through the daemon.
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_SPLICE_MOVE);
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_ASYNC_READ);
  // Write-back caching turns appends into re-sent pages, which only the
  // write-back mode's comparing writes accept (fs/writeback.h).
  if (writeback) {
    want(FUSE_CAP_WRITEBACK_CACHE);
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  // Not claiming to clear set-ID bits keeps the kernel doing it for
  // truncate, chown and cached writes (a setattr of the mode); direct writes
  // are the daemon's to handle either way (fs/setid.h).
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->max_write = kMaxRequestSize;
  conn->max_read = ctx.max_read;
  // The kernel lowers the mount's read-ahead to this when it gets the INIT
  // reply, after the daemon has raised it (fs/readahead.h): the same value
  // keeps what the daemon set.
  conn->max_readahead = kMountReadAheadKib * 1024;
  conn->time_gran = 1;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, [&] { ReplyEntry(req, Ctx(req).fs->Lookup(parent, name), /*negative_ok=*/true); });
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  try {
    Ctx(req).fs->Forget(ino, nlookup);
  } catch (...) {
    spdlog::error("forget of inode {} failed", ino);
  }
  fuse_reply_none(req);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  try {
    for (size_t i = 0; i < count; ++i) Ctx(req).fs->Forget(forgets[i].ino, forgets[i].nlookup);
  } catch (...) {
    spdlog::error("forget of {} inodes failed", count);
  }
  fuse_reply_none(req);
}

void OnGetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guarded(req, [&] { ReplyAttr(req, Ctx(req).fs->GetAttr(ino)); });
}

void OnSetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Guarded(req, [&] {
    AttrChange change;
    if (to_set & FUSE_SET_ATTR_MODE) change.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) change.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) change.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) change.size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      change.atime = timespec{0, UTIME_NOW};
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      change.atime = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      change.mtime = timespec{0, UTIME_NOW};
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      change.mtime = attr->st_mtim;
    }
    ReplyAttr(req, Ctx(req).fs->SetAttr(ino, change, fi ? HandleOf(fi) : nullptr));
  });
}

void OnReadLink(fuse_req_t req, fuse_ino_t ino) {
  Guarded(req, [&] {
    auto target = Ctx(req).fs->ReadLink(ino);
    if (!target) {
      fuse_reply_err(req, Errno(target.error()));
      return;
    }
    fuse_reply_readlink(req, target->c_str());
  });
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guarded(req, [&] { ReplyEntry(req, Ctx(req).fs->Mknod(parent, name, mode, rdev, CallerOf(req)), false); });
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guarded(req, [&] { ReplyEntry(req, Ctx(req).fs->Mkdir(parent, name, mode, CallerOf(req)), false); });
}

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->Unlink(parent, name)); });
}

void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->Rmdir(parent, name)); });
}

void OnSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guarded(req, [&] { ReplyEntry(req, Ctx(req).fs->Symlink(link, parent, name, CallerOf(req)), false); });
}

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->Rename(parent, name, newparent, newname, flags)); });
}

void OnLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Guarded(req, [&] { ReplyEntry(req, Ctx(req).fs->Link(ino, newparent, newname), false); });
}

// Write-back mode: the handles (by their open flags) whose writes the page
// cache collects.
bool WritesThroughPageCache(int open_flags) {
  return (open_flags & O_ACCMODE) == O_WRONLY && (open_flags & O_APPEND) != 0;
}

void SetOpenFlags(SessionContext& ctx, fuse_file_info* fi, std::unique_ptr<FileHandle> handle) {
  Inode* const handle_inode = handle->inode.get();
  fi->fh = Adopt(ctx, std::move(handle));
  // File bytes never change once written (only the head and the tail move,
  // and those changes come through this kernel), so cached pages stay valid.
  fi->keep_cache = 1;
  // Writes are write-through: close has nothing to flush.
  fi->noflush = 1;
  // Handles that can write use direct I/O. Writes then go from the caller's
  // pages straight into the request: one copy fewer than through the FUSE
  // page cache, which on a write-through mount only delays the writer (1 MiB
  // appends about twice as fast, see docs/PERFORMANCE.md), and the written
  // bytes never fill that cache, which the kernel would otherwise walk and
  // free page by page when the head is punched (1 s for 2 GiB cached, 35 ms
  // without). What it costs: reads through a read-write handle go to the
  // daemon uncached, and a MAP_SHARED mapping of it is refused (ENODEV)
  // rather than letting stores into it fail at writeback. Read-only handles
  // keep the page cache and every kind of mapping. Readers' cached
  // pages stay correct only where the kernel invalidates the pages a direct
  // write lands on.
  const bool writable = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (ctx.fs->config().writeback && writable) {
    // Write-back mode: write-only O_APPEND handles (loggers, >>) write into
    // the page cache, which close flushes; they cannot be mapped at all.
    // Every other writable handle stays direct, so a write below the end
    // still fails with EPERM at write(2), where its caller sees it, and a
    // shared mapping of it is refused.
    fi->noflush = 0;
    fi->direct_io = !WritesThroughPageCache(fi->flags);
    if (!fi->direct_io) {
      ctx.cached_writers.fetch_add(1, std::memory_order_relaxed);
      handle_inode->cached_writers.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  if (writable && DirectWritesKeepCachesCoherent()) fi->direct_io = 1;
}

void ReleaseFileHandle(SessionContext& ctx, fuse_file_info* fi) {
  std::unique_ptr<FileHandle> handle = Reclaim<FileHandle>(ctx, fi->fh);
  // The flags of the open, not fi->flags, which fcntl may have changed since.
  if (ctx.fs->config().writeback && WritesThroughPageCache(handle->flags)) {
    ctx.cached_writers.fetch_sub(1, std::memory_order_relaxed);
    handle->inode->cached_writers.fetch_sub(1, std::memory_order_relaxed);
  }
  ctx.fs->Release(std::move(handle));
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Guarded(req, [&] {
    SessionContext& ctx = Ctx(req);
    auto created = ctx.fs->Create(parent, name, mode, fi->flags, CallerOf(req));
    if (!created) {
      fuse_reply_err(req, Errno(created.error()));
      return;
    }
    const fuse_entry_param e = EntryParam(ctx, created->first);
    SetOpenFlags(ctx, fi, std::move(created->second));
    if (fuse_reply_create(req, &e, fi) != 0) {
      ReleaseFileHandle(ctx, fi);
      ctx.fs->Forget(e.ino, 1);
    }
  });
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, [&] {
    SessionContext& ctx = Ctx(req);
    auto handle = ctx.fs->OpenFile(ino, fi->flags);
    if (!handle) {
      fuse_reply_err(req, Errno(handle.error()));
      return;
    }
    SetOpenFlags(ctx, fi, std::move(*handle));
    if (fuse_reply_open(req, fi) != 0) ReleaseFileHandle(ctx, fi);
  });
}

// Zeros for the pruned head of a file, shared by every read.
const char* ZeroChunk() {
  static const std::vector<char> zeros(kMaxRequestSize, 0);
  return zeros.data();
}

void OnRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guarded(req, [&] {
    if (off < 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    auto plan = Ctx(req).fs->Read(*HandleOf(fi), static_cast<uint64_t>(off), size);
    if (!plan) {
      fuse_reply_err(req, Errno(plan.error()));
      return;
    }
    const size_t zero_bufs = (plan->zeros + kMaxRequestSize - 1) / kMaxRequestSize;
    const size_t count = zero_bufs + plan->extents.size() + (plan->buffered.empty() ? 0 : 1);
    if (count == 0) {
      fuse_reply_buf(req, nullptr, 0);
      return;
    }
    // fuse_bufvec ends in a one-element array; allocate room for `count`.
    std::unique_ptr<fuse_bufvec, decltype(&std::free)> bufv(
        static_cast<fuse_bufvec*>(std::calloc(1, sizeof(fuse_bufvec) + count * sizeof(fuse_buf))), &std::free);
    if (!bufv) throw std::bad_alloc();
    bufv->count = count;
    size_t i = 0;
    for (uint64_t left = plan->zeros; left > 0; ++i) {
      const size_t n = std::min<uint64_t>(left, kMaxRequestSize);
      bufv->buf[i].size = n;
      bufv->buf[i].mem = const_cast<char*>(ZeroChunk());
      left -= n;
    }
    for (const auto& extent : plan->extents) {
      fuse_buf& b = bufv->buf[i++];
      b.size = extent.length;
      b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      b.fd = extent.fd->get();
      b.pos = static_cast<off_t>(extent.file_offset);
    }
    if (!plan->buffered.empty()) {
      bufv->buf[i].size = plan->buffered.size();
      bufv->buf[i].mem = plan->buffered.data();
    }
    // `plan` keeps the segment descriptors open until the reply is sent.
    fuse_reply_data(req, bufv.get(), FUSE_BUF_SPLICE_MOVE);
  });
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Guarded(req, [&] {
    SessionContext& ctx = Ctx(req);
    DelayIfChosen(ctx.delayed_write.get(), off);
    FileHandle* handle = HandleOf(fi);
    if (ctx.fs->config().writeback) {
      // The kernel owns the size in this mode and has placed the write
      // (O_APPEND too): the offset is the truth, never "the end".
      ctx.fs->WriteBack(*handle, off < 0 ? 0 : static_cast<uint64_t>(off),
                        std::span(reinterpret_cast<const std::byte*>(buf), size), fi->writepage != 0,
                        CallerOf(req), [req](Result<size_t> written) {
                          if (!written) {
                            fuse_reply_err(req, Errno(written.error()));
                          } else {
                            fuse_reply_write(req, *written);
                          }
                        });
      return;
    }
    // fi->flags carries the descriptor's current flags (fcntl may set O_APPEND later).
    const bool append = ((fi->flags | handle->flags) & O_APPEND) != 0;
    bool setid_cleared = false;
    auto written = ctx.fs->Write(*handle, off < 0 ? 0 : static_cast<uint64_t>(off),
                                 std::span(reinterpret_cast<const std::byte*>(buf), size), append, CallerOf(req),
                                 &setid_cleared);
    // The kernel keeps the old mode cached after a direct write, so the next
    // stat would still show the bits. An attributes-only invalidation
    // touches no page and waits for nothing (there is no write-back cache),
    // so unlike a page invalidation it is safe inside this inode's request.
    if (setid_cleared && ctx.session != nullptr) {
      if (const int rc = fuse_lowlevel_notify_inval_inode(ctx.session, ino, -1, 0); rc != 0 && rc != -ENOENT) {
        spdlog::debug("attribute invalidation of inode {}: {}", ino, std::strerror(-rc));
      }
    }
    if (!written) {
      fuse_reply_err(req, Errno(written.error()));
      return;
    }
    fuse_reply_write(req, *written);
  });
}

// Only write-back mode asks (fi->noflush): the kernel has written back the
// file's pages by now, and the late error of bytes it was told were stored
// reaches the writer here, at close.
void OnFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->Flush(*HandleOf(fi))); });
}

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, [&] {
    SessionContext& ctx = Ctx(req);
    ReleaseFileHandle(ctx, fi);
    fuse_reply_err(req, 0);
  });
}

void OnFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->Fsync(*HandleOf(fi))); });
}

void OnOpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, [&] {
    SessionContext& ctx = Ctx(req);
    auto handle = ctx.fs->OpenDir(ino);
    if (!handle) {
      fuse_reply_err(req, Errno(handle.error()));
      return;
    }
    fi->fh = Adopt(ctx, std::move(*handle));
    if (fuse_reply_open(req, fi) != 0) Reclaim<DirHandle>(ctx, fi->fh);
  });
}

void ReadDir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  SessionContext& ctx = Ctx(req);
  std::vector<char> buf(size);
  size_t used = 0;
  auto add = [&](const DirEntry& de, const Entry* looked_up, off_t next) {
    size_t need;
    if (!plus) {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = de.ino;
      st.st_mode = DTTOIF(de.type);
      need = fuse_add_direntry(req, buf.data() + used, size - used, de.name.c_str(), &st, next);
    } else {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      // Node id 0 hands out no inode: the kernel lists the name and looks it
      // up itself when asked.
      e.attr.st_ino = de.ino;
      e.attr.st_mode = DTTOIF(de.type);
      if (looked_up != nullptr) e = EntryParam(ctx, *looked_up);
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, de.name.c_str(), &e, next);
    }
    if (need > size - used) return false;
    used += need;
    return true;
  };
  auto handed_out = ctx.fs->ReadDir(*DirHandleOf(fi), off, plus, add);
  if (!handed_out) {
    fuse_reply_err(req, Errno(handed_out.error()));
    return;
  }
  if (fuse_reply_buf(req, buf.data(), used) != 0) {
    for (InodeId id : *handed_out) ctx.fs->Forget(id, 1);
  }
}

void OnReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guarded(req, [&] { ReadDir(req, size, off, fi, false); });
}

void OnReadDirPlus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guarded(req, [&] { ReadDir(req, size, off, fi, true); });
}

void OnReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Reclaim<DirHandle>(Ctx(req), fi->fh);
  fuse_reply_err(req, 0);
}

void OnFsyncDir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->FsyncDir(ino)); });
}

void OnStatFs(fuse_req_t req, fuse_ino_t) {
  Guarded(req, [&] {
    auto st = Ctx(req).fs->StatFs();
    if (!st) {
      fuse_reply_err(req, Errno(st.error()));
      return;
    }
    fuse_reply_statfs(req, &*st);
  });
}

void ReplyXattrValue(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void OnSetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->SetXattr(ino, name, std::string_view(value, size))); });
}

void OnGetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, [&] {
    auto value = Ctx(req).fs->GetXattr(ino, name);
    if (!value) {
      fuse_reply_err(req, Errno(value.error()));
      return;
    }
    ReplyXattrValue(req, *value, size);
  });
}

void OnListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, [&] {
    auto names = Ctx(req).fs->ListXattr(ino);
    if (!names) {
      fuse_reply_err(req, Errno(names.error()));
      return;
    }
    std::string packed;
    for (const auto& n : *names) {
      packed += n;
      packed.push_back('\0');
    }
    ReplyXattrValue(req, packed, size);
  });
}

void OnRemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guarded(req, [&] { ReplyVoid(req, Ctx(req).fs->RemoveXattr(ino, name)); });
}

void OnIoctl(fuse_req_t req, fuse_ino_t, unsigned int cmd, void*, fuse_file_info* fi, unsigned flags,
             const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  Guarded(req, [&] {
    if (flags & FUSE_IOCTL_DIR) {
      fuse_reply_err(req, ENOTTY);
      return;
    }
    FileHandle& handle = *HandleOf(fi);
    if (cmd == static_cast<unsigned int>(HPFS_IOC_STAT)) {
      if (out_bufsz < sizeof(hpfs_stat)) {
        fuse_reply_err(req, EINVAL);
        return;
      }
      auto st = Ctx(req).fs->IoctlStat(handle);
      if (!st) {
        fuse_reply_err(req, Errno(st.error()));
        return;
      }
      fuse_reply_ioctl(req, 0, &*st, sizeof(hpfs_stat));
      return;
    }
    if (cmd == static_cast<unsigned int>(HPFS_IOC_SET)) {
      if (in_bufsz < sizeof(hpfs_set)) {
        fuse_reply_err(req, EINVAL);
        return;
      }
      hpfs_set request;
      std::memcpy(&request, in_buf, sizeof request);
      auto r = Ctx(req).fs->IoctlSet(handle, request);
      if (!r) {
        fuse_reply_err(req, Errno(r.error()));
        return;
      }
      fuse_reply_ioctl(req, 0, nullptr, 0);
      return;
    }
    fuse_reply_err(req, ENOTTY);
  });
}

void OnFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  Guarded(req, [&] {
    if (offset < 0 || length <= 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    ReplyVoid(req, Ctx(req).fs->Fallocate(*HandleOf(fi), mode, static_cast<uint64_t>(offset),
                                          static_cast<uint64_t>(length)));
  });
}

void OnLseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  Guarded(req, [&] {
    if (off < 0) {
      fuse_reply_err(req, ENXIO);
      return;
    }
    auto pos = Ctx(req).fs->Lseek(*HandleOf(fi), static_cast<uint64_t>(off), whence);
    if (!pos) {
      fuse_reply_err(req, Errno(pos.error()));
      return;
    }
    fuse_reply_lseek(req, static_cast<off_t>(*pos));
  });
}

}  // namespace

void ReleaseAllHandles(SessionContext& context) {
  std::unordered_set<FileHandle*> files;
  std::unordered_set<DirHandle*> dirs;
  {
    std::lock_guard lock(context.handles_mu);
    files.swap(context.file_handles);
    dirs.swap(context.dir_handles);
  }
  for (FileHandle* handle : files) context.fs->Release(std::unique_ptr<FileHandle>(handle));
  for (DirHandle* handle : dirs) delete handle;
}

fuse_lowlevel_ops MakeLowlevelOps(bool xattr) {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnGetAttr;
  ops.setattr = OnSetAttr;
  ops.readlink = OnReadLink;
  ops.mknod = OnMknod;
  ops.mkdir = OnMkdir;
  ops.unlink = OnUnlink;
  ops.rmdir = OnRmdir;
  ops.symlink = OnSymlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.write = OnWrite;
  ops.flush = OnFlush;
  ops.release = OnRelease;
  ops.fsync = OnFsync;
  ops.opendir = OnOpenDir;
  ops.readdir = OnReadDir;
  ops.readdirplus = OnReadDirPlus;
  ops.releasedir = OnReleaseDir;
  ops.fsyncdir = OnFsyncDir;
  ops.statfs = OnStatFs;
  ops.create = OnCreate;
  ops.ioctl = OnIoctl;
  ops.fallocate = OnFallocate;
  ops.lseek = OnLseek;
  if (xattr) {
    ops.setxattr = OnSetXattr;
    ops.getxattr = OnGetXattr;
    ops.listxattr = OnListXattr;
    ops.removexattr = OnRemoveXattr;
  }
  return ops;
}

}  // namespace hpfs
