// SPDX-License-Identifier: Apache-2.0
#include "fs/setid.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "fs/filesystem.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

constexpr gid_t kFileGid = 100;

WriterCredentials Unprivileged(gid_t fsgid = 2000, std::vector<gid_t> groups = {}) {
  return WriterCredentials{false, fsgid, std::move(groups)};
}

// The cases match ext4 on Linux 6.x, checked with setpriv as uid 65534.
TEST(ModeAfterWrite, WriterWithoutFsetidClearsSetuidAndExecutableSetgid) {
  EXPECT_EQ(ModeAfterWrite(04777, kFileGid, Unprivileged()), 0777u);
  EXPECT_EQ(ModeAfterWrite(02777, kFileGid, Unprivileged()), 0777u);
  EXPECT_EQ(ModeAfterWrite(06777, kFileGid, Unprivileged()), 0777u);
  EXPECT_EQ(ModeAfterWrite(04755, kFileGid, Unprivileged()), 0755u);
  // In the file's group, as fsgid or as a supplementary group: an executable
  // setgid still goes.
  EXPECT_EQ(ModeAfterWrite(02775, kFileGid, Unprivileged(kFileGid)), 0775u);
  EXPECT_EQ(ModeAfterWrite(02775, kFileGid, Unprivileged(2000, {kFileGid})), 0775u);
}

TEST(ModeAfterWrite, SetgidWithoutGroupExecuteStaysOnlyForMembersOfTheGroup) {
  EXPECT_EQ(ModeAfterWrite(02767, kFileGid, Unprivileged()), 0767u);
  EXPECT_EQ(ModeAfterWrite(02767, kFileGid, Unprivileged(kFileGid)), 02767u);
  EXPECT_EQ(ModeAfterWrite(02767, kFileGid, Unprivileged(2000, {7, kFileGid})), 02767u);
  EXPECT_EQ(ModeAfterWrite(06767, kFileGid, Unprivileged(kFileGid)), 02767u);
}

TEST(ModeAfterWrite, WriterWithFsetidKeepsEverything) {
  const WriterCredentials root{true, 0, {}};
  EXPECT_EQ(ModeAfterWrite(06777, kFileGid, root), 06777u);
  EXPECT_EQ(ModeAfterWrite(02767, kFileGid, root), 02767u);
}

TEST(ModeAfterWrite, ModesWithoutSetIdBitsAreUntouched) {
  EXPECT_EQ(ModeAfterWrite(0777, kFileGid, Unprivileged()), 0777u);
  EXPECT_EQ(ModeAfterWrite(01777, kFileGid, Unprivileged()), 01777u);
}

TEST(ParseProcStatus, ReadsTheEffectiveFsetidTheFsgidAndTheGroups) {
  const std::string status =
      "Name:\tsh\nUid:\t65534\t65534\t65534\t65534\nGid:\t10\t20\t30\t40\n"
      "Groups:\t5 6 7 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000010\n"
      "CapEff:\t0000000000000000\n";
  auto parsed = ParseProcStatus(status);
  ASSERT_TRUE(parsed);
  EXPECT_FALSE(parsed->has_fsetid);  // permitted is not effective
  EXPECT_EQ(parsed->fsgid, 40u);
  EXPECT_EQ(parsed->groups, (std::vector<gid_t>{5, 6, 7}));

  auto privileged = ParseProcStatus("Gid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\t000001ffffffffff\n");
  ASSERT_TRUE(privileged);
  EXPECT_TRUE(privileged->has_fsetid);
  EXPECT_TRUE(privileged->groups.empty());
  auto only_fsetid = ParseProcStatus("Gid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\t0000000000000010\n");
  ASSERT_TRUE(only_fsetid);
  EXPECT_TRUE(only_fsetid->has_fsetid);
}

TEST(ParseProcStatus, MissingOrGarbledLinesAreNoCredentials) {
  EXPECT_FALSE(ParseProcStatus(""));
  EXPECT_FALSE(ParseProcStatus("Gid:\t0\t0\t0\t0\nGroups:\t\n"));
  EXPECT_FALSE(ParseProcStatus("Gid:\t0\t0\nGroups:\t\nCapEff:\t0\n"));
  EXPECT_FALSE(ParseProcStatus("Gid:\t0\t0\t0\t0\nGroups:\tx\nCapEff:\t0\n"));
  EXPECT_FALSE(ParseProcStatus("Gid:\t0\t0\t0\t0\nGroups:\t\nCapEff:\tzz\n"));
}

TEST(CredentialsOfThread, AThreadThatCannotBeReadHoldsNoPrivilegeAndNoGroup) {
  for (pid_t tid : {0, -1, 0x7ffffff0}) {
    const WriterCredentials none = CredentialsOfThread(tid);
    EXPECT_FALSE(none.has_fsetid) << tid;
    EXPECT_EQ(none.fsgid, kNoGroup) << tid;
    EXPECT_TRUE(none.groups.empty()) << tid;
  }
}

TEST(CredentialsOfThread, ReadsThisProcess) {
  const WriterCredentials self = CredentialsOfThread(::gettid());
  EXPECT_EQ(self.fsgid, ::getegid());
}

// Through the filesystem layer: the bits go with the write that an
// unprivileged writer (here: an unknown one) makes, and are stored.
TEST(FilesystemSetId, WriteByAnUnprivilegedWriterClearsTheBitsBeforeAppending) {
  testing::TempDir dir;
  auto fs = Filesystem::Open(dir.path(), Config{});
  ASSERT_TRUE(fs) << fs.error().message();
  const Caller owner{::geteuid(), ::getegid()};
  auto created = (*fs)->Create(kRootInode, "f", 06755, O_WRONLY | O_CREAT, owner);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ((*fs)->GetAttr(created->first.id)->st_mode & 07777, 06755u);

  bool cleared = false;
  ASSERT_TRUE((*fs)->Write(*created->second, 0, testing::Bytes("x"), false, Caller{}, &cleared));
  EXPECT_TRUE(cleared);
  EXPECT_EQ((*fs)->GetAttr(created->first.id)->st_mode & 07777, 0755u);
  // Nothing left to clear: the next write changes no mode.
  ASSERT_TRUE((*fs)->Write(*created->second, 1, testing::Bytes("y"), false, Caller{}, &cleared));
  EXPECT_FALSE(cleared);
  (*fs)->Release(std::move(created->second));

  // Stored in the meta, so a remount shows the same.
  fs->reset();
  fs = Filesystem::Open(dir.path(), Config{});
  ASSERT_TRUE(fs);
  auto entry = (*fs)->Lookup(kRootInode, "f");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->attr.st_mode & 07777, 0755u);
  EXPECT_EQ(entry->attr.st_size, 2);
}

}  // namespace
}  // namespace hpfs
