// SPDX-License-Identifier: Apache-2.0
#include "fs/graceful_stop.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include "fs/commit_thread.h"

namespace hpfs {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Only there to interrupt the loop thread's wait (no SA_RESTART), so that it
// sees the session has exited.
constexpr int kWakeSignal = SIGUSR2;
void OnWake(int) {}

}  // namespace

void GracefulStop::BlockStopSignals() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

GracefulStop::GracefulStop(fuse_session* session, std::string mountpoint)
    : session_(session), mountpoint_(std::move(mountpoint)), loop_thread_(pthread_self()) {
  struct sigaction wake {};
  wake.sa_handler = OnWake;
  sigemptyset(&wake.sa_mask);
  sigaction(kWakeSignal, &wake, nullptr);
  thread_ = std::thread([this] { WaitForSignal(); });
}

void GracefulStop::WaitForSignal() {
  const sigset_t set = StopSignals();
  int signo = 0;
  if (sigwait(&set, &signo) != 0) return;
  {
    std::lock_guard lock(mu_);
    if (loop_ended_) return;  // the destructor's own wake-up
  }
  spdlog::info("{}: writing back the appends the kernel still holds, then unmounting", ::strsignal(signo));
  const int fd = ::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // (A SIGKILL may come while it waits: commit_thread.h.)
  if (const int error = fd < 0 ? errno : SyncfsOutsideTheDaemon(fd); error != 0) {
    spdlog::error("write-back before unmounting {} failed: {}", mountpoint_, std::strerror(error));
  }
  if (fd >= 0) ::close(fd);
  fuse_session_exit(session_);
  // Until the loop has noticed: a wake-up that lands just before the loop
  // thread starts waiting would be missed.
  std::unique_lock lock(mu_);
  while (!loop_ended_) {
    pthread_kill(loop_thread_, kWakeSignal);
    loop_ended_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

GracefulStop::~GracefulStop() {
  {
    std::lock_guard lock(mu_);
    loop_ended_ = true;
  }
  loop_ended_cv_.notify_all();
  // Blocked in sigwait when no signal came: this one ends it.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

}  // namespace hpfs
