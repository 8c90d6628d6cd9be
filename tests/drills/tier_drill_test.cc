// SPDX-License-Identifier: Apache-2.0
// Tiered storage's drills through a real mount against a real S3-compatible
// server (s3rver, started and stopped here on 127.0.0.1): the server dies
// during uploads and during reads, the daemon dies after each step of an
// offload, an object goes missing behind the daemon's back, and the
// credentials are wrong. In every case appends go on locally, no byte is
// lost, and `hpfsctl check --remote` tells what is left over.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/io.h"
#include "core/s3_client.h"
#include "core/tier_manifest.h"
#include "tests/drills/drill_harness.h"
#include "tests/tier/test_server.h"

namespace hpfs::drills {
namespace {

using hpfile::testing::TestServer;
using std::chrono::seconds;

constexpr const char* kBucket = "tier-drill";
constexpr uint64_t kSegment = 256 * 1024;
// 256K segments, 512K local: a file of N segments keeps at most 3 of them.
constexpr const char* kLayout = "segment_size=256K,local_retain_bytes=512K";

class TierDrill : public DrillTest {
 protected:
  void SetUp() override {
    DrillTest::SetUp();
    auto server = TestServer::StartS3rver(kBucket);
    ASSERT_TRUE(server) << server.error();
    server_ = std::move(*server);
    WriteCredentials(S("credentials"), TestServer::kAccessKeyId);
    auto client = hpfile::S3Client::Create(
        {.endpoint = server_->endpoint(),
         .bucket = kBucket,
         .credentials = {.access_key_id = TestServer::kAccessKeyId, .secret_access_key = TestServer::kSecretAccessKey}});
    ASSERT_TRUE(client) << client.error().message();
    client_ = std::move(*client);
  }
  void TearDown() override {
    DrillTest::TearDown();
    ::unsetenv("HPFS_TEST_TIER_KILL_AFTER");
    if (server_) server_->Stop();
  }

  static void WriteCredentials(const std::string& path, const std::string& key_id,
                               const std::string& secret = TestServer::kSecretAccessKey) {
    std::ofstream(path) << "[default]\naws_access_key_id = " << key_id << "\naws_secret_access_key = " << secret
                        << "\n";
  }

  std::string TierOptions(const std::string& credentials) const {
    return std::string(kLayout) + ",tier_url=s3://" + kBucket + "/logs,tier_endpoint=" + server_->endpoint() +
           ",tier_credentials=" + credentials;
  }
  void MountTiered(const std::string& credentials = "") {
    Mount({"-o", TierOptions(credentials.empty() ? S("credentials") : credentials)});
  }

  std::vector<std::string> Keys() {
    std::vector<std::string> keys;
    auto page = client_->ListPage("logs/", "");
    EXPECT_TRUE(page) << (page ? "" : page.error().message);
    if (page) {
      for (const auto& o : page->objects) keys.push_back(o.key);
    }
    return keys;
  }

  size_t LocalSegments(const std::string& name) { return mount_test::SegmentFiles(B(name)); }

  // `hpfsctl check --remote [extra]` of the backing directory.
  ShellResult CheckRemote(const std::string& extra = "") {
    return Check("--remote " + extra + " --tier-url=s3://" + std::string(kBucket) +
                 "/logs --tier-endpoint=" + server_->endpoint() + " --tier-credentials='" + S("credentials") +
                 "' 2>&1");
  }

  // Appends `bytes` random bytes to the mount's `name`, keeping a copy in
  // the scratch file of the same name.
  void Append(const std::string& name, uint64_t bytes) {
    auto r = Run("head -c " + std::to_string(bytes) + " /dev/urandom > '" + S("piece") + "' && cat '" + S("piece") +
                 "' >> '" + S(name) + "' && cat '" + S("piece") + "' >> " + name);
    ASSERT_EQ(r.exit_code, 0) << r.output << daemon_->Log();
  }

  // Whether the mount's `name` holds exactly the scratch copy.
  void ExpectSame(const std::string& name) {
    auto r = Run("cmp '" + S(name) + "' " + name + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output << daemon_->Log();
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<hpfile::S3Client> client_;
};

TEST_F(TierDrill, ServerKilledDuringUploadsAppendsGoOnAndUploadsResume) {
  MountTiered();
  Append("f", 2 * 1024 * 1024);
  ASSERT_TRUE(Eventually([&] { return !Keys().empty(); }, seconds(30))) << daemon_->Log();
  server_->Kill();
  // 4 MiB more while the store is down: every append is local and quick.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 16; ++i) Append("f", kSegment);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(30));
  // The local copies of what could not go stay, and the local range reads.
  EXPECT_GT(LocalSegments("f"), 3u);
  auto tail = Run("cmp <(tail -c 1048576 '" + S("f") + "') <(tail -c 1048576 f) 2>&1");
  EXPECT_EQ(tail.exit_code, 0) << tail.output;
  // The uploader gives up on this pass (after its retries) and says so.
  EXPECT_TRUE(Eventually([&] { return daemon_->Log().find("offload: ") != std::string::npos; }, seconds(60)))
      << daemon_->Log();
  EXPECT_GT(LocalSegments("f"), 3u);
  ASSERT_TRUE(server_->Restart()) << "restart failed";
  // Uploads resume after the file's backoff.
  EXPECT_TRUE(Eventually([&] { return LocalSegments("f") <= 3; }, seconds(90)))
      << LocalSegments("f") << " segment files\n" << daemon_->Log();
  ExpectSame("f");
  Unmount();
  auto check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(TierDrill, ServerKilledBeforeReadsGivesEIOInBoundedTimeThenReadsWork) {
  MountTiered();
  Append("f", 2 * 1024 * 1024);
  ASSERT_TRUE(Eventually([&] { return LocalSegments("f") <= 3; }, seconds(30))) << daemon_->Log();
  server_->Kill();
  const auto start = std::chrono::steady_clock::now();
  auto read = Run("if cat f > /dev/null; then echo rc=0; else echo rc=$?; fi 2>&1", seconds(120));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_NE(read.output.find("rc=1"), std::string::npos) << read.output;
  EXPECT_NE(read.output.find("Input/output error"), std::string::npos) << read.output;
  EXPECT_LT(took, seconds(60)) << std::chrono::duration_cast<seconds>(took).count() << " s";
  // The log names the object that could not be read.
  EXPECT_NE(daemon_->Log().find("tier: read of logs/"), std::string::npos) << daemon_->Log();
  // The local range is not affected.
  auto tail = Run("cmp <(tail -c 262144 '" + S("f") + "') <(tail -c 262144 f) 2>&1");
  EXPECT_EQ(tail.exit_code, 0) << tail.output;
  ASSERT_TRUE(server_->Restart()) << "restart failed";
  ExpectSame("f");
  Unmount();
}

// The daemon dies right after one step of its first offload (put: the
// object is in the bucket, nothing records it; record: the manifest names
// it and the local copy is still there; delete: the local copy is gone).
class TierKillDrill : public TierDrill, public ::testing::WithParamInterface<const char*> {};

TEST_P(TierKillDrill, DaemonKilledAfterAnUploadStepLosesNothing) {
  const std::string step = GetParam();
  ::setenv("HPFS_TEST_TIER_KILL_AFTER", step.c_str(), 1);
  MountTiered();
  ::unsetenv("HPFS_TEST_TIER_KILL_AFTER");
  Append("f", 2 * 1024 * 1024);
  const int status = daemon_->WaitExit(seconds(30));
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status << "\n" << daemon_->Log();
  daemon_->Stop();
  daemon_.reset();
  ASSERT_EQ(Keys().size(), 1u);

  auto check = CheckRemote();
  if (step == "put") {
    // Uploaded but not recorded: an orphan, which --repair deletes.
    EXPECT_NE(check.exit_code, 0) << check.output;
    EXPECT_NE(check.output.find("orphan"), std::string::npos) << check.output;
    auto repair = CheckRemote("--repair");
    EXPECT_NE(repair.output.find("1 deleted"), std::string::npos) << repair.output;
    EXPECT_TRUE(Keys().empty());
    check = CheckRemote();
  }
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // Every byte is there after a remount, and the offloads finish.
  MountTiered();
  ExpectSame("f");
  EXPECT_TRUE(Eventually([&] { return LocalSegments("f") <= 3; }, seconds(30))) << daemon_->Log();
  ExpectSame("f");
  Unmount();
  check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

INSTANTIATE_TEST_SUITE_P(Steps, TierKillDrill, ::testing::Values("put", "record", "delete"));

TEST_F(TierDrill, ObjectDeletedBehindTheDaemonsBackIsEIOInItsRangeOnly) {
  MountTiered();
  Append("f", 2 * 1024 * 1024);
  Append("g", 2 * 1024 * 1024);
  ASSERT_TRUE(Eventually([&] { return LocalSegments("f") <= 3 && LocalSegments("g") <= 3; }, seconds(30)))
      << daemon_->Log();
  // The object of f's second segment.
  auto manifest = hpfile::ReadManifest(hpfile::PosixIo::Default(), B("f"));
  ASSERT_TRUE(manifest && manifest->has_value());
  const std::string victim =
      hpfile::TierObjectKey("logs", (*manifest)->file_id, {.base = kSegment, .capacity = kSegment});
  const std::vector<std::string> keys = Keys();
  ASSERT_EQ(std::count(keys.begin(), keys.end(), victim), 1) << victim;
  ASSERT_TRUE(client_->Delete(victim));

  auto bad = Run("if dd if=f of=/dev/null bs=262144 skip=1 count=1; then echo rc=0; else echo rc=$?; fi 2>&1");
  EXPECT_NE(bad.output.find("rc=1"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("Input/output error"), std::string::npos) << bad.output;
  EXPECT_NE(daemon_->Log().find(victim), std::string::npos) << daemon_->Log();
  for (const char* skip : {"0", "2", "7"}) {
    auto good = Run(std::string("cmp <(dd if=f bs=262144 skip=") + skip + " count=1 status=none) <(dd if='" + S("f") +
                    "' bs=262144 skip=" + skip + " count=1 status=none) 2>&1");
    EXPECT_EQ(good.exit_code, 0) << skip << ": " << good.output;
  }
  ExpectSame("g");
  Unmount();

  auto check = CheckRemote();
  EXPECT_NE(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find(victim + ": missing"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("1 missing"), std::string::npos) << check.output;
}

TEST_F(TierDrill, WrongCredentialsAreLoggedAndEverythingStaysLocal) {
  constexpr const char* kSecret = "wrong-secret-never-logged";
  WriteCredentials(S("wrong"), "NOSUCHKEY", kSecret);
  MountTiered(S("wrong"));
  Append("f", 2 * 1024 * 1024);
  EXPECT_TRUE(Eventually([&] { return daemon_->Log().find("InvalidAccessKeyId") != std::string::npos; }, seconds(30)))
      << daemon_->Log();
  // Appends keep going; every segment stays on the disk and reads back.
  Append("f", 1024 * 1024);
  EXPECT_GE(LocalSegments("f"), 12u);
  ExpectSame("f");
  EXPECT_TRUE(Keys().empty());
  // The log never carries the secret.
  EXPECT_EQ(daemon_->Log().find(kSecret), std::string::npos) << daemon_->Log();
  Unmount();
  // With the right credentials, it all goes.
  MountTiered();
  EXPECT_TRUE(Eventually([&] { return LocalSegments("f") <= 3; }, seconds(30))) << daemon_->Log();
  ExpectSame("f");
  Unmount();
}

}  // namespace
}  // namespace hpfs::drills
