// SPDX-License-Identifier: Apache-2.0
// An Io for tests: injects errors into chosen calls and simulates power loss.
//
// Power loss follows the model of LevelDB's fault-injection test, made
// stricter: file data is durable only once fsync/fdatasync ran on it, and a
// directory entry (creation, deletion, rename) only once fsync ran on the
// directory holding it. DropUnsyncedData() rewrites the tracked tree to exactly
// that durable state, as the disk would show it after the machine lost power.
//
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/io.h"

namespace hpfile {

enum class IoOp : uint32_t {
  kOpen = 1u << 0,
  kPread = 1u << 1,
  kPwrite = 1u << 2,
  kFdatasync = 1u << 3,
  kFsync = 1u << 4,
  kFtruncate = 1u << 5,
  kFallocate = 1u << 6,
  kFstat = 1u << 7,
  kStat = 1u << 8,
  kUnlink = 1u << 9,
  kRename = 1u << 10,
  kMkdir = 1u << 11,
  kRmdir = 1u << 12,
  kListDir = 1u << 13,
  kSyncfs = 1u << 14,
};
using IoOpMask = uint32_t;
inline constexpr IoOpMask kAllIoOps = (1u << 15) - 1;
// Calls that change the backing store (the ones ENOSPC can hit).
inline constexpr IoOpMask kMutatingIoOps =
    static_cast<uint32_t>(IoOp::kOpen) | static_cast<uint32_t>(IoOp::kPwrite) |
    static_cast<uint32_t>(IoOp::kFdatasync) | static_cast<uint32_t>(IoOp::kFsync) |
    static_cast<uint32_t>(IoOp::kSyncfs) |
    static_cast<uint32_t>(IoOp::kFtruncate) | static_cast<uint32_t>(IoOp::kFallocate) |
    static_cast<uint32_t>(IoOp::kUnlink) | static_cast<uint32_t>(IoOp::kRename) |
    static_cast<uint32_t>(IoOp::kMkdir) | static_cast<uint32_t>(IoOp::kRmdir);

class FaultIo final : public Io {
 public:
  explicit FaultIo(Io& base = PosixIo::Default()) : base_(base) {}

  // The `n`th call (1-based, counted from now) whose op is in `ops` fails with
  // `err`; a failing Pwrite first writes half of its bytes, as a disk filling
  // up mid-write does. n == 0 disarms.
  void FailNthCall(uint64_t n, int err, IoOpMask ops = kAllIoOps);
  // Every call in `ops` fails with `err` until Heal().
  void FailAlways(int err, IoOpMask ops);
  void Heal();
  // Whether the armed failure has fired since it was armed.
  bool Fired() const;
  // Calls in `ops` made since construction or ResetCounts.
  uint64_t Calls(IoOpMask ops = kAllIoOps) const;
  void ResetCounts();
  // Descriptors opened through this Io and not yet closed.
  size_t OpenDescriptors() const;
  size_t PeakOpenDescriptors() const;

  // Starts tracking durability under `root` (a directory): everything there now
  // counts as durable.
  void TrackDurability(const std::string& root);
  // Rewrites the tracked tree to its durable state. All descriptors opened
  // through this Io must be closed first (EBUSY otherwise). Afterwards the
  // resulting tree counts as durable.
  [[nodiscard]] Result<void> DropUnsyncedData();

  [[nodiscard]] Result<int> Open(const std::string& path, int flags, mode_t mode) override;
  void Close(int fd) override;
  [[nodiscard]] Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override;
  [[nodiscard]] Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) override;
  [[nodiscard]] Result<void> Fdatasync(int fd) override;
  [[nodiscard]] Result<void> Fsync(int fd) override;
  // Under tracking, everything in the tracked tree counts as durable after it.
  [[nodiscard]] Result<void> Syncfs(int fd) override;
  [[nodiscard]] Result<void> Ftruncate(int fd, uint64_t length) override;
  [[nodiscard]] Result<void> Fallocate(int fd, int mode, uint64_t offset, uint64_t length) override;
  [[nodiscard]] Result<struct stat> Fstat(int fd) override;
  [[nodiscard]] Result<struct stat> Stat(const std::string& path) override;
  [[nodiscard]] Result<void> Unlink(const std::string& path) override;
  [[nodiscard]] Result<void> Rename(const std::string& from, const std::string& to) override;
  [[nodiscard]] Result<void> Mkdir(const std::string& path, mode_t mode) override;
  [[nodiscard]] Result<void> Rmdir(const std::string& path) override;
  [[nodiscard]] Result<std::vector<std::string>> ListDir(const std::string& path) override;
  // Never fails by injection: a lock is not a change of the store.
  [[nodiscard]] Result<void> TryLockExclusive(int fd) override;

 private:
  // Counts the call; returns the errno to fail it with, or 0.
  int Inject(IoOp op);

  // Durability is recorded per file object, not per inode number: the backing
  // filesystem reuses the number of a deleted file for the next one created,
  // while the deleted name (if its unlink was never made durable) must come
  // back with its own old content. A FileId is handed out whenever a new file
  // or directory is seen or created.
  using FileId = uint64_t;
  struct DurableEntry {
    FileId id = 0;
    bool is_dir = false;
    friend bool operator==(const DurableEntry&, const DurableEntry&) = default;
  };
  using DurableDir = std::map<std::string, DurableEntry>;
  struct OpenFile {
    std::string path;  // as opened; only used to decide whether it is tracked
  };
  // What an fsync is about to make durable; taken before the real fsync so
  // that only bytes written before the call count.
  struct Snapshot {
    FileId id = 0;
    uint64_t sequence = 0;
    bool is_dir = false;
    std::string content;  // regular file
    DurableDir entries;   // directory
  };

  bool TrackedPathLocked(const std::string& path) const;
  FileId IdForInodeLocked(ino_t ino);
  // Forgets any earlier file with this inode number: it was just created.
  void NewFileLocked(ino_t ino);
  [[nodiscard]] Result<Snapshot> TakeSnapshot(int fd);
  void CommitSnapshot(Snapshot snapshot);
  [[nodiscard]] Result<void> SyncCommon(int fd, IoOp op);
  [[nodiscard]] Result<DurableDir> ReadDirEntries(const std::string& path);
  [[nodiscard]] Result<std::string> ReadContent(const std::string& path);
  // Records everything under root_ as durable (root_ itself included).
  [[nodiscard]] Result<void> SnapshotTree();
  [[nodiscard]] Result<void> SnapshotTreeAt(const std::string& path, FileId id);
  // One file or directory of the durable tree, parents listed before children.
  struct PlannedNode {
    std::string relative_path;
    bool is_dir = false;
    FileId id = 0;
    std::string content;
  };
  void PlanDirLocked(const std::string& relative_path, FileId id, std::set<FileId>& ancestors,
                     std::vector<PlannedNode>& plan) const;
  // Brings what lies under root + "/" + relative_path in line with `planned`
  // (by relative path), keeping files and directories that are already the
  // planned ones, and adds to `kept` the paths that need no creating.
  [[nodiscard]] Result<void> Reconcile(const std::string& root, const std::string& relative_path,
                         const std::map<std::string, const PlannedNode*>& planned, std::set<std::string>& kept);
  [[nodiscard]] Result<void> RemoveTree(const std::string& path);

  Io& base_;
  mutable std::mutex mu_;

  // Fault state, guarded by mu_.
  uint64_t countdown_ = 0;  // calls in fail_ops_ left until one fails; 0 = disarmed
  bool fail_always_ = false;
  int fail_errno_ = 0;
  IoOpMask fail_ops_ = 0;
  bool fired_ = false;
  uint64_t calls_[15] = {};

  std::map<int, OpenFile> open_;
  size_t peak_open_ = 0;

  // Durability state, guarded by mu_.
  std::optional<std::string> root_;
  std::error_code tracking_error_;  // a failed snapshot of the tree, reported by DropUnsyncedData
  FileId root_id_ = 0;
  FileId next_id_ = 1;
  uint64_t next_sequence_ = 1;
  std::map<ino_t, FileId> ids_;
  std::map<FileId, DurableDir> durable_dirs_;
  std::map<FileId, std::string> durable_files_;
  std::map<FileId, uint64_t> committed_sequence_;
};

}  // namespace hpfile
