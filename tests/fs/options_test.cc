// SPDX-License-Identifier: Apache-2.0
#include "fs/options.h"

#include <gtest/gtest.h>

namespace hpfs {
namespace {

TEST(ParseSizeTest, AcceptsPlainNumbersAndBinarySuffixes) {
  EXPECT_EQ(ParseSize("4096"), 4096u);
  EXPECT_EQ(ParseSize("64K"), 64u << 10);
  EXPECT_EQ(ParseSize("64k"), 64u << 10);
  EXPECT_EQ(ParseSize("64M"), 64u << 20);
  EXPECT_EQ(ParseSize("2G"), 2ull << 30);
  EXPECT_EQ(ParseSize("1T"), 1ull << 40);
  EXPECT_EQ(ParseSize("0"), 0u);
}

TEST(ParseSizeTest, RejectsGarbageEmptyAndOverflow) {
  for (const char* bad : {"", "M", "12X", "1.5M", "-1", " 1", "1 M", "99999999999999999999", "16777216T"}) {
    EXPECT_EQ(ParseSize(bad), std::nullopt) << bad;
  }
}

TEST(ParseDurationTest, AcceptsUnits) {
  EXPECT_EQ(ParseDuration("30"), 30u);
  EXPECT_EQ(ParseDuration("30s"), 30u);
  EXPECT_EQ(ParseDuration("15m"), 900u);
  EXPECT_EQ(ParseDuration("2h"), 7200u);
  EXPECT_EQ(ParseDuration("7d"), 7u * 86400);
  EXPECT_EQ(ParseDuration("7w"), std::nullopt);
}

TEST(ApplyHpfsOptionTest, SetsEachOption) {
  DaemonOptions options;
  EXPECT_EQ(ApplyHpfsOption("segment_size=1M", options), true);
  EXPECT_EQ(ApplyHpfsOption("retain_bytes=10G", options), true);
  EXPECT_EQ(ApplyHpfsOption("retain_seconds=1d", options), true);
  EXPECT_EQ(ApplyHpfsOption("xattr", options), true);
  EXPECT_EQ(ApplyHpfsOption("log_level=debug", options), true);
  EXPECT_EQ(options.config.segment_size, 1u << 20);
  EXPECT_EQ(options.config.retain_bytes, 10ull << 30);
  EXPECT_EQ(options.config.retain_seconds, 86400u);
  EXPECT_TRUE(options.config.xattr);
  EXPECT_EQ(options.log_level, "debug");
}

TEST(ApplyHpfsOptionTest, TierOptionsAreCheckedAndNeedTierUrl) {
  DaemonOptions options;
  EXPECT_EQ(ApplyHpfsOption("local_retain_bytes=4M", options), true);
  EXPECT_EQ(options.config.tier.local_retain_bytes, 4u << 20);
  // Accepted one by one, but nothing would act on them without a bucket.
  ASSERT_TRUE(CheckTierOptions(options.config).has_value());
  EXPECT_NE(CheckTierOptions(options.config)->find("tier_url"), std::string::npos);
  EXPECT_EQ(ApplyHpfsOption("tier_url=s3://logs/host1", options), true);
  EXPECT_EQ(ApplyHpfsOption("tier_endpoint=http://127.0.0.1:9000", options), true);
  EXPECT_EQ(ApplyHpfsOption("tier_region=eu-west-1", options), true);
  EXPECT_EQ(ApplyHpfsOption("tier_cache=64M", options), true);
  EXPECT_EQ(ApplyHpfsOption("tier_credentials=/etc/hpfs/s3.cred", options), true);
  EXPECT_FALSE(CheckTierOptions(options.config).has_value());
  EXPECT_EQ(options.config.tier.cache_bytes, 64u << 20);
  EXPECT_EQ(options.config.tier.region, "eu-west-1");
  for (const char* bad : {"tier_url=http://logs", "tier_url=s3://", "tier_url", "tier_endpoint=ftp://x",
                          "tier_endpoint=http://", "tier_region=", "tier_cache=0", "tier_cache=lots",
                          "tier_credentials=", "local_retain_bytes=1s", "local_retain_seconds=5w"}) {
    auto applied = ApplyHpfsOption(bad, options);
    ASSERT_FALSE(applied.has_value()) << bad;
    EXPECT_NE(applied.error().find("bad value"), std::string::npos) << applied.error();
  }
}

TEST(ApplyHpfsOptionTest, WritebackIsOffByDefaultAndCommitsEverySecond) {
  DaemonOptions options;
  EXPECT_FALSE(options.config.writeback);
  EXPECT_EQ(options.config.commit_seconds, 1u);
  EXPECT_EQ(ApplyHpfsOption("writeback", options), true);
  EXPECT_EQ(ApplyHpfsOption("commit=5m", options), true);
  EXPECT_TRUE(options.config.writeback);
  EXPECT_EQ(options.config.commit_seconds, 300u);
  EXPECT_EQ(ApplyHpfsOption("commit=0", options), true);
  EXPECT_EQ(options.config.commit_seconds, 0u);
}

TEST(ApplyHpfsOptionTest, MaxOpenFilesTakesACountAndRefusesOnesTooSmallToWorkWith) {
  DaemonOptions options;
  EXPECT_EQ(options.config.max_open_files, 0u);  // the default, from the descriptor limit
  EXPECT_EQ(ApplyHpfsOption("max_open_files=64", options), true);
  EXPECT_EQ(options.config.max_open_files, 64u);
  for (const char* bad : {"max_open_files=15", "max_open_files=0", "max_open_files=", "max_open_files",
                          "max_open_files=1k", "max_open_files=99999999999"}) {
    auto r = ApplyHpfsOption(bad, options);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find("from 16 to"), std::string::npos) << r.error();
  }
  EXPECT_EQ(options.config.max_open_files, 64u);
}

TEST(ApplyHpfsOptionTest, GapWaitIsTwoSecondsByDefaultAndBounded) {
  DaemonOptions options;
  EXPECT_EQ(options.config.gap_wait_seconds, 2u);
  EXPECT_EQ(ApplyHpfsOption("gap_wait=10", options), true);
  EXPECT_EQ(options.config.gap_wait_seconds, 10u);
  EXPECT_EQ(ApplyHpfsOption("gap_wait=1m", options), true);
  EXPECT_EQ(options.config.gap_wait_seconds, 60u);
  EXPECT_EQ(ApplyHpfsOption("gap_wait=1", options), true);
  EXPECT_EQ(options.config.gap_wait_seconds, 1u);
  for (const char* bad : {"gap_wait", "gap_wait=", "gap_wait=0", "gap_wait=61", "gap_wait=1h", "gap_wait=-1",
                          "gap_wait=2x", "gap_wait=99999999999999999999"}) {
    auto r = ApplyHpfsOption(bad, options);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find("'gap_wait'"), std::string::npos) << r.error();
    EXPECT_EQ(options.config.gap_wait_seconds, 1u) << bad;
  }
}

TEST(ApplyHpfsOptionTest, SpoolMaxIsOneGibibyteByDefaultAndTakesASize) {
  DaemonOptions options;
  EXPECT_EQ(options.config.spool_bound, uint64_t{1} << 30);
  EXPECT_EQ(ApplyHpfsOption("spool_max=4G", options), true);
  EXPECT_EQ(options.config.spool_bound, uint64_t{4} << 30);
  EXPECT_EQ(ApplyHpfsOption("spool_max=0", options), true);
  EXPECT_EQ(options.config.spool_bound, 0u);
  for (const char* bad : {"spool_max", "spool_max=", "spool_max=1x", "spool_max=-1"}) {
    auto r = ApplyHpfsOption(bad, options);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().find("'spool_max'"), std::string::npos) << r.error();
    EXPECT_EQ(options.config.spool_bound, 0u) << bad;
  }
}

TEST(ApplyHpfsOptionTest, ZeroRetentionMeansNone) {
  DaemonOptions options;
  ASSERT_EQ(ApplyHpfsOption("retain_bytes=0", options), true);
  EXPECT_EQ(options.config.retain_bytes, std::nullopt);
}

TEST(ApplyHpfsOptionTest, LeavesOtherOptionsToLibfuse) {
  DaemonOptions options;
  EXPECT_EQ(ApplyHpfsOption("allow_root", options), false);
  EXPECT_EQ(ApplyHpfsOption("max_idle_threads=4", options), false);
  EXPECT_EQ(ApplyHpfsOption("segment_sizes=1M", options), false);
}

TEST(AllowOtherTest, DefaultsToOnForRootOnly) {
  DaemonOptions options;
  EXPECT_TRUE(AllowOther(options, 0));
  EXPECT_FALSE(AllowOther(options, 1000));
}

TEST(AllowOtherTest, ExplicitOptionsOverrideTheDefault) {
  DaemonOptions off;
  ASSERT_EQ(ApplyHpfsOption("noallow_other", off), true);
  EXPECT_FALSE(AllowOther(off, 0));
  DaemonOptions on;
  ASSERT_EQ(ApplyHpfsOption("allow_other", on), true);
  EXPECT_TRUE(AllowOther(on, 1000));
  // libfuse refuses allow_root with allow_other: root asked for root only.
  DaemonOptions root_only;
  ASSERT_EQ(ApplyHpfsOption("allow_root", root_only), false);
  EXPECT_FALSE(AllowOther(root_only, 0));
}

TEST(ApplyHpfsOptionTest, TakesTheLogFile) {
  DaemonOptions options;
  ASSERT_EQ(ApplyHpfsOption("log_file=/var/log/hpfs.log", options), true);
  EXPECT_EQ(options.log_file, "/var/log/hpfs.log");
}

TEST(ApplyHpfsOptionTest, BadValuesFailNamingTheOption) {
  for (const char* bad : {"segment_size=abc", "segment_size=0", "segment_size=1", "segment_size=4095", "segment_size=2T", "segment_size",
                          "retain_bytes=x", "retain_seconds=1y", "log_level=loud", "xattr=1", "log_file",
                          "log_file=", "allow_other=1", "noallow_other=yes", "writeback=1", "commit", "commit=soon"}) {
    DaemonOptions options;
    auto r = ApplyHpfsOption(bad, options);
    ASSERT_FALSE(r) << bad;
    const std::string key = std::string(bad).substr(0, std::string(bad).find('='));
    EXPECT_NE(r.error().find("'" + key + "'"), std::string::npos) << r.error();
  }
}

}  // namespace
TEST(IsMountUtilityOptionTest, KnowsFstabOnlyOptionsAndNothingElse) {
  for (std::string_view option : {"defaults", "nofail", "_netdev", "noauto", "user", "x-systemd.requires=/srv",
                                  "X-mount.mkdir", "comment=systemd.automount"}) {
    EXPECT_TRUE(IsMountUtilityOption(option)) << option;
  }
  for (std::string_view option : {"nofailure", "segment_size=1M", "allow_other", "ro", "xattr", "x"}) {
    EXPECT_FALSE(IsMountUtilityOption(option)) << option;
  }
}

}  // namespace hpfs
