// SPDX-License-Identifier: Apache-2.0
// Deletes entries of the trash (.hpfs-trash: files unlinked or replaced, and
// pruned segments) on a thread of its own, so that `rm` of a file with a
// million segments returns as soon as the file has left its name, and the
// last close of an unlinked file does not hold a request thread for the
// deletion either. The same thread deletes the segment files a head prune
// (or retention) dropped (HPFile::DeletePrunedSegments), and does the punch
// a head prune leaves inside a file's oldest remaining segment
// (HPFile::PunchBelowHead).
//
// A trash entry can be reached by nobody once it is queued here, so deleting
// it late is never wrong: whatever is left when the daemon dies is deleted by
// the next mount (Filesystem::Open queues every leftover entry).
//
// Thread-safety: all methods may be called from any number of threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/hpfile.h"
#include "fs/inode_table.h"

namespace hpfs {

class TrashDeleter {
 public:
  // `trash_fd` is the open trash directory; it must outlive this object.
  explicit TrashDeleter(int trash_fd);
  // Finishes every queued deletion when started, then joins the thread.
  // Unstarted, it leaves the queued entries in the trash.
  ~TrashDeleter();
  TrashDeleter(const TrashDeleter&) = delete;
  TrashDeleter& operator=(const TrashDeleter&) = delete;

  // Starts the deleting thread. Until then deletions only queue up: the
  // daemon opens its filesystem before it forks into the background, and a
  // thread does not survive the fork. Later calls do nothing.
  void Start();
  // Called on the deleting thread after it deleted pruned segments of a
  // file: its size on disk fell, which the kernel's cached attributes do not
  // know. Set before Start.
  void SetOnPrunedDeleted(std::function<void(const Inode&)> deleted);
  // Asked before a trash entry is deleted: true takes the entry over (the
  // callee deletes it later, as tiered storage does once a file's objects
  // are gone), and the deleter leaves it. Set before Start.
  void SetTakeOver(std::function<bool(const std::string& name)> take);

  // Queues the deletion of trash entry `name`. `file`, when set, is the
  // entry's HPFile, closed (its last reference dropped) first, off the
  // request path too; `inode` keeps the descriptor alive that the HPFile
  // names its directory through until then.
  void Enqueue(std::string name, std::shared_ptr<hpfile::HPFile> file = nullptr,
               std::shared_ptr<const Inode> inode = nullptr);

  // Queues file->PunchBelowHead(), then the deletion of the file's pruned
  // segments, after the deletions queued before it; `inode` as for Enqueue.
  // A punch that fails is logged; the next prune of the file punches the
  // same range again.
  void EnqueueHeadPunch(std::shared_ptr<hpfile::HPFile> file, std::shared_ptr<const Inode> inode);
  // Queues the deletion of the file's pruned segments alone (when an open
  // found some a previous run left). They go in batches of kPrunedBatch,
  // each a short turn of the file's lock for them; a failure is logged and
  // the rest waits for the next prune or open. A stopping deleter leaves
  // what remains to the file's next open.
  void EnqueuePrunedDeletion(std::shared_ptr<hpfile::HPFile> file, std::shared_ptr<const Inode> inode);
  // The same for the file of `inode` if it is still open when its turn
  // comes (after retention): the queue keeps no file open.
  void EnqueuePrunedDeletion(std::weak_ptr<const Inode> inode);
  // Deletes `file`'s pruned segments on the calling thread, as a queued
  // deletion does (a background thread's, never a request's).
  void DeletePrunedNow(hpfile::HPFile& file);
  static constexpr uint64_t kPrunedBatch = 256;

  // Returns once every deletion queued before the call is done (or failed
  // and was logged). Unstarted, it does the queued deletions itself.
  void Wait();

  // Deletions queued and not yet done.
  size_t Pending() const;

 private:
  struct Item {
    std::string name;
    // Declared before `file` so that it is destroyed after it.
    std::shared_ptr<const Inode> inode;
    std::shared_ptr<hpfile::HPFile> file;
    enum class Kind { kTrashEntry, kHeadPunch, kPruned } kind = Kind::kTrashEntry;
    std::weak_ptr<const Inode> weak_inode;  // kPruned without `file`
  };
  void EnqueueFileItem(Item::Kind kind, std::shared_ptr<hpfile::HPFile> file, std::shared_ptr<const Inode> inode);
  std::function<void(const Inode&)> on_pruned_deleted_;
  std::function<bool(const std::string&)> take_over_;


  void Run();
  void Delete(Item& item);
  // Takes the next item and deletes it; false when the queue is empty.
  bool DeleteOne(std::unique_lock<std::mutex>& lock);

  const int trash_fd_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // queue_ gained an item, or stop_
  std::condition_variable done_cv_;  // done_ moved
  std::deque<Item> queue_;           // mu_
  uint64_t queued_ = 0;              // mu_: items ever queued
  uint64_t done_ = 0;                // mu_: items ever finished
  bool stop_ = false;                // mu_
  std::thread thread_;               // joinable once started
};

}  // namespace hpfs
