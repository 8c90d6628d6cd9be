// SPDX-License-Identifier: Apache-2.0
// Filesystem: opening the backing directory, the inode loading every
// operation shares (lookup of a visible name, classification, the HPFile
// behind a file inode), the trash, and SyncAll. The operations themselves
// live in names.cc, attributes.cc, file_ops.cc, directories.cc,
// file_settings.cc and retention.cc.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>

#include <spdlog/spdlog.h>

#include "core/format.h"
#include "fs/backing_dir.h"

namespace hpfs {
namespace {

namespace fmt_ = hpfile::format;
using hpfile::Errno;
using hpfile::LastErrno;

bool IsReservedAtRoot(std::string_view name) {
  return name == fmt_::kLockName || name == fmt_::kTrashName || name == kTierCacheName;
}

// Names that would change what a backing directory is if created in it.
bool IsFormatName(std::string_view name) {
  return name == fmt_::kMetaName || name == fmt_::kMetaTempName;
}

// How many plain files a warning names before "...".
constexpr size_t kPlainFilesNamed = 5;

}  // namespace

Filesystem::Filesystem(const Config& config, std::string backing_dir, hpfile::Fd root_fd, hpfile::Fd trash_fd)
    : config_(config),
      backing_dir_(std::move(backing_dir)),
      root_fd_(std::move(root_fd)),
      trash_fd_(std::move(trash_fd)),
      max_open_files_(config.max_open_files != 0 ? config.max_open_files : DefaultMaxOpenFiles()),
      descriptors_(max_open_files_ / 2),
      idle_files_(max_open_files_ / 4),
      walk_(root_fd_.get()),
      tier_walk_(root_fd_.get()),
      deleter_(trash_fd_.get()) {}

Filesystem::~Filesystem() {
  StopRetention();
  StopTiering();
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
  if (::mkdirat(root->get(), std::string(fmt_::kTrashName).c_str(), 0700) != 0 && errno != EEXIST) {
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
    auto type = EntryType(root->get(), entry);
    if (type && *type == DT_REG) plain_files.push_back(std::move(entry.name));
  }

  struct stat st;
  if (::fstat(root->get(), &st) != 0) return LastErrno();
  auto root_fd_copy = OpenAt(root->get(), ".", O_RDONLY | O_DIRECTORY);
  if (!root_fd_copy) return std::unexpected(root_fd_copy.error());
  std::unique_ptr<Filesystem> fs(new Filesystem(config, backing_dir, std::move(*root), std::move(*trash)));
  fs->root_dev_ = st.st_dev;
  if (config.tier.enabled()) {
    auto tiering = Tiering::Create(config.tier, backing_dir);
    if (!tiering) {
      spdlog::error("{}", tiering.error());
      return Errno(EINVAL);
    }
    fs->tiering_ = std::move(*tiering);
    // An unlinked tiered file leaves the trash once its objects are gone.
    fs->deleter_.SetTakeOver([raw = fs.get()](const std::string& name) {
      return raw->tiering_->TakeUnlinked(raw->trash_fd_.get(), name);
    });
  }
  auto root_inode = std::make_shared<Inode>(Kind::kDirectory, st.st_dev, st.st_ino, std::move(*root_fd_copy));
  // Handles work where both calls do: the backing filesystem exports them
  // (ext4, xfs, btrfs, tmpfs do; some overlays do not) and the daemon has
  // CAP_DAC_READ_SEARCH for opening them.
  if (auto handle = HandleOf(root_inode->pinned_fd->get())) {
    auto reopened = OpenHandle(fs->root_fd_.get(), *handle, O_RDONLY | O_DIRECTORY);
    fs->use_handles_ = reopened.has_value();
    if (!reopened) {
      spdlog::warn("file handles of {} cannot be opened ({}): every directory the kernel remembers keeps a "
                   "descriptor, and max_open_files bounds only idle files",
                   backing_dir, reopened.error().message());
    }
  } else {
    spdlog::warn("{} gives no file handles ({}): every directory the kernel remembers keeps a descriptor, and "
                 "max_open_files bounds only idle files",
                 backing_dir, handle.error().message());
  }
  fs->inodes_.Insert(root_inode, kRootInode);
  spdlog::info("idle files and directories hold at most {} descriptors (max_open_files){}", fs->max_open_files_,
               fs->use_handles_ ? "" : ", besides one for each directory the kernel knows");
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

void Filesystem::StartDeleter() {
  // du and stat count pruned segments until they are deleted: once they are,
  // the kernel's cached attributes (kept for attr_timeout) must go.
  deleter_.SetOnPrunedDeleted([this](const Inode& inode) {
    std::function<void(InodeId, uint64_t, uint64_t)> invalidate;
    {
      std::lock_guard lock(invalidator_mu_);
      invalidate = invalidate_;
    }
    // A negative offset: the attributes only, no pages.
    if (invalidate && inode.id != 0) invalidate(inode.id, static_cast<uint64_t>(-1), 0);
  });
  deleter_.Start();
}

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
  auto is_file = IsHPFileDir(parent_fd, name);
  if (!is_file) return std::unexpected(is_file.error());
  return *is_file ? Kind::kFile : Kind::kDirectory;
}

Result<struct stat> Filesystem::StatVisible(const Inode& parent, std::string_view name, Kind* kind) {
  auto fd = Descriptor(parent);
  if (!fd) return std::unexpected(fd.error());
  return StatVisibleAt((*fd)->get(), parent.id == kRootInode, name, kind);
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
  // Held by the HPFile until it is closed: its paths go through it.
  auto held = Descriptor(*inode);
  if (!held) return std::unexpected(held.error());
  const int dir_fd = (*held)->get();
  hpfile::Options options;
  options.create_if_missing = create;
  // Durable with the file's fsync or its directory's (MakeCreatesDurable).
  options.durable_create = false;
  options.max_open_segments = config_.max_open_segments;
  options.write_buffer_size = 0;  // write-through: SIGKILL loses no acknowledged write
  // Truncated segments go to the trash and are freed off the request path:
  // freeing 64 MiB of blocks takes ~15 ms on ext4, per segment. Pruned ones
  // stay where they are until the deleter's DeletePrunedSegments.
  options.discard_segment = [this](const std::string& path) -> Result<void> {
    std::string trash_name = NewTrashName();
    if (::renameat(AT_FDCWD, path.c_str(), trash_fd_.get(), trash_name.c_str()) != 0) return LastErrno();
    deleter_.Enqueue(std::move(trash_name));
    return {};
  };
  // A head punch writes the new head and returns; the whole segments below
  // it and the punch inside the next one (up to a segment of blocks for the
  // backing filesystem to free) follow on the deleter's thread (see
  // Fallocate).
  options.defer_head_punch = true;
  options.initial_meta.segment_size = config_.segment_size;
  options.initial_meta.mode = mode & 07777;
  options.initial_meta.uid = caller.uid;
  options.initial_meta.gid = caller.gid;
  options.initial_meta.retain_bytes = config_.retain_bytes;
  options.initial_meta.retain_seconds = config_.retain_seconds;
  options.retain_on_roll = tiering_ == nullptr;
  // Weak: the inode owns the HPFile.
  options.on_retention = [this, weak = std::weak_ptr<Inode>(inode)](const hpfile::RetentionResult& result) {
    OnRetention(weak, result);
  };
  // "/." makes the path resolve through the magic link even for callers that
  // lstat it (hpfile::PosixIo::Stat does).
  auto opened = open_files_.SharedOrOpen({inode->backing_dev, inode->backing_ino},
                                         [&] { return hpfile::HPFile::Open(ProcFdPath(dir_fd) + "/.", options); },
                                         *held);
  // Segments an earlier run pruned but did not get to delete: opening leaves
  // them (it must not cost a deletion each), the deleter takes them.
  if (opened && (*opened)->PrunedSegments().segments > 0) deleter_.EnqueuePrunedDeletion(*opened, inode);
  return opened;
}

Result<void> Filesystem::AttachTiered(Inode& inode, const std::shared_ptr<hpfile::HPFile>& file) {
  if (!tiering_) return {};
  // A damaged file is served as it is; tiering would have to prune it.
  if (file->Damage()) return {};
  auto tiered = tiering_->For(file);
  if (!tiered) return std::unexpected(tiered.error());
  std::lock_guard lock(inode.mu);
  inode.tiered = std::move(*tiered);
  return {};
}

Result<std::shared_ptr<Inode>> Filesystem::LoadChild(const Inode& parent, std::string_view name) {
  auto fd = Descriptor(parent);
  if (!fd) return std::unexpected(fd.error());
  return LoadAt((*fd)->get(), parent.id == kRootInode, name);
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
  if (!fd) return std::unexpected(hpfile::IsErrno(fd.error(), ELOOP)
                                      ? std::error_code(ENOENT, std::generic_category())
                                      : fd.error());
  struct stat opened;
  if (::fstat(fd->get(), &opened) != 0) return LastErrno();
  // The entry was replaced between the stat and the open: let the kernel retry.
  if (opened.st_ino != st->st_ino || opened.st_dev != st->st_dev) return Errno(ENOENT);

  auto inode = std::make_shared<Inode>(kind, st->st_dev, st->st_ino, std::move(*fd));
  std::optional<struct stat> closed_stat;
  // A lookup needs only the stat: a file that would open as it is gets its
  // HPFile at its first request that needs one (FileOf), as an evicted file
  // does. One still open elsewhere (retention, the deleter, an inode the
  // kernel forgot) is shared instead: its state is not all on disk.
  if (kind == Kind::kFile && !open_files_.IsOpen({st->st_dev, st->st_ino})) {
    auto closed = StatClosedFile(inode->pinned_fd->get(), opened);
    if (!closed) return std::unexpected(closed.error());
    closed_stat = *closed;
  }
  Adopt(*inode);
  if (closed_stat) {
    inode->evicted = true;
    inode->evicted_stat = KeptStat::Of(*closed_stat);
  } else if (kind == Kind::kFile) {
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
    if (auto attached = AttachTiered(*inode, *file); !attached) {
      spdlog::error("cannot open file '{}' for tiered storage: {}", name, attached.error().message());
      return std::unexpected(attached.error());
    }
    inode->file = std::move(*file);
  }
  auto inserted = inodes_.Insert(std::move(inode));
  if (kind == Kind::kFile && !closed_stat) AddIdle(*inserted);
  return inserted;
}

Result<DescriptorCache::SharedFd> Filesystem::Descriptor(const Inode& inode) const {
  if (inode.pinned_fd) return inode.pinned_fd;
  if (auto cached = descriptors_.Find(inode.serial)) return cached;
  auto opened = OpenHandle(root_fd_.get(), *inode.handle, inode.OpenFlags());
  if (!opened) return std::unexpected(opened.error());
  auto shared = std::make_shared<const hpfile::Fd>(std::move(*opened));
  descriptors_.Insert(inode.serial, shared);
  return shared;
}

void Filesystem::Adopt(Inode& inode) {
  if (config_.writeback && inode.kind == Kind::kFile) inode.writeback_queue = std::make_unique<WritebackQueue>();
  // A mount inside BACKING is another filesystem, whose handles root_fd_
  // cannot open: its inodes keep their descriptors.
  if (!use_handles_ || inode.backing_dev != root_dev_) return;
  auto handle = HandleOf(inode.pinned_fd->get());
  if (!handle) return;
  inode.handle = std::move(*handle);
  descriptors_.Insert(inode.serial, std::move(inode.pinned_fd));
  inode.pinned_fd.reset();
}

Result<std::shared_ptr<hpfile::HPFile>> Filesystem::FileOf(const Inode& inode) {
  bool idle = false;
  {
    std::lock_guard lock(inode.mu);
    if (inode.file) {
      idle = inode.open_handles == 0;
      if (!idle) return inode.file;
    } else if (!inode.evicted) {
      return nullptr;
    }
  }
  if (idle) {
    {
      std::lock_guard idle_lock(idle_mu_);
      (void)idle_files_.Touch(inode.serial);
    }
    std::lock_guard lock(inode.mu);
    if (inode.file) return inode.file;
    if (!inode.evicted) return nullptr;
  }
  // Evicted: open it again, as a lookup would (one load at a time, so two
  // requests cannot both open it).
  {
    std::lock_guard load_lock(load_mu_);
    {
      std::lock_guard lock(inode.mu);
      if (inode.file) return inode.file;
      if (!inode.evicted) return nullptr;
    }
    auto self = std::const_pointer_cast<Inode>(inode.shared_from_this());
    auto file = OpenHPFile(self, /*create=*/false, 0, Caller{});
    if (!file) {
      spdlog::error("cannot open file '{}' again: {}", DisplayName(inode), file.error().message());
      return std::unexpected(file.error());
    }
    if (auto attached = AttachTiered(*self, *file); !attached) {
      spdlog::error("cannot open file '{}' again for tiered storage: {}", DisplayName(inode),
                    attached.error().message());
      return std::unexpected(attached.error());
    }
    std::lock_guard lock(inode.mu);
    self->file = *file;
    self->evicted = false;
    self->evicted_stat.reset();
  }
  AddIdle(inode);
  return inode.File();
}

void Filesystem::AddIdle(const Inode& inode) {
  std::vector<std::weak_ptr<Inode>> evicted;
  {
    std::lock_guard idle_lock(idle_mu_);
    evicted = idle_files_.Insert(inode.serial,
                                 std::const_pointer_cast<Inode>(inode.shared_from_this()));
  }
  EvictIdle(std::move(evicted));
}

void Filesystem::PinFile(const Inode& inode) {
  std::lock_guard idle_lock(idle_mu_);
  (void)idle_files_.Erase(inode.serial);
}

void Filesystem::EvictIdle(std::vector<std::weak_ptr<Inode>> victims) {
  for (auto& weak : victims) {
    auto inode = weak.lock();
    if (!inode) continue;
    std::shared_ptr<hpfile::HPFile> closing;
    std::shared_ptr<hpfile::TieredFile> closing_tiered;
    std::optional<struct stat> st;
    if (auto file = inode->File()) {
      if (auto made = StatFile(*inode, *file)) st = *made;
    }
    {
      std::lock_guard lock(inode->mu);
      // In use again since it joined the set (it rejoins at its last
      // release), or unlinked: an unlinked file stays open, as its storage
      // goes once nobody holds it.
      if (inode->open_handles > 0 || inode->unlinked || inode->forgotten || !inode->file) continue;
      if (inode->cached_writers.load() > 0) continue;
      closing = std::move(inode->file);
      // The TieredFile holds the HPFile open: it goes with it.
      closing_tiered = std::move(inode->tiered);
      inode->evicted = true;
      if (st) inode->evicted_stat = KeptStat::Of(*st);
      else inode->evicted_stat.reset();
    }
    evicted_unsynced_.store(true, std::memory_order_relaxed);
    // Closed here, outside every lock (a close writes out a moved head).
  }
}

Result<void> Filesystem::MakeCreatesDurable(uint64_t upto) {
  if (creates_durable_.load() >= upto) return {};
  uint64_t covered;
  {
    std::unique_lock creating(creating_);
    covered = creates_.load();
    if (::syncfs(root_fd_.get()) != 0) return LastErrno();
  }
  uint64_t durable = creates_durable_.load();
  while (durable < covered && !creates_durable_.compare_exchange_weak(durable, covered)) {
  }
  return {};
}

void Filesystem::ChangedWithoutHandle(const Inode& inode) {
  std::lock_guard lock(inode.mu);
  inode.evicted_stat.reset();
}

size_t Filesystem::IdleFiles() {
  std::lock_guard idle_lock(idle_mu_);
  return idle_files_.size();
}

Result<Entry> Filesystem::MakeEntry(const std::shared_ptr<Inode>& inode) {
  auto st = Stat(*inode);
  if (!st) {
    Forget(inode->id, 1);
    return std::unexpected(st.error());
  }
  return Entry{inode->id, *st};
}


std::string Filesystem::NewTrashName() {
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return std::to_string(now.tv_sec) + "." + std::to_string(now.tv_nsec) + "." +
         std::to_string(::getpid()) + "." + std::to_string(trash_counter_.fetch_add(1));
}


std::string Filesystem::DisplayName(const Inode& inode) const {
  std::string path(PATH_MAX, '\0');
  auto fd = Descriptor(inode);
  if (!fd) return "inode " + std::to_string(inode.id);
  const ssize_t n = ::readlink(ProcFdPath((*fd)->get()).c_str(), path.data(), path.size());
  if (n <= 0) return "inode " + std::to_string(inode.id);
  path.resize(static_cast<size_t>(n));
  const std::string prefix = backing_dir_ + "/";
  if (path.starts_with(prefix)) path.erase(0, prefix.size());
  return path;
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
  // Files evicted since the last call were closed with what they had
  // written still in the page cache.
  const bool evicted = evicted_unsynced_.exchange(false);
  if (pending.empty() && !evicted) return first;
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
