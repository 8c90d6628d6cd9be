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
