// SPDX-License-Identifier: Apache-2.0
#include "fs/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

#include "core/format.h"
#include "core/meta.h"
#include "core/segment_name.h"
#include "fs/setid.h"

namespace hpfs {
namespace {

namespace fmt_ = hpfile::format;
using hpfile::Errno;
using hpfile::LastErrno;

// st_blksize reported for files: the largest request the mount takes, so
// tools that size their buffers by it (cp, dd conv=...) move 1 MiB at a time.
constexpr blksize_t kFileBlockSize = 1 << 20;
constexpr mode_t kDefaultFileMode = 0644;
// Backing directories of files are the daemon's business, not the users'.
constexpr mode_t kBackingFileDirMode = 0700;

constexpr std::string_view kXattrPrefix = "user.hpfs.";

Result<void> Check(int rc) {
  if (rc != 0) return LastErrno();
  return {};
}

std::string Str(std::string_view s) { return std::string(s); }

Result<hpfile::Fd> OpenAt(int dir_fd, std::string_view name, int flags) {
  int fd;
  do {
    fd = ::openat(dir_fd, Str(name).c_str(), flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return LastErrno();
  return hpfile::Fd(hpfile::PosixIo::Default(), fd);
}

Result<struct stat> StatAt(int dir_fd, std::string_view name, int flags = AT_SYMLINK_NOFOLLOW) {
  struct stat st;
  if (::fstatat(dir_fd, Str(name).c_str(), &st, flags) != 0) return LastErrno();
  return st;
}

// Whether the backing directory `name` is an HPFile: it has a meta or, having
// lost it, still holds segments (such a file opens damaged, its intact bytes
// readable). An HPFile holds only regular files and a plain directory only
// directories and symlinks, so the scan stops at the first entry that tells
// them apart: a lookup or listing pays one or two entries, not a listing of
// every subdirectory.
bool IsHPFileDir(int parent_fd, std::string_view name) {
  auto meta = StatAt(parent_fd, Str(name) + "/" + Str(fmt_::kMetaName));
  if (meta) return S_ISREG(meta->st_mode);
  const int fd = ::openat(parent_fd, Str(name).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return false;
  }
  bool found = false;
  while (dirent* d = ::readdir(dir)) {
    const std::string_view entry = d->d_name;
    if (entry == "." || entry == "..") continue;
    unsigned char type = d->d_type;
    if (type == DT_UNKNOWN) {
      auto st = StatAt(::dirfd(dir), entry);
      if (!st) continue;
      type = S_ISREG(st->st_mode) ? DT_REG : S_ISDIR(st->st_mode) ? DT_DIR : S_ISLNK(st->st_mode) ? DT_LNK : DT_UNKNOWN;
    }
    if (type == DT_DIR || type == DT_LNK) break;  // what users create: a plain directory
    if (type == DT_REG && hpfile::MarksHPFileDirectory(entry)) {
      found = true;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

struct ListedEntry {
  std::string name;
  ino_t ino;
  unsigned char type;  // d_type: DT_UNKNOWN when the filesystem does not say
};

// The entries of the directory `dir_fd`, "." and ".." left out. Read through
// a descriptor of its own: a dup would share the directory position with
// `dir_fd`, which other threads may be listing too.
Result<std::vector<ListedEntry>> ListEntries(int dir_fd) {
  const int own_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (own_fd < 0) return LastErrno();
  DIR* dir = ::fdopendir(own_fd);
  if (dir == nullptr) {
    ::close(own_fd);
    return LastErrno();
  }
  std::vector<ListedEntry> entries;
  while (dirent* d = ::readdir(dir)) {
    std::string_view n = d->d_name;
    if (n != "." && n != "..") entries.push_back(ListedEntry{std::string(n), d->d_ino, d->d_type});
  }
  ::closedir(dir);
  return entries;
}

bool IsReservedAtRoot(std::string_view name) {
  return name == fmt_::kLockName || name == fmt_::kTrashName;
}

// Names that would change what a backing directory is if created in it.
bool IsFormatName(std::string_view name) {
  return name == fmt_::kMetaName || name == fmt_::kMetaTempName;
}

// How many plain files a warning names before "...".
constexpr size_t kPlainFilesNamed = 5;

bool Later(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

bool UidGidDiffer(const Caller& caller) { return caller.uid != ::geteuid() || caller.gid != ::getegid(); }

}  // namespace

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Result<void> RemoveTree(int dir_fd, const std::string& name) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return LastErrno();
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return LastErrno();
    return {};
  }
  auto sub = OpenAt(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!sub) return std::unexpected(sub.error());
  const int dup_fd = ::fcntl(sub->get(), F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return LastErrno();
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    ::close(dup_fd);
    return LastErrno();
  }
  std::vector<std::string> names;
  while (dirent* d = ::readdir(dir)) {
    std::string_view n = d->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(dir);
  for (const auto& n : names) {
    if (auto r = RemoveTree(sub->get(), n); !r) return r;
  }
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return LastErrno();
  return {};
}

uint64_t ReadPlan::size() const {
  uint64_t total = zeros;
  for (const auto& e : extents) total += e.length;
  return total;
}

Filesystem::Filesystem(const Config& config, std::string backing_dir, hpfile::Fd root_fd, hpfile::Fd trash_fd)
    : config_(config),
      backing_dir_(std::move(backing_dir)),
      root_fd_(std::move(root_fd)),
      trash_fd_(std::move(trash_fd)),
      deleter_(trash_fd_.get()) {}

Filesystem::~Filesystem() {
  StopRetention();
  // The kernel is gone: unlinked files it still knew can no longer be opened.
  for (const auto& inode : inodes_.Snapshot()) {
    {
      std::lock_guard lock(inode->mu);
      inode->forgotten = true;
    }
    DeleteIfUnreachable(inode);
  }
}

void Filesystem::DeleteIfUnreachable(std::shared_ptr<Inode> inode) {
  std::shared_ptr<hpfile::HPFile> closing;
  std::string trash_name;
  {
    std::lock_guard lock(inode->mu);
    if (inode->open_handles > 0 || !inode->forgotten || inode->trash_name.empty()) return;
    closing = std::move(inode->file);
    trash_name = std::move(inode->trash_name);
  }
  deleter_.Enqueue(std::move(trash_name), std::move(closing), std::move(inode));
}

Result<std::unique_ptr<Filesystem>> Filesystem::Open(const std::string& backing_dir, const Config& config) {
  auto root = OpenAt(AT_FDCWD, backing_dir, O_RDONLY | O_DIRECTORY);
  if (!root) return std::unexpected(root.error());
  if (auto meta = StatAt(root->get(), fmt_::kMetaName); meta) {
    spdlog::error("{} is itself an HPFile (it holds {}); mount the directory above it", backing_dir,
                  fmt_::kMetaName);
    return Errno(EINVAL);
  }
  if (::mkdirat(root->get(), Str(fmt_::kTrashName).c_str(), 0700) != 0 && errno != EEXIST) {
    return LastErrno();
  }
  auto trash = OpenAt(root->get(), fmt_::kTrashName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!trash) return std::unexpected(trash.error());

  // Whatever is in the trash was unlinked while open, or replaced, during the
  // last mount: nothing can reach it any more. Listed now, before this mount
  // puts anything there, and deleted by the deleter once it runs.
  auto trash_entries = ListEntries(trash->get());
  if (!trash_entries) return std::unexpected(trash_entries.error());
  std::vector<std::string> leftovers;
  for (auto& entry : *trash_entries) leftovers.push_back(std::move(entry.name));

  // Plain files at the top are what a directory of existing logs holds: the
  // mount shows none of them, so say so now rather than at the first `ls`.
  auto top_entries = ListEntries(root->get());
  if (!top_entries) return std::unexpected(top_entries.error());
  std::vector<std::string> plain_files;
  for (auto& entry : *top_entries) {
    if (HiddenIn(/*parent_is_root=*/true, entry.name)) continue;
    bool regular = entry.type == DT_REG;
    if (entry.type == DT_UNKNOWN) {
      auto st = StatAt(root->get(), entry.name);
      regular = st && S_ISREG(st->st_mode);
    }
    if (regular) plain_files.push_back(std::move(entry.name));
  }

  struct stat st;
  if (::fstat(root->get(), &st) != 0) return LastErrno();
  auto root_fd_copy = OpenAt(root->get(), ".", O_RDONLY | O_DIRECTORY);
  if (!root_fd_copy) return std::unexpected(root_fd_copy.error());
  std::unique_ptr<Filesystem> fs(new Filesystem(config, backing_dir, std::move(*root), std::move(*trash)));
  auto root_inode = std::make_shared<Inode>(Kind::kDirectory, st.st_dev, st.st_ino, std::move(*root_fd_copy));
  fs->inodes_.Insert(root_inode, kRootInode);
  if (!leftovers.empty()) {
    spdlog::info("{} entries left in {} by the last mount will be deleted", leftovers.size(), fmt_::kTrashName);
  }
  for (auto& name : leftovers) fs->deleter_.Enqueue(std::move(name));
  fs->WarnOfPlainFiles(st, "", plain_files);
  return fs;
}

void Filesystem::WarnOfPlainFiles(const struct stat& dir, const std::string& where,
                                  const std::vector<std::string>& names) {
  if (names.empty()) return;
  {
    std::lock_guard lock(plain_files_mu_);
    if (!plain_files_logged_.emplace(dir.st_dev, dir.st_ino).second) return;
  }
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  std::string listed;
  for (size_t i = 0; i < sorted.size() && i < kPlainFilesNamed; ++i) {
    listed += (i == 0 ? "'" : ", '") + sorted[i] + "'";
  }
  if (sorted.size() > kPlainFilesNamed) listed += ", ...";
  spdlog::warn("{} plain file{} in {} {} not shown by the mount ({}): a file here is a directory holding {}; "
               "unmount and run `hpfsctl import` to turn each into a file of the mount in place",
               sorted.size(), sorted.size() == 1 ? "" : "s", where.empty() ? backing_dir_ : backing_dir_ + "/" + where,
               sorted.size() == 1 ? "is" : "are", listed, fmt_::kMetaName);
}

void Filesystem::StartDeleter() { deleter_.Start(); }

void Filesystem::WaitForDeletions() { deleter_.Wait(); }

size_t Filesystem::PendingDeletions() const { return deleter_.Pending(); }

void Filesystem::SetInvalidator(std::function<void(InodeId, uint64_t, uint64_t)> invalidate) {
  std::lock_guard lock(invalidator_mu_);
  invalidate_ = std::move(invalidate);
}

// --- helpers ---

Result<std::shared_ptr<Inode>> Filesystem::GetInode(InodeId id) const {
  auto inode = inodes_.Get(id);
  if (!inode) return Errno(ESTALE);
  return inode;
}

Result<std::shared_ptr<Inode>> Filesystem::GetDirectory(InodeId id) const {
  auto inode = GetInode(id);
  if (!inode) return inode;
  if ((*inode)->kind != Kind::kDirectory) return Errno(ENOTDIR);
  return inode;
}

bool Filesystem::Hidden(const Inode& parent, std::string_view name) const {
  return HiddenIn(parent.id == kRootInode, name);
}

bool Filesystem::HiddenIn(bool parent_is_root, std::string_view name) {
  if (name == "." || name == "..") return true;
  if (IsFormatName(name)) return true;
  return parent_is_root && IsReservedAtRoot(name);
}

Result<void> Filesystem::CheckNewName(const Inode& parent, std::string_view name) const {
  if (name.empty() || name == "." || name == "..") return Errno(EINVAL);
  if (name.size() > NAME_MAX) return Errno(ENAMETOOLONG);
  if (Hidden(parent, name)) return Errno(EPERM);
  return {};
}

Result<Kind> Filesystem::Classify(int parent_fd, std::string_view name, const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return Kind::kSymlink;
  if (!S_ISDIR(st.st_mode)) return Errno(ENOENT);  // not something the mount shows
  return IsHPFileDir(parent_fd, name) ? Kind::kFile : Kind::kDirectory;
}

Result<struct stat> Filesystem::StatVisible(const Inode& parent, std::string_view name, Kind* kind) {
  return StatVisibleAt(parent.fd.get(), parent.id == kRootInode, name, kind);
}

Result<struct stat> Filesystem::StatVisibleAt(int parent_fd, bool parent_is_root, std::string_view name,
                                              Kind* kind) {
  if (HiddenIn(parent_is_root, name)) return Errno(ENOENT);
  if (name.size() > NAME_MAX) return Errno(ENAMETOOLONG);
  auto st = StatAt(parent_fd, name);
  if (!st) return st;
  auto k = Classify(parent_fd, name, *st);
  if (!k) return std::unexpected(k.error());
  *kind = *k;
  return st;
}

Result<std::shared_ptr<hpfile::HPFile>> Filesystem::OpenHPFile(const std::shared_ptr<Inode>& inode, bool create,
                                                               mode_t mode, const Caller& caller) {
  const int dir_fd = inode->fd.get();
  hpfile::Options options;
  options.create_if_missing = create;
  options.max_open_segments = config_.max_open_segments;
  options.write_buffer_size = 0;  // write-through: SIGKILL loses no acknowledged write
  // Pruned and truncated segments go to the trash and are freed off the
  // request path: freeing 64 MiB of blocks takes ~15 ms on ext4, per segment.
  options.discard_segment = [this](const std::string& path) -> Result<void> {
    std::string trash_name = NewTrashName();
    if (::renameat(AT_FDCWD, path.c_str(), trash_fd_.get(), trash_name.c_str()) != 0) return LastErrno();
    deleter_.Enqueue(std::move(trash_name));
    return {};
  };
  // A head punch frees the whole segments below the new head by renames;
  // the punch inside the next one (up to a segment of blocks for the backing
  // filesystem to free) follows on the deleter's thread (see Fallocate).
  options.defer_head_punch = true;
  options.initial_meta.segment_size = config_.segment_size;
  options.initial_meta.mode = mode & 07777;
  options.initial_meta.uid = caller.uid;
  options.initial_meta.gid = caller.gid;
  options.initial_meta.retain_bytes = config_.retain_bytes;
  options.initial_meta.retain_seconds = config_.retain_seconds;
  // Weak: the inode owns the HPFile.
  options.on_retention = [this, weak = std::weak_ptr<Inode>(inode)](const hpfile::RetentionResult& result) {
    OnRetention(weak, result);
  };
  // "/." makes the path resolve through the magic link even for callers that
  // lstat it (hpfile::PosixIo::Stat does).
  return open_files_.SharedOrOpen({inode->backing_dev, inode->backing_ino},
                                  [&] { return hpfile::HPFile::Open(ProcFdPath(dir_fd) + "/.", options); });
}

Result<std::shared_ptr<Inode>> Filesystem::LoadChild(const Inode& parent, std::string_view name) {
  return LoadAt(parent.fd.get(), parent.id == kRootInode, name);
}

Result<std::shared_ptr<Inode>> Filesystem::LoadAt(int parent_fd, bool parent_is_root, std::string_view name) {
  Kind kind;
  auto st = StatVisibleAt(parent_fd, parent_is_root, name, &kind);
  if (!st) return std::unexpected(st.error());
  if (auto known = inodes_.AcquireByBacking(st->st_dev, st->st_ino)) return known;

  std::unique_lock load_lock(load_mu_, std::defer_lock);
  if (kind == Kind::kFile) {
    load_lock.lock();
    if (auto known = inodes_.AcquireByBacking(st->st_dev, st->st_ino)) return known;
  }
  const int flags = kind == Kind::kSymlink ? (O_PATH | O_NOFOLLOW) : (O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  auto fd = OpenAt(parent_fd, name, flags);
  if (!fd) return std::unexpected(fd.error() == std::errc::too_many_symbolic_link_levels
                                      ? std::error_code(ENOENT, std::generic_category())
                                      : fd.error());
  struct stat opened;
  if (::fstat(fd->get(), &opened) != 0) return LastErrno();
  // The entry was replaced between the stat and the open: let the kernel retry.
  if (opened.st_ino != st->st_ino || opened.st_dev != st->st_dev) return Errno(ENOENT);

  auto inode = std::make_shared<Inode>(kind, st->st_dev, st->st_ino, std::move(*fd));
  if (kind == Kind::kFile) {
    auto file = OpenHPFile(inode, /*create=*/false, 0, Caller{});
    if (!file) {
      spdlog::error("cannot open file '{}': {}", name, file.error().message());
      return std::unexpected(file.error());
    }
    if ((*file)->Damage()) {
      const bool first = damage_logged_.emplace(st->st_dev, st->st_ino).second;
      spdlog::log(first ? spdlog::level::warn : spdlog::level::debug,
                  "file '{}' is damaged, serving what exists: {}", name, *(*file)->Damage());
    }
    for (const auto& action : (*file)->RecoveryLog()) spdlog::info("file '{}': recovery: {}", name, action);
    inode->file = std::move(*file);
  }
  return inodes_.Insert(std::move(inode));
}

Result<Entry> Filesystem::MakeEntry(const std::shared_ptr<Inode>& inode) {
  auto st = Stat(*inode);
  if (!st) {
    Forget(inode->id, 1);
    return std::unexpected(st.error());
  }
  return Entry{inode->id, *st};
}

Result<struct stat> Filesystem::Stat(const Inode& inode) {
  struct stat st;
  switch (inode.kind) {
    case Kind::kDirectory:
      if (::fstat(inode.fd.get(), &st) != 0) return LastErrno();
      return st;
    case Kind::kSymlink:
      if (::fstatat(inode.fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return LastErrno();
      return st;
    case Kind::kFile:
      break;
  }
  auto file = inode.File();
  if (!file) {
    // Deleted: only the kernel's reference is left.
    if (::fstat(inode.fd.get(), &st) != 0) std::memset(&st, 0, sizeof st);
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
  struct stat st;
  if (::fstat(inode.fd.get(), &st) != 0) return LastErrno();
  const hpfile::Meta meta = file.GetMeta();
  const auto segments = file.Segments();
  st.st_mode = S_IFREG | (meta.mode.value_or(kDefaultFileMode) & 07777);
  if (meta.uid) st.st_uid = *meta.uid;
  if (meta.gid) st.st_gid = *meta.gid;
  // A grow that write-back mode has not landed yet is the size already.
  st.st_size = static_cast<off_t>(std::max(file.Size(), inode.writeback.grow_to.load(std::memory_order_relaxed)));
  st.st_blksize = kFileBlockSize;
  st.st_rdev = 0;

  blkcnt_t blocks = 0;
  std::optional<struct stat> tail;
  {
    // Held across a few fstatat calls at most: sealed segments come from the cache.
    std::lock_guard lock(inode.mu);
    st.st_nlink = inode.unlinked ? 0 : 1;
    // Names start with the zero-padded base, so name order is base order:
    // whatever sorts before the first segment was pruned (by a punch or by
    // retention) and is gone for good.
    auto& cached = inode.sealed_blocks;
    cached.erase(cached.begin(), segments.empty() ? cached.end() : cached.lower_bound(segments.front().file_name));
    for (size_t i = 0; i < segments.size(); ++i) {
      const bool sealed_middle = i > 0 && i + 1 < segments.size();
      if (sealed_middle) {
        auto it = inode.sealed_blocks.find(segments[i].file_name);
        if (it != inode.sealed_blocks.end()) {
          blocks += it->second;
          continue;
        }
      }
      auto seg = StatAt(inode.fd.get(), segments[i].file_name, 0);
      if (!seg) continue;  // pruned or truncated away since Segments()
      blocks += seg->st_blocks;
      if (sealed_middle) inode.sealed_blocks.emplace(segments[i].file_name, seg->st_blocks);
      if (i + 1 == segments.size()) tail = *seg;
    }
  }
  st.st_blocks = blocks;
  // Every append lands in the tail segment, so its times are the file's;
  // chmod and friends rewrite the meta and must not count as a data change.
  if (tail) {
    st.st_mtim = tail->st_mtim;
    st.st_atim = tail->st_atim;
    if (Later(tail->st_ctim, st.st_ctim)) st.st_ctim = tail->st_ctim;
  }
  return st;
}

std::string Filesystem::NewTrashName() {
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return std::to_string(now.tv_sec) + "." + std::to_string(now.tv_nsec) + "." +
         std::to_string(::getpid()) + "." + std::to_string(trash_counter_.fetch_add(1));
}

Result<void> Filesystem::TrashFile(int parent_fd, std::string_view name, const struct stat& st) {
  const std::string trash_name = NewTrashName();
  if (::renameat(parent_fd, Str(name).c_str(), trash_fd_.get(), trash_name.c_str()) != 0) return LastErrno();
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

void Filesystem::SetFileTimes(const Inode& inode, const hpfile::HPFile& file, const timespec times[2]) {
  if (::futimens(inode.fd.get(), times) != 0) {
    spdlog::debug("futimens on a file's backing directory: {}", std::strerror(errno));
  }
  const auto segments = file.Segments();
  if (!segments.empty()) {
    ::utimensat(inode.fd.get(), segments.back().file_name.c_str(), times, 0);
  }
}

void Filesystem::TouchFile(const Inode& inode, const hpfile::HPFile& file) {
  {
    // Called after every truncate and prune: a segment name may come back
    // with other contents, so cached block counts go.
    std::lock_guard lock(inode.mu);
    inode.sealed_blocks.clear();
  }
  const timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  SetFileTimes(inode, file, times);
}

// --- names ---

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
  const int pfd = (*parent)->fd.get();
  if (::mkdirat(pfd, Str(name).c_str(), 0700) != 0) return LastErrno();
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
  const int pfd = (*parent)->fd.get();
  if (::symlinkat(Str(target).c_str(), pfd, Str(name).c_str()) != 0) return LastErrno();
  // A link the caller does not own could not be removed by them later.
  if (UidGidDiffer(caller) && ::fchownat(pfd, Str(name).c_str(), caller.uid, caller.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    const int error = errno;
    ::unlinkat(pfd, Str(name).c_str(), 0);
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
  const ssize_t n = ::readlinkat((*inode)->fd.get(), "", buf.data(), buf.size());
  if (n < 0) return LastErrno();
  buf.resize(static_cast<size_t>(n));
  return buf;
}

Result<void> Filesystem::Unlink(InodeId parent_id, std::string_view name) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  Kind kind;
  auto st = StatVisible(**parent, name, &kind);
  if (!st) return std::unexpected(st.error());
  switch (kind) {
    case Kind::kDirectory:
      return Errno(EISDIR);
    case Kind::kSymlink:
      if (::unlinkat((*parent)->fd.get(), Str(name).c_str(), 0) != 0) return LastErrno();
      if (auto inode = inodes_.FindByBacking(st->st_dev, st->st_ino)) inodes_.Unbind(*inode);
      return {};
    case Kind::kFile:
      break;
  }
  return TrashFile((*parent)->fd.get(), name, *st);
}

Result<void> Filesystem::Rmdir(InodeId parent_id, std::string_view name) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  Kind kind;
  auto st = StatVisible(**parent, name, &kind);
  if (!st) return std::unexpected(st.error());
  if (kind != Kind::kDirectory) return Errno(ENOTDIR);
  if (::unlinkat((*parent)->fd.get(), Str(name).c_str(), AT_REMOVEDIR) != 0) return LastErrno();
  if (auto inode = inodes_.FindByBacking(st->st_dev, st->st_ino)) inodes_.Unbind(*inode);
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
  const int from_fd = (*parent)->fd.get();
  const int to_fd = (*new_parent)->fd.get();
  const std::string from = Str(name);
  const std::string to = Str(new_name);

  Kind kind;
  auto st = StatVisible(**parent, name, &kind);
  if (!st) return std::unexpected(st.error());
  if (auto r = CheckNewName(**new_parent, new_name); !r) return std::unexpected(r.error());

  if (flags & RENAME_EXCHANGE) {
    Kind other_kind;
    if (auto other = StatVisible(**new_parent, new_name, &other_kind); !other) {
      return std::unexpected(other.error());
    }
    return Check(::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_EXCHANGE));
  }

  Kind target_kind;
  auto target = StatVisible(**new_parent, new_name, &target_kind);
  if (!target) {
    if (target.error() != std::errc::no_such_file_or_directory) return std::unexpected(target.error());
    // A hidden backing entry of that name is not replaced behind the user's back.
    return Check(::renameat2(from_fd, from.c_str(), to_fd, to.c_str(), RENAME_NOREPLACE));
  }
  if (flags & RENAME_NOREPLACE) return Errno(EEXIST);
  if (target->st_ino == st->st_ino && target->st_dev == st->st_dev) return {};

  if (target_kind == Kind::kDirectory) {
    if (kind != Kind::kDirectory) return Errno(EISDIR);
    if (::renameat(from_fd, from.c_str(), to_fd, to.c_str()) != 0) return LastErrno();
    if (auto inode = inodes_.FindByBacking(target->st_dev, target->st_ino)) inodes_.Unbind(*inode);
    return {};
  }
  if (kind == Kind::kDirectory) return Errno(ENOTDIR);
  if (kind == Kind::kSymlink && target_kind == Kind::kSymlink) {
    if (::renameat(from_fd, from.c_str(), to_fd, to.c_str()) != 0) return LastErrno();
    if (auto inode = inodes_.FindByBacking(target->st_dev, target->st_ino)) inodes_.Unbind(*inode);
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
    return Check(::renameat(from_fd, from.c_str(), to_fd, to.c_str()));
  }
  if (target_kind == Kind::kFile) return TrashFile(from_fd, from, *target);
  if (::unlinkat(from_fd, from.c_str(), 0) != 0) return LastErrno();
  if (auto inode = inodes_.FindByBacking(target->st_dev, target->st_ino)) inodes_.Unbind(*inode);
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

// --- attributes ---

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

  switch (inode.kind) {
    case Kind::kDirectory:
      if (change.size) return Errno(EISDIR);
      if (change.mode && ::fchmod(inode.fd.get(), *change.mode & 07777) != 0) return LastErrno();
      if ((change.uid || change.gid) && ::fchown(inode.fd.get(), uid, gid) != 0) return LastErrno();
      if (times && ::futimens(inode.fd.get(), ts) != 0) return LastErrno();
      return Stat(inode);
    case Kind::kSymlink:
      if (change.size) return Errno(EINVAL);
      if (change.mode) return Errno(EOPNOTSUPP);
      if ((change.uid || change.gid) &&
          ::fchownat(inode.fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        return LastErrno();
      }
      // The magic link of an O_PATH descriptor names the symlink itself.
      if (times && ::utimensat(AT_FDCWD, ProcFdPath(inode.fd.get()).c_str(), ts, 0) != 0) return LastErrno();
      return Stat(inode);
    case Kind::kFile:
      break;
  }

  auto file = inode.File();
  if (!file) return Errno(ENOENT);
  if (change.size) {
    std::lock_guard lock(inode.write_mu);
    // The kernel takes the size from this answer: its end and the stored
    // one meet again.
    inode.writeback.broken.reset();
    if (config_.writeback) {
      if (auto deferred = DeferGrowLocked(inode, *file, *change.size); !deferred) {
        return std::unexpected(deferred.error());
      } else if (*deferred) {
        return Stat(inode);
      }
    }
    if (*change.size != file->Size()) {
      if (auto r = file->Truncate(*change.size); !r) return std::unexpected(r.error());
      TouchFile(inode, *file);
    }
  }
  if (change.mode || change.uid || change.gid) {
    struct stat before;
    const bool have_before = ::fstat(inode.fd.get(), &before) == 0;
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
      ::futimens(inode.fd.get(), keep);
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

// --- files ---

Result<std::pair<Entry, std::unique_ptr<FileHandle>>> Filesystem::Create(InodeId parent_id,
                                                                         std::string_view name, mode_t mode,
                                                                         int flags, const Caller& caller) {
  auto parent = GetDirectory(parent_id);
  if (!parent) return std::unexpected(parent.error());
  if (auto r = CheckNewName(**parent, name); !r) return std::unexpected(r.error());
  const int pfd = (*parent)->fd.get();

  // Built in the trash and renamed into place, so that the name appears
  // complete (with its meta) or not at all, also across a crash.
  const std::string temp = NewTrashName();
  if (::mkdirat(trash_fd_.get(), temp.c_str(), kBackingFileDirMode) != 0) return LastErrno();
  auto fd = OpenAt(trash_fd_.get(), temp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) {
    (void)RemoveTree(trash_fd_.get(), temp);
    return std::unexpected(fd.error());
  }
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) {
    const auto error = LastErrno();
    (void)RemoveTree(trash_fd_.get(), temp);
    return error;
  }
  auto inode = std::make_shared<Inode>(Kind::kFile, st.st_dev, st.st_ino, std::move(*fd));
  auto file = OpenHPFile(inode, /*create=*/true, mode, caller);
  if (!file) {
    (void)RemoveTree(trash_fd_.get(), temp);
    return std::unexpected(file.error());
  }
  if (::renameat2(trash_fd_.get(), temp.c_str(), pfd, Str(name).c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    file->reset();
    (void)RemoveTree(trash_fd_.get(), temp);
    if (err == EEXIST && !(flags & O_EXCL)) {
      // Lost a race with another creator: open what is there, as open(2) would.
      auto entry = Lookup(parent_id, name);
      // The name is taken by a backing entry the mount does not show (a
      // plain file): it exists, it just cannot be opened through the mount.
      if (!entry && entry.error() == std::errc::no_such_file_or_directory) return Errno(EEXIST);
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
  {
    std::lock_guard lock(inode->mu);
    // Unlinked files stay open until the kernel forgets them, so only a
    // file deleted behind the kernel's back ends up here.
    if (!inode->file) return Errno(ESTALE);
    file = inode->file;
    ++inode->open_handles;
  }
  auto handle = std::make_unique<FileHandle>(FileHandle{inode, flags});
  if (handle->writable() && (flags & O_TRUNC)) {
    std::lock_guard lock(inode->write_mu);
    if (file->Size() != 0 || file->Head() != 0) {
      if (auto r = file->Truncate(0); !r) {
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
  // A prune may move the head between reading it and mapping: map again.
  for (int attempt = 0; attempt < 8; ++attempt) {
    ReadPlan plan;
    const uint64_t file_size = file->Size();
    if (offset >= file_size || size == 0) return plan;
    const uint64_t end = std::min<uint64_t>(file_size, offset + size);
    plan.in_file = end - offset;
    const uint64_t head = file->Head();
    plan.zeros = offset < head ? std::min(head, end) - offset : 0;
    const uint64_t data_start = offset + plan.zeros;
    if (data_start >= end) return plan;
    auto extents = file->MapRange(data_start, static_cast<size_t>(end - data_start));
    if (!extents) {
      if (extents.error() == std::errc::no_message_available || extents.error().value() == ENODATA) continue;
      return std::unexpected(extents.error());
    }
    plan.extents = std::move(*extents);
    return plan;
  }
  return Errno(EAGAIN);
}

Result<size_t> Filesystem::Write(FileHandle& handle, uint64_t offset, std::span<const std::byte> data,
                                 bool append, const Caller& writer, bool* setid_cleared) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (data.empty()) return size_t{0};
  std::lock_guard lock(handle.inode->write_mu);
  const uint64_t size = file->Size();
  // Bytes that exist are never overwritten. A write past the end fills the
  // gap with zeros first, as a growing ftruncate would: that is what cp and
  // rsync do for a sparse source, and nothing written is changed by it.
  if (!append && offset < size) return Errno(EPERM);
  // As on a local filesystem, the bits go before the bytes land: a write
  // that fails after this has still cleared them.
  auto dropped = DropSetIdForWriter(*handle.inode, *file, writer);
  if (!dropped) return std::unexpected(dropped.error());
  if (setid_cleared != nullptr) *setid_cleared = *dropped;
  if (!append && offset > size) {
    if (auto grown = file->Truncate(offset); !grown) return std::unexpected(grown.error());
  }
  auto start = file->Append(data);
  if (!start) {
    // The write failed as a whole: take the zeros back too.
    if (!append && offset > size) (void)file->Truncate(size);
    return std::unexpected(start.error());
  }
  return data.size();
}

Result<void> Filesystem::Fsync(FileHandle& handle) {
  auto file = handle.inode->File();
  if (!file) return {};
  if (config_.writeback) LandGrow(*handle.inode, *file);
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
  return synced;
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
      std::lock_guard lock(handle.inode->write_mu);
      if (end <= file->Size()) return {};
      // Write-back mode: the kernel answers this before it sends the dirty
      // pages below `end`, and zeros stored now would refuse them later.
      if (config_.writeback && handle.inode->cached_writers.load() > 0) return Errno(EOPNOTSUPP);
      if (auto r = file->Truncate(end); !r) return r;
      TouchFile(*handle.inode, *file);
      return {};
    }
    case FALLOC_FL_KEEP_SIZE:
      return {};
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: {
      std::lock_guard lock(handle.inode->write_mu);
      const uint64_t head = file->Head();
      if (offset > head) return Errno(EOPNOTSUPP);
      const uint64_t new_head = std::min(end, file->Size());
      if (new_head <= head) return {};
      if (auto r = file->PruneHead(new_head); !r) return r;
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
  const uint64_t head = file->Head();
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

Result<hpfs_stat> Filesystem::IoctlStat(FileHandle& handle) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  hpfs_stat out{};
  const hpfile::Meta meta = file->GetMeta();
  out.head = file->Head();
  out.size = file->Size();
  out.durable_size = file->DurableSize();
  out.segments = file->Segments().size();
  out.segment_size = meta.segment_size;
  out.retain_bytes = meta.retain_bytes.value_or(0);
  out.retain_seconds = meta.retain_seconds.value_or(0);
  if (config_.writeback) {
    out.flags |= HPFS_STAT_WRITEBACK;
    std::lock_guard lock(handle.inode->write_mu);
    out.held_bytes = static_cast<uint32_t>(std::min<uint64_t>(handle.inode->writeback.held_bytes, UINT32_MAX));
  }
  if (const auto& damage = file->Damage()) {
    out.flags |= HPFS_STAT_DAMAGED;
    const size_t n = std::min(damage->size(), sizeof(out.damage) - 1);
    std::memcpy(out.damage, damage->data(), n);
  }
  return out;
}

Result<void> Filesystem::ApplySet(const Inode& inode, hpfile::HPFile& file, const hpfs_set& request) {
  constexpr uint32_t kKnown = HPFS_SET_SEGMENT_SIZE | HPFS_SET_RETAIN_BYTES | HPFS_SET_RETAIN_SECONDS;
  if ((request.mask & ~kKnown) != 0) return Errno(EINVAL);
  if ((request.mask & HPFS_SET_SEGMENT_SIZE) && !ValidSegmentSetting(request.segment_size)) {
    return Errno(EINVAL);
  }
  if (request.mask & (HPFS_SET_RETAIN_BYTES | HPFS_SET_RETAIN_SECONDS)) {
    auto r = file.UpdateMeta([&](hpfile::Meta& meta) {
      auto value = [](uint64_t v) { return v == 0 ? std::nullopt : std::optional<uint64_t>(v); };
      if (request.mask & HPFS_SET_RETAIN_BYTES) meta.retain_bytes = value(request.retain_bytes);
      if (request.mask & HPFS_SET_RETAIN_SECONDS) meta.retain_seconds = value(request.retain_seconds);
    });
    if (!r) return r;
  }
  if (request.mask & HPFS_SET_SEGMENT_SIZE) {
    if (auto r = file.SetSegmentSize(request.segment_size); !r) return r;
  }
  (void)inode;
  return {};
}

Result<bool> Filesystem::DropSetIdForWriter(const Inode& inode, hpfile::HPFile& file, const Caller& writer) {
  const hpfile::Meta meta = file.GetMeta();
  const mode_t mode = meta.mode.value_or(kDefaultFileMode);
  if ((mode & (S_ISUID | S_ISGID)) == 0) return false;  // nearly every write: no /proc read
  gid_t file_gid = kNoGroup;
  if (meta.gid) {
    file_gid = *meta.gid;
  } else if (struct stat st; ::fstat(inode.fd.get(), &st) == 0) {
    file_gid = st.st_gid;
  }
  const mode_t kept = ModeAfterWrite(mode, file_gid, CredentialsOfThread(writer.pid));
  if (kept == mode) return false;
  if (auto r = file.UpdateMeta([kept](hpfile::Meta& m) { m.mode = kept; }); !r) return std::unexpected(r.error());
  return true;
}

Result<void> Filesystem::IoctlSet(FileHandle& handle, const hpfs_set& request) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (!handle.writable()) return Errno(EBADF);
  return ApplySet(*handle.inode, *file, request);
}

// --- directories ---

Result<std::unique_ptr<DirHandle>> Filesystem::OpenDir(InodeId id) {
  auto inode = GetDirectory(id);
  if (!inode) return std::unexpected(inode.error());
  auto handle = std::make_unique<DirHandle>();
  handle->inode = *inode;
  if (auto r = RefreshDir(*handle); !r) return std::unexpected(r.error());
  return handle;
}

Result<void> Filesystem::RefreshDir(DirHandle& handle) {
  const Inode& dir_inode = *handle.inode;
  const int fd = dir_inode.fd.get();
  auto listed = ListEntries(fd);
  if (!listed) return std::unexpected(listed.error());
  std::vector<DirEntry> entries;
  entries.push_back(DirEntry{".", dir_inode.backing_ino, DT_DIR});
  struct stat parent_st;
  entries.push_back(DirEntry{"..", ::fstatat(fd, "..", &parent_st, 0) == 0 ? parent_st.st_ino : 0, DT_DIR});
  std::vector<std::string> plain_files;
  for (auto& listed_entry : *listed) {
    const std::string_view name = listed_entry.name;
    if (Hidden(dir_inode, name)) continue;
    unsigned char type = listed_entry.type;
    if (type == DT_UNKNOWN) {
      auto st = StatAt(fd, name);
      if (!st) continue;
      type = S_ISDIR(st->st_mode) ? DT_DIR : S_ISLNK(st->st_mode) ? DT_LNK : S_ISREG(st->st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR) {
      if (IsHPFileDir(fd, name)) type = DT_REG;
    } else if (type != DT_LNK) {
      // Plain backing files, fifos...: not part of the format.
      if (type == DT_REG) plain_files.emplace_back(name);
      continue;
    }
    entries.push_back(DirEntry{std::move(listed_entry.name), listed_entry.ino, type});
  }
  if (!plain_files.empty()) {
    struct stat dir_st;
    if (::fstat(fd, &dir_st) == 0) {
      WarnOfPlainFiles(dir_st, dir_inode.id == kRootInode ? "" : DisplayName(dir_inode), plain_files);
    }
  }
  handle.entries = std::move(entries);
  handle.listed_once = false;
  return {};
}

Result<void> Filesystem::FsyncDir(InodeId id) {
  auto inode = GetDirectory(id);
  if (!inode) return std::unexpected(inode.error());
  return Check(::fsync((*inode)->fd.get()));
}

// --- xattrs ---

namespace {

enum class XattrKey { kHead, kSize, kDurableSize, kSegments, kSegmentSize, kRetainBytes, kRetainSeconds, kDamage };

struct XattrName {
  std::string_view name;
  XattrKey key;
  bool writable;
};

constexpr XattrName kXattrNames[] = {
    {"head", XattrKey::kHead, false},
    {"size", XattrKey::kSize, false},
    {"durable_size", XattrKey::kDurableSize, false},
    {"segments", XattrKey::kSegments, false},
    {"segment_size", XattrKey::kSegmentSize, true},
    {"retain_bytes", XattrKey::kRetainBytes, true},
    {"retain_seconds", XattrKey::kRetainSeconds, true},
    {"damage", XattrKey::kDamage, false},
};

const XattrName* FindXattr(std::string_view name) {
  if (!name.starts_with(kXattrPrefix)) return nullptr;
  name.remove_prefix(kXattrPrefix.size());
  for (const auto& x : kXattrNames) {
    if (x.name == name) return &x;
  }
  return nullptr;
}

}  // namespace

Result<std::string> Filesystem::GetXattr(InodeId id, std::string_view name) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  const XattrName* x = FindXattr(name);
  auto file = (*inode)->File();
  if (x == nullptr || !file) return Errno(ENODATA);
  const hpfile::Meta meta = file->GetMeta();
  switch (x->key) {
    case XattrKey::kHead:
      return std::to_string(file->Head());
    case XattrKey::kSize:
      return std::to_string(file->Size());
    case XattrKey::kDurableSize:
      return std::to_string(file->DurableSize());
    case XattrKey::kSegments:
      return std::to_string(file->Segments().size());
    case XattrKey::kSegmentSize:
      return std::to_string(meta.segment_size);
    case XattrKey::kRetainBytes:
      return std::to_string(meta.retain_bytes.value_or(0));
    case XattrKey::kRetainSeconds:
      return std::to_string(meta.retain_seconds.value_or(0));
    case XattrKey::kDamage:
      if (!file->Damage()) return Errno(ENODATA);
      return *file->Damage();
  }
  return Errno(ENODATA);
}

Result<std::vector<std::string>> Filesystem::ListXattr(InodeId id) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  std::vector<std::string> names;
  auto file = (*inode)->File();
  if (!file) return names;
  for (const auto& x : kXattrNames) {
    if (x.key == XattrKey::kDamage && !file->Damage()) continue;
    names.push_back(Str(kXattrPrefix) + Str(x.name));
  }
  return names;
}

Result<void> Filesystem::SetXattr(InodeId id, std::string_view name, std::string_view value) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  const XattrName* x = FindXattr(name);
  auto file = (*inode)->File();
  if (x == nullptr || !file) return Errno(ENOTSUP);
  if (!x->writable) return Errno(EPERM);
  // Values come from setfattr and friends, sometimes with a trailing NUL/newline.
  while (!value.empty() && (value.back() == '\0' || value.back() == '\n')) value.remove_suffix(1);
  hpfs_set request{};
  switch (x->key) {
    case XattrKey::kSegmentSize: {
      auto size = ParseSize(value);
      if (!size) return Errno(EINVAL);
      request.mask = HPFS_SET_SEGMENT_SIZE;
      request.segment_size = *size;
      break;
    }
    case XattrKey::kRetainBytes: {
      auto size = ParseSize(value);
      if (!size) return Errno(EINVAL);
      request.mask = HPFS_SET_RETAIN_BYTES;
      request.retain_bytes = *size;
      break;
    }
    case XattrKey::kRetainSeconds: {
      auto seconds = ParseDuration(value);
      if (!seconds) return Errno(EINVAL);
      request.mask = HPFS_SET_RETAIN_SECONDS;
      request.retain_seconds = *seconds;
      break;
    }
    default:
      return Errno(EPERM);
  }
  return ApplySet(**inode, *file, request);
}

Result<void> Filesystem::RemoveXattr(InodeId id, std::string_view name) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  const XattrName* x = FindXattr(name);
  auto file = (*inode)->File();
  if (x == nullptr || !file) return Errno(ENODATA);
  hpfs_set request{};
  if (x->key == XattrKey::kRetainBytes) {
    request.mask = HPFS_SET_RETAIN_BYTES;
  } else if (x->key == XattrKey::kRetainSeconds) {
    request.mask = HPFS_SET_RETAIN_SECONDS;
  } else {
    return Errno(EPERM);
  }
  return ApplySet(**inode, *file, request);
}

// --- retention ---

std::string Filesystem::DisplayName(const Inode& inode) const {
  std::string path(PATH_MAX, '\0');
  const ssize_t n = ::readlink(ProcFdPath(inode.fd.get()).c_str(), path.data(), path.size());
  if (n <= 0) return "inode " + std::to_string(inode.id);
  path.resize(static_cast<size_t>(n));
  const std::string prefix = backing_dir_ + "/";
  if (path.starts_with(prefix)) path.erase(0, prefix.size());
  return path;
}

void Filesystem::OnRetention(const std::weak_ptr<Inode>& weak, const hpfile::RetentionResult& result) {
  auto inode = weak.lock();
  const std::string name = inode ? DisplayName(*inode) : std::string("a closed file");
  if (result.pruned()) {
    spdlog::info("retention: '{}': dropped {} bytes ({} segments), head now {}", name, result.bytes_dropped(),
                 result.segments, result.new_head);
  }
  if (result.error) {
    spdlog::warn("retention: '{}': cannot drop a segment: {}", name, result.error.message());
  }
  if (!result.pruned()) return;
  {
    std::lock_guard lock(retention_mu_);
    retention_events_.emplace_back(weak, result);
  }
  retention_cv_.notify_all();
}

void Filesystem::DrainRetentionEvents() {
  std::vector<std::pair<std::weak_ptr<Inode>, hpfile::RetentionResult>> events;
  {
    std::lock_guard lock(retention_mu_);
    events.swap(retention_events_);
  }
  if (events.empty()) return;
  std::function<void(InodeId, uint64_t, uint64_t)> invalidate;
  {
    std::lock_guard lock(invalidator_mu_);
    invalidate = invalidate_;
  }
  if (!invalidate) return;
  for (const auto& [weak, result] : events) {
    // Gone: its last lookup went, so the kernel caches nothing of it.
    auto inode = weak.lock();
    if (inode && inode->id != 0) invalidate(inode->id, result.old_head, result.bytes_dropped());
  }
}

Result<hpfile::Fd> Filesystem::OpenBackingDir(const std::string& rel) const {
  auto dir = OpenAt(root_fd_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (!dir) return dir;
  // One component at a time, none of them a symlink: the walk stays inside BACKING.
  for (size_t begin = 0; begin < rel.size();) {
    size_t end = rel.find('/', begin);
    if (end == std::string::npos) end = rel.size();
    auto next = OpenAt(dir->get(), std::string_view(rel).substr(begin, end - begin),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!next) return next;
    dir = std::move(next);
    begin = end + 1;
  }
  return dir;
}

void Filesystem::ListForWalk(const std::string& rel) {
  auto dir_fd = OpenBackingDir(rel);
  if (!dir_fd) return;  // gone since it was listed: nothing to walk
  auto entries = ListEntries(dir_fd->get());
  if (!entries) return;
  // Sorted, so a pass that stops midway and the next one see the same order.
  std::sort(entries->begin(), entries->end(),
            [](const ListedEntry& a, const ListedEntry& b) { return a.name < b.name; });
  for (const auto& [name, ino, type] : *entries) {
    if (HiddenIn(rel.empty(), name)) continue;
    if (type != DT_DIR && type != DT_UNKNOWN) continue;
    auto st = StatAt(dir_fd->get(), name);
    if (!st || !S_ISDIR(st->st_mode)) continue;
    auto kind = Classify(dir_fd->get(), name, *st);
    if (!kind) continue;
    const std::string child = rel.empty() ? name : rel + "/" + name;
    (*kind == Kind::kFile ? walk_files_ : walk_dirs_).push_back(child);
  }
}

void Filesystem::RetainStoredFile(const std::string& rel, int64_t now, RetentionPass& pass) {
  const size_t slash = rel.rfind('/');
  const std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
  const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  auto parent_fd = OpenBackingDir(parent_rel);
  if (!parent_fd) return;
  auto st = StatAt(parent_fd->get(), name);
  if (!st) return;
  // Files the kernel knows were enforced at the start of the pass.
  if (inodes_.FindByBacking(st->st_dev, st->st_ino)) return;
  // Most files have no limit: a look at the meta spares opening them.
  auto meta_text = [&]() -> Result<std::string> {
    auto dir_fd = OpenAt(parent_fd->get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!dir_fd) return std::unexpected(dir_fd.error());
    return hpfile::ReadMetaText(hpfile::PosixIo::Default(), ProcFdPath(dir_fd->get()));
  }();
  if (!meta_text) return;
  auto meta = hpfile::ParseMeta(*meta_text);
  if (!meta || hpfile::RetentionPolicy::FromMeta(*meta).empty()) return;

  // Loaded as a lookup would, so that a lookup meanwhile shares this HPFile
  // instead of opening the directory a second time.
  auto inode = LoadAt(parent_fd->get(), parent_rel.empty(), name);
  if (!inode) return;
  if (auto file = (*inode)->File(); file && !file->Damage()) {
    ++pass.files_checked;
    if (file->ApplyRetention(now).pruned()) ++pass.files_pruned;
  }
  Forget((*inode)->id, 1);
}

RetentionPass Filesystem::EnforceRetention(int64_t now, size_t max_walk) {
  RetentionPass pass;
  // Known files every time: they cost no open, and they are the ones in use.
  for (const auto& inode : inodes_.Snapshot()) {
    if (inode->kind != Kind::kFile) continue;
    auto file = inode->File();
    if (!file || file->Damage()) continue;
    if (hpfile::RetentionPolicy::FromMeta(file->GetMeta()).empty()) continue;
    ++pass.files_checked;
    if (file->ApplyRetention(now).pruned()) ++pass.files_pruned;
  }
  {
    std::lock_guard lock(walk_mu_);
    while (pass.entries_walked < max_walk) {
      if (!walk_files_.empty()) {
        const std::string rel = std::move(walk_files_.front());
        walk_files_.pop_front();
        ++pass.entries_walked;
        RetainStoredFile(rel, now, pass);
      } else if (!walk_dirs_.empty()) {
        const std::string rel = std::move(walk_dirs_.front());
        walk_dirs_.pop_front();
        ++pass.entries_walked;
        ListForWalk(rel);
      } else if (pass.entries_walked > 0) {
        // The end of a round; the next pass starts the next one.
        pass.round_complete = true;
        break;
      } else {
        walk_dirs_.push_back("");
      }
    }
  }
  DrainRetentionEvents();
  return pass;
}

void Filesystem::RetentionLoop(std::chrono::milliseconds interval, size_t max_walk) {
  std::unique_lock lock(retention_mu_);
  auto next = std::chrono::steady_clock::now();
  while (!retention_stop_) {
    if (std::chrono::steady_clock::now() >= next) {
      lock.unlock();
      EnforceRetention(static_cast<int64_t>(std::time(nullptr)), max_walk);
      lock.lock();
      next = std::chrono::steady_clock::now() + interval;
    } else if (!retention_events_.empty()) {
      lock.unlock();
      DrainRetentionEvents();
      lock.lock();
    } else {
      retention_cv_.wait_until(lock, next, [this] { return retention_stop_ || !retention_events_.empty(); });
    }
  }
}

void Filesystem::StartRetention(std::chrono::milliseconds interval, size_t max_walk) {
  std::lock_guard lock(retention_mu_);
  if (retention_thread_.joinable()) return;
  retention_stop_ = false;
  retention_thread_ = std::thread([this, interval, max_walk] { RetentionLoop(interval, max_walk); });
}

void Filesystem::StopRetention() {
  std::thread thread;
  {
    std::lock_guard lock(retention_mu_);
    retention_stop_ = true;
    thread = std::move(retention_thread_);
  }
  retention_cv_.notify_all();
  if (thread.joinable()) thread.join();
}

// --- daemon ---

Result<void> Filesystem::SyncAll() {
  Result<void> first;
  auto note = [&first](const Result<void>& r) {
    if (!r && first) first = r;
  };
  struct stat root_st;
  if (fstat(root_fd_.get(), &root_st) != 0) return hpfile::LastErrno();
  // A fdatasync per written segment costs a journal commit each (thousands
  // at the end of a busy run); one syncfs of the backing filesystem makes
  // them all durable at once. Only files on another filesystem (a mount
  // inside BACKING) are synced one by one.
  std::vector<std::pair<std::shared_ptr<hpfile::HPFile>, hpfile::HPFile::PendingSync>> pending;
  for (const auto& inode : inodes_.Snapshot()) {
    auto file = inode->File();
    if (!file || file->Damage()) continue;
    if (inode->backing_dev != root_st.st_dev) {
      note(file->Sync());
      continue;
    }
    auto begun = file->BeginSync();
    if (!begun) {
      note(std::unexpected(begun.error()));
      continue;
    }
    pending.emplace_back(std::move(file), std::move(*begun));
  }
  if (pending.empty()) return first;
  const auto start = std::chrono::steady_clock::now();
  Result<void> synced;
  if (syncfs(root_fd_.get()) != 0) {
    synced = hpfile::LastErrno();
    spdlog::error("syncfs of {} failed: {}", backing_dir_, synced.error().message());
  }
  for (auto& [file, begun] : pending) note(file->FinishSync(std::move(begun), synced));
  if (synced) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    spdlog::info("synced {} files with one syncfs of {} in {} ms", pending.size(), backing_dir_, took.count());
  }
  return first;
}

}  // namespace hpfs
