// SPDX-License-Identifier: Apache-2.0
// A clean stop in write-back mode. The kernel holds acknowledged appends in
// its page cache, and when the daemon's loop ends it drops whatever it has
// not sent yet. So SIGTERM and SIGINT do not end the loop at once: a thread of
// their own first has the kernel write every dirty page back (a syncfs of the
// mount, which the loop, still running, serves), and only then ends the loop.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

struct fuse_session;

namespace hpfs {

class GracefulStop {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread, and so in every thread
  // started after it: call it before any thread exists.
  static void BlockStopSignals();

  // Starts the thread that waits for SIGTERM or SIGINT. Call it on the
  // thread that then runs the session loop.
  GracefulStop(fuse_session* session, std::string mountpoint);
  // Once the loop has returned: ends the thread, signal or not.
  ~GracefulStop();
  GracefulStop(const GracefulStop&) = delete;
  GracefulStop& operator=(const GracefulStop&) = delete;

 private:
  void WaitForSignal();

  fuse_session* const session_;
  const std::string mountpoint_;
  const pthread_t loop_thread_;
  std::mutex mu_;
  std::condition_variable loop_ended_cv_;
  bool loop_ended_ = false;  // mu_
  std::thread thread_;
};

}  // namespace hpfs
