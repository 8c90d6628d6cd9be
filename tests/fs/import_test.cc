// SPDX-License-Identifier: Apache-2.0
// Plain files in a backing directory: what the filesystem layer answers for
// their names, and `hpfsctl import`, which turns them into HPFiles in place.
#include "fs/ctl/import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/format.h"
#include "core/segment_name.h"
#include "fs/backing_lock.h"
#include "fs/ctl/check.h"
#include "fs/ctl/ctl.h"
#include "fs/filesystem.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

namespace fmt_ = hpfile::format;
using testing::Bytes;
using testing::ListBacking;
using testing::Materialize;

class PlainFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A directory that hpfs has mounted: it holds the lock file.
    std::ofstream(B(std::string(fmt_::kLockName)));
  }

  std::string B(const std::string& rel) const { return dir_.path() + "/" + rel; }

  void WritePlain(const std::string& rel, const std::string& content, mode_t mode = 0640) {
    std::ofstream(B(rel), std::ios::binary) << content;
    ASSERT_EQ(::chmod(B(rel).c_str(), mode), 0);
  }

  struct Run {
    int status;
    std::string out;
    std::string err;
  };
  Run Import(const std::vector<std::string>& rels) {
    std::vector<std::string> paths;
    for (const auto& rel : rels) paths.push_back(B(rel));
    std::ostringstream out, err;
    const int status = ctl::ImportFiles(paths, out, err);
    return {status, out.str(), err.str()};
  }

  int Check() {
    std::ostringstream out, err;
    const int status = ctl::CheckBacking(dir_.path(), {}, out, err);
    EXPECT_EQ(status, ctl::kCheckClean) << out.str() << err.str();
    return status;
  }

  // What a mount serves for `rel` (a file at the top): its attributes and
  // bytes.
  struct Served {
    struct stat attr;
    std::string content;
  };
  Served Serve(const std::string& name) {
    auto fs = Filesystem::Open(dir_.path(), Config{});
    EXPECT_TRUE(fs) << fs.error().message();
    if (!fs) return {};
    auto entry = (*fs)->Lookup(kRootInode, name);
    EXPECT_TRUE(entry) << entry.error().message();
    if (!entry) return {};
    auto handle = (*fs)->OpenFile(entry->id, O_RDONLY);
    EXPECT_TRUE(handle);
    auto plan = (*fs)->Read(**handle, 0, 1 << 24);
    EXPECT_TRUE(plan);
    Served served{entry->attr, plan ? Materialize(*plan) : ""};
    (*fs)->Release(std::move(*handle));
    return served;
  }

  // What the next mount does with the trash: it deletes what it finds.
  void EmptyTrashByMounting() {
    auto fs = Filesystem::Open(dir_.path(), Config{});
    ASSERT_TRUE(fs);
    (*fs)->StartDeleter();
    (*fs)->WaitForDeletions();
  }

  testing::TempDir dir_;
};

// --- what the mount answers for the name of a plain file ---

TEST_F(PlainFilesTest, CreatingOverAPlainFileIsEexistAndLeavesItAlone) {
  WritePlain("syslog", "old lines\n");
  auto fs = Filesystem::Open(dir_.path(), Config{});
  ASSERT_TRUE(fs);
  const Caller caller{::geteuid(), ::getegid()};
  EXPECT_EQ((*fs)->Lookup(kRootInode, "syslog").error().value(), ENOENT);
  // open(O_CREAT) without O_EXCL, as `>>` does: the name is taken.
  auto created = (*fs)->Create(kRootInode, "syslog", 0644, O_WRONLY | O_CREAT | O_APPEND, caller);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().value(), EEXIST);
  EXPECT_EQ((*fs)->Create(kRootInode, "syslog", 0644, O_WRONLY | O_CREAT | O_EXCL, caller).error().value(), EEXIST);
  EXPECT_EQ((*fs)->Mknod(kRootInode, "syslog", S_IFREG | 0644, 0, caller).error().value(), EEXIST);
  EXPECT_EQ((*fs)->Mkdir(kRootInode, "syslog", 0755, caller).error().value(), EEXIST);
  EXPECT_EQ((*fs)->Symlink("x", kRootInode, "syslog", caller).error().value(), EEXIST);
  auto other = (*fs)->Create(kRootInode, "other", 0644, O_WRONLY | O_CREAT, caller);
  ASSERT_TRUE(other);
  (*fs)->Release(std::move(other->second));
  EXPECT_EQ((*fs)->Rename(kRootInode, "other", kRootInode, "syslog", 0).error().value(), EEXIST);
  std::ifstream in(B("syslog"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old lines\n");
}

// --- hpfsctl import ---

TEST_F(PlainFilesTest, ImportMakesThePlainFileTheFirstSealedSegmentWithItsModeOwnerAndTimes) {
  const std::string content = "line 1\nline 2\nline 3\n";
  WritePlain("syslog", content, 0640);
  const timespec times[2] = {{1600000000, 0}, {1577934245, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, B("syslog").c_str(), times, 0), 0);
  struct stat before;
  ASSERT_EQ(::stat(B("syslog").c_str(), &before), 0);

  auto run = Import({"syslog"});
  ASSERT_EQ(run.status, ctl::kExitOk) << run.err;
  EXPECT_EQ(run.out, "imported " + B("syslog") + " (" + std::to_string(content.size()) + " bytes)\n");
  // No copy: the segment is the file itself.
  const std::string segment = hpfile::FormatSegmentName({0, content.size()});
  EXPECT_EQ(ListBacking(B("syslog")), (std::vector<std::string>{segment, std::string(fmt_::kMetaName)}));
  struct stat seg;
  ASSERT_EQ(::stat(B("syslog/" + segment).c_str(), &seg), 0);
  EXPECT_EQ(seg.st_ino, before.st_ino);
  EXPECT_TRUE(ListBacking(B(std::string(fmt_::kTrashName))).empty());
  Check();

  const Served served = Serve("syslog");
  EXPECT_EQ(served.content, content);
  EXPECT_EQ(served.attr.st_mode, S_IFREG | 0640);
  EXPECT_EQ(served.attr.st_uid, before.st_uid);
  EXPECT_EQ(served.attr.st_gid, before.st_gid);
  EXPECT_EQ(served.attr.st_mtim.tv_sec, times[1].tv_sec);
  EXPECT_EQ(served.attr.st_mtim.tv_nsec, times[1].tv_nsec);
}

TEST_F(PlainFilesTest, ImportedFileTakesAppendsAfterItsLastByte) {
  WritePlain("app.log", "old\n");
  ASSERT_EQ(Import({"app.log"}).status, ctl::kExitOk);
  {
    auto fs = Filesystem::Open(dir_.path(), Config{});
    ASSERT_TRUE(fs);
    auto entry = (*fs)->Lookup(kRootInode, "app.log");
    ASSERT_TRUE(entry);
    auto handle = (*fs)->OpenFile(entry->id, O_WRONLY | O_APPEND);
    ASSERT_TRUE(handle);
    ASSERT_TRUE((*fs)->Write(**handle, 0, Bytes("new\n"), true));
    (*fs)->Release(std::move(*handle));
  }
  Check();
  EXPECT_EQ(Serve("app.log").content, "old\nnew\n");
}

TEST_F(PlainFilesTest, AnEmptyFileImportsAsAnEmptyFileWithItsTimes) {
  WritePlain("empty", "", 0600);
  const timespec times[2] = {{1600000000, 0}, {1600000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, B("empty").c_str(), times, 0), 0);
  auto run = Import({"empty"});
  ASSERT_EQ(run.status, ctl::kExitOk) << run.err;
  EXPECT_EQ(ListBacking(B("empty")), (std::vector<std::string>{std::string(fmt_::kMetaName)}));
  Check();
  const Served served = Serve("empty");
  EXPECT_EQ(served.attr.st_size, 0);
  EXPECT_EQ(served.attr.st_mode, S_IFREG | 0600);
  EXPECT_EQ(served.attr.st_mtim.tv_sec, 1600000000);
}

TEST_F(PlainFilesTest, ImportReachesIntoPlainDirectories) {
  std::filesystem::create_directories(B("nginx"));
  WritePlain("nginx/access.log", "GET /\n");
  auto run = Import({"nginx/access.log"});
  ASSERT_EQ(run.status, ctl::kExitOk) << run.err;
  Check();
}

TEST_F(PlainFilesTest, ImportRefusesWhatIsNotAPlainFileOfTheStoreAndChangesNothing) {
  WritePlain("linked", "x");
  ASSERT_EQ(::link(B("linked").c_str(), B("linked2").c_str()), 0);
  std::filesystem::create_directories(B("dir"));
  ASSERT_EQ(::symlink("linked", B("symlink").c_str()), 0);
  // An HPFile, with a segment and its meta.
  WritePlain("ok", "abc");
  ASSERT_EQ(Import({"ok"}).status, ctl::kExitOk);
  const std::string segment = "ok/" + hpfile::FormatSegmentName({0, 3});
  WritePlain("00000000000000000000-3.seg", "abc");
  const std::vector<std::string> before = ListBacking(dir_.path());

  struct Case {
    std::string rel;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"linked", "2 hard links"},
      {"dir", "a directory"},
      {"symlink", "not a plain file"},
      {"missing", "No such file or directory"},
      {std::string(fmt_::kLockName), "reserved"},
      {segment, "inside the HPFile"},
      {"ok/" + std::string(fmt_::kMetaName), "inside the HPFile"},
      {"00000000000000000000-3.seg", "named like a part of an HPFile"},
      {std::string(fmt_::kTrashName) + "/x", "belongs to hpfs"},
  };
  for (const auto& c : cases) {
    auto run = Import({c.rel});
    EXPECT_EQ(run.status, ctl::kExitFailed) << c.rel;
    EXPECT_NE(run.err.find(B(c.rel) + ": "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find(c.why), std::string::npos) << c.rel << ": " << run.err;
  }
  EXPECT_EQ(ListBacking(dir_.path()), before);
  struct stat st;
  ASSERT_EQ(::lstat(B("linked").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(PlainFilesTest, ImportOutsideABackingDirectoryIsRefused) {
  testing::TempDir elsewhere;
  std::ofstream(elsewhere.path() + "/log") << "x";
  std::ostringstream out, err;
  EXPECT_EQ(ctl::ImportFiles({elsewhere.path() + "/log"}, out, err), ctl::kExitFailed);
  EXPECT_NE(err.str().find("not inside a backing directory"), std::string::npos) << err.str();
  EXPECT_TRUE(std::filesystem::is_regular_file(elsewhere.path() + "/log"));
}

TEST_F(PlainFilesTest, ImportRefusesWhileADaemonHoldsTheLock) {
  WritePlain("syslog", "x");
  auto lock = BackingLock::Acquire(dir_.path());
  ASSERT_TRUE(lock);
  auto run = Import({"syslog"});
  EXPECT_EQ(run.status, ctl::kExitFailed);
  EXPECT_NE(run.err.find("in use by a running hpfs daemon"), std::string::npos) << run.err;
  EXPECT_TRUE(std::filesystem::is_regular_file(B("syslog")));
}

TEST_F(PlainFilesTest, SeveralFilesAreImportedEvenWhenOneIsRefused) {
  WritePlain("a", "1");
  WritePlain("b", "2");
  auto run = Import({"a", "missing", "b"});
  EXPECT_EQ(run.status, ctl::kExitFailed);
  EXPECT_TRUE(std::filesystem::is_directory(B("a")));
  EXPECT_TRUE(std::filesystem::is_directory(B("b")));
  Check();
}

// A crash can stop an import at two places that leave something behind: the
// new file half built in the trash (the plain file untouched), or swapped in
// with the plain file's old name still in the trash (a second link to the
// segment). Both must check clean, and the next mount's emptying of the
// trash must leave the data where it belongs.
TEST_F(PlainFilesTest, ACrashBeforeTheSwapLeavesThePlainFileAndATrashLeftover) {
  WritePlain("syslog", "data\n");
  const std::string trash = B(std::string(fmt_::kTrashName));
  std::filesystem::create_directories(trash + "/import.1");
  std::ofstream(trash + "/import.1/" + std::string(fmt_::kMetaName)) << "format=1\nsegment_size=67108864\nhead=0\n";
  ASSERT_EQ(::link(B("syslog").c_str(), (trash + "/import.1/" + hpfile::FormatSegmentName({0, 5})).c_str()), 0);
  Check();
  EmptyTrashByMounting();
  EXPECT_TRUE(ListBacking(trash).empty());
  std::ifstream in(B("syslog"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "data\n");
  // And the import can simply be run again.
  ASSERT_EQ(Import({"syslog"}).status, ctl::kExitOk);
  EXPECT_EQ(Serve("syslog").content, "data\n");
}

TEST_F(PlainFilesTest, ACrashAfterTheSwapLeavesTheImportedFileAndASecondLinkInTheTrash) {
  WritePlain("syslog", "data\n");
  ASSERT_EQ(Import({"syslog"}).status, ctl::kExitOk);
  const std::string trash = B(std::string(fmt_::kTrashName));
  const std::string segment = B("syslog/" + hpfile::FormatSegmentName({0, 5}));
  ASSERT_EQ(::link(segment.c_str(), (trash + "/import.2").c_str()), 0);
  Check();
  EmptyTrashByMounting();
  EXPECT_TRUE(ListBacking(trash).empty());
  EXPECT_EQ(Serve("syslog").content, "data\n");
  Check();
}

}  // namespace
}  // namespace hpfs
