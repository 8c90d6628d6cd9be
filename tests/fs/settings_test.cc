// SPDX-License-Identifier: Apache-2.0
// The per-file settings through every way to set them (mount option,
// `hpfsctl set`, the ioctl, the user.hpfs.* xattrs): each takes the same
// values with the same meaning and refuses the same ones, the ioctl and the
// xattrs with EINVAL.
#include "fs/settings.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "fs/ctl/ctl.h"
#include "fs/filesystem.h"
#include "fs/options.h"
#include "tests/fs/fs_test_util.h"

namespace hpfs {
namespace {

struct Case {
  std::string_view name;
  std::vector<std::pair<std::string_view, uint64_t>> good;  // text and the value it sets (0: cleared)
  std::vector<std::string_view> bad;
  std::vector<uint64_t> bad_raw;  // numbers the ioctl refuses
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"segment_size",
       {{"4K", 4096}, {"4096", 4096}, {"64m", 64ull << 20}, {"1T", 1ull << 40}},
       {"0", "none", "4095", "1", "2T", "abc", "", "-1", "1s", "99999999999999999999"},
       {0, 1, 4095, (1ull << 40) + 1, ~uint64_t{0}}},
      {"retain_bytes",
       {{"0", 0}, {"none", 0}, {"1", 1}, {"10G", 10ull << 30}, {"5k", 5120}},
       {"x", "", "-1", "1s", "12X", "None", "99999999999999999999"},
       {}},
      {"retain_seconds",
       {{"0", 0}, {"none", 0}, {"30", 30}, {"15m", 900}, {"7d", 7 * 86400}},
       {"1y", "", "-5", "1k", "5w", "NONE"},
       {}},
      {"local_retain_bytes",
       {{"0", 0}, {"none", 0}, {"1", 1}, {"256M", 256ull << 20}},
       {"x", "", "-1", "1s", "None", "99999999999999999999"},
       {}},
      {"local_retain_seconds",
       {{"0", 0}, {"none", 0}, {"30", 30}, {"12h", 12 * 3600}},
       {"1y", "", "-5", "1k", "NONE"},
       {}},
  };
  return cases;
}

TEST(SettingsTest, TheTableHasEverySettingTheTestsCover) {
  ASSERT_EQ(Settings().size(), Cases().size());
  for (const Case& c : Cases()) EXPECT_NE(FindSetting(c.name), nullptr) << c.name;
  EXPECT_EQ(FindSetting("head"), nullptr);
}

TEST(SettingsTest, MountOptionsTakeAndRefuseTheSameValues) {
  for (const Case& c : Cases()) {
    const Setting& setting = *FindSetting(c.name);
    for (const auto& [text, value] : c.good) {
      DaemonOptions options;
      const std::string option = std::string(c.name) + "=" + std::string(text);
      auto applied = ApplyHpfsOption(option, options);
      ASSERT_TRUE(applied) << option << ": " << applied.error();
      EXPECT_TRUE(*applied) << option;
      const Config& config = options.config;
      const uint64_t got = c.name == "segment_size"         ? config.segment_size
                           : c.name == "retain_bytes"       ? config.retain_bytes.value_or(0)
                           : c.name == "retain_seconds"     ? config.retain_seconds.value_or(0)
                           : c.name == "local_retain_bytes" ? config.tier.local_retain_bytes.value_or(0)
                                                            : config.tier.local_retain_seconds.value_or(0);
      EXPECT_EQ(got, value) << option;
    }
    for (std::string_view text : c.bad) {
      DaemonOptions options;
      const std::string option = std::string(c.name) + "=" + std::string(text);
      auto applied = ApplyHpfsOption(option, options);
      ASSERT_FALSE(applied) << option;
      EXPECT_NE(applied.error().find(setting.expected), std::string::npos) << applied.error();
    }
  }
}

TEST(SettingsTest, HpfsctlSetTakesAndRefusesTheSameValues) {
  for (const Case& c : Cases()) {
    const Setting& setting = *FindSetting(c.name);
    for (const auto& [text, value] : c.good) {
      const std::string arg = std::string(c.name) + "=" + std::string(text);
      auto request = ctl::ParseAssignments({arg});
      ASSERT_TRUE(request) << arg << ": " << request.error();
      EXPECT_EQ(request->mask, setting.mask) << arg;
      EXPECT_EQ(RequestField(*request, setting), value) << arg;
    }
    for (std::string_view text : c.bad) {
      const std::string arg = std::string(c.name) + "=" + std::string(text);
      auto request = ctl::ParseAssignments({arg});
      ASSERT_FALSE(request) << arg;
      EXPECT_NE(request.error().find(setting.expected), std::string::npos) << request.error();
    }
  }
}

class SettingsFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.xattr = true;
    auto fs = Filesystem::Open(dir_.path(), config_);
    ASSERT_TRUE(fs) << fs.error().message();
    fs_ = std::move(*fs);
    auto created = fs_->Create(kRootInode, "f", 0644, O_RDWR | O_CREAT, Caller{::geteuid(), ::getegid()});
    ASSERT_TRUE(created) << created.error().message();
    id_ = created->first.id;
    handle_ = std::move(created->second);
  }
  void TearDown() override {
    if (handle_) fs_->Release(std::move(handle_));
  }

  uint64_t Stored(const Setting& setting) {
    auto st = fs_->IoctlStat(*handle_);
    EXPECT_TRUE(st);
    if (!st) return ~uint64_t{0};
    return setting.mask == HPFS_SET_SEGMENT_SIZE         ? st->segment_size
           : setting.mask == HPFS_SET_RETAIN_BYTES       ? st->retain_bytes
           : setting.mask == HPFS_SET_RETAIN_SECONDS     ? st->retain_seconds
           : setting.mask == HPFS_SET_LOCAL_RETAIN_BYTES ? st->local_retain_bytes
                                                         : st->local_retain_seconds;
  }

  hpfs::testing::TempDir dir_;
  Config config_;
  std::unique_ptr<Filesystem> fs_;
  InodeId id_ = 0;
  std::unique_ptr<FileHandle> handle_;
};

TEST_F(SettingsFsTest, XattrsTakeTheSameValuesAndRefuseTheRestWithEinval) {
  for (const Case& c : Cases()) {
    const Setting& setting = *FindSetting(c.name);
    const std::string xattr = "user.hpfs." + std::string(c.name);
    for (const auto& [text, value] : c.good) {
      // Set something else first, so that a value that changes nothing cannot pass.
      ASSERT_TRUE(fs_->SetXattr(id_, xattr, setting.clearable ? "7" : "8K"));
      auto set = fs_->SetXattr(id_, xattr, text);
      ASSERT_TRUE(set) << xattr << "=" << text << ": " << set.error().message();
      EXPECT_EQ(Stored(setting), value) << xattr << "=" << text;
      EXPECT_EQ(fs_->GetXattr(id_, xattr).value(), std::to_string(value));
    }
    for (std::string_view text : c.bad) {
      auto set = fs_->SetXattr(id_, xattr, text);
      ASSERT_FALSE(set) << xattr << "=" << text;
      EXPECT_TRUE(hpfile::IsErrno(set.error(), EINVAL)) << xattr << "=" << text << ": " << set.error().message();
    }
    // Removing clears what can be cleared.
    auto removed = fs_->RemoveXattr(id_, xattr);
    EXPECT_EQ(removed.has_value(), setting.clearable) << xattr;
    if (!removed) {
      EXPECT_TRUE(hpfile::IsErrno(removed.error(), EPERM));
    } else {
      EXPECT_EQ(Stored(setting), 0u);
    }
  }
}

TEST_F(SettingsFsTest, IoctlTakesTheNumbersTheTextParsesToAndRefusesTheRestWithEinval) {
  for (const Case& c : Cases()) {
    const Setting& setting = *FindSetting(c.name);
    for (const auto& [text, value] : c.good) {
      hpfs_set request{};
      request.mask = setting.mask;
      RequestField(request, setting) = value;
      auto set = fs_->IoctlSet(*handle_, request);
      ASSERT_TRUE(set) << c.name << "=" << value << ": " << set.error().message();
      EXPECT_EQ(Stored(setting), value);
    }
    for (uint64_t bad : c.bad_raw) {
      hpfs_set request{};
      request.mask = setting.mask;
      RequestField(request, setting) = bad;
      auto set = fs_->IoctlSet(*handle_, request);
      ASSERT_FALSE(set) << c.name << "=" << bad;
      EXPECT_TRUE(hpfile::IsErrno(set.error(), EINVAL));
    }
  }
  hpfs_set unknown{};
  unknown.mask = 1u << 7;
  auto set = fs_->IoctlSet(*handle_, unknown);
  ASSERT_FALSE(set);
  EXPECT_TRUE(hpfile::IsErrno(set.error(), EINVAL));
}

}  // namespace
}  // namespace hpfs
