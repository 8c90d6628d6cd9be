// SPDX-License-Identifier: Apache-2.0
// hpfsctl against a real mount (stat, set) and against the backing directory
// of a stopped daemon (check). Each test owns its scratch directories and
// daemon; the harness unmounts whatever happens.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

class HpfsctlTest : public MountedTest {
 protected:
  // Runs `script` in the mount point, with $CTL naming hpfsctl and $B the
  // backing directory.
  ShellResult Run(const std::string& script) {
    return Shell("set -o pipefail; CTL='" + CtlPath() + "'; B='" + backing_ + "'; cd '" + mnt_ + "'; " + script,
                 seconds(60));
  }

  std::map<std::string, std::string> StatOf(const std::string& file) {
    auto r = Run("\"$CTL\" stat " + file);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return KeyValues(r.output);
  }

  // Every file under the backing directory with its size and checksum, the
  // lock file left out.
  std::string BackingSnapshot() {
    return Run("cd \"$B\" && find . -type f ! -name .hpfs.lock -printf '%P %s ' -exec md5sum {} \\; | sort").output;
  }
};

#define RUN_OK(script)                                                              \
  do {                                                                              \
    const auto run_ok_result = Run(script);                                         \
    ASSERT_EQ(run_ok_result.exit_code, 0) << (script) << "\n" << run_ok_result.output; \
  } while (0)

// --- stat ---

TEST_F(HpfsctlTest, StatFollowsAFileFromCreationThroughAppendsAndAPrune) {
  Mount();
  RUN_OK(": > f");
  auto fresh = StatOf("f");
  EXPECT_EQ(fresh["head"], "0");
  EXPECT_EQ(fresh["size"], "0");
  EXPECT_EQ(fresh["segment_size"], "1048576");
  EXPECT_EQ(fresh["retain_bytes"], "0");
  EXPECT_EQ(fresh["retain_seconds"], "0");
  EXPECT_EQ(fresh["damaged"], "none");

  RUN_OK("head -c 2500000 /dev/urandom >> f");
  auto grown = StatOf("f");
  EXPECT_EQ(grown["size"], "2500000");
  EXPECT_EQ(grown["segments"], "3");

  RUN_OK("fallocate --punch-hole --offset 0 --length 2097152 f");
  auto pruned = StatOf("f");
  EXPECT_EQ(pruned["head"], "2097152");
  EXPECT_EQ(pruned["size"], "2500000");
  EXPECT_EQ(pruned["segments"], "1");
}

TEST_F(HpfsctlTest, StatOfSeveralFilesNamesEachBlock) {
  Mount();
  RUN_OK("printf abc > a; printf 12345 > b");
  auto r = Run("\"$CTL\" stat a b");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("file=a\nhead=0\nsize=3\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\n\nfile=b\nhead=0\nsize=5\n"), std::string::npos) << r.output;
}

TEST_F(HpfsctlTest, StatJsonIsAnArrayThatParses) {
  Mount();
  RUN_OK("printf abc > a; head -c 1500000 /dev/zero > 'b \"q\"'");
  RUN_OK("\"$CTL\" stat --json a 'b \"q\"' | python3 -c '"
         "import json, sys\n"
         "d = json.load(sys.stdin)\n"
         "assert [x[\"file\"] for x in d] == [\"a\", \"b \\\"q\\\"\"], d\n"
         "assert d[0][\"size\"] == 3 and d[1][\"size\"] == 1500000 and d[1][\"segments\"] == 2, d\n"
         "assert d[0][\"damaged\"] is None, d'");
}

TEST_F(HpfsctlTest, StatOfAFileOutsideHpfsFailsWithAClearMessage) {
  Mount();
  RUN_OK("printf abc > a");
  auto r = Run("\"$CTL\" stat a /etc/hostname");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/etc/hostname: not a file on an hpfs mount"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("size=3"), std::string::npos) << r.output;
}

// --- set ---

TEST_F(HpfsctlTest, SetChangesWhatStatShows) {
  Mount();
  RUN_OK("printf abc > f");
  auto set = Run("\"$CTL\" set f retain_bytes=2M retain_seconds=1h segment_size=2M");
  EXPECT_EQ(set.exit_code, 0) << set.output;
  // It says what is in force now.
  EXPECT_EQ(set.output, "segment_size=2097152\nretain_bytes=2097152\nretain_seconds=3600\n");
  auto st = StatOf("f");
  EXPECT_EQ(st["retain_bytes"], "2097152");
  EXPECT_EQ(st["retain_seconds"], "3600");
  EXPECT_EQ(st["segment_size"], "2097152");
  RUN_OK("\"$CTL\" set f retain_bytes=none retain_seconds=0");
  st = StatOf("f");
  EXPECT_EQ(st["retain_bytes"], "0");
  EXPECT_EQ(st["retain_seconds"], "0");
}

TEST_F(HpfsctlTest, BadKeyOrValueIsEinvalAndChangesNothing) {
  Mount();
  RUN_OK("printf abc > f");
  RUN_OK("\"$CTL\" set f retain_bytes=1M");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"retain_bytes=5M colour=blue", "colour"},
      {"retain_bytes=5M segment_size=0", "segment_size=0"},
      {"retain_bytes=5M segment_size=1", "segment_size=1"},
      {"retain_bytes=5M retain_seconds=5w", "retain_seconds=5w"},
      {"retain_bytes=5Q", "retain_bytes=5Q"},
  };
  for (const auto& [args, named] : bad) {
    auto r = Run("\"$CTL\" set f " + args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("Invalid argument"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(named), std::string::npos) << r.output;
    auto st = StatOf("f");
    EXPECT_EQ(st["retain_bytes"], "1048576") << args;
    EXPECT_EQ(st["segment_size"], "1048576") << args;
  }
}

TEST_F(HpfsctlTest, SetNeedsWritePermissionWhileStatNeedsOnlyRead) {
  if (::geteuid() == 0) {
    // root passes every permission check: run the tool as nobody instead.
    if (Shell("command -v setpriv").exit_code != 0) GTEST_SKIP() << "setpriv missing";
    Mount({"-o", "segment_size=1M,allow_other"});
    ASSERT_EQ(::chmod(scratch_.path().c_str(), 0755), 0);
    RUN_OK("printf abc > f; chmod 0644 f");
    const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
    const std::string ctl = "'" + CtlForOtherUsers() + "'";
    auto stat = Run(as_nobody + ctl + " stat f");
    EXPECT_EQ(stat.exit_code, 0) << stat.output;
    EXPECT_NE(stat.output.find("size=3"), std::string::npos) << stat.output;
    auto set = Run(as_nobody + ctl + " set f retain_bytes=1M");
    EXPECT_EQ(set.exit_code, 1) << set.output;
    EXPECT_NE(set.output.find("Permission denied"), std::string::npos) << set.output;
  } else {
    Mount();
    RUN_OK("printf abc > f; chmod 0444 f");
    auto set = Run("\"$CTL\" set f retain_bytes=1M");
    EXPECT_EQ(set.exit_code, 1) << set.output;
    EXPECT_NE(set.output.find("Permission denied"), std::string::npos) << set.output;
  }
  EXPECT_EQ(StatOf("f")["retain_bytes"], "0");
}

// --- check ---

TEST_F(HpfsctlTest, CheckRefusesWhileMounted) {
  Mount();
  RUN_OK("printf abc > f");
  for (const std::string mode : {"", "--repair "}) {
    auto r = Run("\"$CTL\" check " + mode + "\"$B\"");
    EXPECT_EQ(r.exit_code, 8) << r.output;
    EXPECT_NE(r.output.find("in use by a running hpfs daemon"), std::string::npos) << r.output;
  }
}

TEST_F(HpfsctlTest, CheckOfACleanStoreExitsZero) {
  Mount();
  RUN_OK("mkdir -p d/e; printf abc > f; head -c 2500000 /dev/urandom > d/e/g; rm f");
  Unmount();
  auto r = Run("\"$CTL\" check \"$B\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("d/e/g: ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checked 1 HPFiles: 1 ok"), std::string::npos) << r.output;
}

TEST_F(HpfsctlTest, CheckRepairsACrashedStoreOnceAndItThenChecksClean) {
  Mount();
  RUN_OK("head -c 2500000 /dev/urandom > f");
  Unmount();
  // A crash that lost the unsynced end of a sealed segment after its
  // successor was written.
  ASSERT_EQ(::truncate((backing_ + "/f/00000000000000000000-1048576.seg").c_str(), 1000), 0);
  const std::string before = BackingSnapshot();

  auto dry = Run("\"$CTL\" check \"$B\"");
  EXPECT_EQ(dry.exit_code, 4) << dry.output;
  EXPECT_NE(dry.output.find("f: needs recovery"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("short of its capacity"), std::string::npos) << dry.output;
  EXPECT_EQ(BackingSnapshot(), before);

  auto fix = Run("\"$CTL\" check --repair \"$B\"");
  EXPECT_EQ(fix.exit_code, 1) << fix.output;
  EXPECT_NE(fix.output.find("f: repaired"), std::string::npos) << fix.output;

  auto again = Run("\"$CTL\" check \"$B\"");
  EXPECT_EQ(again.exit_code, 0) << again.output;

  Mount();
  EXPECT_EQ(StatOf("f")["size"], "1000");
}

TEST_F(HpfsctlTest, CheckOfAGapExitsFourChangesNothingAndStatShowsTheDamage) {
  Mount();
  RUN_OK("head -c 3000000 /dev/urandom > f");
  Unmount();
  ASSERT_TRUE(std::filesystem::remove(backing_ + "/f/00000000000001048576-1048576.seg"));
  const std::string before = BackingSnapshot();
  for (const std::string mode : {"", "--repair "}) {
    auto r = Run("\"$CTL\" check " + mode + "\"$B\"");
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_NE(r.output.find("f: damaged: bytes [1048576, 2097152) are missing"), std::string::npos) << r.output;
    EXPECT_EQ(BackingSnapshot(), before) << mode;
  }
  Mount();
  EXPECT_NE(StatOf("f")["damaged"].find("missing"), std::string::npos);
  auto set = Run("\"$CTL\" set f retain_bytes=1M");
  EXPECT_EQ(set.exit_code, 1) << set.output;
  EXPECT_NE(set.output.find("damaged"), std::string::npos) << set.output;
}

TEST_F(HpfsctlTest, RepairTruncatesAtAGapOnlyWhenAskedAndTheFileWorksAgain) {
  Mount();
  RUN_OK("seq -w 1 500000 > f");  // 3.5 MB of 7-byte lines
  Unmount();
  ASSERT_TRUE(std::filesystem::remove(backing_ + "/f/00000000000002097152-1048576.seg"));
  const std::string before = BackingSnapshot();
  auto preview = Run("\"$CTL\" check --truncate-at-gap \"$B\"");
  EXPECT_EQ(preview.exit_code, 4) << preview.output;
  EXPECT_NE(preview.output.find("--repair --truncate-at-gap would:"), std::string::npos) << preview.output;
  EXPECT_EQ(BackingSnapshot(), before);

  auto fix = Run("\"$CTL\" check --repair --truncate-at-gap \"$B\"");
  EXPECT_EQ(fix.exit_code, 1) << fix.output;
  EXPECT_NE(fix.output.find("f: repaired (was damaged: bytes [2097152, 3145728) are missing"), std::string::npos)
      << fix.output;
  EXPECT_EQ(Run("\"$CTL\" check \"$B\"").exit_code, 0);

  Mount();
  auto stat = StatOf("f");
  EXPECT_EQ(stat["size"], "2097152");
  EXPECT_EQ(stat["damaged"], "none");
  // The bytes before the gap are intact, and appends work again.
  RUN_OK("seq -w 1 500000 > '" + S("lines") + "' && head -c 2097152 '" + S("lines") + "' | cmp - f && echo more >> f");
  EXPECT_EQ(StatOf("f")["size"], "2097157");
}

TEST_F(HpfsctlTest, RepairRebuildsALostMetaSoTheFileMountsHealthy) {
  Mount();
  RUN_OK("head -c 1500000 /dev/urandom > f && md5sum < f > '" + S("sum") + "'");
  Unmount();
  ASSERT_TRUE(std::filesystem::remove(backing_ + "/f/hpfile.meta"));
  auto fix = Run("\"$CTL\" check --repair \"$B\"");
  EXPECT_EQ(fix.exit_code, 1) << fix.output;
  EXPECT_NE(fix.output.find("rebuilt from the segments"), std::string::npos) << fix.output;
  Mount();
  EXPECT_EQ(StatOf("f")["damaged"], "none");
  RUN_OK("md5sum < f | cmp - '" + S("sum") + "'");
}

// --- usage ---

TEST_F(HpfsctlTest, EachCommandHasHelpAndUsageErrorsHaveTheirStatus) {
  for (const std::string command : {"stat", "set", "check"}) {
    auto r = Run("\"$CTL\" " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    for (const std::string& section :
         std::vector<std::string>{"Usage: hpfsctl " + command, "Options:", "Exit status", "Examples:"}) {
      EXPECT_NE(r.output.find(section), std::string::npos) << command << ": " << section;
    }
  }
  EXPECT_EQ(Run("\"$CTL\"").exit_code, 2);
  EXPECT_EQ(Run("\"$CTL\" frobnicate").exit_code, 2);
  EXPECT_EQ(Run("\"$CTL\" stat").exit_code, 2);
  EXPECT_EQ(Run("\"$CTL\" set f").exit_code, 2);
  EXPECT_EQ(Run("\"$CTL\" check").exit_code, 16);
  EXPECT_EQ(Run("\"$CTL\" check --bogus \"$B\"").exit_code, 16);
}

}  // namespace
}  // namespace hpfs::mount_test
