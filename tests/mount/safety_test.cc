// Real-mount tests of what must never go wrong quietly: privileges surviving
// another user's write, a mount that would serve itself, a listing missing
// entries, and files of the backing directory the mount cannot show.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

class SafetyTest : public MountedTest {
 protected:
  // Runs `script` in the mount point under `set -e -o pipefail`.
  ShellResult Run(const std::string& script, seconds timeout = seconds(120)) {
    return Shell("set -e -o pipefail; cd '" + mnt_ + "'; " + script, timeout);
  }
};

#define RUN_OK(script)                                                                \
  do {                                                                                \
    const auto run_ok_result = Run(script);                                           \
    ASSERT_EQ(run_ok_result.exit_code, 0) << (script) << "\n" << run_ok_result.output; \
  } while (0)

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
  RUN_OK("touch own && chown 65534:65534 own");
  EXPECT_EQ(ModeAfter("own", "6755", kAsNobody, "echo x >>"), "755\n");
}

// --- listings ---

// At its descriptor limit the daemon cannot look names up. A listing then
// still names every entry (without attributes), so `ls -l` reports the
// failure for the entries it cannot stat instead of leaving them out.
TEST_F(SafetyTest, ListingAtTheDescriptorLimitNamesEveryEntry) {
  constexpr int kFiles = 300;
  Mount();
  RUN_OK("for i in $(seq 1 " + std::to_string(kFiles) + "); do : > f$i; done");
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

}  // namespace
}  // namespace hpfs::mount_test
