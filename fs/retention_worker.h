// SPDX-License-Identifier: Apache-2.0
// The retention thread and its walk of the store, kept apart from the
// Filesystem that decides what one enforcement does.
//
// RetentionWorker runs a pass every interval on a thread of its own, and in
// between hands the enforcements files report (a segment roll prunes inside
// a write request of that very file) to a drain callback, so the kernel's
// cache of what they dropped is invalidated outside that request. Like the
// TrashDeleter it starts only once the daemon runs in the background.
//
// StoreWalk is where the walk of the backing store stands between passes: a
// queue of directories still to list and of HPFiles still to visit, so a
// large store costs a bounded amount per pass and every file is reached in
// turn. Every failure to open or list a directory is logged.
//
// Thread-safety: all methods may be called from any number of threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/hpfile.h"
#include "fs/backing_dir.h"
#include "fs/inode_table.h"

namespace hpfs {

class RetentionWorker {
 public:
  using Event = std::pair<std::weak_ptr<Inode>, hpfile::RetentionResult>;

  RetentionWorker() = default;
  // Stops and joins the thread.
  ~RetentionWorker();
  RetentionWorker(const RetentionWorker&) = delete;
  RetentionWorker& operator=(const RetentionWorker&) = delete;

  // Queues an enforcement that dropped bytes, and wakes the thread.
  void Post(std::weak_ptr<Inode> inode, const hpfile::RetentionResult& result);
  // The enforcements queued so far, oldest first; the queue is left empty.
  std::vector<Event> TakeEvents();

  // Starts the thread: `pass` every `interval`, `drain` as soon as an event
  // is queued. Later calls do nothing while it runs.
  void Start(std::chrono::milliseconds interval, std::function<void()> pass, std::function<void()> drain);
  // Stops and joins the thread; Start may run it again.
  void Stop();

 private:
  void Run(std::chrono::milliseconds interval, const std::function<void()>& pass,
           const std::function<void()>& drain);

  std::mutex mu_;
  std::condition_variable cv_;  // an event was queued, or stop_
  std::vector<Event> events_;   // mu_
  bool stop_ = false;           // mu_
  std::thread thread_;
};

class StoreWalk {
 public:
  // `root_fd` is BACKING; it must outlive this object.
  explicit StoreWalk(int root_fd) : root_fd_(root_fd) {}

  struct Step {
    size_t entries_walked = 0;     // directories listed and files visited
    bool round_complete = false;   // the walk reached the end of the store
  };
  // Goes on where the previous call stopped: lists directories and calls
  // `visit_file` with the path (relative to BACKING) of each HPFile, at most
  // `max_entries` of the two together. A call that finds the queue empty
  // starts a new round at BACKING. One walker at a time: calls serialize.
  Step Walk(size_t max_entries, const std::function<void(const std::string& rel)>& visit_file);

  // Opens directory `rel` (relative to BACKING, "" for BACKING itself)
  // without following symlinks, so that the walk stays inside BACKING.
  [[nodiscard]] Result<hpfile::Fd> OpenDir(const std::string& rel) const;

 private:
  // Queues the visible directories and HPFiles of directory `rel`.
  void List(const std::string& rel);

  const int root_fd_;
  std::mutex mu_;
  std::deque<std::string> dirs_;   // mu_
  std::deque<std::string> files_;  // mu_
};

}  // namespace hpfs
