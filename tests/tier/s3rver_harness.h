// SPDX-License-Identifier: Apache-2.0
// A real S3-compatible server for tests: s3rver (the npm package that
// scripts/deps.sh's hpfs_ensure_s3rver installs; its path in $HPFS_S3RVER),
// started on 127.0.0.1 on a port the kernel picks, with its data in a
// temporary directory, one bucket made at startup, and its default
// credentials. Stopped (SIGTERM, then SIGKILL) by Stop or the destructor,
// and killed by the kernel if the test process dies first.
#pragma once

#include <sys/types.h>

#include <expected>
#include <memory>
#include <string>

namespace hpfile::testing {

class S3rver {
 public:
  // s3rver's built-in account.
  static constexpr const char* kAccessKeyId = "S3RVER";
  static constexpr const char* kSecretAccessKey = "S3RVER";

  // Starts a server with `bucket` and waits (at most 30 s) until it
  // accepts connections. The error says why not, with the server's output.
  static std::expected<std::unique_ptr<S3rver>, std::string> Start(const std::string& bucket);
  ~S3rver();

  // Stops the server and waits for it; idempotent.
  void Stop();

  // What the server printed so far (one line per request), for failures.
  std::string log() const;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  S3rver() = default;

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

}  // namespace hpfile::testing
