// SPDX-License-Identifier: Apache-2.0
// The inodes the kernel knows about, with their lookup counts.
//
// Inode ids (the FUSE node ids) are handed out by this table and never reused
// while the daemon runs; st_ino, which users see, is the backing entry's inode
// number and so stays the same across remounts. The table finds an inode again
// by its backing (st_dev, st_ino), so a renamed entry keeps its id.
//
// Thread-safe: one mutex guards the maps and every lookup count; each Inode
// guards its own mutable state with its own mutex.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/hpfile.h"
#include "core/tiered_file.h"
#include "core/io.h"
#include "fs/closed_file_stat.h"
#include "fs/descriptor_cache.h"
#include "fs/writeback.h"

namespace hpfs {

using InodeId = uint64_t;
// FUSE_ROOT_ID, without making this header depend on libfuse.
inline constexpr InodeId kRootInode = 1;

enum class Kind { kDirectory, kFile, kSymlink };

struct Inode : std::enable_shared_from_this<Inode> {
  Inode(Kind kind, dev_t dev, ino_t ino, hpfile::Fd fd)
      : kind(kind),
        backing_dev(dev),
        backing_ino(ino),
        serial(next_serial.fetch_add(1, std::memory_order_relaxed)),
        pinned_fd(std::make_shared<const hpfile::Fd>(std::move(fd))) {}

  InodeId id = 0;  // set once by InodeTable::Insert
  const Kind kind;
  const dev_t backing_dev;
  const ino_t backing_ino;
  // Unique for the daemon's life, set at construction (id comes later): the
  // key of the inode in the descriptor and idle-file caches.
  const uint64_t serial;
  // How to open the backing entry: O_RDONLY|O_DIRECTORY for directories and
  // files, O_PATH|O_NOFOLLOW for symlinks. Either descriptor follows its
  // entry through renames and into the trash. Filesystem::Descriptor hands
  // it out: from `pinned_fd` while the inode has one (the root, a backing
  // filesystem without file handles), otherwise from the descriptor cache,
  // opening `handle` again when it was evicted. Both are set before the
  // inode is shared, and never change after.
  std::shared_ptr<const hpfile::Fd> pinned_fd;
  std::optional<BackingHandle> handle;
  int OpenFlags() const { return kind == Kind::kSymlink ? (O_PATH | O_NOFOLLOW) : (O_RDONLY | O_DIRECTORY); }

  // Guarded by InodeTable's mutex.
  uint64_t lookups = 0;

  mutable std::mutex mu;
  // Files only; reset once the backing directory is deleted, and while the
  // file is evicted. Guarded by mu.
  std::shared_ptr<hpfile::HPFile> file;
  // Files made by Create: its number among the mount's creates, whose name
  // and meta are durable once Filesystem::MakeCreatesDurable covered it
  // (0: not created by this mount). Set before the inode is shared.
  uint64_t create_seq = 0;
  // mu: the HPFile is closed: to keep the daemon within max_open_files
  // (fs/descriptor_cache.h), or not opened yet since the lookup, which
  // answered from the backing directory (fs/closed_file_stat.h);
  // Filesystem::FileOf opens it.
  bool evicted = false;
  // mu: the file's stat when it was evicted, which a stat answers with
  // instead of opening it again: nothing changes a closed file but a request
  // that opens it (Filesystem::FileOf), and those without a handle drop this
  // after their change.
  mutable std::optional<KeptStat> evicted_stat;
  // Files of a tiered mount: the TieredFile over `file` (fs/tiering.h), set
  // and reset with it. Guarded by mu.
  std::shared_ptr<hpfile::TieredFile> tiered;
  int open_handles = 0;     // mu
  bool unlinked = false;    // mu: no longer has a name in the mount
  std::string trash_name;   // mu: its name in the trash while unlinked but not deleted
  // mu: the kernel dropped its last lookup. Until then it may still open the
  // inode (a path walk that resolved the name before an unlink or a rename
  // over it), so an unlinked file's HPFile stays open while either holds it.
  bool forgotten = false;
  // Files: st_blocks of sealed segments, which never change once sealed
  // (the first segment, which a prune punches, is never taken from here).
  // Made for files of three segments or more (null before).
  mutable std::unique_ptr<std::map<std::string, blkcnt_t>> sealed_blocks;  // mu

  // Held across size changes whose checks span several HPFile calls (O_TRUNC,
  // a setattr of the size, fallocate), and guards the write-back queue; in
  // write-back mode also across every write, since the queue compares and
  // then appends. A write-through write takes none: HPFile::AppendAt orders
  // it by itself.
  std::mutex write_mu;
  // Write-back mode: writes that came before the bytes in front of them.
  // Files of a write-back mount only (null otherwise: most inodes never
  // write back, and the queue is most of an idle inode's size); set before
  // the inode is shared. Its contents are guarded by write_mu.
  std::unique_ptr<WritebackQueue> writeback_queue;
  WritebackQueue& writeback() const { return *writeback_queue; }
  // Where held writes or a pending grow end (0: none); read without write_mu.
  uint64_t WritebackEnd() const {
    if (!writeback_queue) return 0;
    return std::max(writeback_queue->grow_to.load(std::memory_order_relaxed),
                    writeback_queue->held_end.load(std::memory_order_relaxed));
  }
  // Write-back mode: open handles that write through the page cache; while
  // there are none the kernel holds no dirty page of the file.
  std::atomic<int> cached_writers{0};

  static inline std::atomic<uint64_t> next_serial{1};

  // The HPFile if it is open (held by a handle, or not yet evicted); file
  // requests through a handle use this, others Filesystem::FileOf.
  std::shared_ptr<hpfile::HPFile> File() const {
    std::lock_guard lock(mu);
    return file;
  }
  std::shared_ptr<hpfile::TieredFile> Tiered() const {
    std::lock_guard lock(mu);
    return tiered;
  }
};

class InodeTable {
 public:
  InodeTable() = default;
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // The inode with this id, or nullptr.
  std::shared_ptr<Inode> Get(InodeId id) const;
  // The live inode of a backing entry, or nullptr.
  std::shared_ptr<Inode> FindByBacking(dev_t dev, ino_t ino) const;
  // The live inode of a backing entry with one lookup added, or nullptr.
  std::shared_ptr<Inode> AcquireByBacking(dev_t dev, ino_t ino);
  // Adds `inode` with one lookup and returns it, or, when the backing entry is
  // already known, adds one lookup to that inode and returns it instead.
  // `id` forces the id (the root); 0 assigns the next one.
  std::shared_ptr<Inode> Insert(std::shared_ptr<Inode> inode, InodeId id = 0);
  // Adds one lookup to a known inode (a reply that hands it to the kernel again).
  void AddLookup(Inode& inode);
  // Drops `n` lookups. When none remain the inode leaves the table and is
  // returned, so the caller can release what it holds; otherwise nullptr.
  std::shared_ptr<Inode> Forget(InodeId id, uint64_t n);
  // Detaches the inode from its backing entry (it was deleted or moved to the
  // trash), so a new entry that reuses the backing inode number gets a new id.
  void Unbind(const Inode& inode);
  uint64_t Lookups(InodeId id) const;
  size_t size() const;
  // Every inode currently known (for shutdown sync and retention).
  std::vector<std::shared_ptr<Inode>> Snapshot() const;

 private:
  struct BackingKey {
    dev_t dev;
    ino_t ino;
    friend bool operator==(const BackingKey&, const BackingKey&) = default;
  };
  struct BackingKeyHash {
    size_t operator()(const BackingKey& key) const {
      return std::hash<uint64_t>()(static_cast<uint64_t>(key.ino) * 31 + static_cast<uint64_t>(key.dev));
    }
  };

  mutable std::mutex mu_;
  InodeId next_id_ = kRootInode + 1;
  std::unordered_map<InodeId, std::shared_ptr<Inode>> by_id_;
  std::unordered_map<BackingKey, InodeId, BackingKeyHash> by_backing_;
};

}  // namespace hpfs
