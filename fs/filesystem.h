// SPDX-License-Identifier: Apache-2.0
// The hpfs namespace and POSIX semantics, without libfuse: every operation the
// daemon serves is a method here that decides the outcome and the errno, so
// it can be tested without a kernel mount. fuse_ops.cc only translates.
// The methods live by concern in filesystem.cc (opening, inode loading, the
// trash), names.cc, attributes.cc, file_ops.cc, directories.cc,
// file_settings.cc (ioctls and xattrs), retention.cc and writeback.cc.
//
// Backing layout (DESIGN.md section 2): a backing directory holding
// hpfile.meta is a regular file, any other directory is a directory, a
// symlink is a symlink; everything else, and the reserved names, are hidden.
//
// Lookup counts follow the FUSE protocol: every method that returns an Entry
// has added one lookup to it, which the caller gives back with Forget (also
// when the reply never reached the kernel).
//
// Thread-safety: all methods may be called from any number of threads.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/hpfile.h"
#include "core/result.h"
#include "fs/backing_dir.h"
#include "fs/closed_file_stat.h"
#include "fs/descriptor_cache.h"
#include "fs/hpfs_ioctl.h"
#include "fs/inode_table.h"
#include "fs/open_files.h"
#include "fs/options.h"
#include "fs/retention_worker.h"
#include "fs/tiering.h"
#include "fs/trash_deleter.h"
#include "fs/writeback.h"

namespace hpfs {

// The process a request comes from; new entries belong to it.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;  // the calling thread; 0: unknown (the kernel's own requests)
};

struct Entry {
  InodeId id = 0;
  struct stat attr {};
};

// A setattr request: only the fields that are set change. A time may be
// UTIME_NOW in tv_nsec.
struct AttrChange {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<uint64_t> size;
  std::optional<timespec> atime;
  std::optional<timespec> mtime;
};

// An open regular file.
struct FileHandle {
  std::shared_ptr<Inode> inode;
  int flags = 0;  // open(2) flags
  bool writable() const { return (flags & O_ACCMODE) != O_RDONLY; }
};

// Where the bytes of a read come from (core/hpfile.h): zeros for the pruned
// head, then backing extents, whose descriptors the plan keeps open.
using ReadPlan = hpfile::ReadPlan;

struct DirEntry {
  std::string name;
  ino_t ino = 0;
  unsigned char type = DT_UNKNOWN;  // DT_DIR, DT_REG or DT_LNK
};

// An open directory: a snapshot of its visible entries, "." and ".." first.
struct DirHandle {
  std::shared_ptr<Inode> inode;
  std::vector<DirEntry> entries;
  bool listed_once = false;  // a later read at offset 0 is a rewind: list again
};

// What one Filesystem::EnforceRetention call did.
struct RetentionPass {
  size_t files_checked = 0;  // files with a retention limit that were evaluated
  size_t files_pruned = 0;   // of those, files whose head moved
  size_t entries_walked = 0;  // backing entries (files and directories) the walk visited
  bool round_complete = false;  // the walk reached the end of the store in this pass
};

// What one pass of the tiering thread did.
struct TierPass {
  size_t files_checked = 0;        // tiered files looked at (not backing off)
  size_t segments_offloaded = 0;   // segments that went to the store
  size_t objects_pending = 0;      // dropped objects whose deletion failed, to retry
  size_t unlinked_pending = 0;     // unlinked tiered files whose objects are still to delete
  size_t entries_walked = 0;
  bool round_complete = false;
};

class Filesystem {
 public:
  // Opens the backing directory: creates the trash and queues what the last
  // mount left there for deletion. EINVAL when BACKING is itself an HPFile.
  // The caller holds the BackingLock.
  [[nodiscard]] static Result<std::unique_ptr<Filesystem>> Open(const std::string& backing_dir, const Config& config);
  // Stops the retention thread, then finishes the queued deletions (see
  // TrashDeleter) when the deleter runs.
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // Called when the daemon changed a file's bytes outside a request
  // (retention), so the kernel drops its cached pages of [offset, offset+len).
  void SetInvalidator(std::function<void(InodeId, uint64_t offset, uint64_t length)> invalidate);

  // Storage of unlinked and replaced files is deleted by a background thread
  // (TrashDeleter), never inside the request that let it go. The daemon
  // starts it once it runs in the background; until then deletions queue.
  void StartDeleter();
  // Returns once every deletion queued so far is done.
  void WaitForDeletions();
  size_t PendingDeletions() const;

  const Config& config() const { return config_; }
  const InodeTable& inodes() const { return inodes_; }
  // The bound in force (Config::max_open_files, or its default), and what
  // idle inodes hold of it now: cached descriptors, open idle HPFiles.
  size_t max_open_files() const { return max_open_files_; }
  size_t CachedDescriptors() const { return descriptors_.size(); }
  size_t IdleFiles();
  // Creates whose name and meta are not yet known durable.
  uint64_t UnsyncedCreates() const { return creates_.load() - std::min(creates_.load(), creates_durable_.load()); }

  // --- names ---
  // ENOENT for missing, hidden and reserved names; ENOTDIR when parent is not
  // a directory; ENAMETOOLONG; ESTALE for an unknown inode id.
  [[nodiscard]] Result<Entry> Lookup(InodeId parent, std::string_view name);
  void Forget(InodeId id, uint64_t n);
  // Reserved names and names of the backing format are refused with EPERM.
  [[nodiscard]] Result<Entry> Mkdir(InodeId parent, std::string_view name, mode_t mode, const Caller& caller);
  [[nodiscard]] Result<Entry> Symlink(std::string_view target, InodeId parent, std::string_view name,
                                      const Caller& caller);
  [[nodiscard]] Result<std::string> ReadLink(InodeId id);
  // Files: EISDIR for a directory. An open file stays readable and writable
  // through its handles; its storage is freed after the last release.
  [[nodiscard]] Result<void> Unlink(InodeId parent, std::string_view name);
  // ENOTDIR for a file, ENOTEMPTY, ENOENT.
  [[nodiscard]] Result<void> Rmdir(InodeId parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (others EINVAL). Replacing
  // a file is atomic for readers; the replaced file lives on while open.
  [[nodiscard]] Result<void> Rename(InodeId parent, std::string_view name, InodeId new_parent,
                                    std::string_view new_name, unsigned flags);
  // Hard links and device/fifo/socket nodes do not exist here: EPERM. Mknod
  // of a regular file creates an empty file, as Create does (EEXIST if the
  // name exists).
  [[nodiscard]] Result<Entry> Link(InodeId id, InodeId new_parent, std::string_view new_name);
  [[nodiscard]] Result<Entry> Mknod(InodeId parent, std::string_view name, mode_t mode, dev_t rdev,
                                    const Caller& caller);

  // --- attributes ---
  [[nodiscard]] Result<struct stat> GetAttr(InodeId id);
  // `handle` is the open file the request came through, if any. Size changes
  // of a directory: EISDIR; of a symlink: EINVAL.
  [[nodiscard]] Result<struct stat> SetAttr(InodeId id, const AttrChange& change, FileHandle* handle);
  [[nodiscard]] Result<struct statvfs> StatFs();

  // --- files ---
  // EEXIST (also for O_EXCL when the name exists), EPERM for reserved names.
  [[nodiscard]] Result<std::pair<Entry, std::unique_ptr<FileHandle>>> Create(InodeId parent,
                                                                             std::string_view name, mode_t mode,
                                                                             int flags, const Caller& caller);
  // O_TRUNC with a writable mode empties the file. EISDIR for a directory.
  [[nodiscard]] Result<std::unique_ptr<FileHandle>> OpenFile(InodeId id, int flags);
  // Reads nothing itself: says which zeros and backing extents make up
  // [offset, offset + size) clipped at EOF, for one state of the file even
  // while a prune or truncate runs. EIO over a damaged range.
  [[nodiscard]] Result<ReadPlan> Read(FileHandle& handle, uint64_t offset, size_t size);
  // Appends `data` at the end when `append` is set (whatever `offset` says),
  // otherwise at `offset`: at the end of file, or past it, when the gap
  // becomes zeros first as a growing ftruncate would. Below the end: EPERM
  // and nothing is written. Returns the bytes written (all of them); on
  // failure nothing of the zeros or the data stays. EIO for a damaged file.
  // Before the bytes land, the set-user-ID and set-group-ID bits go as
  // fs/setid.h says for `writer` (unknown, the default: without privilege);
  // `*setid_cleared`, when given, tells whether that changed the mode.
  [[nodiscard]] Result<size_t> Write(FileHandle& handle, uint64_t offset, std::span<const std::byte> data,
                                     bool append, const Caller& writer = {}, bool* setid_cleared = nullptr);
  [[nodiscard]] Result<void> Fsync(FileHandle& handle);
  // Drops the handle; the last one of an unlinked file queues its storage
  // for deletion.
  void Release(std::unique_ptr<FileHandle> handle);
  // DESIGN.md section 4: head punch prunes, mode 0 may grow, KEEP_SIZE is a
  // no-op; every other mode EOPNOTSUPP with nothing changed.
  [[nodiscard]] Result<void> Fallocate(FileHandle& handle, int mode, uint64_t offset, uint64_t length);
  // SEEK_DATA / SEEK_HOLE: data is [head, size). ENXIO at or past EOF.
  [[nodiscard]] Result<uint64_t> Lseek(FileHandle& handle, uint64_t offset, int whence);
  [[nodiscard]] Result<hpfs_stat> IoctlStat(FileHandle& handle);
  // EBADF unless the handle is writable; EINVAL for a bad value.
  [[nodiscard]] Result<void> IoctlSet(FileHandle& handle, const hpfs_set& request);

  // --- directories ---
  [[nodiscard]] Result<std::unique_ptr<DirHandle>> OpenDir(InodeId id);
  // Lists the directory again (rewinddir).
  [[nodiscard]] Result<void> RefreshDir(DirHandle& handle);
  // Takes an entry into a readdir reply; false when it does not fit, and then
  // it must have taken nothing. `looked_up` is the entry's inode (readdirplus
  // only; nullptr for "." and "..", and for a name whose lookup failed, which
  // the kernel then looks up itself when asked). `next` is the offset the
  // listing goes on from after it.
  using DirSink = std::function<bool(const DirEntry& entry, const Entry* looked_up, off_t next)>;
  // One readdir (`plus`: readdirplus) reply of `handle` from `offset`: the
  // entries from there that `add` takes. A read at offset 0 after the first
  // one is a rewind and lists the directory again. Returns the inodes whose
  // lookup the reply hands the kernel (plus only), each with one lookup
  // added: when the reply does not reach the kernel, Forget each once.
  [[nodiscard]] Result<std::vector<InodeId>> ReadDir(DirHandle& handle, off_t offset, bool plus, const DirSink& add);
  [[nodiscard]] Result<void> FsyncDir(InodeId id);

  // Names the mount never shows in a directory (at the top when
  // `parent_is_root`): ".", "..", the reserved and the format names.
  static bool HiddenIn(bool parent_is_root, std::string_view name);

  // --- user.hpfs.* extended attributes (only served with Config::xattr) ---
  // Other names: ENODATA. On a directory: ENODATA.
  [[nodiscard]] Result<std::string> GetXattr(InodeId id, std::string_view name);
  [[nodiscard]] Result<std::vector<std::string>> ListXattr(InodeId id);
  // Read-only keys: EPERM. Unknown names: ENOTSUP. Bad values: EINVAL.
  [[nodiscard]] Result<void> SetXattr(InodeId id, std::string_view name, std::string_view value);
  // Clears a retention limit; other names as SetXattr.
  [[nodiscard]] Result<void> RemoveXattr(InodeId id, std::string_view name);

  // --- daemon ---
  // --- retention ---
  // Enforces retention limits once (`now` in seconds since the epoch): on
  // every file the kernel knows, then on the files of the backing store that
  // it does not, visiting at most `max_walk` backing entries per call and
  // going on where the previous call stopped, so a large store costs a
  // bounded amount per call and every file is reached in turn. A file not
  // known is opened only when its meta sets a limit, and only for the
  // enforcement. Each file's drops are logged at info and the kernel's cached
  // pages of the dropped range are invalidated (SetInvalidator), also for the
  // drops files made by themselves at a segment roll.
  RetentionPass EnforceRetention(int64_t now, size_t max_walk);
  // Starts a thread that calls EnforceRetention every `interval`, and that
  // invalidates the kernel's cache as soon as a segment roll dropped
  // segments. Like StartDeleter: only once the daemon runs in the background.
  void StartRetention(std::chrono::milliseconds interval, size_t max_walk);
  // Stops and joins that thread (the destructor does too).
  void StopRetention();

  // --- tiered storage (Config::tier; fs/tiering.h) ---
  // Offloads what the local retention of each tiered file lets go and
  // deletes the objects prunes dropped: the files the kernel knows, and up
  // to `max_walk` entries of a walk over the rest. A file whose store calls
  // failed is left alone for a while (Tiering::Due).
  TierPass RunTierPass(int64_t now, size_t max_walk);
  // Opens the chunk cache and starts a thread that runs RunTierPass every
  // `interval`; nothing without tiering. Only once the daemon runs in the
  // background. EIO (logged) when the cache cannot be opened.
  [[nodiscard]] Result<void> StartTiering(std::chrono::milliseconds interval, size_t max_walk);
  void StopTiering();

  // --- write-back mode (Config::writeback; fs/writeback.h) ---
  // A WRITE at `offset`: `cached` when the kernel's page cache sends it
  // (FUSE_WRITE_CACHE), otherwise from a direct handle. The bytes below the
  // file's end must equal the stored ones, and only the rest is appended; a
  // write that would change a stored byte is refused with EPERM, logged with
  // the file and range, and nothing of it is written. A write that starts
  // past the end is held until the bytes in front of it come (cached ones:
  // never zeros; a direct one: zeros once a commit that began after it
  // brought nothing, see FinishCommit). `done` gets the outcome, exactly once.
  // `writer` is whose set-ID bits rule applies to a direct write (cached
  // ones: the kernel clears the bits itself, with a setattr).
  void WriteBack(FileHandle& handle, uint64_t offset, std::span<const std::byte> data, bool cached,
                 const Caller& writer, WriteDone done);
  // Bytes held out of order over the mount (in memory and spooled), and the
  // part of them in spool files.
  uint64_t HeldWriteBytes() const;
  uint64_t SpooledWriteBytes() const;
  // A commit makes the kernel send every dirty page and waits for the
  // answers: BeginCommit before it, FinishCommit with its number after.
  // FinishCommit lands direct writes held since before the commit began
  // behind a gap of zeros; true when direct writes are still held.
  uint64_t BeginCommit();
  bool FinishCommit(uint64_t commit);
  // Called when a direct write is held, so that a commit comes soon.
  void SetCommitRequester(std::function<void()> request);
  // Close of a writer in write-back mode (FLUSH): the file's late error, if
  // any (held bytes that were acknowledged and did not land).
  [[nodiscard]] Result<void> Flush(FileHandle& handle);
  // Fails every held write with `error` (shutdown: their bytes cannot come;
  // acknowledged ones are logged as lost).
  void FailHeldWrites(std::error_code error);

  // Syncs every file the kernel knows (shutdown), with one syncfs of the
  // backing filesystem for all of them plus the metas that changed. Returns
  // the first error, after trying all.
  [[nodiscard]] Result<void> SyncAll();

 private:
  Filesystem(const Config& config, std::string backing_dir, hpfile::Fd root_fd, hpfile::Fd trash_fd);

  [[nodiscard]] Result<std::shared_ptr<Inode>> GetInode(InodeId id) const;
  [[nodiscard]] Result<std::shared_ptr<Inode>> GetDirectory(InodeId id) const;
  // Finds or loads the inode of `name` in `parent`, with one lookup added.
  [[nodiscard]] Result<std::shared_ptr<Inode>> LoadChild(const Inode& parent, std::string_view name);
  // The same, given the parent's backing descriptor.
  [[nodiscard]] Result<std::shared_ptr<Inode>> LoadAt(int parent_fd, bool parent_is_root, std::string_view name);
  // Opens the HPFile of `inode` (a file inode whose fd is its backing
  // directory; `mode` and `caller` only matter when `create`).
  [[nodiscard]] Result<std::shared_ptr<hpfile::HPFile>> OpenHPFile(const std::shared_ptr<Inode>& inode, bool create,
                                                                   mode_t mode, const Caller& caller);
  // The backing descriptor of `inode` (Inode::pinned_fd, or the descriptor
  // cache, opening the handle again when it was evicted); ESTALE once the
  // backing entry is deleted. Hold it only for the request.
  [[nodiscard]] Result<DescriptorCache::SharedFd> Descriptor(const Inode& inode) const;
  // Puts a new inode's descriptor under the cache's bound when its backing
  // filesystem gives handles, and gives a file of a write-back mount its
  // queue; before the inode is shared.
  void Adopt(Inode& inode);
  // The HPFile of a file inode, opened again when it was evicted; nullptr
  // once its storage is deleted. For requests that come without a handle.
  [[nodiscard]] Result<std::shared_ptr<hpfile::HPFile>> FileOf(const Inode& inode);
  // An idle file (open HPFile, no handle, not unlinked) joins the bounded
  // set of them; what falls out of it is closed. Called without inode->mu.
  void AddIdle(const Inode& inode);
  // Makes the names and metas of the creates up to number `upto` durable
  // (Inode::create_seq): one syncfs of the backing filesystem covers every
  // create made so far, whichever directory it went to.
  [[nodiscard]] Result<void> MakeCreatesDurable(uint64_t upto);
  // The file got an open handle: it leaves the idle set.
  void PinFile(const Inode& inode);
  void EvictIdle(std::vector<std::weak_ptr<Inode>> victims);
  // A request without a handle changed the file (FileOf gave it): the stat
  // kept from an eviction meanwhile is no longer right.
  void ChangedWithoutHandle(const Inode& inode);
  // Tiered mounts: gives a file inode the TieredFile over `file`.
  [[nodiscard]] Result<void> AttachTiered(Inode& inode, const std::shared_ptr<hpfile::HPFile>& file);
  // Reads [offset, offset + size) of a tiered file whose range starts below
  // its local head (remote bytes) into a plan of its own.
  [[nodiscard]] Result<ReadPlan> ReadTiered(const hpfile::TieredFile& tiered, uint64_t offset, size_t size);
  [[nodiscard]] Result<struct stat> Stat(const Inode& inode);
  [[nodiscard]] Result<struct stat> StatFile(const Inode& inode, const hpfile::HPFile& file);
  // The backing entry of `name`, if it is one the mount shows.
  [[nodiscard]] Result<struct stat> StatVisible(const Inode& parent, std::string_view name, Kind* kind);
  [[nodiscard]] Result<struct stat> StatVisibleAt(int parent_fd, bool parent_is_root, std::string_view name,
                                                  Kind* kind);
  // A name of a directory that the mount shows, with what it is.
  struct VisibleEntry {
    std::shared_ptr<Inode> parent;
    struct stat st;
    Kind kind;
  };
  [[nodiscard]] Result<VisibleEntry> FindVisible(InodeId parent_id, std::string_view name);
  // Drops the inode of the backing entry `st` from the table, if known: its
  // name is gone.
  void UnbindBacking(const struct stat& st);
  [[nodiscard]] Result<Kind> Classify(int parent_fd, std::string_view name, const struct stat& st);
  bool Hidden(const Inode& parent, std::string_view name) const;
  // Logs at warn, once per directory and mount, the plain files `names` of
  // the backing directory `dir` (shown as `where`): the mount cannot show them.
  void WarnOfPlainFiles(const struct stat& dir, const std::string& where, const std::vector<std::string>& names);
  [[nodiscard]] Result<void> CheckNewName(const Inode& parent, std::string_view name) const;
  // Moves the file entry `name` of `parent_fd` into the trash and queues its
  // deletion once no handle has it open and the kernel has forgotten it.
  [[nodiscard]] Result<void> TrashFile(int parent_fd, std::string_view name, const struct stat& st);
  // Queues an unlinked file's deletion once no handle has it open and the
  // kernel has forgotten it; otherwise does nothing (the last of the two does).
  void DeleteIfUnreachable(std::shared_ptr<Inode> inode);
  std::string NewTrashName();
  // Sets a file's mtime (and atime, when given) on its backing directory and
  // tail segment, where StatFile reads it.
  void SetFileTimes(const Inode& inode, const hpfile::HPFile& file, const timespec times[2]);
  void TouchFile(const Inode& inode, const hpfile::HPFile& file);
  [[nodiscard]] Result<void> ApplySet(const Inode& inode, hpfile::HPFile& file, const hpfs_set& request);
  // Clears the set-ID bits `writer` may not keep across a write (fs/setid.h);
  // true when the mode changed.
  [[nodiscard]] Result<bool> DropSetIdForWriter(const Inode& inode, hpfile::HPFile& file, const Caller& writer);
  [[nodiscard]] Result<Entry> MakeEntry(const std::shared_ptr<Inode>& inode);
  // The backing path of a file, relative to BACKING, for log lines.
  std::string DisplayName(const Inode& inode) const;

  // Write-back mode (fs/writeback.cc); the *Locked ones hold inode.write_mu.
  using Completions = std::vector<std::pair<WriteDone, Result<size_t>>>;
  [[nodiscard]] Result<size_t> StoreWriteBackLocked(Inode& inode, hpfile::HPFile& file, uint64_t offset,
                                                    std::span<const std::byte> data);
  // Puts `data` in `entry` and counts it: in memory up to reorder_bound,
  // then in the file's spool up to spool_bound, then ENOSPC (logged, counted,
  // and the file's late error). Never waits.
  [[nodiscard]] Result<void> PlaceHeldLocked(Inode& inode, uint64_t offset, HeldWrite& entry,
                                             std::span<const std::byte> data);
  // A direct write that meets held cached bytes fails (EPERM), and so does
  // a held direct write that cached bytes meet (through `completions`).
  [[nodiscard]] Result<void> HoldLocked(Inode& inode, uint64_t offset, std::span<const std::byte> data, bool direct,
                                        WriteDone& done, Completions& completions);
  // Takes the first held write out, its bytes in `data` (read back from the
  // spool; `load_error` if that failed).
  HeldWrite TakeFirstHeldLocked(WritebackQueue& queue, std::optional<std::error_code>& load_error);
  void DrainHeldLocked(Inode& inode, hpfile::HPFile& file, Completions& completions);
  void BreakQueueLocked(Inode& inode, std::error_code error, Completions& completions);
  void FailHeldLocked(Inode& inode, std::error_code error, Completions& completions);
  // After `held` changed: wakes the waiters and notes where it ends.
  void HeldChangedLocked(WritebackQueue& queue);
  // Held bytes that were answered and will not land: logged with the range,
  // and the file's late error from now on (WritebackQueue::late_error).
  void RecordLateErrorLocked(Inode& inode, uint64_t offset, uint64_t length, std::error_code error);
  // Truncate: held bytes at or past `size` are dropped with the kernel's pages.
  void TrimHeldLocked(Inode& inode, uint64_t size);
  // Uncounts a held write's bytes and frees their memory or spool space.
  void ReleaseHeldLocked(WritebackQueue& queue, const HeldWrite& held);
  // Shortens a held write to `length` bytes.
  void CutHeldLocked(WritebackQueue& queue, HeldWrite& held, uint64_t length);
  // A copy of a held write's bytes, wherever they are.
  static Result<std::vector<std::byte>> HeldBytesLocked(const WritebackQueue& queue, const HeldWrite& held);
  // fsync and close of a writer: the kernel has sent what it had, so held
  // bytes the gap in front of them does not reach soon never land; returns
  // the file's late error, if any. Takes write_mu.
  [[nodiscard]] Result<void> SettleHeld(Inode& inode);
  // Waits (bounded) until `held` is false, with a commit asked for; false
  // when it still holds. `lock` holds the inode's write_mu.
  bool WaitForHeldLocked(WritebackQueue& queue, std::unique_lock<std::mutex>& lock,
                         const std::function<bool()>& held);
  // A read up to `end`: once their WRITE was acknowledged the kernel may read
  // held bytes back from the daemon (a direct read, a page dropped from its
  // cache), so those below `end` are waited for (bounded) first.
  void WaitForHeldBelow(Inode& inode, uint64_t end);
  static void Complete(Completions& completions);
  // Truncate in write-back mode: true when `size` is above the stored end and
  // became a pending grow (WritebackQueue::grow_to); EFBIG past the largest size.
  [[nodiscard]] Result<bool> DeferGrowLocked(Inode& inode, hpfile::HPFile& file, uint64_t size);
  // Lands a pending grow: zeros up to it, then the held writes it reached.
  void LandGrowLocked(Inode& inode, hpfile::HPFile& file, Completions& completions);
  void LandGrow(Inode& inode, hpfile::HPFile& file);
  void RequestCommit();

  // Retention.
  // Called by an HPFile after each enforcement: logs it, and queues the
  // invalidation of the dropped range for the retention thread, since a
  // segment roll runs inside a write request of that very inode.
  void OnRetention(const std::weak_ptr<Inode>& inode, const hpfile::RetentionResult& result);
  // Invalidates the kernel's cache of what the queued enforcements dropped.
  void DrainRetentionEvents();
  // Enforces retention on the file at `rel` (relative to BACKING) if the
  // kernel does not know it and its meta sets a limit.
  void RetainStoredFile(const std::string& rel, int64_t now, RetentionPass& pass);
  // Enforces the total retention on a file inode (a tiered one through its
  // TieredFile).
  void RetainFile(const std::shared_ptr<Inode>& inode, int64_t now, RetentionPass& pass);
  // RetainFile of a tiered file: the total limit counts its remote segments.
  void RetainTiered(const std::shared_ptr<Inode>& inode, hpfile::TieredFile& tiered, int64_t now, RetentionPass& pass);
  // One tiered file's offload and deletions.
  void TierFile(const std::shared_ptr<Inode>& inode, int64_t now, TierPass& pass);
  // For a walk over the store (`walk` names it in log lines): loads the
  // file at `rel` as a lookup would and calls `visit` with it, if the kernel
  // does not know it and `wanted` says its meta asks for a visit.
  void VisitStoredFile(const std::string& rel, std::string_view walk,
                       const std::function<bool(const hpfile::Meta&)>& wanted,
                       const std::function<void(const std::shared_ptr<Inode>&)>& visit);

  const Config config_;
  const std::string backing_dir_;
  const hpfile::Fd root_fd_;
  const hpfile::Fd trash_fd_;
  // max_open_files: half for the descriptor cache, and a quarter for idle
  // HPFiles, which hold two each (the directory opened for the HPFile and
  // its lock), so idle inodes hold at most max_open_files in all.
  const size_t max_open_files_;
  // Whether the backing filesystem gives handles that this process may open
  // (open_by_handle_at needs CAP_DAC_READ_SEARCH); without, every inode keeps
  // its descriptor pinned and only idle HPFiles are bounded.
  bool use_handles_ = false;
  dev_t root_dev_ = 0;
  mutable DescriptorCache descriptors_;
  std::mutex idle_mu_;
  BoundedLru<std::weak_ptr<Inode>> idle_files_;  // idle_mu_, by Inode::serial
  // An evicted file may have left bytes unsynced: SyncAll then syncs the
  // backing filesystem even when no open file asks for it.
  std::atomic<bool> evicted_unsynced_{false};
  // Creates are not synced (hpfile::Options::durable_create): a new name
  // becomes durable with the file's fsync or its directory's, as on a local
  // filesystem. A directory's fsync would make a new name durable whose meta
  // is not yet: so no directory holding an unsynced create is fsynced alone,
  // one syncfs makes them all durable instead (MakeCreatesDurable). Creates
  // hold creating_ shared from the meta write to the rename into place, so
  // that syncfs never runs between the two.
  std::atomic<uint64_t> creates_{0};          // numbers handed out
  std::atomic<uint64_t> creates_durable_{0};  // every create up to it is durable
  std::shared_mutex creating_;
  // Tiered storage, when the mount has it; before inodes_, whose
  // TieredFiles use its client and cache.
  std::unique_ptr<Tiering> tiering_;
  InodeTable inodes_;
  OpenFiles open_files_;
  std::atomic<uint64_t> trash_counter_{0};
  // Loading a file inode opens its HPFile; two threads must not open the
  // same one at once (recovery would run twice), so loads are serialized.
  std::mutex load_mu_;
  // Files whose damage was already logged at warn (load_mu_): a file is
  // loaded again after the kernel forgot it, and by the retention walk.
  std::set<std::pair<dev_t, ino_t>> damage_logged_;
  // Directories whose plain files were already logged at warn.
  std::mutex plain_files_mu_;
  std::set<std::pair<dev_t, ino_t>> plain_files_logged_;  // plain_files_mu_
  std::mutex invalidator_mu_;
  std::function<void(InodeId, uint64_t, uint64_t)> invalidate_;

  // Where the walk of the store stands, and the retention thread.
  StoreWalk walk_;
  RetentionWorker retention_;
  // The tiering thread (RunTierPass) and its own walk of the store.
  StoreWalk tier_walk_;
  RetentionWorker tier_worker_;
  // Write-back mode.
  std::atomic<uint64_t> held_bytes_{0};     // in memory
  std::atomic<uint64_t> spooled_bytes_{0};  // in spool files
  std::atomic<bool> reorder_bound_warned_{false};
  std::atomic<uint64_t> commits_started_{0};
  std::mutex commit_request_mu_;
  std::function<void()> commit_request_;  // commit_request_mu_
  // Last, so that it finishes (and stops using trash_fd_) before the rest goes.
  TrashDeleter deleter_;
};

}  // namespace hpfs
