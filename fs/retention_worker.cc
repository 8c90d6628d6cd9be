// SPDX-License-Identifier: Apache-2.0
#include "fs/retention_worker.h"

#include <sys/stat.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "fs/filesystem.h"

namespace hpfs {

RetentionWorker::~RetentionWorker() { Stop(); }

void RetentionWorker::Post(std::weak_ptr<Inode> inode, const hpfile::RetentionResult& result) {
  {
    std::lock_guard lock(mu_);
    events_.emplace_back(std::move(inode), result);
  }
  cv_.notify_all();
}

std::vector<RetentionWorker::Event> RetentionWorker::TakeEvents() {
  std::vector<Event> events;
  std::lock_guard lock(mu_);
  events.swap(events_);
  return events;
}

void RetentionWorker::Start(std::chrono::milliseconds interval, std::function<void()> pass,
                            std::function<void()> drain) {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this, interval, pass = std::move(pass), drain = std::move(drain)] {
    Run(interval, pass, drain);
  });
}

void RetentionWorker::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

void RetentionWorker::Run(std::chrono::milliseconds interval, const std::function<void()>& pass,
                          const std::function<void()>& drain) {
  std::unique_lock lock(mu_);
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    if (std::chrono::steady_clock::now() >= next) {
      lock.unlock();
      pass();
      lock.lock();
      next = std::chrono::steady_clock::now() + interval;
    } else if (!events_.empty()) {
      lock.unlock();
      drain();
      lock.lock();
    } else {
      cv_.wait_until(lock, next, [this] { return stop_ || !events_.empty(); });
    }
  }
}

Result<hpfile::Fd> StoreWalk::OpenDir(const std::string& rel) const {
  auto dir = OpenAt(root_fd_, ".", O_RDONLY | O_DIRECTORY);
  if (!dir) return dir;
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

StoreWalk::Step StoreWalk::Walk(size_t max_entries, const std::function<void(const std::string& rel)>& visit_file) {
  Step step;
  std::lock_guard lock(mu_);
  while (step.entries_walked < max_entries) {
    if (!files_.empty()) {
      const std::string rel = std::move(files_.front());
      files_.pop_front();
      ++step.entries_walked;
      visit_file(rel);
    } else if (!dirs_.empty()) {
      const std::string rel = std::move(dirs_.front());
      dirs_.pop_front();
      ++step.entries_walked;
      List(rel);
    } else if (step.entries_walked > 0) {
      // The end of a round; the next call starts the next one.
      step.round_complete = true;
      break;
    } else {
      dirs_.push_back("");
    }
  }
  return step;
}

namespace {

// What the walk makes of a failure at `rel`: an entry removed since it was
// listed is the store changing under the walk, anything else is worth a look.
void LogWalkFailure(const std::string& rel, std::string_view what, const std::error_code& error) {
  const auto level = hpfile::IsErrno(error, ENOENT) ? spdlog::level::debug : spdlog::level::warn;
  spdlog::log(level, "retention walk: '{}': cannot {}: {}", rel.empty() ? "." : rel, what, error.message());
}

}  // namespace

void StoreWalk::List(const std::string& rel) {
  auto dir_fd = OpenDir(rel);
  if (!dir_fd) return LogWalkFailure(rel, "open", dir_fd.error());
  auto entries = ListEntries(dir_fd->get());
  if (!entries) return LogWalkFailure(rel, "list", entries.error());
  // Sorted, so a pass that stops midway and the next one see the same order.
  std::sort(entries->begin(), entries->end(),
            [](const ListedEntry& a, const ListedEntry& b) { return a.name < b.name; });
  for (const auto& entry : *entries) {
    if (Filesystem::HiddenIn(rel.empty(), entry.name)) continue;
    if (entry.type != DT_DIR && entry.type != DT_UNKNOWN) continue;
    const std::string child = rel.empty() ? entry.name : rel + "/" + entry.name;
    auto type = EntryType(dir_fd->get(), entry);
    if (!type) {
      LogWalkFailure(child, "stat", type.error());
      continue;
    }
    if (*type != DT_DIR) continue;
    auto is_file = IsHPFileDir(dir_fd->get(), entry.name);
    if (!is_file) {
      LogWalkFailure(child, "classify", is_file.error());
      continue;
    }
    (*is_file ? files_ : dirs_).push_back(child);
  }
}

}  // namespace hpfs
