// SPDX-License-Identifier: Apache-2.0
// Retention on a real mount: the daemon's background pass reaches files the
// kernel never looked up, segment rolls enforce the mount-wide defaults, the
// kernel's cached pages of a dropped range are invalidated, and the cron
// example (scripts/retain-example) works on hpfs and on a plain filesystem.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

class RetentionMountTest : public MountedTest {
 protected:
  // Runs `script` with $CTL naming hpfsctl, $RETAIN the cron example, $M the
  // mount point and $B the backing directory.
  ShellResult Run(const std::string& script) {
    return Shell("set -euo pipefail; CTL='" + EnvOr("HPFSCTL_BIN", "hpfsctl") + "'; RETAIN='" +
                     EnvOr("RETAIN_EXAMPLE", "scripts/retain-example") + "'; M='" + mnt_ + "'; B='" + backing_ +
                     "'; " + script,
                 seconds(60));
  }

  size_t BackingSegments(const std::string& name) { return mount_test::SegmentFiles(B(name)); }

  // Polls until file `name` has at most `segments` segment files in the
  // backing directory; the daemon prunes on its own schedule.
  bool WaitForBackingSegments(const std::string& name, size_t segments, seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (BackingSegments(name) > segments) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }
};

TEST_F(RetentionMountTest, BackgroundPassPrunesAFileNeverLookedUpSinceTheMount) {
  Mount();
  // 5 MiB of 1 MiB segments; the line numbers tell every byte's place.
  ASSERT_EQ(Run("seq -w 1 700000 > \"$M/log\"").exit_code, 0);
  Unmount();
  ASSERT_EQ(BackingSegments("log"), 5u);
  std::ofstream(B("log/hpfile.meta"), std::ios::app) << "retain_bytes=1048576\n";

  Mount();
  // Nothing looks at the file through the mount until its segments have gone.
  ASSERT_TRUE(WaitForBackingSegments("log", 2, seconds(20))) << daemon_->Log();
  EXPECT_NE(daemon_->Log().find("retention: 'log': dropped"), std::string::npos) << daemon_->Log();

  auto r = Run("stat -c %s \"$M/log\"; \"$CTL\" stat \"$M/log\" | grep '^head='; "
               "tail -c 7 \"$M/log\"; head -c 16 \"$M/log\" | od -An -tx1 | tr -d ' \\n'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 700000 lines of 7 bytes: 4900000 bytes; the head at the last whole
  // segment boundary that leaves at least 1 MiB.
  EXPECT_EQ(r.output, "4900000\nhead=3145728\n700000\n" + std::string(32, '0')) << r.output;
}

TEST_F(RetentionMountTest, MountWideDefaultsBoundNewFilesAtEverySegmentRoll) {
  Mount({"-o", "segment_size=1M,retain_bytes=2M,retain_seconds=1d"});
  ASSERT_EQ(Run("touch \"$M/new\"").exit_code, 0);
  auto r = Run("grep -E '^retain_(bytes|seconds)=' \"$B/new/hpfile.meta\"");
  EXPECT_EQ(r.output, "retain_bytes=2097152\nretain_seconds=86400\n") << r.output;

  // 16 MiB appended in 256 KiB writes: the rolls themselves keep the file
  // near 2 MiB, whatever the background pass does.
  ASSERT_EQ(Run("for i in $(seq 64); do head -c 262144 /dev/zero >> \"$M/new\"; done").exit_code, 0);
  EXPECT_LE(BackingSegments("new"), 4u);
  r = Run("\"$CTL\" stat \"$M/new\" | grep -E '^(head|size)='");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The last roll (to [15M, 16M)) left the head at 13M; the background pass
  // may since have found [13M, 14M) droppable too, with 16M written.
  EXPECT_TRUE(r.output == "head=" + std::to_string(13 << 20) + "\nsize=" + std::to_string(16 << 20) + "\n" ||
              r.output == "head=" + std::to_string(14 << 20) + "\nsize=" + std::to_string(16 << 20) + "\n")
      << r.output;
}

TEST_F(RetentionMountTest, OneWriteLargerThanSeveralSegmentsIsBoundedAtOnce) {
  Mount({"-o", "segment_size=256K,retain_bytes=256K"});
  // One write(2) of 8 MiB: requests of up to 1 MiB, each rolling through four
  // segments. The head is read right after it, before the background pass
  // (once a second) has had much chance to run; the segment files go on the
  // deleter's thread, so they are counted once it had a moment.
  auto r = Run("head -c 8M /dev/zero | dd of=\"$M/big\" bs=8M iflag=fullblock oflag=append conv=notrunc status=none; "
               "s=$(\"$CTL\" stat \"$M/big\" | grep -E '^(head|size)='); "
               "for i in $(seq 100); do n=$(ls \"$B/big\" | grep -c '\\.seg$'); [ \"$n\" = 1 ] && break; sleep 0.1; done; "
               "echo \"$n\"; echo \"$s\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The last 256 KiB fill the tail, which alone keeps enough: every sealed
  // segment went, the head is at 7.75 MiB.
  EXPECT_EQ(r.output, "1\nhead=" + std::to_string(31 << 18) + "\nsize=" + std::to_string(8 << 20) + "\n") << r.output;
}

TEST_F(RetentionMountTest, ReadersCachedPagesOfADroppedRangeAreInvalidated) {
  Mount();
  ASSERT_EQ(Run("head -c 3145728 /dev/urandom > \"$M/log\"; head -c 10 /dev/urandom >> \"$M/log\"").exit_code, 0);
  // Read it whole, so the kernel keeps its pages (keep_cache).
  auto r = Run("cat \"$M/log\" > /dev/null; head -c 8 \"$M/log\" | od -An -tx1 | tr -d ' \\n'");
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_NE(r.output, std::string(16, '0')) << "random bytes";
  ASSERT_EQ(Run("\"$CTL\" set \"$M/log\" retain_bytes=1").exit_code, 0);
  ASSERT_TRUE(WaitForBackingSegments("log", 1, seconds(20))) << daemon_->Log();
  // The daemon told the kernel to drop its copy: the pruned range reads as zeros.
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  do {
    r = Run("head -c 3145728 \"$M/log\" | tr -d '\\0' | wc -c");
    if (r.output == "0\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.output, "0\n") << "stale cached bytes below the head";
}

TEST_F(RetentionMountTest, CronExampleKeepsTheNewestBytesOnHpfsAndOnAPlainFilesystem) {
  Mount();
  ASSERT_EQ(Run("seq -w 1 700000 > \"$M/log\"; cp \"$M/log\" '" + S("plain") + "'").exit_code, 0);
  auto r = Run("rc=0; \"$RETAIN\" 1M \"$M/log\" '" + S("plain") + "' || rc=$?; echo rc=$rc");
  EXPECT_EQ(r.output, "rc=0\n") << r.output;
  // Size and the newest bytes stay; everything before the newest MiB reads as zeros.
  for (const std::string& file : {M("log"), S("plain")}) {
    r = Run("f='" + file + "'; stat -c %s \"$f\"; tail -c 7 \"$f\"; "
            "head -c 3851424 \"$f\" | tr -d '\\0' | wc -c; tail -c 1048576 \"$f\" | tr -d '\\0' | wc -c");
    EXPECT_EQ(r.output, "4900000\n700000\n0\n1048576\n") << file << ": " << r.output;
  }
  r = Run("\"$CTL\" stat \"$M/log\" | grep -E '^(head|segments)='");
  EXPECT_EQ(r.output, "head=3851424\nsegments=2\n") << r.output;
  EXPECT_EQ(Run("rc=0; \"$RETAIN\" 1M \"$M/nothing\" 2>/dev/null || rc=$?; echo rc=$rc").output, "rc=1\n");
  EXPECT_EQ(Run("rc=0; \"$RETAIN\" lots \"$M/log\" 2>/dev/null || rc=$?; echo rc=$rc").output, "rc=2\n");
}

}  // namespace
}  // namespace hpfs::mount_test
