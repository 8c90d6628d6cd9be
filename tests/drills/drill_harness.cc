// SPDX-License-Identifier: Apache-2.0
#include "tests/drills/drill_harness.h"

#include <dirent.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "fs/hpfs_ioctl.h"
#include "tests/core/test_util.h"

namespace hpfs::drills {

using hpfile::testing::PatternByte;

ssize_t AppendPattern(int fd, uint64_t offset, size_t length) {
  std::vector<std::byte> bytes = hpfile::testing::PatternBytes(offset, length);
  return ::write(fd, bytes.data(), bytes.size());
}

std::optional<std::string> VerifyPattern(int fd, uint64_t offset, uint64_t length, uint64_t head,
                                         uint64_t* checked) {
  std::vector<std::byte> buf(std::min<uint64_t>(length, 1 << 20));
  uint64_t done = 0;
  while (done < length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return "pread at " + std::to_string(offset + done) + ": " + std::strerror(errno);
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      const uint64_t at = offset + done + static_cast<uint64_t>(i);
      const std::byte got = buf[static_cast<size_t>(i)];
      if (got == PatternByte(at)) continue;
      if (at < head && got == std::byte{0}) continue;
      return "byte " + std::to_string(at) + " is " + std::to_string(static_cast<int>(got)) + ", expected " +
             std::to_string(static_cast<int>(PatternByte(at))) + " (head " + std::to_string(head) + ")";
    }
    done += static_cast<uint64_t>(n);
  }
  if (checked != nullptr) *checked = done;
  return std::nullopt;
}

std::optional<HeadSize> StatHeadSize(int fd) {
  hpfs_stat st{};
  if (::ioctl(fd, HPFS_IOC_STAT, &st) != 0) return std::nullopt;
  return HeadSize{st.head, st.size};
}

long CountFds(pid_t pid) {
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return -1;
  long n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

long ResidentKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

ShellResult DrillTest::Run(const std::string& script, std::chrono::seconds timeout) {
  return mount_test::Shell("set -e -o pipefail; CTL='" + CtlPath() + "'; B='" + backing_ + "'; cd '" + mnt_ +
                               "'; " + script,
                           timeout);
}

std::map<std::string, std::string> DrillTest::StatOf(const std::string& file) {
  auto r = Run("\"$CTL\" stat '" + file + "'");
  EXPECT_EQ(r.exit_code, 0) << "hpfsctl stat " << file << ": " << r.output;
  return KeyValues(r.output);
}

ShellResult DrillTest::Check(const std::string& args) {
  return mount_test::Shell("'" + CtlPath() + "' check " + args + " '" + backing_ + "'", std::chrono::seconds(60));
}

void DrillTest::KillDaemon() {
  ASSERT_TRUE(daemon_ && daemon_->running());
  ASSERT_EQ(::kill(daemon_->pid(), SIGKILL), 0);
  const int status = daemon_->WaitExit(std::chrono::seconds(20));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  daemon_->Stop();  // the dead mount answers ENOTCONN until it is unmounted
  ASSERT_FALSE(mount_test::IsMountPoint(mnt_));
}

bool DrillTest::DaemonAlive() const {
  if (!daemon_ || !daemon_->running()) return false;
  // WNOWAIT: only look; the harness reaps it.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(daemon_->pid()), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

}  // namespace hpfs::drills
