// SPDX-License-Identifier: Apache-2.0
// The daemon's log file (-o log_file=PATH) and its rotation. logrotate
// renames the file and sends SIGHUP; the daemon then opens PATH again, so
// messages go on in the new file and the old one can be compressed.
#pragma once

#include <semaphore.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <spdlog/sinks/base_sink.h>

#include "core/io.h"
#include "core/result.h"

namespace hpfs {

// An spdlog sink appending each message with one write(2) to a file opened
// O_APPEND, so lines from several writers never interleave. Thread-safe.
class LogFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Opens `path` for appending, creating it (mode 0640) if missing. EACCES,
  // ENOENT (no such directory), EISDIR...
  [[nodiscard]] static hpfile::Result<std::shared_ptr<LogFileSink>> Open(const std::string& path);
  const std::string& path() const { return path_; }
  // Closes the file and opens the path again. On failure the old file stays
  // in use (a message lost to nowhere is worse than one in the rotated file).
  [[nodiscard]] hpfile::Result<void> Reopen();

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}

 private:
  LogFileSink(std::string path, hpfile::Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  const std::string path_;
  hpfile::Fd fd_;  // base_sink's mutex
};

// Makes SIGHUP run `on_hangup` on a thread of its own (a signal handler may
// do next to nothing), instead of ending the process as libfuse's handler
// does. Install replaces the handler at once, so a SIGHUP that arrives before
// Start is remembered and handled then; Start comes after fuse_daemonize,
// whose fork a thread would not survive. One instance per process.
class HangupHandler {
 public:
  HangupHandler();
  ~HangupHandler();  // Stop()s
  HangupHandler(const HangupHandler&) = delete;
  HangupHandler& operator=(const HangupHandler&) = delete;

  // sigaction(SIGHUP). Returns errno on failure.
  [[nodiscard]] hpfile::Result<void> Install();
  void Start(std::function<void()> on_hangup);
  // Joins the thread; SIGHUPs after it are remembered and otherwise ignored.
  void Stop();

 private:
  static void OnSignal(int);

  static sem_t hangups_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hpfs
