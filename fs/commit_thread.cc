// SPDX-License-Identifier: Apache-2.0
#include "fs/commit_thread.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/io.h"

namespace hpfs {

// Why a child: commit_thread.h.
int SyncfsOutsideTheDaemon(int fd) {
  const pid_t pid = ::vfork();
  if (pid == 0) {
    // Only system calls here: the child shares the parent's memory.
    if (fd > 0) ::close_range(0, static_cast<unsigned>(fd) - 1, 0);
    ::close_range(static_cast<unsigned>(fd) + 1, ~0U, 0);
    ::_exit(::syncfs(fd) == 0 ? 0 : (errno & 0xff));
  }
  if (pid < 0) return errno;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno;
  }
  if (!WIFEXITED(status)) return EINTR;
  return WEXITSTATUS(status);
}

CommitThread::CommitThread(Filesystem& fs, std::string mountpoint, std::chrono::seconds interval,
                           std::function<bool()> has_dirty)
    : fs_(fs), mountpoint_(std::move(mountpoint)), interval_(interval), has_dirty_(std::move(has_dirty)) {
  fs_.SetCommitRequester([this] { Request(); });
  thread_ = std::thread([this] { Loop(); });
}

CommitThread::~CommitThread() {
  fs_.SetCommitRequester(nullptr);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CommitThread::Request() {
  {
    std::lock_guard lock(mu_);
    requested_ = true;
  }
  cv_.notify_all();
}

void CommitThread::CommitNow() {
  std::lock_guard commit(commit_mu_);
  const uint64_t number = fs_.BeginCommit();
  // Opened for each commit: a descriptor held on the mount would make a
  // plain umount fail with EBUSY.
  auto fd = hpfile::Fd::Open(hpfile::PosixIo::Default(), mountpoint_, O_RDONLY | O_DIRECTORY);
  if (!fd) {
    spdlog::warn("commit: cannot open the mount {}: {}", mountpoint_, fd.error().message());
    return;
  }
  // Errors of the write-back itself reach the writers (fsync, close); a
  // failing syncfs here only means this commit did not happen.
  if (const int error = SyncfsOutsideTheDaemon(fd->get()); error != 0) {
    spdlog::debug("commit: syncfs of {}: {}", mountpoint_, std::strerror(error));
  }
  if (fs_.FinishCommit(number)) Request();
}

void CommitThread::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto woken = [this] { return stop_ || requested_; };
    if (interval_.count() == 0) {
      cv_.wait(lock, woken);
    } else {
      cv_.wait_for(lock, interval_, woken);
    }
    if (stop_) break;
    const bool requested = requested_;
    requested_ = false;
    lock.unlock();
    if (requested || has_dirty_()) CommitNow();
    lock.lock();
  }
}

}  // namespace hpfs
