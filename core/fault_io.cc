// SPDX-License-Identifier: Apache-2.0
#include "core/fault_io.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <iterator>
#include <utility>

namespace hpfile {
namespace {

std::string NormalPath(const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) {
    std::error_code ec;
    p = std::filesystem::absolute(p, ec);
  }
  std::string normal = p.lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

// The descriptor's file by a path that survives renames and unlinks of the
// name it was opened under.
std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

}  // namespace

int FaultIo::Inject(IoOp op) {
  const auto bits = static_cast<uint32_t>(op);
  const auto index = static_cast<size_t>(std::countr_zero(bits));
  std::lock_guard lock(mu_);
  if (index < std::size(calls_)) ++calls_[index];
  if ((fail_ops_ & bits) == 0) return 0;
  if (fail_always_) {
    fired_ = true;
    return fail_errno_;
  }
  if (countdown_ > 0 && --countdown_ == 0) {
    fired_ = true;
    return fail_errno_;
  }
  return 0;
}

void FaultIo::FailNthCall(uint64_t n, int err, IoOpMask ops) {
  std::lock_guard lock(mu_);
  countdown_ = n;
  fail_always_ = false;
  fail_errno_ = err;
  fail_ops_ = n == 0 ? 0 : ops;
  fired_ = false;
}

void FaultIo::FailAlways(int err, IoOpMask ops) {
  std::lock_guard lock(mu_);
  countdown_ = 0;
  fail_always_ = true;
  fail_errno_ = err;
  fail_ops_ = ops;
  fired_ = false;
}

// Fired() keeps its value so that a test can heal first and ask afterwards.
void FaultIo::Heal() {
  std::lock_guard lock(mu_);
  countdown_ = 0;
  fail_always_ = false;
  fail_ops_ = 0;
}

bool FaultIo::Fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

uint64_t FaultIo::Calls(IoOpMask ops) const {
  std::lock_guard lock(mu_);
  uint64_t total = 0;
  for (size_t i = 0; i < std::size(calls_); ++i) {
    if (ops & (1u << i)) total += calls_[i];
  }
  return total;
}

void FaultIo::ResetCounts() {
  std::lock_guard lock(mu_);
  for (auto& count : calls_) count = 0;
}

size_t FaultIo::OpenDescriptors() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

size_t FaultIo::PeakOpenDescriptors() const {
  std::lock_guard lock(mu_);
  return peak_open_;
}

// ---- Forwarding calls ----

Result<int> FaultIo::Open(const std::string& path, int flags, mode_t mode) {
  if (int err = Inject(IoOp::kOpen)) return Errno(err);
  bool may_create = false;
  {
    std::lock_guard lock(mu_);
    may_create = (flags & O_CREAT) != 0 && TrackedPathLocked(path);
  }
  bool created = false;
  if (may_create) {
    auto before = base_.Stat(path);
    created = !before && IsErrno(before.error(), ENOENT);
  }
  auto fd = base_.Open(path, flags, mode);
  if (!fd) return fd;
  std::optional<ino_t> new_inode;
  if (created) {
    if (auto st = base_.Fstat(*fd)) new_inode = st->st_ino;
  }
  std::lock_guard lock(mu_);
  open_[*fd] = OpenFile{path};
  peak_open_ = std::max(peak_open_, open_.size());
  if (new_inode) NewFileLocked(*new_inode);
  return fd;
}

void FaultIo::Close(int fd) {
  {
    std::lock_guard lock(mu_);
    open_.erase(fd);
  }
  base_.Close(fd);
}

Result<size_t> FaultIo::Pread(int fd, std::span<std::byte> buf, uint64_t offset) {
  if (int err = Inject(IoOp::kPread)) return Errno(err);
  return base_.Pread(fd, buf, offset);
}

Result<size_t> FaultIo::Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) {
  if (int err = Inject(IoOp::kPwrite)) {
    // A disk that fills up mid-write has usually stored a prefix already.
    if (size_t half = buf.size() / 2; half > 0) (void)base_.Pwrite(fd, buf.first(half), offset);
    return Errno(err);
  }
  return base_.Pwrite(fd, buf, offset);
}

Result<void> FaultIo::Fdatasync(int fd) { return SyncCommon(fd, IoOp::kFdatasync); }

Result<void> FaultIo::Fsync(int fd) { return SyncCommon(fd, IoOp::kFsync); }

Result<void> FaultIo::Syncfs(int fd) {
  if (int err = Inject(IoOp::kSyncfs)) return Errno(err);
  bool tracking = false;
  {
    std::lock_guard lock(mu_);
    tracking = root_.has_value();
  }
  // The tree as it is before the real sync, as for the other syncs: bytes
  // written while it runs count as lost.
  if (tracking) {
    if (auto done = SnapshotTree(); !done) return done;
  }
  return base_.Syncfs(fd);
}

Result<void> FaultIo::Ftruncate(int fd, uint64_t length) {
  if (int err = Inject(IoOp::kFtruncate)) return Errno(err);
  return base_.Ftruncate(fd, length);
}

Result<void> FaultIo::Fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
  if (int err = Inject(IoOp::kFallocate)) return Errno(err);
  return base_.Fallocate(fd, mode, offset, length);
}

Result<struct stat> FaultIo::Fstat(int fd) {
  if (int err = Inject(IoOp::kFstat)) return Errno(err);
  return base_.Fstat(fd);
}

Result<struct stat> FaultIo::Stat(const std::string& path) {
  if (int err = Inject(IoOp::kStat)) return Errno(err);
  return base_.Stat(path);
}

Result<void> FaultIo::Unlink(const std::string& path) {
  if (int err = Inject(IoOp::kUnlink)) return Errno(err);
  return base_.Unlink(path);
}

Result<void> FaultIo::Rename(const std::string& from, const std::string& to) {
  if (int err = Inject(IoOp::kRename)) return Errno(err);
  return base_.Rename(from, to);
}

Result<void> FaultIo::Mkdir(const std::string& path, mode_t mode) {
  if (int err = Inject(IoOp::kMkdir)) return Errno(err);
  auto made = base_.Mkdir(path, mode);
  if (!made) return made;
  bool tracked = false;
  {
    std::lock_guard lock(mu_);
    tracked = TrackedPathLocked(path);
  }
  if (tracked) {
    if (auto st = base_.Stat(path)) {
      std::lock_guard lock(mu_);
      NewFileLocked(st->st_ino);
    }
  }
  return made;
}

Result<void> FaultIo::Rmdir(const std::string& path) {
  if (int err = Inject(IoOp::kRmdir)) return Errno(err);
  return base_.Rmdir(path);
}

Result<void> FaultIo::TryLockExclusive(int fd) { return base_.TryLockExclusive(fd); }

Result<std::vector<std::string>> FaultIo::ListDir(const std::string& path) {
  if (int err = Inject(IoOp::kListDir)) return Errno(err);
  return base_.ListDir(path);
}

// ---- Durability tracking ----

bool FaultIo::TrackedPathLocked(const std::string& path) const {
  if (!root_) return false;
  const std::string normal = NormalPath(path);
  if (normal == *root_) return true;
  return normal.size() > root_->size() && normal.compare(0, root_->size(), *root_) == 0 &&
         normal[root_->size()] == '/';
}

FaultIo::FileId FaultIo::IdForInodeLocked(ino_t ino) {
  auto [it, inserted] = ids_.try_emplace(ino, next_id_);
  if (inserted) ++next_id_;
  return it->second;
}

void FaultIo::NewFileLocked(ino_t ino) { ids_[ino] = next_id_++; }

Result<FaultIo::DurableDir> FaultIo::ReadDirEntries(const std::string& path) {
  auto names = base_.ListDir(path);
  if (!names) return std::unexpected(names.error());
  std::vector<std::pair<std::string, struct stat>> found;
  for (const auto& name : *names) {
    auto st = base_.Stat(path + "/" + name);
    if (!st) {
      // Deleted since the listing: as if listed a moment later.
      if (IsErrno(st.error(), ENOENT)) continue;
      return std::unexpected(st.error());
    }
    // Only files and directories take part; nothing here makes anything else.
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) found.emplace_back(name, *st);
  }
  DurableDir entries;
  std::lock_guard lock(mu_);
  for (const auto& [name, st] : found) {
    entries[name] = DurableEntry{IdForInodeLocked(st.st_ino), S_ISDIR(st.st_mode)};
  }
  return entries;
}

Result<std::string> FaultIo::ReadContent(const std::string& path) {
  auto fd = Fd::Open(base_, path, O_RDONLY);
  if (!fd) return std::unexpected(fd.error());
  std::string content;
  std::byte chunk[1 << 16];
  for (uint64_t offset = 0;;) {
    auto n = base_.Pread(fd->get(), chunk, offset);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    content.append(reinterpret_cast<const char*>(chunk), *n);
    offset += *n;
  }
  return content;
}

Result<FaultIo::Snapshot> FaultIo::TakeSnapshot(int fd) {
  Snapshot snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot.sequence = next_sequence_++;
  }
  auto st = base_.Fstat(fd);
  if (!st) return std::unexpected(st.error());
  {
    std::lock_guard lock(mu_);
    snapshot.id = IdForInodeLocked(st->st_ino);
  }
  if (S_ISDIR(st->st_mode)) {
    snapshot.is_dir = true;
    auto entries = ReadDirEntries(ProcPath(fd));
    if (!entries) return std::unexpected(entries.error());
    snapshot.entries = std::move(*entries);
  } else {
    auto content = ReadContent(ProcPath(fd));
    if (!content) return std::unexpected(content.error());
    snapshot.content = std::move(*content);
  }
  return snapshot;
}

// Two syncs of one file may finish in either order; the later snapshot wins.
void FaultIo::CommitSnapshot(Snapshot snapshot) {
  std::lock_guard lock(mu_);
  uint64_t& committed = committed_sequence_[snapshot.id];
  if (committed > snapshot.sequence) return;
  committed = snapshot.sequence;
  if (snapshot.is_dir) {
    durable_dirs_[snapshot.id] = std::move(snapshot.entries);
  } else {
    durable_files_[snapshot.id] = std::move(snapshot.content);
  }
}

Result<void> FaultIo::SyncCommon(int fd, IoOp op) {
  if (int err = Inject(op)) return Errno(err);
  bool tracked = false;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(fd);
    tracked = it != open_.end() && TrackedPathLocked(it->second.path);
  }
  // Taken before the real sync: bytes written while it runs may or may not
  // reach the disk, so the stricter choice is to count them as lost.
  std::optional<Snapshot> snapshot;
  if (tracked) {
    auto taken = TakeSnapshot(fd);
    if (!taken) return std::unexpected(taken.error());
    snapshot = std::move(*taken);
  }
  auto synced = op == IoOp::kFsync ? base_.Fsync(fd) : base_.Fdatasync(fd);
  if (!synced) return synced;
  if (snapshot) CommitSnapshot(std::move(*snapshot));
  return {};
}

Result<void> FaultIo::SnapshotTreeAt(const std::string& path, FileId id) {
  auto entries = ReadDirEntries(path);
  if (!entries) return std::unexpected(entries.error());
  {
    std::lock_guard lock(mu_);
    durable_dirs_[id] = *entries;
  }
  for (const auto& [name, entry] : *entries) {
    const std::string child = path + "/" + name;
    if (entry.is_dir) {
      if (auto done = SnapshotTreeAt(child, entry.id); !done) return done;
    } else {
      auto content = ReadContent(child);
      if (!content) return std::unexpected(content.error());
      std::lock_guard lock(mu_);
      durable_files_[entry.id] = std::move(*content);
    }
  }
  return {};
}

Result<void> FaultIo::SnapshotTree() {
  std::string root;
  {
    std::lock_guard lock(mu_);
    root = *root_;
    ids_.clear();
    durable_dirs_.clear();
    durable_files_.clear();
    committed_sequence_.clear();
  }
  auto st = base_.Stat(root);
  if (!st) return std::unexpected(st.error());
  if (!S_ISDIR(st->st_mode)) return Errno(ENOTDIR);
  FileId root_id;
  {
    std::lock_guard lock(mu_);
    root_id = root_id_ = IdForInodeLocked(st->st_ino);
  }
  return SnapshotTreeAt(root, root_id);
}

void FaultIo::TrackDurability(const std::string& root) {
  {
    std::lock_guard lock(mu_);
    root_ = NormalPath(root);
    tracking_error_ = {};
  }
  if (auto done = SnapshotTree(); !done) {
    std::lock_guard lock(mu_);
    tracking_error_ = done.error();
  }
}

// A directory missing from durable_dirs_ never had its entries synced: it is
// empty. A directory that is its own ancestor can only come from entries
// synced at different times; the inner copy is left out to end the cycle.
void FaultIo::PlanDirLocked(const std::string& relative_path, FileId id, std::set<FileId>& ancestors,
                            std::vector<PlannedNode>& plan) const {
  auto dir = durable_dirs_.find(id);
  if (dir == durable_dirs_.end()) return;
  ancestors.insert(id);
  for (const auto& [name, entry] : dir->second) {
    const std::string path = Join(relative_path, name);
    if (entry.is_dir) {
      if (ancestors.contains(entry.id)) continue;
      plan.push_back(PlannedNode{path, true, entry.id, {}});
      PlanDirLocked(path, entry.id, ancestors, plan);
    } else {
      auto content = durable_files_.find(entry.id);
      plan.push_back(
          PlannedNode{path, false, entry.id, content == durable_files_.end() ? std::string() : content->second});
    }
  }
  ancestors.erase(id);
}

Result<void> FaultIo::RemoveTree(const std::string& path) {
  auto st = base_.Stat(path);
  if (!st) return std::unexpected(st.error());
  if (!S_ISDIR(st->st_mode)) return base_.Unlink(path);
  auto names = base_.ListDir(path);
  if (!names) return std::unexpected(names.error());
  for (const auto& name : *names) {
    if (auto removed = RemoveTree(path + "/" + name); !removed) return removed;
  }
  return base_.Rmdir(path);
}

// Rewriting only what differs keeps a power loss cheap when most files are
// already durable, which is the common case.
Result<void> FaultIo::Reconcile(const std::string& root, const std::string& relative_path,
                                const std::map<std::string, const PlannedNode*>& planned,
                                std::set<std::string>& kept) {
  const std::string dir = relative_path.empty() ? root : root + "/" + relative_path;
  auto names = base_.ListDir(dir);
  if (!names) return std::unexpected(names.error());
  for (const auto& name : *names) {
    const std::string child = Join(relative_path, name);
    const std::string path = dir + "/" + name;
    auto st = base_.Stat(path);
    if (!st) return std::unexpected(st.error());
    auto it = planned.find(child);
    bool same = false;
    if (it != planned.end() && it->second->is_dir == S_ISDIR(st->st_mode) &&
        (S_ISDIR(st->st_mode) || S_ISREG(st->st_mode))) {
      std::lock_guard lock(mu_);
      auto id = ids_.find(st->st_ino);
      same = id != ids_.end() && id->second == it->second->id;
    }
    if (!same) {
      if (auto removed = RemoveTree(path); !removed) return removed;
      continue;
    }
    kept.insert(child);
    if (it->second->is_dir) {
      if (auto done = Reconcile(root, child, planned, kept); !done) return done;
      continue;
    }
    const std::string& want = it->second->content;
    auto content = ReadContent(path);
    if (!content) return std::unexpected(content.error());
    if (*content == want) continue;
    // Overwrite, then cut: truncating to zero first would make ext4 flush.
    auto fd = Fd::Open(base_, path, O_WRONLY);
    if (!fd) return std::unexpected(fd.error());
    if (auto written = WriteFull(base_, fd->get(), std::as_bytes(std::span(want)), 0); !written) return written;
    if (auto cut = base_.Ftruncate(fd->get(), want.size()); !cut) return cut;
  }
  return {};
}

Result<void> FaultIo::DropUnsyncedData() {
  std::string root;
  std::vector<PlannedNode> plan;
  {
    std::lock_guard lock(mu_);
    if (!root_) return Errno(EINVAL);
    if (tracking_error_) return std::unexpected(tracking_error_);
    if (!open_.empty()) return Errno(EBUSY);
    root = *root_;
    std::set<FileId> ancestors;
    PlanDirLocked("", root_id_, ancestors, plan);
  }
  std::map<std::string, const PlannedNode*> planned;
  for (const auto& node : plan) planned.emplace(node.relative_path, &node);
  std::set<std::string> kept;
  if (auto reconciled = Reconcile(root, "", planned, kept); !reconciled) return reconciled;
  for (const auto& node : plan) {
    if (kept.contains(node.relative_path)) continue;
    const std::string path = root + "/" + node.relative_path;
    if (node.is_dir) {
      if (auto made = base_.Mkdir(path, 0755); !made) return made;
      continue;
    }
    auto fd = Fd::Open(base_, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (!fd) return std::unexpected(fd.error());
    if (auto written = WriteFull(base_, fd->get(), std::as_bytes(std::span(node.content)), 0); !written) {
      return written;
    }
  }
  auto snapshot = SnapshotTree();
  if (!snapshot) {
    std::lock_guard lock(mu_);
    tracking_error_ = snapshot.error();
  }
  return snapshot;
}

}  // namespace hpfile
