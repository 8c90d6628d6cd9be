// SPDX-License-Identifier: Apache-2.0
// Several users on one mount: hpfs run by root with allow_other (it always
// adds default_permissions), and a second user (uid 65534) working in a
// shared sticky directory next to files of root and of a third user (65533).
// The second user's files are its own, also after a remount; it can read the
// others' 0644 files and stat them with hpfsctl, but cannot append to,
// truncate, punch, chmod, remove or `hpfsctl set` them, and they stay as they
// were.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/drills/drill_harness.h"

namespace hpfs::drills {
namespace {

const std::string kAsNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
const std::string kAsOther = "setpriv --reuid=65533 --regid=65533 --clear-groups ";

class MultiUserDrill : public DrillTest {
 protected:
  void SetUp() override {
    DrillTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_EQ(::geteuid(), 0u) << "the multi-user drill mounts as root";
    ASSERT_EQ(mount_test::Shell("command -v setpriv").exit_code, 0) << "setpriv (util-linux) is needed";
    // The other users must reach the mount point and hpfsctl.
    ASSERT_EQ(::chmod(scratch_.path().c_str(), 0755), 0);
    ctl_ = CtlForOtherUsers();
  }

  void MountShared() {
    ASSERT_NO_FATAL_FAILURE(Mount({"-o", "segment_size=64K,allow_other"}));
  }

  // hpfsctl stat as seen by the file's readers.
  std::string SizeOf(const std::string& file) { return StatOf(file)["size"]; }

  // hpfsctl where uid 65534 can run it, as the inner shells' $1.
  std::string CtlArg() const { return " sh '" + ctl_ + "'"; }

  std::string ctl_;
};

TEST_F(MultiUserDrill, SecondUserOwnsItsFilesAndCannotChangeOthers) {
  MountShared();
  auto setup = Run(
      "mkdir shared && chmod 1777 shared && "
      "head -c 100000 /dev/urandom > shared/roots && chmod 0644 shared/roots && "
      + kAsOther + "sh -c 'head -c 70000 /dev/urandom > shared/others; chmod 0644 shared/others'");
  ASSERT_EQ(setup.exit_code, 0) << setup.output;
  const std::string before = Run("md5sum shared/roots shared/others").output;

  // Its own files: created with its uid and gid, writable, settable.
  // The inner shell gets hpfsctl as $1.
  auto own = Run(kAsNobody + "sh -c 'echo mine > shared/mine; echo more >> shared/mine; "
                 "\"$1\" set shared/mine retain_bytes=1M > /dev/null && stat -c %u:%g shared/mine && cat shared/mine'" + CtlArg());
  ASSERT_EQ(own.exit_code, 0) << own.output;
  EXPECT_EQ(own.output, "65534:65534\nmine\nmore\n");
  EXPECT_EQ(StatOf("shared/mine")["retain_bytes"], "1048576");

  // The others' files: readable, and hpfsctl stat works.
  for (const std::string file : {"shared/roots", "shared/others"}) {
    SCOPED_TRACE(file);
    auto read = Run(kAsNobody + "sh -c 'wc -c < " + file + "; \"$1\" stat " + file + "'" + CtlArg());
    EXPECT_EQ(read.exit_code, 0) << read.output;
    EXPECT_EQ(read.output.substr(0, read.output.find('\n')), SizeOf(file)) << read.output;
    EXPECT_EQ(KeyValues(read.output)["damaged"], "none") << read.output;

    // ... and nothing that changes them.
    const std::vector<std::string> refused = {
        "echo x >> " + file,
        "truncate -s 10 " + file,
        "fallocate --punch-hole --offset 0 --length 65536 " + file,
        "chmod 0666 " + file,
        "rm -f " + file,
        "mv " + file + " shared/stolen",
        "\"$1\" set " + file + " retain_bytes=1K",
        "\"$1\" set " + file + " segment_size=4K",
    };
    for (const auto& command : refused) {
      auto r = Run(kAsNobody + "sh -c '" + command + "'" + CtlArg());
      EXPECT_NE(r.exit_code, 0) << "as uid 65534: " << command << " succeeded";
      EXPECT_TRUE(r.output.find("Permission denied") != std::string::npos ||
                  r.output.find("Operation not permitted") != std::string::npos)
          << command << ": " << r.output;
    }
    auto st = StatOf(file);
    EXPECT_EQ(st["retain_bytes"], "0");
    EXPECT_EQ(st["segment_size"], "65536");
    EXPECT_EQ(st["head"], "0");
  }
  EXPECT_EQ(Run("md5sum shared/roots shared/others").output, before);
  EXPECT_EQ(Run("stat -c %a shared/roots shared/others").output, "644\n644\n");
  EXPECT_EQ(Run("ls shared").output, "mine\nothers\nroots\n");

  // Ownership is the file's own, not the session's: it survives a remount.
  Unmount();
  MountShared();
  EXPECT_EQ(Run("stat -c %u:%g:%n shared/mine shared/others shared/roots").output,
            "65534:65534:shared/mine\n65533:65533:shared/others\n0:0:shared/roots\n");
  auto again = Run(kAsNobody + "sh -c 'echo x >> shared/roots'");
  EXPECT_NE(again.exit_code, 0) << "after a remount, uid 65534 could append to root's file";
  auto own_again = Run(kAsNobody + "sh -c 'echo again >> shared/mine && cat shared/mine'");
  EXPECT_EQ(own_again.exit_code, 0) << own_again.output;
  EXPECT_EQ(own_again.output, "mine\nmore\nagain\n");
}

}  // namespace
}  // namespace hpfs::drills
