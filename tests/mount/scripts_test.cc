// SPDX-License-Identifier: Apache-2.0
// The helper scripts as a newcomer meets them: their --help, scripts/mount
// as a user who may not open /dev/fuse and as root, scripts/umount on a busy
// mount; and what else a newcomer reads first: hpfs --help next to hpfs(8),
// and the license.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

std::string SourceRoot() {
  const char* root = std::getenv("HPFS_SOURCE_ROOT");
  return root != nullptr ? root : ".";
}

std::string BuildRoot() {
  const char* root = std::getenv("HPFS_BUILD_ROOT");
  return root != nullptr ? root : "build";
}

std::string Script(const std::string& name) { return SourceRoot() + "/scripts/" + name; }

// The comment block a script's --help prints: from line 2 up to the first
// line that is not a comment, each without its "# ".
std::string Header(const std::string& path) {
  std::ifstream in(path);
  std::string line, header;
  std::getline(in, line);  // #!
  while (std::getline(in, line) && line.starts_with("#")) {
    header += line.substr(line.starts_with("# ") ? 2 : 1) + "\n";
  }
  return header;
}

// The commands in scripts/: its executable files (lib.sh and deps.sh are
// sourced, not run).
std::vector<std::string> ScriptNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(SourceRoot() + "/scripts")) {
    if (entry.is_regular_file() && ::access(entry.path().c_str(), X_OK) == 0) {
      names.push_back(entry.path().filename());
    }
  }
  std::ranges::sort(names);
  return names;
}

int CountLines(const std::string& text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

TEST(ScriptsHelpTest, EachScriptPrintsItsWholeHeader) {
  const auto names = ScriptNames();
  for (const std::string known : {"mount", "umount", "test", "bench", "package", "retain-example"}) {
    EXPECT_NE(std::ranges::find(names, known), names.end()) << known;
  }
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const std::string header = Header(Script(name));
    ASSERT_GE(CountLines(header), 3) << "scripts/" << name << " has no header comment to print as its help";
    auto help = Shell("'" + Script(name) + "' --help", seconds(30));
    EXPECT_EQ(help.exit_code, 0) << help.output;
    EXPECT_EQ(help.output, header);
  }
}

// hpfs --help and hpfs(8) describe the same options the same way.
TEST(DaemonHelpTest, AgreesWithTheManPageAndEndsWithItsLastLine) {
  auto help = RunDaemonToExit({"--help"}, seconds(20));
  ASSERT_EQ(help.exit_code, 0) << help.output;
  const std::string man = ReadFile(SourceRoot() + "/docs/man/hpfs.8");
  ASSERT_FALSE(man.empty());
  // clone_fd: accepted, but each thread always has its own descriptor.
  const auto clone_fd = help.output.find("-o clone_fd");
  ASSERT_NE(clone_fd, std::string::npos) << help.output;
  EXPECT_NE(help.output.find("ignored", clone_fd), std::string::npos) << help.output;
  EXPECT_NE(man.find(".B clone_fd\nAccepted for compatibility"), std::string::npos);
  for (const std::string option : {"log_file", "noallow_other", "allow_root", "auto_unmount", "max_threads"}) {
    EXPECT_NE(help.output.find(option), std::string::npos) << option;
    EXPECT_NE(man.find(option), std::string::npos) << option;
  }
  EXPECT_TRUE(help.output.ends_with("see hpfs(8).\n")) << help.output;
}

// Apache-2.0: the text at the top, the Debian packages' terms in
// machine-readable form, and the README's last section.
TEST(LicenseTest, SourceTreeCarriesApacheTwoEverywhereItIsLookedFor) {
  const std::string license = ReadFile(SourceRoot() + "/LICENSE");
  EXPECT_NE(license.find("Apache License\n                           Version 2.0, January 2004"), std::string::npos);
  const std::string debian_text = ReadFile("/usr/share/common-licenses/Apache-2.0");
  if (!debian_text.empty()) {
    EXPECT_EQ(license, debian_text);
  }

  const std::string copyright = ReadFile(SourceRoot() + "/packaging/debian/copyright");
  EXPECT_TRUE(copyright.starts_with("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"));
  EXPECT_NE(copyright.find("\nFiles: *\nCopyright: "), std::string::npos) << copyright;
  EXPECT_NE(copyright.find("\nLicense: Apache-2.0\n\nLicense: Apache-2.0\n Licensed under the Apache License"),
            std::string::npos)
      << copyright;
  EXPECT_NE(copyright.find("/usr/share/common-licenses/Apache-2.0"), std::string::npos) << copyright;
  EXPECT_EQ(copyright.find("rights reserved"), std::string::npos) << copyright;

  const std::string readme = ReadFile(SourceRoot() + "/README.md");
  const auto last_section = readme.rfind("\n## ");
  ASSERT_NE(last_section, std::string::npos);
  EXPECT_TRUE(readme.substr(last_section).starts_with("\n## License\n")) << readme.substr(last_section);
  EXPECT_NE(readme.find("Apache\nLicense, Version 2.0: see [LICENSE](LICENSE)", last_section), std::string::npos);
}

// Every source file says its license where tools look for it (REUSE, SPDX).
TEST(LicenseTest, EverySourceFileCarriesAnSpdxLine) {
  const std::string tag = "SPDX-License-Identifier: Apache-2.0";
  std::vector<std::string> missing;
  size_t checked = 0;
  for (const char* top : {"core", "fs", "tests", "docs", "scripts"}) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(SourceRoot() + "/" + top)) {
      if (!entry.is_regular_file()) continue;
      const std::filesystem::path& path = entry.path();
      const std::string ext = path.extension().string();
      const bool script = std::string(top) == "scripts";
      if (!script && ext != ".cc" && ext != ".h" && ext != ".py" && path.filename() != "meson.build") continue;
      if (path.string().find("__pycache__") != std::string::npos) continue;
      ++checked;
      if (ReadFile(path.string()).find(tag) == std::string::npos) missing.push_back(path.string());
    }
  }
  EXPECT_GT(checked, 50u);
  EXPECT_TRUE(missing.empty()) << missing.size() << " files without \"" << tag << "\", e.g. " << missing.front();
}

class ScriptsTest : public MountedTest {
 protected:
  // Unmounts what scripts/mount mounted (the harness only knows daemons it
  // started itself) and waits until the daemon let go of the backing lock.
  void WaitForDetachedDaemonExit() {
    const std::string lock = backing_ + "/.hpfs.lock";
    EXPECT_TRUE(Eventually([&] { return Shell("flock -n '" + lock + "' true").exit_code == 0; }, seconds(30)))
        << "the daemon did not exit";
  }
};

TEST_F(ScriptsTest, UmountOfABusyMountNamesTheProcessesInOneLine) {
  Mount();
  ASSERT_EQ(Shell("echo x > '" + M("held") + "'").exit_code, 0);
  const int held = ::open(M("held").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  auto busy = Shell("'" + Script("umount") + "' '" + mnt_ + "'", seconds(60));
  ::close(held);
  EXPECT_EQ(busy.exit_code, 1) << busy.output;
  EXPECT_EQ(CountLines(busy.output), 1) << busy.output;
  EXPECT_NE(busy.output.find("busy"), std::string::npos) << busy.output;
  EXPECT_NE(busy.output.find(std::to_string(::getpid())), std::string::npos) << busy.output;
  EXPECT_NE(busy.output.find("fusermount3 -uz"), std::string::npos) << busy.output;
  EXPECT_TRUE(IsMountPoint(mnt_));

  auto done = Shell("'" + Script("umount") + "' '" + mnt_ + "'", seconds(60));
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_NE(done.output.find("unmounted"), std::string::npos) << done.output;
  EXPECT_EQ(daemon_->WaitExit(seconds(30)), 0);
}

TEST_F(ScriptsTest, MountAsAUserWhoCannotOpenDevFuseExplainsBeforeCreatingAnything) {
  if (::geteuid() != 0) GTEST_SKIP() << "staging another user's view of /dev/fuse needs root";
  ASSERT_EQ(Shell("command -v setpriv && command -v unshare").exit_code, 0) << "util-linux is needed";
  // The user must reach the script: a copy in the scratch directory, since
  // the checkout may lie under a directory only its owner can enter.
  ASSERT_EQ(::chmod(scratch_.path().c_str(), 0755), 0);
  std::filesystem::create_directories(S("tree/scripts"));
  for (const std::string name : {"mount", "lib.sh", "deps.sh"}) {
    std::filesystem::copy_file(Script(name), S("tree/scripts/" + name));
  }
  ASSERT_EQ(Shell("chmod -R a+rX '" + S("tree") + "' && : > '" + S("no-fuse") + "' && chmod 0600 '" +
                  S("no-fuse") + "'").exit_code,
            0);
  const std::string backing = S("user-backing");
  const std::string mountpoint = S("user-mnt");
  // /dev/fuse as a 0600 root device would be, in a mount namespace of the
  // test's own, whatever the machine's /dev/fuse allows.
  auto r = Shell("unshare -m sh -c \"mount --bind '" + S("no-fuse") + "' /dev/fuse && "
                 "setpriv --reuid=65534 --regid=65534 --clear-groups env HOME='" + S("") + "' HPFS_BUILD_DIR='" +
                     S("no-build") + "' bash '" + S("tree/scripts/mount") + "' '" + backing + "' '" + mountpoint +
                     "'\"",
                 seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot open /dev/fuse"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0666"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(backing));
  EXPECT_FALSE(std::filesystem::exists(mountpoint));
  EXPECT_FALSE(std::filesystem::exists(S("no-build")));
}

TEST_F(ScriptsTest, MountSaysWhereHpfsctlIsAndHowToLinkIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "scripts/mount as a user would install packages through sudo";
  // A PATH without any hpfsctl, so the script has to offer the link.
  auto r = Shell("PATH=/usr/sbin:/usr/bin:/sbin:/bin HPFS_BUILD_DIR='" + BuildRoot() + "' '" + Script("mount") +
                     "' '" + backing_ + "' '" + mnt_ + "'",
                 seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(IsMountPoint(mnt_));
  const std::string ctl = BuildRoot() + "/fs/hpfsctl";
  EXPECT_NE(r.output.find("hpfsctl is " + ctl), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ln -sf " + ctl + " /usr/local/bin/hpfsctl"), std::string::npos) << r.output;
  // The path it printed works.
  ASSERT_EQ(Shell("echo x > '" + M("f") + "'").exit_code, 0);
  auto stat = Shell("'" + ctl + "' stat '" + M("f") + "'");
  EXPECT_EQ(stat.exit_code, 0) << stat.output;

  auto done = Shell("'" + Script("umount") + "' '" + mnt_ + "'", seconds(60));
  EXPECT_EQ(done.exit_code, 0) << done.output;
  WaitForDetachedDaemonExit();
}

}  // namespace
}  // namespace hpfs::mount_test
