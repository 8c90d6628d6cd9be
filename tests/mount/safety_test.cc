// SPDX-License-Identifier: Apache-2.0
// Real-mount tests of what must never go wrong quietly: privileges surviving
// another user's write, a mount that would serve itself, a listing missing
// entries, and files of the backing directory the mount cannot show.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

using SafetyTest = MountedTest;

// --- set-user-ID and set-group-ID bits ---

const std::string kAsNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

class SetIdTest : public SafetyTest {
 protected:
  void SetUp() override {
    SafetyTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_EQ(::geteuid(), 0u) << "writing as another user needs root";
    ASSERT_EQ(Shell("command -v setpriv").exit_code, 0) << "setpriv (util-linux) is needed";
    // uid 65534 must reach the mount point.
    ASSERT_EQ(::chmod(scratch_.path().c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(Mount({"-o", "segment_size=1M,allow_other"}));
  }

  // Creates `name` with `mode`, has `writer` run `write` with the name
  // appended (as a word, or to a trailing "of="), and returns the mode stat
  // shows afterwards.
  std::string ModeAfter(const std::string& name, const std::string& mode, const std::string& writer,
                        const std::string& write) {
    auto setup = Run("touch " + name + " && chmod " + mode + " " + name);
    EXPECT_EQ(setup.exit_code, 0) << setup.output;
    auto r = Run(writer + "sh -c '" + write + (write.ends_with('=') ? "" : " ") + name + "'");
    EXPECT_EQ(r.exit_code, 0) << write << " " << name << ": " << r.output;
    return Run("stat -c %a " + name).output;
  }
};

// The expected modes are what ext4 shows for the same commands (Linux 6.x).
TEST_F(SetIdTest, AppendByAnotherUserClearsSetuidAndExecutableSetgid) {
  EXPECT_EQ(ModeAfter("a4777", "4777", kAsNobody, "echo x >>"), "777\n");
  EXPECT_EQ(ModeAfter("a2777", "2777", kAsNobody, "echo x >>"), "777\n");
  EXPECT_EQ(ModeAfter("a6777", "6777", kAsNobody, "echo x >>"), "777\n");
  // Set-group-ID without group execute stays for a writer in the file's
  // group only; uid 65534 with no groups is not in root's.
  EXPECT_EQ(ModeAfter("a2767", "2767", kAsNobody, "echo x >>"), "767\n");
  EXPECT_EQ(ModeAfter("g2767", "2767", "setpriv --reuid=65534 --regid=0 --clear-groups ", "echo x >>"),
            "2767\n");
  // Stored: a remount shows the same.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Mount({"-o", "segment_size=1M,allow_other"}));
  EXPECT_EQ(Run("stat -c %a a4777 a2777 a6777 a2767 g2767").output, "777\n777\n777\n767\n2767\n");
}

TEST_F(SetIdTest, EveryWritePathByAnotherUserClearsTheBits) {
  // Read-write descriptor, O_APPEND by dd, a write past the end, a grow.
  EXPECT_EQ(ModeAfter("rw", "6777", kAsNobody, "echo x 1<>"), "777\n");
  EXPECT_EQ(ModeAfter("dd", "6777", kAsNobody, "echo x | dd status=none oflag=append conv=notrunc of="),
            "777\n");
  EXPECT_EQ(ModeAfter("seek", "6777", kAsNobody, "echo x | dd status=none bs=1 seek=4096 conv=notrunc of="),
            "777\n");
  EXPECT_EQ(ModeAfter("grow", "6777", kAsNobody, "truncate -s 100"), "777\n");
  EXPECT_EQ(ModeAfter("falloc", "6777", kAsNobody, "fallocate -l 100"), "777\n");
  EXPECT_EQ(Run("cat rw dd").output, "x\nx\n");
}

TEST_F(SetIdTest, WriterWithFsetidKeepsTheBitsAndOwnersWithoutItDoNot) {
  // Root holds CAP_FSETID: its appends keep every bit, as on ext4.
  EXPECT_EQ(ModeAfter("root", "6777", "", "echo x >>"), "6777\n");
  // An owner without the capability loses them, as on ext4.
  {
    const auto ran = Run("touch own && chown 65534:65534 own");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
  }
  EXPECT_EQ(ModeAfter("own", "6755", kAsNobody, "echo x >>"), "755\n");
}

// --- mount points that would make the daemon serve itself ---

// Runs `hpfs -f BACKING MOUNTPOINT`, which must refuse at once. A daemon
// that mounts instead may be waiting for itself, and then neither exits on
// SIGKILL nor lets go of the mount: after 10 s its connection is aborted
// (fusectl), the mount detached and the daemon killed, so that nothing stays
// behind whatever the daemon does.
ShellResult RunRefused(const std::string& backing, const std::string& mountpoint) {
  const std::string real = std::filesystem::weakly_canonical(mountpoint).string();
  return Shell("'" + DaemonPath() + "' -f '" + backing + "' '" + mountpoint + "' & pid=$!; "
               "for i in $(seq 100); do kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }; sleep 0.1; done; "
               "echo 'the daemon served the mount instead of refusing it'; "
               "mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections; "
               "dev=$(awk -v m='" + real + "' '$5 == m {print $3}' /proc/self/mountinfo | tail -n 1); "
               "[ -z \"$dev\" ] || echo 1 > /sys/fs/fuse/connections/${dev#*:}/abort; "
               "fusermount3 -uz '" + real + "'; kill -9 $pid; wait $pid; exit 99",
               seconds(60));
}

void ExpectRefusedBeforeMounting(const ShellResult& r, const std::string& message, const std::string& backing) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  // Refused before the backing directory was locked or touched.
  EXPECT_FALSE(std::filesystem::exists(backing + "/.hpfs.lock")) << backing;
  EXPECT_FALSE(std::filesystem::exists(backing + "/.hpfs-trash")) << backing;
}

TEST_F(SafetyTest, MountPointAtOrInsideTheBackingDirectoryIsRefused) {
  std::filesystem::create_directories(B("inner/mnt"));
  ASSERT_EQ(::symlink(backing_.c_str(), S("alias").c_str()), 0);
  ExpectRefusedBeforeMounting(RunRefused(backing_, backing_), "is the backing directory itself", backing_);
  ExpectRefusedBeforeMounting(RunRefused(backing_, B("inner/mnt")),
                              "mount point " + B("inner/mnt") + " is inside the backing directory " + backing_,
                              backing_);
  // Real paths are compared: a symlink to the backing directory is no way round.
  ExpectRefusedBeforeMounting(RunRefused(backing_, S("alias/inner/mnt")),
                              "mount point " + B("inner/mnt") + " is inside the backing directory", backing_);
  // The other way round the mount would hide the backing directory.
  ExpectRefusedBeforeMounting(RunRefused(B("inner"), backing_), "is inside the mount point " + backing_, B("inner"));
}

TEST_F(SafetyTest, MountPointInsideABindMountOfTheBackingDirectoryIsRefused) {
  ASSERT_EQ(::geteuid(), 0u) << "a bind mount needs root";
  std::filesystem::create_directories(B("mnt"));
  std::filesystem::create_directories(S("bind"));
  ASSERT_EQ(Shell("mount --bind '" + backing_ + "' '" + S("bind") + "'").exit_code, 0);
  struct Unbind {
    std::string path;
    ~Unbind() { Shell("umount -l '" + path + "'", seconds(20)); }
  } unbind{S("bind")};
  // Mount propagation may show a mount made at bind/mnt at backing/mnt too.
  ExpectRefusedBeforeMounting(RunRefused(backing_, S("bind/mnt")), "is inside the backing directory " + backing_,
                              backing_);
}

// The backing directory is on an hpfs mount, and the mount point is inside
// what that mount stores it in: serving a request would go through the
// other daemon back into this mount.
TEST_F(SafetyTest, MountPointInsideWhereAnHpfsMountStoresTheBackingIsRefused) {
  Mount();
  {
    const auto ran = Run("mkdir -p inner/sub");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
  }
  const std::string backing = M("inner");
  const std::string mountpoint = B("inner/sub");
  auto r = RunRefused(backing, mountpoint);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("mount point " + mountpoint + " is inside the backing directory " + backing +
                          " (stored in " + B("inner") + " by the hpfs mount it is on)"),
            std::string::npos)
      << r.output;
  // The outer mount is unharmed.
  EXPECT_EQ(Run("ls inner").output, "sub\n");
}

// --- listings ---

// At its descriptor limit the daemon cannot look names up. A listing then
// still names every entry (without attributes), so `ls -l` reports the
// failure for the entries it cannot stat instead of leaving them out.
TEST_F(SafetyTest, ListingAtTheDescriptorLimitNamesEveryEntry) {
  constexpr int kFiles = 300;
  Mount();
  {
    const auto ran = Run("for i in $(seq 1 " + std::to_string(kFiles) + "); do : > f$i; done");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
  }
  // A fresh daemon: no name of the directory has been looked up yet.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_NO_FATAL_FAILURE(Mount());
  const std::string pid = std::to_string(daemon_->pid());
  // A few dozen descriptors more than the daemon holds: the lookups of the
  // listing run out long before its end.
  // Only the soft limit moves, so that it can be put back.
  auto soft = Shell("prlimit --pid " + pid + " --nofile --output SOFT --noheadings");
  ASSERT_EQ(soft.exit_code, 0) << soft.output;
  auto limit = Shell("n=$(ls /proc/" + pid + "/fd | wc -l); prlimit --pid " + pid + " --nofile=$((n + 40)):");
  ASSERT_EQ(limit.exit_code, 0) << limit.output;
  auto listing = Shell("cd '" + mnt_ + "' && ls -l 2>/dev/null");
  auto errors = Shell("cd '" + mnt_ + "' && ls -l 2>&1 >/dev/null");
  auto restore = Shell("prlimit --pid " + pid + " --nofile=" + soft.output.substr(0, soft.output.find('\n')) + ":");
  ASSERT_EQ(restore.exit_code, 0) << restore.output;

  int missing = 0;
  for (int i = 1; i <= kFiles; ++i) {
    const std::string name = " f" + std::to_string(i) + "\n";
    if (listing.output.find(name) == std::string::npos) ++missing;
  }
  EXPECT_EQ(missing, 0) << "ls -l left out " << missing << " of " << kFiles << " entries (exit "
                        << listing.exit_code << ")\n" << listing.output;
  // The entries it could not stat are reported, and ls says it failed.
  if (errors.output.find("Too many open files") != std::string::npos) {
    EXPECT_NE(listing.exit_code, 0) << errors.output;
  } else {
    EXPECT_EQ(listing.exit_code, 0) << errors.output;
  }
  // The daemon serves again once it has descriptors.
  auto after = Run("ls -l | grep -c ' f'");
  EXPECT_EQ(after.output, std::to_string(kFiles) + "\n") << after.output;
}

// --- plain files in the backing directory ---

// Logs that were there before hpfs: the mount names them, refuses their
// names to new files, and `hpfsctl import` makes them files of the mount.
TEST_F(SafetyTest, PlainFilesAreReportedRefusedAsNewNamesAndImportedInPlace) {
  ASSERT_EQ(Shell("seq 1 200000 > '" + B("syslog") + "' && echo auth > '" + B("auth.log") + "' && chmod 640 '" +
                  B("syslog") + "' && touch -d '2020-01-02 03:04:05' '" + B("syslog") + "'")
                .exit_code,
            0);
  Mount();
  EXPECT_NE(daemon_->Log().find("[warning] 2 plain files in " + backing_ +
                                " are not shown by the mount ('auth.log', 'syslog')"),
            std::string::npos)
      << daemon_->Log();
  EXPECT_EQ(Run("ls").output, "");
  for (const std::string create : {"echo x >> syslog", "touch syslog", "mkdir syslog", "ln -s x syslog"}) {
    auto r = Run(create);
    EXPECT_NE(r.exit_code, 0) << create;
    EXPECT_NE(r.output.find("File exists"), std::string::npos) << create << ": " << r.output;
  }
  // Refused while mounted, like check.
  const std::string ctl = "'" + CtlPath() + "' ";
  auto busy = Shell(ctl + "import '" + B("syslog") + "'");
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.output.find("in use by a running hpfs daemon"), std::string::npos) << busy.output;
  ASSERT_NO_FATAL_FAILURE(Unmount());

  auto imported = Shell(ctl + "import '" + B("syslog") + "' '" + B("auth.log") + "'");
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  Mount();
  EXPECT_EQ(Run("ls").output, "auth.log\nsyslog\n");
  {
    const auto ran = Run("cmp <(seq 1 200000) syslog");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
  }
  EXPECT_EQ(Run("stat -c '%a %y' syslog").output, "640 2020-01-02 03:04:05.000000000 +0000\n");
  {
    const auto ran = Run("echo more >> syslog && echo more >> auth.log");
    ASSERT_EQ(ran.exit_code, 0) << ran.output;
  }
  EXPECT_EQ(Run("tail -n 2 syslog").output, "200000\nmore\n");
  EXPECT_EQ(Run("cat auth.log").output, "auth\nmore\n");
  ASSERT_NO_FATAL_FAILURE(Unmount());
  auto check = Shell(ctl + "check '" + backing_ + "'");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("checked 2 HPFiles: 2 ok"), std::string::npos) << check.output;
}

}  // namespace
}  // namespace hpfs::mount_test
