// SPDX-License-Identifier: Apache-2.0
// Real servers for the tier tests, each a child process on 127.0.0.1 on a
// port the kernel picks, with a temporary directory for its data and log:
// - s3rver (the npm package that scripts/deps.sh's hpfs_ensure_s3rver
//   installs; its path in $HPFS_S3RVER), with one bucket made at startup
//   and its built-in account;
// - tests/tier/sigv4_server.py ($HPFS_SIGV4_SERVER), which checks every
//   request's SigV4 signature with botocore, since s3rver checks none.
// Stopped (SIGTERM, then SIGKILL) by Stop or the destructor, and killed by
// the kernel if the test process dies first.
#pragma once

#include <sys/types.h>

#include <expected>
#include <memory>
#include <string>
#include <vector>

namespace hpfile::testing {

class TestServer {
 public:
  // s3rver's built-in account, which the SigV4 checker uses as well.
  static constexpr const char* kAccessKeyId = "S3RVER";
  static constexpr const char* kSecretAccessKey = "S3RVER";
  static constexpr const char* kRegion = "us-east-1";

  // Start and wait (at most 30 s) until the server accepts connections. The
  // error says why not, with the server's output.
  static std::expected<std::unique_ptr<TestServer>, std::string> StartS3rver(const std::string& bucket);
  static std::expected<std::unique_ptr<TestServer>, std::string> StartSigV4Checker();
  ~TestServer();

  // Stops the server and waits for it; idempotent.
  void Stop();
  // SIGKILLs the server (an outage), keeping its data and port; idempotent.
  void Kill();
  // Starts the server again after Kill on the same port and data, and waits
  // as the first start did. Only for servers started with a "{port}"
  // argument (s3rver).
  std::expected<void, std::string> Restart();

  // What the server printed so far (one line per request), for failures.
  std::string log() const;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  TestServer() = default;
  // Runs `argv` (argv[0] a path; "{data}" in an argument becomes the data
  // directory, "{port}" the port: 0, for the kernel to pick, at the first
  // start) and waits for "listening on 127.0.0.1:PORT" in its output.
  static std::expected<std::unique_ptr<TestServer>, std::string> Start(const std::string& env_name,
                                                                        std::vector<std::string> argv);
  std::expected<void, std::string> Spawn();

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

}  // namespace hpfile::testing
