// SPDX-License-Identifier: Apache-2.0
// The S3 client against a real S3-compatible server (s3rver, started by the
// harness): the store contract, and what only a real server can show: wrong
// credentials, a missing bucket, a stopped server, one that never answers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "core/s3_client.h"
#include "tests/tier/test_server.h"
#include "tests/tier/store_contract.h"

namespace hpfile::testing {
namespace {

constexpr const char* kBucket = "hpfs-tier-test";

// One server for the whole program; each test keeps to its own key prefix.
TestServer* server = nullptr;

class S3rverEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto started = TestServer::StartS3rver(kBucket);
    ASSERT_TRUE(started) << started.error();
    server_ = std::move(*started);
    server = server_.get();
  }
  void TearDown() override {
    if (server_ && ::testing::UnitTest::GetInstance()->Failed()) {
      std::cerr << "s3rver's log:\n" << server_->log();
    }
    server = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<TestServer> server_;
};

const auto* const environment = ::testing::AddGlobalTestEnvironment(new S3rverEnvironment);

S3ClientOptions Options(std::string endpoint, std::string bucket = kBucket) {
  return S3ClientOptions{
      .endpoint = std::move(endpoint),
      .bucket = std::move(bucket),
      .region = "us-east-1",
      .credentials = {.access_key_id = TestServer::kAccessKeyId, .secret_access_key = TestServer::kSecretAccessKey,
                      .session_token = ""},
      .connect_timeout = std::chrono::milliseconds(2000),
      .request_timeout = std::chrono::milliseconds(30000),
  };
}

std::unique_ptr<ObjectStore> Client(S3ClientOptions options) {
  auto client = S3Client::Create(std::move(options));
  EXPECT_TRUE(client) << client.error().message();
  return client ? std::move(*client) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(S3rver, ObjectStoreContract, ::testing::Values([]() -> std::unique_ptr<ObjectStore> {
                           if (server == nullptr) return nullptr;
                           return Client(Options(server->endpoint()));
                         }));

std::vector<std::byte> Bytes(std::string_view text) {
  const auto bytes = std::as_bytes(std::span(text));
  return {bytes.begin(), bytes.end()};
}

class S3rverStore : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(server, nullptr) << "s3rver did not start"; }
};

// s3rver checks the access key id but not SigV4 signatures (its
// authentication.js: "Signature version 4 calculation is unimplemented"), so
// wrong credentials here are an unknown key id with a wrong secret.
TEST_F(S3rverStore, WrongCredentialsArePermanentAndTheSecretIsNeverInTheMessage) {
  const std::string secret = "wr0ng-s3cret-that-must-not-leak";
  S3ClientOptions options = Options(server->endpoint());
  options.credentials.access_key_id = "NOSUCHKEYID";
  options.credentials.secret_access_key = secret;
  auto client = Client(options);
  ASSERT_NE(client, nullptr);
  auto put = client->Put("denied/object", Bytes("data"));
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().http_status, 403);
  EXPECT_EQ(put.error().code, "InvalidAccessKeyId");
  EXPECT_FALSE(put.error().retryable());
  EXPECT_EQ(put.error().errno_value(), EACCES);
  EXPECT_THAT(put.error().message, ::testing::HasSubstr("denied/object"));
  EXPECT_THAT(put.error().message, ::testing::Not(::testing::HasSubstr(secret)));
  std::vector<std::byte> out(4);
  auto get = client->GetRange("denied/object", 0, out);
  ASSERT_FALSE(get);
  EXPECT_FALSE(get.error().retryable());
  EXPECT_THAT(get.error().message, ::testing::Not(::testing::HasSubstr(secret)));
}

TEST_F(S3rverStore, WholeObjectForARangeIsAnError) {
  // s3rver 3.7.1 reads "bytes=0-0" as "bytes=0-" and sends all 3 bytes:
  // the client must refuse it, never hand on more or fewer than asked.
  auto client = Client(Options(server->endpoint()));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("range/abc", Bytes("abc")));
  std::vector<std::byte> out(1);
  auto got = client->GetRange("range/abc", 0, out);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "WrongLength");
  EXPECT_FALSE(got.error().retryable());
  EXPECT_THAT(got.error().message, ::testing::HasSubstr("range/abc"));
}

TEST_F(S3rverStore, UnsupportedAbortIsAPermanentError) {
  // s3rver has no AbortMultipartUpload and answers 405: a caller must see a
  // permanent error, not retry forever.
  auto client = Client(Options(server->endpoint()));
  ASSERT_NE(client, nullptr);
  auto id = client->CreateMultipartUpload("abort/k");
  ASSERT_TRUE(id) << id.error().message;
  auto aborted = client->AbortMultipartUpload("abort/k", *id);
  ASSERT_FALSE(aborted);
  EXPECT_EQ(aborted.error().http_status, 405);
  EXPECT_FALSE(aborted.error().retryable());
}

TEST_F(S3rverStore, MissingBucketIsPermanentNoSuchBucket) {
  auto client = Client(Options(server->endpoint(), "no-such-bucket"));
  ASSERT_NE(client, nullptr);
  auto put = client->Put("k", Bytes("x"));
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().code, "NoSuchBucket");
  EXPECT_FALSE(put.error().retryable());
  EXPECT_THAT(put.error().message, ::testing::HasSubstr("no-such-bucket/k"));
}

TEST_F(S3rverStore, StoppedServerIsRetryableWithinTheConnectTimeout) {
  auto stopped = TestServer::StartS3rver("stopped");
  ASSERT_TRUE(stopped) << stopped.error();
  const std::string endpoint = (*stopped)->endpoint();
  auto client = Client(Options(endpoint, "stopped"));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("k", Bytes("before the stop")));
  (*stopped)->Stop();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::byte> out(4);
  auto get = client->GetRange("k", 0, out);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(get);
  EXPECT_TRUE(get.error().retryable()) << get.error().message;
  EXPECT_EQ(get.error().http_status, 0);
  EXPECT_THAT(get.error().message, ::testing::HasSubstr("stopped/k"));
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(S3rverStore, ServerThatNeverAnswersTimesOutRetryable) {
  // Listens, so connecting succeeds, but never accepts or answers.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t length = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length), 0);
  S3ClientOptions options = Options("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)));
  options.request_timeout = std::chrono::milliseconds(1000);
  auto client = Client(options);
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto size = client->Head("k");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  close(fd);
  ASSERT_FALSE(size);
  EXPECT_TRUE(size.error().retryable());
  EXPECT_EQ(size.error().code, "Timeout");
  EXPECT_EQ(size.error().errno_value(), ETIMEDOUT);
  EXPECT_GE(elapsed, std::chrono::milliseconds(900));
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

// s3rver checks no signature, so the signing is checked by a server that
// recomputes each request's SigV4 signature with botocore.
class SigV4Check : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = TestServer::StartSigV4Checker();
    ASSERT_TRUE(started) << started.error();
    checker_ = std::move(*started).release();
  }
  static void TearDownTestSuite() {
    if (checker_ != nullptr && ::testing::UnitTest::GetInstance()->Failed()) {
      std::cerr << "the SigV4 checker's log:\n" << checker_->log();
    }
    delete checker_;
    checker_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(checker_, nullptr) << "the SigV4 checker did not start"; }

  static TestServer* checker_;
};

TestServer* SigV4Check::checker_ = nullptr;

// Every kind of request, with the characters that signing gets wrong most
// often in keys, prefixes, tokens and upload ids.
void ExpectEveryRequestAccepted(ObjectStore& store) {
  const std::string key = "sig v4/a+b=c&d;e,f/\u00fc~*'()!$@:";
  auto put = store.Put(key, Bytes("signed body"));
  EXPECT_TRUE(put) << put.error().message;
  auto head = store.Head(key);
  EXPECT_TRUE(head) << head.error().message;
  auto first = store.ListPage("sig v4/a+b", "");
  EXPECT_TRUE(first) << first.error().message;
  auto next = store.ListPage("pre fix/+=&", "token/+= x==", 7);
  EXPECT_TRUE(next) << next.error().message;
  auto id = store.CreateMultipartUpload(key);
  ASSERT_TRUE(id) << id.error().message;
  auto part = store.UploadPart(key, *id, 12, Bytes("part body"));
  EXPECT_TRUE(part) << part.error().message;
  auto deleted = store.Delete(key);
  EXPECT_TRUE(deleted) << deleted.error().message;
}

TEST_F(SigV4Check, EveryRequestIsSignedAsS3Checks) {
  auto client = Client(Options(checker_->endpoint()));
  ASSERT_NE(client, nullptr);
  ExpectEveryRequestAccepted(*client);
}

TEST_F(SigV4Check, SessionTokenIsSentAndSigned) {
  S3ClientOptions options = Options(checker_->endpoint());
  options.credentials.session_token = "session/token+=";
  auto client = Client(options);
  ASSERT_NE(client, nullptr);
  ExpectEveryRequestAccepted(*client);
  EXPECT_THAT(checker_->log(), ::testing::Not(::testing::HasSubstr("x-amz-security-token not signed")));
}

TEST_F(SigV4Check, WrongSecretIsSignatureDoesNotMatchPermanentAndNeverInTheMessage) {
  const std::string secret = "wr0ng-s3cret-that-must-not-leak";
  S3ClientOptions options = Options(checker_->endpoint());
  options.credentials.secret_access_key = secret;
  auto client = Client(options);
  ASSERT_NE(client, nullptr);
  auto put = client->Put("denied/object", Bytes("data"));
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().http_status, 403);
  EXPECT_EQ(put.error().code, "SignatureDoesNotMatch");
  EXPECT_FALSE(put.error().retryable());
  EXPECT_EQ(put.error().errno_value(), EACCES);
  EXPECT_THAT(put.error().message, ::testing::HasSubstr("denied/object"));
  EXPECT_THAT(put.error().message, ::testing::Not(::testing::HasSubstr(secret)));
}

}  // namespace
}  // namespace hpfile::testing
