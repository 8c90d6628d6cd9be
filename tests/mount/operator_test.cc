// SPDX-License-Identifier: Apache-2.0
// The daemon as an operator runs it: who may use a mount root made, where its
// messages go and how logrotate rotates them, and how long an unmount takes.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

const std::string kAsNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

class OperatorTest : public MountedTest {
 protected:
  // Runs `script` in the mount point under `set -e -o pipefail`.
  ShellResult Run(const std::string& script, seconds timeout = seconds(120)) {
    return Shell("set -e -o pipefail; cd '" + mnt_ + "'; " + script, timeout);
  }

  // Tests of what another user may do need root to switch to uid 65534.
  void NeedOtherUser() {
    if (::geteuid() != 0) GTEST_SKIP() << "switching to another user needs root";
    ASSERT_EQ(Shell("command -v setpriv").exit_code, 0) << "setpriv (util-linux) is needed";
    // uid 65534 must reach the mount point.
    ASSERT_EQ(::chmod(scratch_.path().c_str(), 0755), 0);
  }

  // Runs hpfs without -f in `dir`: it mounts, then detaches, and the shell
  // returns once the parent has exited.
  ShellResult StartDetached(const std::string& dir, const std::string& options) {
    return Shell("cd '" + dir + "' && '" + DaemonPath() + "' " + options + " '" + backing_ + "' '" + mnt_ + "'",
                 seconds(30));
  }

  // Unmounts a daemon that went to the background (the harness only knows
  // the ones it runs in the foreground) and waits for it to exit: it holds
  // the backing directory's lock until then.
  void StopDetached() {
    Shell("fusermount3 -u '" + mnt_ + "'", seconds(20));
    const std::string lock = backing_ + "/.hpfs.lock";
    EXPECT_TRUE(Eventually([&] { return Shell("flock -n '" + lock + "' true").exit_code == 0; }, seconds(30)))
        << "the detached daemon did not exit";
  }
};

#define RUN_OK(script)                                                                  \
  do {                                                                                  \
    const auto run_ok_result = Run(script);                                             \
    ASSERT_EQ(run_ok_result.exit_code, 0) << (script) << "\n" << run_ok_result.output;   \
  } while (0)

// --- who may use the mount ---

TEST_F(OperatorTest, RootMountLetsOtherUsersInByDefaultWithTheKernelCheckingModes) {
  ASSERT_NO_FATAL_FAILURE(NeedOtherUser());
  if (IsSkipped()) return;
  Mount();
  RUN_OK("echo hello > shared; chmod 0644 shared; echo secret > private; chmod 0600 private");

  auto read = Run(kAsNobody + "cat shared");
  EXPECT_EQ(read.exit_code, 0) << read.output;
  EXPECT_EQ(read.output, "hello\n");
  // default_permissions: the mode still decides.
  for (const std::string refused : {"cat private", "sh -c 'echo x >> shared'", "touch new"}) {
    auto r = Run(kAsNobody + refused);
    EXPECT_NE(r.exit_code, 0) << refused;
    EXPECT_NE(r.output.find("Permission denied"), std::string::npos) << refused << ": " << r.output;
  }
  EXPECT_EQ(Run("cat shared private").output, "hello\nsecret\n");
}

TEST_F(OperatorTest, NoallowOtherKeepsOtherUsersOutOfARootMount) {
  ASSERT_NO_FATAL_FAILURE(NeedOtherUser());
  if (IsSkipped()) return;
  Mount({"-o", "segment_size=1M,noallow_other"});
  RUN_OK("echo hello > shared; chmod 0644 shared");
  auto read = Run(kAsNobody + "cat shared");
  EXPECT_NE(read.exit_code, 0) << read.output;
  EXPECT_NE(read.output.find("Permission denied"), std::string::npos) << read.output;
  EXPECT_EQ(Run("cat shared").output, "hello\n");
}

// --- logging ---

TEST_F(OperatorTest, LogFileIsReopenedOnSighupAsLogrotateNeeds) {
  const std::string log = S("hpfs.log");
  const std::string rotated = S("hpfs.log.1");
  Mount({"-o", "segment_size=1M,log_file=" + log});
  ASSERT_TRUE(Eventually([&] { return ReadFile(log).find("mounted") != std::string::npos; })) << ReadFile(log);

  // logrotate's default: rename, then postrotate `kill -HUP`.
  std::filesystem::rename(log, rotated);
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(Eventually([&] { return ReadFile(log).find("reopened log file " + log) != std::string::npos; }))
      << "new log: " << ReadFile(log) << "\nrotated: " << ReadFile(rotated);
  RUN_OK("echo still > here; cat here");
  Unmount();  // exits 0: the SIGHUP did not end it

  const std::string fresh = ReadFile(log);
  EXPECT_NE(fresh.find("unmounted"), std::string::npos) << fresh;
  const std::string old = ReadFile(rotated);
  EXPECT_NE(old.find("mounted " + backing_), std::string::npos) << old;
  EXPECT_EQ(old.find("unmounted"), std::string::npos) << old;
  EXPECT_EQ(old.find("reopened"), std::string::npos) << old;
}

TEST_F(OperatorTest, SighupWithoutLogFileLeavesTheDaemonServing) {
  Mount();
  RUN_OK("echo before > f");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(Eventually([&] { return daemon_->Log().find("SIGHUP") != std::string::npos; })) << daemon_->Log();
  EXPECT_TRUE(IsMountPoint(mnt_));
  RUN_OK("echo after >> f");
  EXPECT_EQ(Run("cat f").output, "before\nafter\n");
  Unmount();
}

TEST_F(OperatorTest, RelativeLogFileIsResolvedBeforeTheDaemonDetaches) {
  auto started = StartDetached(scratch_.path(), "-o log_file=relative.log");
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_TRUE(IsMountPoint(mnt_));
  // A log file is where the messages go, so no warning about syslog.
  EXPECT_EQ(started.output.find("syslog"), std::string::npos) << started.output;
  EXPECT_TRUE(Eventually([&] { return ReadFile(S("relative.log")).find("mounted") != std::string::npos; }))
      << ReadFile(S("relative.log"));
  StopDetached();
  EXPECT_NE(ReadFile(S("relative.log")).find("unmounted"), std::string::npos) << ReadFile(S("relative.log"));
}

TEST_F(OperatorTest, LogFileInsideTheMountPointIsRefused) {
  auto r = RunDaemonToExit({"-f", "-o", "log_file=" + mnt_ + "/hpfs.log", backing_, mnt_}, seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("inside the mount point"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMountPoint(mnt_));
}

TEST_F(OperatorTest, DetachingWithoutASyslogListenerWarnsOnTheTerminal) {
  // glibc's syslog(3) sends to /dev/log; this asks the same question.
  const bool syslog_listens =
      Shell("python3 -c \"import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).connect('/dev/log')\"")
          .exit_code == 0;
  auto started = StartDetached(scratch_.path(), "");
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_TRUE(IsMountPoint(mnt_));
  StopDetached();
  if (syslog_listens) {
    EXPECT_EQ(started.output.find("no syslog"), std::string::npos) << started.output;
  } else {
    EXPECT_NE(started.output.find("no syslog listening at /dev/log"), std::string::npos) << started.output;
    EXPECT_NE(started.output.find("log_file="), std::string::npos) << started.output;
  }
}

// --- unmount ---

// One fdatasync per written file made this take many seconds; one syncfs of
// the backing filesystem takes well under a second even on a loaded machine.
TEST_F(OperatorTest, UnmountAfterWritesToManyFilesIsQuickAndLosesNothing) {
  constexpr int kFiles = 2000;
  Mount();
  RUN_OK("for i in $(seq " + std::to_string(kFiles) +
         "); do printf 'line %s\\n' $i > f$i; done; "
         // Heads moved by a punch reach the meta only at a sync.
         "for i in $(seq 100); do fallocate --punch-hole --keep-size --offset 0 --length 2 f$i; done");
  const auto start = std::chrono::steady_clock::now();
  const std::string log_path = S("daemon.log");
  Unmount();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  std::printf("unmount after writes to %d files: %lld ms\n", kFiles, static_cast<long long>(took.count()));
  const std::string daemon_log = ReadFile(log_path);
  EXPECT_LT(took, std::chrono::milliseconds(2000));
  // The daemon says how it synced; one fdatasync per file would not fail the
  // bound above on an idle machine with a fast disk.
  EXPECT_NE(daemon_log.find("with one syncfs"), std::string::npos) << daemon_log;

  Mount();
  // Bytes below a punched head read as zeros, and SEEK_DATA finds the head.
  auto check = Run("python3 -c \"\n"
                   "import os\n"
                   "for i in range(1, " + std::to_string(kFiles + 1) + "):\n"
                   "    want = b'line %d\\n' % i\n"
                   "    if i <= 100: want = bytes(2) + want[2:]\n"
                   "    got = open('f%d' % i, 'rb').read()\n"
                   "    if got != want: print('f%d holds %r' % (i, got))\n"
                   "fd = os.open('f1', os.O_RDONLY)\n"
                   "print(os.lseek(fd, 0, os.SEEK_DATA))\n"
                   "\"");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "2\n");
}

}  // namespace
}  // namespace hpfs::mount_test
