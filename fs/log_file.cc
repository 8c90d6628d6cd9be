// SPDX-License-Identifier: Apache-2.0
#include "fs/log_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hpfs {

hpfile::Result<std::shared_ptr<LogFileSink>> LogFileSink::Open(const std::string& path) {
  auto fd = hpfile::Fd::Open(hpfile::PosixIo::Default(), path, O_WRONLY | O_APPEND | O_CREAT, 0640);
  if (!fd) return std::unexpected(fd.error());
  return std::shared_ptr<LogFileSink>(new LogFileSink(path, std::move(*fd)));
}

hpfile::Result<void> LogFileSink::Reopen() {
  auto fd = hpfile::Fd::Open(hpfile::PosixIo::Default(), path_, O_WRONLY | O_APPEND | O_CREAT, 0640);
  if (!fd) return std::unexpected(fd.error());
  std::lock_guard lock(mutex_);
  fd_ = std::move(*fd);
  return {};
}

void LogFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  // One write(2) per line: O_APPEND keeps a whole line together only if it
  // is written at once. A short write of a log line (a full disk) loses its
  // rest; there is nowhere to report that.
  const char* data = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_.get(), data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    left -= static_cast<size_t>(n);
  }
}

sem_t HangupHandler::hangups_;

HangupHandler::HangupHandler() { sem_init(&hangups_, 0, 0); }

HangupHandler::~HangupHandler() { Stop(); }

void HangupHandler::OnSignal(int) {
  const int saved = errno;
  sem_post(&hangups_);  // async-signal-safe
  errno = saved;
}

hpfile::Result<void> HangupHandler::Install() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGHUP, &sa, nullptr) != 0) return hpfile::Errno(errno);
  return {};
}

void HangupHandler::Start(std::function<void()> on_hangup) {
  stop_ = false;
  thread_ = std::thread([this, on_hangup = std::move(on_hangup)] {
    for (;;) {
      if (sem_wait(&hangups_) != 0) continue;  // EINTR
      if (stop_) return;
      on_hangup();
    }
  });
}

void HangupHandler::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  sem_post(&hangups_);
  thread_.join();
}

}  // namespace hpfs
