// SPDX-License-Identifier: Apache-2.0
// The ObjectStore of an S3-compatible server (AWS S3, Ceph RGW, MinIO,
// Garage, Swift's s3api, s3rver): libcurl for HTTP(S) and SigV4 signing
// (CURLOPT_AWS_SIGV4), libxml2 for the XML answers, OpenSSL's EVP for the
// Content-MD5 that lets the server verify every upload. Path-style requests
// (ENDPOINT/BUCKET/KEY), so any such server works without DNS per bucket.
//
// Library hpfile_s3, apart from libhpfile, which needs no network library.
//
// Thread-safety: an S3Client is safe for concurrent calls from any number of
// threads; each call takes a curl handle of its own from a pool, so
// connections are reused across calls.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/object_store.h"
#include "core/result.h"

namespace hpfile {

// Credentials of an S3 user. Never logged and never put into an error
// message; the type has no way to print itself.
struct S3Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
};

// The credentials of `profile` ("default" when empty) in an AWS shared
// credentials file (INI: [profile] sections of key = value lines, keys
// aws_access_key_id, aws_secret_access_key, aws_session_token).
// Errors: the file's open/read errno; ENOENT when the profile is missing;
// EINVAL when it lacks the key id or the secret.
[[nodiscard]] Result<S3Credentials> ReadS3CredentialsFile(const std::string& path,
                                                          std::string_view profile = {});
// The same, from the text of such a file.
[[nodiscard]] Result<S3Credentials> ParseS3Credentials(std::string_view text,
                                                       std::string_view profile = {});
// From AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN;
// nullopt unless both of the first two are set and nonempty.
std::optional<S3Credentials> S3CredentialsFromEnvironment();

struct S3ClientOptions {
  // http://HOST[:PORT] or https://HOST[:PORT], optionally with a path prefix;
  // a trailing '/' is ignored.
  std::string endpoint;
  std::string bucket;
  // Signs requests for this region ("us-east-1" for most non-AWS servers).
  std::string region = "us-east-1";
  S3Credentials credentials;
  // Bounds on every request: reaching the server, and the whole exchange.
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{60000};
  // TLS peer and host verification; only for test servers with their own
  // certificates may this be off.
  bool verify_tls = true;
  // A CA bundle to verify the server with instead of the system's.
  std::string ca_file;
};

class S3Client final : public ObjectStore {
 public:
  // EINVAL when the endpoint is not http(s)://..., the bucket or the region
  // is empty, or the credentials lack the key id or the secret.
  [[nodiscard]] static Result<std::unique_ptr<S3Client>> Create(S3ClientOptions options);
  ~S3Client() override;

  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  StoreResult<std::string> Put(std::string_view key, std::span<const std::byte> data) override;
  StoreResult<std::string> CreateMultipartUpload(std::string_view key) override;
  StoreResult<std::string> UploadPart(std::string_view key, std::string_view upload_id,
                                      int part_number, std::span<const std::byte> data) override;
  StoreResult<std::string> CompleteMultipartUpload(std::string_view key, std::string_view upload_id,
                                                   std::span<const UploadedPart> parts) override;
  StoreResult<void> AbortMultipartUpload(std::string_view key, std::string_view upload_id) override;
  StoreResult<void> GetRange(std::string_view key, uint64_t offset, std::span<std::byte> out) override;
  StoreResult<uint64_t> Head(std::string_view key) override;
  StoreResult<ObjectListPage> ListPage(std::string_view prefix, std::string_view continuation_token,
                                       int max_keys = 1000) override;
  StoreResult<void> Delete(std::string_view key) override;

 private:
  struct Impl;
  explicit S3Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What an S3 answer's status and error code mean for a retry (see
// StoreErrorClass): 5xx, 408, 429 and the throttling codes (SlowDown,
// Throttling, RequestTimeout, InternalError) are retryable, the rest
// permanent.
StoreErrorClass ClassifyS3Error(int http_status, std::string_view code);

// `key` as the path of a request: every '/'-separated segment percent-encoded
// except RFC 3986's unreserved characters (what SigV4 signs for S3), the
// slashes kept.
std::string EncodeS3KeyPath(std::string_view key);

}  // namespace hpfile
