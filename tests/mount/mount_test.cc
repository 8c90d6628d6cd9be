// SPDX-License-Identifier: Apache-2.0
// Real-mount tests: the standard tools a user would run against an hpfs mount.
// Each test owns its scratch directories and its daemon; the harness unmounts
// and reaps the daemon whatever happens.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fs/hpfs_ioctl.h"
#include "fs/kernel_features.h"
#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

class MountTest : public MountedTest {
 protected:
  // Runs `script` in the mount point under `set -e -o pipefail`.
  ShellResult Run(const std::string& script, seconds timeout = seconds(120)) {
    return Shell("set -e -o pipefail; cd '" + mnt_ + "'; " + script, timeout);
  }
};

#define RUN_OK(script)                                                           \
  do {                                                                           \
    const auto run_ok_result = Run(script);                                      \
    ASSERT_EQ(run_ok_result.exit_code, 0) << (script) << "\n" << run_ok_result.output; \
  } while (0)

std::string Out(const ShellResult& r) { return r.output; }


// --- basic tools ---

TEST_F(MountTest, EchoRedirectsCreateAndAppend) {
  Mount();
  RUN_OK("echo first > f; echo second >> f; echo third >> f");
  EXPECT_EQ(Out(Run("cat f")), "first\nsecond\nthird\n");
  // `>` on an existing file truncates it first, then writes at the (new) end.
  RUN_OK("echo again > f");
  EXPECT_EQ(Out(Run("cat f")), "again\n");
}

TEST_F(MountTest, DdAppendsAtEndAndRefusesToOverwriteTheMiddle) {
  Mount();
  RUN_OK("printf 0123456789 > f");
  auto middle = Run("dd if=/dev/zero of=f bs=1 count=2 seek=3 conv=notrunc status=none");
  EXPECT_NE(middle.exit_code, 0);
  EXPECT_NE(middle.output.find("Operation not permitted"), std::string::npos) << middle.output;
  EXPECT_EQ(Out(Run("cat f")), "0123456789");
  RUN_OK("printf abc | dd of=f oflag=append conv=notrunc status=none");
  RUN_OK("printf XY | dd of=f bs=1 seek=13 conv=notrunc status=none");
  EXPECT_EQ(Out(Run("cat f")), "0123456789abcXY");
  EXPECT_EQ(Out(Run("dd if=f bs=2 skip=2 count=3 status=none")), "456789");
}

TEST_F(MountTest, TailReadsTheEnd) {
  Mount();
  RUN_OK("seq 1 100000 > f");
  EXPECT_EQ(Out(Run("tail -c 13 f")), "99999\n100000\n");
  EXPECT_EQ(Out(Run("tail -n 2 f")), "99999\n100000\n");
}

TEST_F(MountTest, TailFollowSeesAppends) {
  Mount();
  RUN_OK("echo start > f");
  const std::string out = S("tail.out");
  // tail polls (-s) on FUSE; the script waits for each line to show up.
  auto r = Run("tail -s 0.1 -f f > '" + out + "' & tail_pid=$!; "
               "for i in 1 2 3; do echo line$i >> f; "
               "  for t in $(seq 100); do grep -q line$i '" + out + "' && break; sleep 0.1; done; "
               "done; kill $tail_pid; cat '" + out + "'",
               seconds(60));
  EXPECT_EQ(r.output, "start\nline1\nline2\nline3\n");
}

TEST_F(MountTest, FallocatePunchOfTheHeadFreesSpaceAndReadsZeros) {
  Mount();
  RUN_OK("head -c 4M /dev/urandom > '" + S("src") + "'; cp '" + S("src") + "' f");
  const long before = std::stol(Out(Run("du -k f | cut -f1")));
  RUN_OK("fallocate -p -o 0 -l 2M f");
  // The space below the head inside a segment is released by the daemon's
  // deleter right after the punch returns (like whole segments): wait for it.
  long after = before;
  for (int i = 0; i < 100 && after > before - 2048; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = std::stol(Out(Run("du -k f | cut -f1")));
  }
  EXPECT_GE(before, 4096);
  EXPECT_LE(after, before - 2048) << "du before " << before << " after " << after;
  EXPECT_EQ(Out(Run("stat -c %s f")), "4194304\n");
  RUN_OK("cmp -n 2097152 f /dev/zero");
  RUN_OK("cmp -i 2097152 f '" + S("src") + "'");
  // Punching above the head is not something an HPFile can do.
  auto refused = Run("fallocate -p -o 3M -l 4096 f");
  EXPECT_NE(refused.exit_code, 0);
  // util-linux words EOPNOTSUPP for a punch as "keep size mode is unsupported".
  EXPECT_NE(refused.output.find("unsupported"), std::string::npos) << refused.output;
  auto zero = Run("fallocate -z -o 0 -l 4096 f");
  EXPECT_NE(zero.exit_code, 0);
  EXPECT_EQ(Out(Run("stat -c %s f")), "4194304\n");
}

TEST_F(MountTest, DuFallsOnceTheDeleterFreedTheSegmentsAHeadPunchDropped) {
  Mount({"-o", "segment_size=4K"});
  // A logger holds its file open while a retention job punches the head.
  const int fd = ::open(M("f").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string mib(1 << 20, 'x');
  for (int i = 0; i < 40; ++i) ASSERT_EQ(::write(fd, mib.data(), mib.size()), static_cast<ssize_t>(mib.size()));
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 36 << 20), 0) << std::strerror(errno);
  // The 9,216 segment files go in the background; st_blocks counts them until
  // then and must not stay at the kernel's cached figure once they are gone.
  struct stat st {};
  for (int i = 0; i < 300; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_EQ(::stat(M("f").c_str(), &st), 0);
    if (st.st_blocks <= (4 << 20) / 512 + 64) break;
  }
  EXPECT_LE(st.st_blocks, (4 << 20) / 512 + 64) << "segment files left: " << mount_test::SegmentFiles(B("f"));
  EXPECT_EQ(mount_test::SegmentFiles(B("f")), 1024u);
  ::close(fd);
}

TEST_F(MountTest, TruncateShrinksAndGrows) {
  Mount();
  RUN_OK("printf abcdefgh > f; truncate -s 3 f");
  EXPECT_EQ(Out(Run("cat f")), "abc");
  RUN_OK("truncate -s 6 f");
  EXPECT_EQ(Out(Run("od -An -c f | tr -s ' '")), " a b c \\0 \\0 \\0\n");
  RUN_OK("printf Z >> f");
  EXPECT_EQ(Out(Run("stat -c %s f")), "7\n");
}

// --- grows of any size ---

// What a grow may cost in segment files: the gap's on a backing filesystem
// that caps files at 16 TiB (ext4), the grown old tail and the new tail.
constexpr int kMostSegmentsForAGrow = 130;

TEST_F(MountTest, TruncateToAPetabyteIsQuickAndCostsAFewSegmentFiles) {
  Mount();
  RUN_OK("echo start > f");
  const auto started = std::chrono::steady_clock::now();
  RUN_OK("truncate -s 999999999999999 f");
  // Milliseconds on an idle machine (it once took minutes and 15 million files).
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(10));
  EXPECT_EQ(Out(Run("stat -c %s f")), "999999999999999\n");
  EXPECT_LE(std::stoi(Out(Run("ls '" + B("f") + "' | grep -c '\\.seg$'"))), kMostSegmentsForAGrow);
  EXPECT_EQ(Out(Run("head -c 6 f")), "start\n");
  EXPECT_EQ(Out(Run("dd if=f bs=4096 skip=100000000000 count=1 status=none | tr -d '\\0' | wc -c")), "0\n");
  EXPECT_EQ(Out(Run("tail -c 4096 f | tr -d '\\0' | wc -c")), "0\n");
  RUN_OK("echo end >> f");
  EXPECT_EQ(Out(Run("tail -c 4 f")), "end\n");
  EXPECT_EQ(Out(Run("stat -c %s f")), "1000000000000003\n");
  // Back into the gap, and on from there.
  RUN_OK("truncate -s 500000000000000 f; echo again >> f");
  EXPECT_EQ(Out(Run("tail -c 6 f; stat -c %s f")), "again\n500000000000006\n");
  RUN_OK("sync f");
}

TEST_F(MountTest, WriteFarPastTheEndLeavesZerosAndCostsAFewSegmentFiles) {
  Mount();
  RUN_OK("printf x | dd of=f bs=1 seek=123456789012345 conv=notrunc status=none");
  EXPECT_EQ(Out(Run("stat -c %s f; tail -c 1 f")), "123456789012346\nx");
  EXPECT_LE(std::stoi(Out(Run("ls '" + B("f") + "' | grep -c '\\.seg$'"))), kMostSegmentsForAGrow);
  EXPECT_EQ(Out(Run("dd if=f bs=4096 skip=1000000000 count=1 status=none | tr -d '\\0' | wc -c")), "0\n");
}

TEST_F(MountTest, FallocatePastTheEndGrowsCheaply) {
  Mount();
  RUN_OK("echo a > f; fallocate -l 999999999999999 f");
  EXPECT_EQ(Out(Run("stat -c %s f; head -c 2 f")), "999999999999999\na\n");
  EXPECT_LE(std::stoi(Out(Run("ls '" + B("f") + "' | grep -c '\\.seg$'"))), kMostSegmentsForAGrow);
}

TEST_F(MountTest, GrowingPastTheLargestFileSizeFailsWithEfbig) {
  Mount();
  RUN_OK("echo a > f");
  const std::string max = std::to_string(1ull << 50);
  const std::string past = std::to_string((1ull << 50) + 1);
  auto r = Run("truncate -s " + past + " f");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  r = Run("fallocate -l " + past + " f");
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  r = Run("printf x | dd of=f bs=1 seek=" + max + " conv=notrunc status=none");
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  EXPECT_EQ(Out(Run("stat -c %s f")), "2\n");
  // Up to the largest size is fine; nothing fits after it.
  RUN_OK("truncate -s " + max + " f");
  if (WritebackMode()) {
    // The page cache takes the append; its write-back fails, and fsync says so.
    r = Run("printf b | dd of=f oflag=append conv=notrunc,fsync status=none");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
    // The kernel's size went ahead of the stored one; a truncate brings them together.
    RUN_OK("truncate -s " + max + " f");
  } else {
    r = Run("echo b >> f");
    EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  }
  EXPECT_EQ(Out(Run("stat -c %s f")), max + "\n");
}

TEST_F(MountTest, StatAndLsShowModesOwnersAndSizes) {
  Mount();
  RUN_OK("printf 12345 > f; chmod 640 f; mkdir d; chmod 750 d; ln -s f l");
  EXPECT_EQ(Out(Run("stat -c '%s %a %F' f")), "5 640 regular file\n");
  EXPECT_EQ(Out(Run("stat -c '%a %F' d")), "750 directory\n");
  EXPECT_EQ(Out(Run("readlink l")), "f\n");
  EXPECT_EQ(Out(Run("ls -l f | cut -c1-10")), "-rw-r-----\n");
  EXPECT_EQ(Out(Run("ls -A")), "d\nf\nl\n");
  EXPECT_EQ(Out(Run("cat l")), "12345");
  auto ln = Run("ln f hard");
  EXPECT_NE(ln.exit_code, 0);
  auto fifo = Run("mkfifo p");
  EXPECT_NE(fifo.exit_code, 0);
}

TEST_F(MountTest, ReservedNamesAreInvisibleAndRefused) {
  Mount();
  EXPECT_EQ(Out(Run("ls -A")), "");
  EXPECT_NE(Run("ls .hpfs-trash").exit_code, 0);
  EXPECT_NE(Run("touch .hpfs.lock").exit_code, 0);
  EXPECT_NE(Run("mkdir .hpfs-trash").exit_code, 0);
}

TEST_F(MountTest, MvRenamesAndReplaces) {
  Mount();
  RUN_OK("echo a > a; echo b > b; mkdir d; mv a d/a2; mv b d/a2");
  EXPECT_EQ(Out(Run("ls -A . d")), ".:\nd\n\nd:\na2\n");
  EXPECT_EQ(Out(Run("cat d/a2")), "b\n");
  RUN_OK("mv d e");
  EXPECT_EQ(Out(Run("cat e/a2")), "b\n");
}

TEST_F(MountTest, RmOfAnOpenFileKeepsItReadableUntilClosed) {
  Mount();
  RUN_OK("seq 1 1000 > f");
  auto r = Run("exec 3< f; rm f; test ! -e f; ls -A; wc -l <&3; ls -A '" + B(".hpfs-trash") + "' | wc -l");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "1000\n1\n");
  // Closed (the shell exited): the storage goes.
  EXPECT_TRUE(Eventually([&] { return std::filesystem::is_empty(B(".hpfs-trash")); }));
}

TEST_F(MountTest, RmOfAFileOfManySegmentsFreesItsStorage) {
  Mount({"-o", "segment_size=4K"});
  RUN_OK("head -c 8M /dev/zero > big; echo kept > other");
  ASSERT_EQ(Out(Run("ls '" + B("big") + "' | grep -c seg")), "2048\n");
  RUN_OK("rm big; test ! -e big");
  EXPECT_EQ(Out(Run("ls")), "other\n");
  EXPECT_TRUE(Eventually([&] { return std::filesystem::is_empty(B(".hpfs-trash")); }, seconds(60)));
  EXPECT_EQ(Out(Run("cat other")), "kept\n");
}

TEST_F(MountTest, UnmountRightAfterRmStillFreesTheStorage) {
  Mount({"-o", "segment_size=4K"});
  RUN_OK("head -c 4M /dev/zero > big; rm big");
  Unmount();
  EXPECT_TRUE(std::filesystem::is_empty(B(".hpfs-trash")));
  EXPECT_FALSE(std::filesystem::exists(B("big")));
}

TEST_F(MountTest, MknodOfARegularFileCreatesAnEmptyFile) {
  Mount();
  ASSERT_EQ(::mknod(M("r").c_str(), S_IFREG | 0640, 0), 0) << std::strerror(errno);
  EXPECT_EQ(Out(Run("stat -c '%s %a %F' r")), "0 640 regular empty file\n");
  RUN_OK("echo x >> r");
  EXPECT_EQ(Out(Run("cat r")), "x\n");
  EXPECT_EQ(::mknod(M("r").c_str(), S_IFREG | 0640, 0), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(MountTest, CpOfATreeInComesBackIdentical) {
  Mount();
  const std::string src = S("tree");
  ASSERT_EQ(Shell("set -e; mkdir -p '" + src + "'/a/b/c '" + src + "'/empty; cd '" + src + "'; "
                  "seq 1 50000 > a/nums; head -c 3M /dev/urandom > a/b/rand; : > a/b/c/zero; "
                  "echo hi > top; ln -s a/nums link")
                .exit_code,
            0);
  RUN_OK("cp -r '" + src + "' copy");
  auto diff = Run("diff -r --no-dereference '" + src + "' copy");
  EXPECT_EQ(diff.exit_code, 0) << diff.output;
}

TEST_F(MountTest, CpOfSparseFilesWritesPastTheEndAndComesBackIdentical) {
  Mount();
  const std::string sparse = S("sparse");
  // Holes at the start, in the middle and at the end: cp seeks over each.
  RUN_OK("truncate -s 3M '" + sparse + "'; printf data | dd of='" + sparse +
         "' bs=1 seek=1048576 conv=notrunc status=none");
  RUN_OK("cp --sparse=always '" + sparse + "' copy");
  RUN_OK("cmp '" + sparse + "' copy");
  // An hpfs file whose head was dropped reads as a hole there; copying it
  // within the mount works the same way.
  RUN_OK("head -c 2M /dev/urandom > pruned; fallocate -p -o 0 -l 1M pruned");
  RUN_OK("cp --sparse=always pruned pruned.copy");
  RUN_OK("cmp pruned pruned.copy");
}

TEST_F(MountTest, LargeFileWrittenAndReadBackHasTheSameSha256) {
  Mount({"-o", "segment_size=4M"});
  RUN_OK("head -c 64M /dev/urandom > '" + S("big") + "'");
  RUN_OK("dd if='" + S("big") + "' of=big bs=1M status=none");
  const std::string expected = Out(Run("sha256sum < '" + S("big") + "'"));
  EXPECT_EQ(Out(Run("sha256sum < big")), expected);
  // Again from a cold cache, through a fresh mount.
  Unmount();
  Mount({"-o", "segment_size=4M"});
  EXPECT_EQ(Out(Run("sha256sum < big")), expected);
  EXPECT_EQ(Out(Run("ls '" + B("big") + "' | grep -c seg")), "16\n");
}

TEST_F(MountTest, ReadOnlyMmapSeesTheContent) {
  Mount();
  RUN_OK("seq 1 200000 > f");
  const std::string expected = Out(Run("cat f"));
  const int fd = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = ::mmap(nullptr, expected.size(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::string(static_cast<const char*>(map), expected.size()), expected);
  ::munmap(map, expected.size());
  ::close(fd);
}

TEST_F(MountTest, ReadWriteHandleReadsWhatItAppends) {
  Mount();
  RUN_OK("printf 'first line\\n' > f");
  const int fd = ::open(M("f").c_str(), O_RDWR | O_APPEND);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string more = "second line\n";
  ASSERT_EQ(::write(fd, more.data(), more.size()), static_cast<ssize_t>(more.size()));
  char buf[64] = {};
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 23) << std::strerror(errno);
  EXPECT_EQ(std::string(buf, 23), "first line\nsecond line\n");
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 6), 17);
  EXPECT_EQ(std::string(buf, 17), "line\nsecond line\n");
  EXPECT_EQ(::pread(fd, buf, sizeof buf, 23), 0);
  // A shared mapping of a writable handle would let stores change bytes that
  // can never change; with direct I/O the kernel refuses it up front.
  void* map = ::mmap(nullptr, 23, PROT_READ, MAP_SHARED, fd, 0);
  if (DirectWritesKeepCachesCoherent()) {  // writable handles use direct I/O
    EXPECT_EQ(map, MAP_FAILED);
    EXPECT_EQ(errno, ENODEV);
  } else {
    ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
    ::munmap(map, 23);
  }
  // A private mapping is a copy and works either way.
  void* copy = ::mmap(nullptr, 23, PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(copy, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(std::string(static_cast<const char*>(copy), 23), "first line\nsecond line\n");
  ::munmap(copy, 23);
  ::close(fd);
  EXPECT_EQ(Out(Run("cat f")), "first line\nsecond line\n");
}

TEST_F(MountTest, ConcurrentAppendWritersKeepEveryLineWhole) {
  Mount();
  // Long lines (several per page, none page-aligned) from 4 writers.
  auto r = Run("pad=$(printf '%0200d' 0); for w in 1 2 3 4; do "
               "( for i in $(seq 1 500); do echo \"writer$w line$i $pad\" >> f; done ) & done; wait");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(Out(Run("wc -l < f")), "2000\n");
  EXPECT_EQ(Out(Run("grep -cvE '^writer[1-4] line[0-9]+ 0{200}$' f || true")), "0\n");
  for (int w = 1; w <= 4; ++w) {
    // Each writer's lines appear once each, in order.
    const std::string w_str = std::to_string(w);
    EXPECT_EQ(Out(Run("grep '^writer" + w_str + " ' f | cut -d' ' -f2 | tr -d line | paste -sd' '")),
              Out(Shell("seq 1 500 | paste -sd' '")));
  }
}

// --- daemon lifecycle ---

TEST_F(MountTest, RemountKeepsContentHeadAndModes) {
  Mount();
  RUN_OK("head -c 3M /dev/urandom > '" + S("src") + "'; cp '" + S("src") + "' f; chmod 604 f; "
         "mkdir -m 711 d; fallocate -p -o 0 -l 1M f");
  const std::string ino = Out(Run("stat -c %i f"));
  Unmount();
  Mount();
  EXPECT_EQ(Out(Run("stat -c '%s %a' f")), "3145728 604\n");
  EXPECT_EQ(Out(Run("stat -c %a d")), "711\n");
  EXPECT_EQ(Out(Run("stat -c %i f")), ino);
  RUN_OK("cmp -n 1048576 f /dev/zero");
  RUN_OK("cmp -i 1048576 f '" + S("src") + "'");
  EXPECT_EQ(Out(Run("ls '" + B("f") + "' | grep -c seg")), "2\n");
}

TEST_F(MountTest, SigtermUnmountsAndExitsZero) {
  Mount();
  RUN_OK("echo data > f");
  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  const int status = daemon_->WaitExit(seconds(20));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(IsMountPoint(mnt_));
}

// Appenders, readers and a petabyte grow are in flight when SIGTERM arrives:
// the daemon finishes them, syncs, unmounts and exits within seconds.
TEST_F(MountTest, SigtermStopsTheDaemonPromptlyWithRequestsInFlight) {
  Mount();
  RUN_OK("seq 100000 > log");
  std::thread load([this] {
    Shell("cd '" + mnt_ + "' || exit; "
          "(while [ -e log ]; do echo line >> log || break; done) & "
          "(while [ -e log ]; do cat log > /dev/null || break; done) & "
          "(while [ -e log ]; do truncate -s 0 big && truncate -s 999999999999999 big || break; done) & "
          "wait",
          seconds(60));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto signalled = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  const int status = daemon_->WaitExit(seconds(20));
  const auto took = std::chrono::steady_clock::now() - signalled;
  load.join();
  ASSERT_NE(status, -1) << "the daemon did not exit within 20 s of SIGTERM";
  EXPECT_LT(took, seconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(IsMountPoint(mnt_));
}

TEST_F(MountTest, SigkillDuringAppendsLosesNoAcknowledgedWrite) {
  Mount();
  const int fd = ::open(M("log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    for (uint64_t i = 0; !stop; ++i) {
      char line[64];
      const int n = std::snprintf(line, sizeof line, "record %012llu\n", static_cast<unsigned long long>(i));
      if (::write(fd, line, static_cast<size_t>(n)) != n) break;
      acknowledged += static_cast<uint64_t>(n);
    }
    writer_done = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (acknowledged < 1000 * 20 && !writer_done && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_FALSE(writer_done) << "the writer failed before the daemon was killed";
  ASSERT_EQ(::kill(daemon_->pid(), SIGKILL), 0);
  daemon_->WaitExit(seconds(20));
  stop = true;
  writer.join();
  ::close(fd);
  daemon_->Stop();  // clears the dead mount
  Mount();
  const uint64_t acked = acknowledged;
  const off_t size = std::stoll(Out(Run("stat -c %s log")));
  // Write-back mode may lose the last commit interval (the drills bound
  // that): what is there is still a prefix of what was written.
  if (!WritebackMode()) {
    EXPECT_GE(static_cast<uint64_t>(size), acked);
  }
  // Every record that exists is whole and in sequence (in write-back mode the
  // file may end inside the last one).
  const std::string whole = WritebackMode() ? "head -c $(( $(stat -c %s log) / 20 * 20 )) log" : "cat log";
  EXPECT_EQ(Out(Run(whole + " | awk '{ if ($0 != sprintf(\"record %012d\", NR-1)) bad++ } END { print bad+0 }'")),
            "0\n");
}

TEST_F(MountTest, SecondDaemonOnTheSameBackingIsRefused) {
  Mount();
  const std::string other = S("other");
  std::filesystem::create_directories(other);
  auto r = RunDaemonToExit({"-f", backing_, other}, seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("already in use"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMountPoint(other));
}

TEST_F(MountTest, BadOptionsFailBeforeMountingAndNameTheOption) {
  struct Case {
    std::vector<std::string> args;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{"-o", "segment_size=lots"}, "segment_size"},
      {{"-o", "segment_size=0"}, "segment_size"},
      {{"-o", "retain_seconds=1y"}, "retain_seconds"},
      {{"-o", "log_level=chatty"}, "log_level"},
      {{"-o", "no_such_option"}, "no_such_option"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"-f"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.push_back(backing_);
    args.push_back(mnt_);
    auto r = RunDaemonToExit(args, seconds(20));
    EXPECT_NE(r.exit_code, 0) << c.named;
    EXPECT_NE(r.output.find(c.named), std::string::npos) << r.output;
    EXPECT_FALSE(IsMountPoint(mnt_)) << c.named;
    // Refused before the backing directory is locked or touched.
    EXPECT_TRUE(std::filesystem::is_empty(backing_)) << c.named;
  }
  auto help = RunDaemonToExit({"--help"}, seconds(20));
  EXPECT_EQ(help.exit_code, 0);
  for (const char* option : {"segment_size=", "retain_bytes=", "retain_seconds=", "xattr", "log_level="}) {
    EXPECT_NE(help.output.find(option), std::string::npos) << option;
  }
  auto version = RunDaemonToExit({"--version"}, seconds(20));
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(version.output.starts_with("hpfs version ")) << version.output;
}

// What goes wrong before the mount must reach the terminal, also when the
// daemon would go to the background (and log to syslog) after mounting.
TEST_F(MountTest, BackingThatIsItselfAFileIsRefusedOnTheTerminal) {
  Mount();
  RUN_OK("echo x > f");
  Unmount();
  auto r = RunDaemonToExit({B("f"), mnt_}, seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("itself an HPFile"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMountPoint(mnt_));
}

TEST_F(MountTest, DamagedFileGivesEioInItsGapWhileOtherFilesWork) {
  Mount();
  RUN_OK("head -c 3M /dev/urandom > bad; echo fine > good");
  Unmount();
  std::filesystem::remove(B("bad/00000000000001048576-1048576.seg"));
  Mount();
  auto cat = Run("cat bad > /dev/null");
  EXPECT_NE(cat.exit_code, 0);
  EXPECT_NE(cat.output.find("Input/output error"), std::string::npos) << cat.output;
  RUN_OK("head -c 4096 bad > /dev/null");
  EXPECT_EQ(Out(Run("cat good")), "fine\n");
  // In write-back mode the append's error shows at fsync.
  auto append = Run(WritebackMode() ? "printf more | dd of=bad oflag=append conv=notrunc,fsync status=none"
                                    : "echo more >> bad");
  EXPECT_NE(append.exit_code, 0);
  RUN_OK("echo new > new; cat new");
  EXPECT_NE(daemon_->Log().find("damaged"), std::string::npos);
}

// --- control interfaces ---

TEST_F(MountTest, XattrsAreEnosysByDefault) {
  Mount();
  RUN_OK("echo x > f");
  auto r = Run("getfattr -n user.hpfs.size f");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Operation not supported"), std::string::npos) << r.output;
}

TEST_F(MountTest, XattrOptionServesHpfsKeys) {
  Mount({"-o", "segment_size=1M,xattr"});
  RUN_OK("printf 12345 > f");
  EXPECT_EQ(Out(Run("getfattr --only-values -n user.hpfs.size f")), "5");
  RUN_OK("setfattr -n user.hpfs.retain_bytes -v 2M f");
  EXPECT_EQ(Out(Run("getfattr --only-values -n user.hpfs.retain_bytes f")), "2097152");
  EXPECT_NE(Run("setfattr -n user.hpfs.head -v 1 f").exit_code, 0);
  EXPECT_NE(Run("setfattr -n user.hpfs.segment_size -v nonsense f").exit_code, 0);
  EXPECT_NE(Out(Run("getfattr -d f")).find("user.hpfs.segment_size=\"1048576\""), std::string::npos);
}

TEST_F(MountTest, IoctlsReportAndChangeAFile) {
  Mount();
  RUN_OK("head -c 2500000 /dev/zero > f");
  const int fd = ::open(M("f").c_str(), O_RDWR | O_APPEND);
  ASSERT_GE(fd, 0);
  hpfs_stat st{};
  ASSERT_EQ(::ioctl(fd, HPFS_IOC_STAT, &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.size, 2500000u);
  EXPECT_EQ(st.segments, 3u);
  EXPECT_EQ(st.segment_size, 1u << 20);
  hpfs_set set{};
  set.mask = HPFS_SET_SEGMENT_SIZE;
  set.segment_size = 0;
  EXPECT_EQ(::ioctl(fd, HPFS_IOC_SET, &set), -1);
  EXPECT_EQ(errno, EINVAL);
  set.segment_size = 2 << 20;
  ASSERT_EQ(::ioctl(fd, HPFS_IOC_SET, &set), 0) << std::strerror(errno);
  ASSERT_EQ(::ioctl(fd, HPFS_IOC_STAT, &st), 0);
  EXPECT_EQ(st.segment_size, 2u << 20);
  ::close(fd);
  const int ro = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(ro, 0);
  EXPECT_EQ(::ioctl(ro, HPFS_IOC_SET, &set), -1);
  EXPECT_EQ(errno, EBADF);
  ::close(ro);
}

TEST_F(MountTest, SeekDataAndHoleFollowTheHead) {
  Mount();
  RUN_OK("head -c 3M /dev/zero > f; fallocate -p -o 0 -l 1M f");
  const int fd = ::open(M("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, 0, SEEK_DATA), 1 << 20);
  EXPECT_EQ(::lseek(fd, 0, SEEK_HOLE), 0);
  EXPECT_EQ(::lseek(fd, 1 << 20, SEEK_HOLE), 3 << 20);
  EXPECT_EQ(::lseek(fd, 3 << 20, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  ::close(fd);
}

TEST_F(MountTest, StatfsReportsTheBackingFilesystem) {
  Mount();
  EXPECT_EQ(Out(Run("stat -f -c '%b %S' .")), Out(Shell("stat -f -c '%b %S' '" + backing_ + "'")));
}

}  // namespace
}  // namespace hpfs::mount_test
