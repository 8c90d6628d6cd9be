// SPDX-License-Identifier: Apache-2.0
// Mount-test harness: runs the hpfs daemon in the foreground as a child on a
// scratch backing directory, waits for the mount to appear, runs shell
// commands with timeouts, and always takes the mount down again, also when a
// test fails, times out or the test binary is killed by the test runner.
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace hpfs::mount_test {

// Polls `done` until it holds or `timeout` passes, for effects that have no
// event to wait on: a release the kernel sends after the last close, the
// work of a daemon's thread, a line in a log.
template <class Predicate>
bool Eventually(Predicate&& done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// What `path` holds; empty when it cannot be read.
std::string ReadFile(const std::string& path);
// The segment files (*.seg) in the backing directory `dir` of one file.
size_t SegmentFiles(const std::string& dir);

// The daemon under test ($HPFS_BIN, set by meson).
std::string DaemonPath();
// hpfsctl under test ($HPFSCTL_BIN, set by meson).
std::string CtlPath();

// `key=value` lines (hpfsctl stat's output) into a map; a later key
// overwrites an earlier one.
std::map<std::string, std::string> KeyValues(const std::string& text);

struct ShellResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string output;  // stdout and stderr together
};

// Runs `script` with bash -c, killing its process group after `timeout`.
ShellResult Shell(const std::string& script, std::chrono::seconds timeout = std::chrono::seconds(120));

// `script` run with bash -c in the background (its own process group), for
// a reader that follows a file while the test goes on (`tail -f`). Its
// output goes to a file, not a pipe, so it never blocks on a full pipe.
// Killed with its group by Stop or the destructor, and by the kernel when
// the test process dies.
class BackgroundShell {
 public:
  BackgroundShell(const std::string& script, const std::string& output_path);
  ~BackgroundShell();  // Stop()s
  BackgroundShell(const BackgroundShell&) = delete;
  BackgroundShell& operator=(const BackgroundShell&) = delete;
  bool running() const { return pid_ > 0; }
  // SIGKILLs the group and reaps the shell; idempotent.
  void Stop();

 private:
  pid_t pid_ = -1;
};

// A fresh directory under /tmp, removed (after any mount in it is gone) on
// destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool IsMountPoint(const std::string& path);

// True when the tests run with -o writeback ($HPFS_MOUNT_OPTIONS): errors of
// buffered appends then show at fsync and close rather than at write(2).
bool WritebackMode();

// One daemon serving `backing` at `mountpoint`.
class Daemon {
 public:
  Daemon(std::string backing, std::string mountpoint, std::string log_path);
  ~Daemon();  // Stop()s
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts `hpfs -f [extra...] BACKING MOUNTPOINT` and waits until the mount
  // shows in /proc/self/mountinfo. False (with the reason in `error`) when the
  // daemon exits first or the mount does not appear within the timeout.
  bool Start(const std::vector<std::string>& extra, std::string* error);
  // Unmounts with fusermount3 -u (falling back to a lazy unmount), also when
  // the daemon already died, and reaps the daemon, killing it if it does not
  // exit. Returns its wait status, or -1 if it had to be killed or was gone.
  int Stop();
  // Waits up to `timeout` for the daemon to exit by itself; returns its wait
  // status or -1.
  int WaitExit(std::chrono::seconds timeout);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  std::string Log() const;

 private:
  void Register();
  void Unregister();

  const std::string backing_;
  const std::string mountpoint_;
  const std::string log_path_;
  pid_t pid_ = -1;
};

// Runs the daemon once to completion (for option errors): returns the exit
// status and what it printed.
ShellResult RunDaemonToExit(const std::vector<std::string>& args, std::chrono::seconds timeout);

// A size-limited tmpfs mounted over `path` (an existing directory), for
// drills that need a backing filesystem that fills up. Unmounted (lazily) on
// destruction, and also when the test binary is stopped by the test runner.
class TmpfsMount {
 public:
  // `size` as mount(8) takes it ("4m"). Check ok() after construction.
  TmpfsMount(std::string path, const std::string& size);
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  bool ok_ = false;
  std::string error_;
};


// A test that owns a scratch directory with a backing dir and a mount point,
// and mounts hpfs over them on request. The daemon is stopped and the mount
// removed in teardown, also when the test failed.
class MountedTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Mounts with 1 MiB segments unless told otherwise, so that tests of a few
  // MiB cross segment boundaries.
  void Mount(std::vector<std::string> options = {"-o", "segment_size=1M"});
  // Stops the daemon with SIGTERM; it must exit 0 and leave no mount behind.
  void Unmount();
  // Runs `script` in the mount point under `set -e -o pipefail`.
  ShellResult Run(const std::string& script, std::chrono::seconds timeout = std::chrono::seconds(120));

  std::string M(const std::string& name) const { return mnt_ + "/" + name; }
  std::string B(const std::string& name) const { return backing_ + "/" + name; }
  std::string S(const std::string& name) const { return scratch_.path() + "/" + name; }
  // A copy of hpfsctl in the scratch directory (mode 0755), for commands run
  // as another user: the build directory may lie under a directory only its
  // owner can enter (a checkout made in `mktemp -d`). That user reaches it
  // once the scratch directory is 0755.
  std::string CtlForOtherUsers();

  ScratchDir scratch_;
  std::string backing_;
  std::string mnt_;
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace hpfs::mount_test
