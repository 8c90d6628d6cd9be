// SPDX-License-Identifier: Apache-2.0
// Tiered storage through a real mount against a real S3-compatible server
// (s3rver, started here): sealed segments leave the backing directory for
// the bucket, the whole file reads back through the mount before and after
// a remount, a truncate into the remote range is refused, and a head punch
// deletes the objects it dropped.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/s3_client.h"
#include "tests/mount/mount_harness.h"
#include "tests/tier/test_server.h"

namespace hpfs::mount_test {
namespace {

using hpfile::testing::TestServer;
using std::chrono::seconds;

constexpr const char* kBucket = "tier-mount";

class TierMountTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    auto server = TestServer::StartS3rver(kBucket);
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    std::ofstream(S("credentials")) << "[default]\naws_access_key_id = " << TestServer::kAccessKeyId
                                    << "\naws_secret_access_key = " << TestServer::kSecretAccessKey << "\n";
    auto client = hpfile::S3Client::Create(
        {.endpoint = server_->endpoint(),
         .bucket = kBucket,
         .credentials = {.access_key_id = TestServer::kAccessKeyId, .secret_access_key = TestServer::kSecretAccessKey}});
    ASSERT_TRUE(client) << client.error().message();
    client_ = std::move(*client);
  }
  void TearDown() override {
    MountedTest::TearDown();
    if (server_) server_->Stop();
  }

  void MountTiered() {
    Mount({"-o", "segment_size=256K,local_retain_bytes=512K,tier_url=s3://" + std::string(kBucket) +
                     "/logs,tier_endpoint=" + server_->endpoint() + ",tier_credentials=" + S("credentials")});
  }

  size_t Objects() {
    auto page = client_->ListPage("logs/", "");
    EXPECT_TRUE(page) << (page ? "" : page.error().message);
    return page ? page->objects.size() : 0;
  }

  size_t BackingSegments(const std::string& name) { return mount_test::SegmentFiles(B(name)); }

  template <class Predicate>
  bool WaitFor(Predicate done, seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
  }

  std::string Sha(const std::string& path) {
    auto r = Shell("sha256sum < '" + path + "'");
    EXPECT_EQ(r.exit_code, 0) << r.output << (daemon_ ? daemon_->Log() : std::string());
    return r.output;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<hpfile::S3Client> client_;
};

TEST_F(TierMountTest, SegmentsMoveToTheBucketAndReadBack) {
  MountTiered();
  // 4 MiB in 16 segments; 512K stays local: at most 3 segment files then.
  ASSERT_EQ(Shell("head -c 4194304 /dev/urandom > '" + S("src") + "' && cat '" + S("src") + "' >> '" + M("f") + "'")
                .exit_code,
            0);
  ASSERT_TRUE(WaitFor([&] { return BackingSegments("f") <= 3; }, seconds(20)))
      << BackingSegments("f") << " segment files left\n" << daemon_->Log();
  EXPECT_GE(Objects(), 13u);
  const std::string source = Sha(S("src"));
  EXPECT_EQ(Sha(M("f")), source);

  auto stat = Shell("'" + CtlPath() + "' stat '" + M("f") + "'");
  ASSERT_EQ(stat.exit_code, 0) << stat.output;
  auto values = KeyValues(stat.output);
  EXPECT_EQ(values["size"], "4194304");
  EXPECT_EQ(values["remote_bytes"], std::to_string(4194304 - 256 * 1024 * std::stoull(values["local_segments"])));
  // du counts the local blocks only.
  auto du = Shell("du -k '" + M("f") + "' | cut -f1");
  EXPECT_LE(std::stoul(du.output), 1100u) << du.output;

  auto truncate = Shell("truncate -s 1000 '" + M("f") + "' 2>&1");
  EXPECT_NE(truncate.exit_code, 0);
  EXPECT_NE(truncate.output.find("not permitted"), std::string::npos) << truncate.output;

  Unmount();
  MountTiered();
  EXPECT_EQ(Sha(M("f")), source);

  // Punching the first 2 MiB drops 8 remote segments; their objects go in
  // the background.
  const size_t before = Objects();
  ASSERT_EQ(Shell("fallocate -p -o 0 -l 2097152 '" + M("f") + "'").exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Objects() <= before - 8; }, seconds(20))) << Objects() << "\n" << daemon_->Log();
  EXPECT_EQ(Shell("tail -c 2097152 '" + M("f") + "' | sha256sum").output,
            Shell("tail -c 2097152 '" + S("src") + "' | sha256sum").output);
  Unmount();
  // Every recorded object is there and none is left over.
  auto check = Shell("'" + CtlPath() + "' check --remote --tier-url=s3://" + kBucket + "/logs --tier-endpoint=" +
                     server_->endpoint() + " --tier-credentials='" + S("credentials") + "' '" + backing_ + "' 2>&1");
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(TierMountTest, TierOptionsWithoutUrlFailTheMount) {
  auto r = RunDaemonToExit({"-f", "-o", "local_retain_bytes=1M", backing_, mnt_}, seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("need tier_url"), std::string::npos) << r.output;
  r = RunDaemonToExit({"-f", "-o", "tier_url=http://x", backing_, mnt_}, seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("tier_url"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hpfs::mount_test
