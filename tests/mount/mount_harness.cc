// SPDX-License-Identifier: Apache-2.0
#include "tests/mount/mount_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace hpfs::mount_test {
namespace {

using Clock = std::chrono::steady_clock;

// The mount that a runner's SIGTERM (a test timeout) must not leave behind.
// Written only by the main thread; read by the signal handler.
volatile sig_atomic_t g_daemon_pid = -1;
char g_mountpoint[PATH_MAX];
// The scratch directory of the running test, removed too (it may hold large files).
char g_scratch[PATH_MAX];
// A tmpfs a drill mounted (TmpfsMount), unmounted before the scratch is removed.
char g_tmpfs[PATH_MAX];

void RunDetached(const char* const argv[]) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  if (pid > 0) ::waitpid(pid, nullptr, 0);
}

void OnTerminate(int sig) {
  // Only async-signal-safe calls: fork, exec, kill, waitpid, _exit.
  if (g_daemon_pid > 0) {
    ::kill(g_daemon_pid, SIGKILL);
    const char* argv[] = {"fusermount3", "-uz", g_mountpoint, nullptr};
    RunDetached(argv);
  }
  if (g_tmpfs[0] != '\0') {
    const char* argv[] = {"umount", "-l", g_tmpfs, nullptr};
    RunDetached(argv);
  }
  if (g_scratch[0] != '\0') {
    const char* argv[] = {"rm", "-rf", g_scratch, nullptr};
    RunDetached(argv);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

struct InstallHandlers {
  InstallHandlers() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnTerminate;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
  }
};
InstallHandlers install_handlers;

int WaitPidFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    if (Clock::now() >= deadline) return INT_MIN;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t SegmentFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".seg") ++n;
  }
  return n;
}

std::string DaemonPath() {
  const char* bin = std::getenv("HPFS_BIN");
  return bin != nullptr ? bin : "hpfs";
}

std::string CtlPath() {
  const char* bin = std::getenv("HPFSCTL_BIN");
  return bin != nullptr ? bin : "hpfsctl";
}

std::map<std::string, std::string> KeyValues(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

BackgroundShell::BackgroundShell(const std::string& script, const std::string& output_path) {
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    const int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || ::dup2(out, 1) < 0) ::_exit(127);
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 2);
    }
    ::execl("/bin/bash", "bash", "-c", script.c_str(), nullptr);
    ::_exit(127);
  }
  // Also here, so that a Stop right after the fork reaches the group.
  if (pid_ > 0) ::setpgid(pid_, pid_);
}

BackgroundShell::~BackgroundShell() { Stop(); }

void BackgroundShell::Stop() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

ShellResult Shell(const std::string& script, std::chrono::seconds timeout) {
  ShellResult result;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return result;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    ::execl("/bin/bash", "bash", "-c", script.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    return result;
  }
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    pollfd p{pipe_fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n > 0) {
      result.output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  // Background jobs of the script must not outlive it.
  ::kill(-pid, SIGKILL);
  if (!result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

ScratchDir::ScratchDir() {
  char pattern[] = "/tmp/hpfs-mount-test-XXXXXX";
  const char* made = ::mkdtemp(pattern);
  if (made == nullptr) std::abort();
  path_ = made;
  std::snprintf(g_scratch, sizeof g_scratch, "%s", path_.c_str());
}

ScratchDir::~ScratchDir() {
  g_scratch[0] = '\0';
  // Never recurse into a live mount.
  for (const auto& entry : std::filesystem::directory_iterator(path_)) {
    if (IsMountPoint(entry.path())) {
      Shell("fusermount3 -uz '" + entry.path().string() + "'", std::chrono::seconds(10));
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point == path) return true;
  }
  return false;
}

Daemon::Daemon(std::string backing, std::string mountpoint, std::string log_path)
    : backing_(std::move(backing)), mountpoint_(std::move(mountpoint)), log_path_(std::move(log_path)) {}

Daemon::~Daemon() { Stop(); }

void Daemon::Register() {
  std::snprintf(g_mountpoint, sizeof g_mountpoint, "%s", mountpoint_.c_str());
  g_daemon_pid = pid_;
}

void Daemon::Unregister() { g_daemon_pid = -1; }

bool Daemon::Start(const std::vector<std::string>& extra, std::string* error) {
  std::vector<std::string> args = {DaemonPath(), "-f"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(backing_);
  args.push_back(mountpoint_);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // A daemon whose test binary died must not keep serving.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (pid < 0) {
    *error = std::strerror(errno);
    return false;
  }
  pid_ = pid;
  Register();
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline) {
    if (IsMountPoint(mountpoint_)) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      Unregister();
      *error = "daemon exited before mounting (status " + std::to_string(status) + "): " + Log();
      return false;
    }
    // There is no event for "mounted"; mountinfo has to be polled.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *error = "mount did not appear within 15s: " + Log();
  Stop();
  return false;
}

int Daemon::WaitExit(std::chrono::seconds timeout) {
  if (!running()) return -1;
  const int status = WaitPidFor(pid_, timeout);
  if (status == INT_MIN) return -1;
  pid_ = -1;
  Unregister();
  return status;
}

int Daemon::Stop() {
  // A daemon that died (SIGKILL) leaves its mount behind: take that down too.
  if (IsMountPoint(mountpoint_)) {
    auto r = Shell("fusermount3 -u '" + mountpoint_ + "'", std::chrono::seconds(20));
    if (r.exit_code != 0) Shell("fusermount3 -uz '" + mountpoint_ + "'", std::chrono::seconds(20));
  }
  int status = -1;
  if (running()) {
    status = WaitPidFor(pid_, std::chrono::seconds(20));
    if (status == INT_MIN) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      status = -1;
    }
    pid_ = -1;
    Unregister();
  }
  if (IsMountPoint(mountpoint_)) Shell("fusermount3 -uz '" + mountpoint_ + "'", std::chrono::seconds(20));
  return status;
}

std::string Daemon::Log() const { return ReadFile(log_path_); }

ShellResult RunDaemonToExit(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::string script = "exec '" + DaemonPath() + "'";
  for (const auto& a : args) script += " '" + a + "'";
  return Shell(script, timeout);
}

TmpfsMount::TmpfsMount(std::string path, const std::string& size) : path_(std::move(path)) {
  auto r = Shell("mount -t tmpfs -o size=" + size + ",mode=0755 tmpfs '" + path_ + "'", std::chrono::seconds(20));
  ok_ = r.exit_code == 0 && IsMountPoint(path_);
  if (!ok_) {
    error_ = "mount -t tmpfs on " + path_ + " failed: " + r.output;
    return;
  }
  std::snprintf(g_tmpfs, sizeof g_tmpfs, "%s", path_.c_str());
}

TmpfsMount::~TmpfsMount() {
  if (!ok_) return;
  g_tmpfs[0] = '\0';
  // Lazily: a daemon that failed to stop must not keep the tmpfs busy forever.
  if (IsMountPoint(path_)) Shell("umount -l '" + path_ + "'", std::chrono::seconds(20));
}


void MountedTest::SetUp() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/fuse here";
  backing_ = scratch_.path() + "/backing";
  mnt_ = scratch_.path() + "/mnt";
  std::filesystem::create_directories(backing_);
  std::filesystem::create_directories(mnt_);
}

void MountedTest::TearDown() {
  if (daemon_ && HasFailure()) std::fprintf(stderr, "--- daemon log ---\n%s\n", daemon_->Log().c_str());
  daemon_.reset();
}

namespace {
std::string ModeOptions() {
  const char* mode = std::getenv("HPFS_MOUNT_OPTIONS");
  return mode == nullptr ? "" : mode;
}
}  // namespace

bool WritebackMode() { return ModeOptions().find("writeback") != std::string::npos; }

void MountedTest::Mount(std::vector<std::string> options) {
  // The same tests run in another mode of the daemon (meson's mount_writeback).
  if (const std::string mode = ModeOptions(); !mode.empty()) options.insert(options.end(), {"-o", mode});
  daemon_ = std::make_unique<Daemon>(backing_, mnt_, scratch_.path() + "/daemon.log");
  std::string error;
  ASSERT_TRUE(daemon_->Start(options, &error)) << error;
}

std::string MountedTest::CtlForOtherUsers() {
  const std::string copy = S("hpfsctl");
  std::filesystem::copy_file(CtlPath(), copy, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(copy, static_cast<std::filesystem::perms>(0755));
  return copy;
}

void MountedTest::Unmount() {
  ASSERT_TRUE(daemon_);
  const int status = daemon_->Stop();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << daemon_->Log();
  daemon_.reset();
  ASSERT_FALSE(IsMountPoint(mnt_));
}

ShellResult MountedTest::Run(const std::string& script, std::chrono::seconds timeout) {
  return Shell("set -e -o pipefail; cd '" + mnt_ + "'; " + script, timeout);
}

}  // namespace hpfs::mount_test
