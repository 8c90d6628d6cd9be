// SPDX-License-Identifier: Apache-2.0
// Tiered storage through a real mount against a real S3-compatible server
// (s3rver, started here): sealed segments leave the backing directory for
// the bucket, the whole file reads back through the mount before and after
// a remount, a truncate into the remote range is refused, and a head punch
// deletes the objects it dropped; a `tail -f` follows a file of hundreds of
// MiB through all of it; files evicted by -o max_open_files keep tiering.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <signal.h>

#include "core/io.h"
#include "core/s3_client.h"
#include "core/tier_manifest.h"
#include "tests/mount/mount_harness.h"
#include "tests/tier/test_server.h"

namespace hpfs::mount_test {
namespace {

using hpfile::testing::TestServer;
using mount_test::BackgroundShell;
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

  void MountTiered(const std::string& options = "segment_size=256K,local_retain_bytes=512K") {
    Mount({"-o", options + ",tier_url=s3://" + std::string(kBucket) + "/logs,tier_endpoint=" + server_->endpoint() +
                     ",tier_credentials=" + S("credentials")});
  }

  size_t Objects(const std::string& prefix = "logs/") {
    size_t count = 0;
    std::string token;
    do {
      auto page = client_->ListPage(prefix, token);
      EXPECT_TRUE(page) << (page ? "" : page.error().message);
      if (!page) return count;
      count += page->objects.size();
      token = page->next_token;
    } while (!token.empty());
    return count;
  }

  // Objects whose segments end at or below `offset`.
  size_t ObjectsBelow(uint64_t offset) {
    size_t count = 0;
    std::string token;
    do {
      auto page = client_->ListPage("logs/", token);
      EXPECT_TRUE(page) << (page ? "" : page.error().message);
      if (!page) return count;
      for (const auto& o : page->objects) {
        auto name = hpfile::ParseTierObjectKey("logs", o.key);
        if (name && name->segment.base + name->segment.capacity <= offset) ++count;
      }
      token = page->next_token;
    } while (!token.empty());
    return count;
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

  // Bytes in `path`; 0 when it is missing.
  static uint64_t SizeOf(const std::string& path) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    return ec ? 0 : size;
  }

  ShellResult CheckRemote(const std::string& extra = "") {
    return Shell("'" + CtlPath() + "' check --remote " + extra + " --tier-url=s3://" + kBucket +
                 "/logs --tier-endpoint=" + server_->endpoint() + " --tier-credentials='" + S("credentials") + "' '" +
                 backing_ + "' 2>&1");
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
  auto check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// The size of the large test, in MiB: HPFS_TIER_MOUNT_MIB, default 200 (about
// half a minute on a quiet machine).
uint64_t LargeTestMiB() {
  const char* env = std::getenv("HPFS_TIER_MOUNT_MIB");
  return env != nullptr && std::atoi(env) > 0 ? static_cast<uint64_t>(std::atoi(env)) : 200;
}

TEST_F(TierMountTest, HundredsOfMiBThroughTheBucketWhileTailFollows) {
  const uint64_t mib = LargeTestMiB();
  const uint64_t size = mib << 20;
  constexpr uint64_t kExtra = 4ull << 20;
  // 1 MiB segments, 4 of them local: all but ~5 go to the bucket.
  const std::string options = "segment_size=1M,local_retain_bytes=4M";
  MountTiered(options);
  ASSERT_EQ(Shell("head -c " + std::to_string(size) + " /dev/urandom > '" + S("src") + "' && head -c " +
                  std::to_string(kExtra) + " /dev/urandom > '" + S("src2") + "' && head -c " +
                  std::to_string(kExtra) + " /dev/urandom > '" + S("src3") + "' && : > '" + M("f") + "'")
                .exit_code,
            0);
  // tail -f polls on FUSE (no inotify events for it); -s keeps it close.
  auto tail1 = std::make_unique<BackgroundShell>("exec tail -s 0.1 -c +1 -f '" + M("f") + "'", S("tail1"));
  ASSERT_EQ(Shell("cat '" + S("src") + "' >> '" + M("f") + "'").exit_code, 0);
  const uint64_t segments = mib;
  ASSERT_TRUE(WaitFor([&] { return BackingSegments("f") <= 6; }, seconds(120)))
      << BackingSegments("f") << " segment files left\n" << daemon_->Log();
  EXPECT_GE(Objects(), segments - 6);
  const std::string source = Sha(S("src"));
  EXPECT_EQ(Sha(M("f")), source);
  ASSERT_TRUE(WaitFor([&] { return SizeOf(S("tail1")) >= size; }, seconds(60))) << SizeOf(S("tail1"));
  tail1->Stop();
  EXPECT_EQ(Sha(S("tail1")), source);
  auto values = KeyValues(Shell("'" + CtlPath() + "' stat '" + M("f") + "'").output);
  EXPECT_EQ(values["size"], std::to_string(size));
  EXPECT_GE(std::stoull(values["remote_segments"]), segments - 6);
  EXPECT_EQ(std::stoull(values["remote_bytes"]) + std::stoull(values["local_bytes"]), size);

  Unmount();
  MountTiered(options);
  EXPECT_EQ(Sha(M("f")), source);
  // A second follower from the start over the remounted file, through an
  // append, a head punch that drops most remote objects, and another append.
  auto tail2 = std::make_unique<BackgroundShell>("exec tail -s 0.1 -c +1 -f '" + M("f") + "'", S("tail2"));
  ASSERT_EQ(Shell("cat '" + S("src2") + "' >> '" + M("f") + "'").exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return SizeOf(S("tail2")) >= size + kExtra; }, seconds(60))) << SizeOf(S("tail2"));
  const uint64_t punched = size / 2;
  ASSERT_GE(ObjectsBelow(punched), segments / 2);
  ASSERT_EQ(Shell("fallocate -p -o 0 -l " + std::to_string(punched) + " '" + M("f") + "'").exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return ObjectsBelow(punched) == 0; }, seconds(60)))
      << ObjectsBelow(punched) << " objects left below the head\n" << daemon_->Log();
  ASSERT_EQ(Shell("cat '" + S("src3") + "' >> '" + M("f") + "'").exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return SizeOf(S("tail2")) >= size + 2 * kExtra; }, seconds(60))) << SizeOf(S("tail2"));
  tail2->Stop();
  EXPECT_EQ(SizeOf(S("tail2")), size + 2 * kExtra);
  EXPECT_EQ(Shell("cat '" + S("tail2") + "' | sha256sum").output,
            Shell("cat '" + S("src") + "' '" + S("src2") + "' '" + S("src3") + "' | sha256sum").output);
  // What is left reads back: the kept half of src, then src2 and src3.
  EXPECT_EQ(Shell("tail -c +" + std::to_string(punched + 1) + " '" + M("f") + "' | sha256sum").output + daemon_->Log(),
            Shell("{ tail -c +" + std::to_string(punched + 1) + " '" + S("src") + "'; cat '" + S("src2") + "' '" +
                  S("src3") + "'; } | sha256sum")
                    .output +
                daemon_->Log());
  Unmount();
  auto check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// More tiered files than the daemon keeps open: files evicted from the
// descriptor bound are opened again, with their TieredFile, by the tiering
// pass and by reads, and every one moves to the bucket and reads back.
TEST_F(TierMountTest, EvictedFilesKeepTiering) {
  constexpr int kFiles = 40;
  MountTiered("segment_size=256K,local_retain_bytes=512K,max_open_files=16");
  ASSERT_EQ(Shell("head -c 2097152 /dev/urandom > '" + S("src") + "' && for i in $(seq " + std::to_string(kFiles) +
                  "); do cat '" + S("src") + "' >> '" + M("f") + "'$i; done")
                .exit_code,
            0);
  for (int i = 1; i <= kFiles; ++i) {
    const std::string name = "f" + std::to_string(i);
    ASSERT_TRUE(WaitFor([&] { return BackingSegments(name) <= 3; }, seconds(60)))
        << name << ": " << BackingSegments(name) << " segment files left\n" << daemon_->Log();
  }
  EXPECT_GE(Objects(), kFiles * 5u);
  const std::string source = Sha(S("src"));
  for (int i = 1; i <= kFiles; ++i) EXPECT_EQ(Sha(M("f" + std::to_string(i))), source) << i;
  Unmount();
  auto check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// An unlinked tiered file's objects go in the background: at once when the
// store answers; across an outage and a SIGKILL of the daemon otherwise, as
// its manifest waits in the trash for the next mount.
TEST_F(TierMountTest, UnlinkDeletesTheObjectsAlsoAcrossAnOutageAndACrash) {
  MountTiered();
  ASSERT_EQ(Shell("head -c 2097152 /dev/urandom > '" + S("src") + "' && for f in f g h; do cat '" + S("src") +
                  "' > '" + M("") + "'$f; done")
                .exit_code,
            0);
  for (const char* name : {"f", "g", "h"}) {
    ASSERT_TRUE(WaitFor([&] { return BackingSegments(name) <= 3; }, seconds(30))) << name << "\n" << daemon_->Log();
  }
  auto id_of = [&](const std::string& name) {
    auto manifest = hpfile::ReadManifest(hpfile::PosixIo::Default(), B(name));
    EXPECT_TRUE(manifest && manifest->has_value()) << name;
    return manifest && manifest->has_value() ? (*manifest)->file_id : std::string("none");
  };
  auto objects_of = [&](const std::string& id) { return Objects(hpfile::TierFilePrefix("logs", id)); };
  const std::string f = id_of("f"), g = id_of("g"), h = id_of("h");
  ASSERT_GE(objects_of(f), 5u);
  const size_t g_objects = objects_of(g);

  ASSERT_EQ(Shell("rm '" + M("f") + "'").exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return objects_of(f) == 0; }, seconds(30))) << daemon_->Log();
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::is_empty(B(".hpfs-trash")); }, seconds(30)));

  // h goes while the store is down, and the daemon dies before it returns.
  server_->Kill();
  ASSERT_EQ(Shell("rm '" + M("h") + "'").exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(M("h")));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(::kill(daemon_->pid(), SIGKILL), 0);
  (void)daemon_->WaitExit(seconds(20));
  daemon_->Stop();
  daemon_.reset();
  ASSERT_TRUE(server_->Restart());
  EXPECT_GE(objects_of(h), 5u);
  // The trash's manifest still records them: nothing is orphaned.
  auto check = CheckRemote();
  EXPECT_EQ(check.exit_code, 0) << check.output;

  MountTiered();
  EXPECT_TRUE(WaitFor([&] { return objects_of(h) == 0; }, seconds(30))) << daemon_->Log();
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::is_empty(B(".hpfs-trash")); }, seconds(30)));
  EXPECT_EQ(objects_of(g), g_objects);
  EXPECT_EQ(Sha(M("g")), Sha(S("src")));
  Unmount();
  check = CheckRemote();
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
