// SPDX-License-Identifier: Apache-2.0
// The AWS shared credentials file and environment variables, as the AWS CLI
// and SDKs read them.
#include <cstdlib>

#include "core/io.h"
#include "core/s3_client.h"
#include "core/text_file.h"

namespace hpfile {

namespace {

std::string_view Trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

std::string Environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

Result<S3Credentials> ParseS3Credentials(std::string_view text, std::string_view profile) {
  if (profile.empty()) profile = "default";
  S3Credentials credentials;
  bool found = false;
  bool in_profile = false;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = Trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      in_profile = line.back() == ']' && Trim(line.substr(1, line.size() - 2)) == profile;
      found = found || in_profile;
      continue;
    }
    if (!in_profile) continue;
    const auto kv = SplitKeyValue(line);
    if (!kv) continue;
    const std::string_view key = Trim(kv->key);
    const std::string value(Trim(kv->value));
    if (key == "aws_access_key_id") {
      credentials.access_key_id = value;
    } else if (key == "aws_secret_access_key") {
      credentials.secret_access_key = value;
    } else if (key == "aws_session_token") {
      credentials.session_token = value;
    }
  }
  if (!found) return Errno(ENOENT);
  if (credentials.access_key_id.empty() || credentials.secret_access_key.empty()) return Errno(EINVAL);
  return credentials;
}

Result<S3Credentials> ReadS3CredentialsFile(const std::string& path, std::string_view profile) {
  auto text = ReadSmallFile(PosixIo::Default(), path);
  if (!text) return std::unexpected(text.error());
  return ParseS3Credentials(*text, profile);
}

std::optional<S3Credentials> S3CredentialsFromEnvironment() {
  S3Credentials credentials{
      .access_key_id = Environment("AWS_ACCESS_KEY_ID"),
      .secret_access_key = Environment("AWS_SECRET_ACCESS_KEY"),
      .session_token = Environment("AWS_SESSION_TOKEN"),
  };
  if (credentials.access_key_id.empty() || credentials.secret_access_key.empty()) return std::nullopt;
  return credentials;
}

}  // namespace hpfile
