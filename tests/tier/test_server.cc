// SPDX-License-Identifier: Apache-2.0
#include "tests/tier/test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace hpfile::testing {

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// Waits up to `limit` for `pid` to exit; whether it did.
bool Reaped(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    const pid_t done = waitpid(pid, nullptr, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::expected<std::unique_ptr<TestServer>, std::string> TestServer::StartS3rver(const std::string& bucket) {
  return Start("HPFS_S3RVER", {"", "-d", "{data}", "-a", "127.0.0.1", "-p", "{port}", "--configure-bucket", bucket});
}

std::expected<std::unique_ptr<TestServer>, std::string> TestServer::StartSigV4Checker() {
  return Start("HPFS_SIGV4_SERVER", {"", kAccessKeyId, kSecretAccessKey, kRegion});
}

std::expected<std::unique_ptr<TestServer>, std::string> TestServer::Start(const std::string& env_name,
                                                                          std::vector<std::string> argv) {
  const char* bin = std::getenv(env_name.c_str());
  if (bin == nullptr || *bin == '\0') {
    return std::unexpected(
        env_name + " is not set: run the tier tests through meson test (tests/tier/with_s3rver.sh "
        "installs s3rver and sets it), or set it to the server's executable");
  }
  std::string templ = (std::filesystem::temp_directory_path() / "hpfs-tier-server-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) return std::unexpected("mkdtemp: " + std::string(strerror(errno)));
  std::unique_ptr<TestServer> server(new TestServer());
  server->dir_ = templ;
  const std::string data = templ + "/data";
  std::filesystem::create_directory(data);
  argv[0] = bin;
  for (std::string& arg : argv) {
    if (arg == "{data}") arg = data;
  }
  server->argv_ = std::move(argv);
  if (auto spawned = server->Spawn(); !spawned) return std::unexpected(spawned.error());
  return server;
}

std::expected<void, std::string> TestServer::Spawn() {
  const std::string log = dir_ + "/log";
  std::vector<std::string> argv = argv_;
  for (std::string& arg : argv) {
    if (arg == "{port}") arg = std::to_string(port_);
  }
  std::vector<char*> args;
  for (std::string& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  // A restart appends: the log of the first run stays for failures.
  const size_t log_start = ReadAll(log).size();

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return std::unexpected("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    // Dies with the test process, whatever kills it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    setpgid(0, 0);
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0) _exit(127);
    // s3rver makes its continuation tokens with DES, which OpenSSL 3 keeps
    // in its legacy provider: without it every truncated listing is a 500.
    setenv("NODE_OPTIONS", "--openssl-legacy-provider", 1);
    execv(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;

  const std::regex listening(R"(listening on 127\.0\.0\.1:([0-9]+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (true) {
    std::smatch match;
    const std::string all = ReadAll(log);
    const std::string output = all.substr(std::min(log_start, all.size()));
    if (std::regex_search(output, match, listening)) {
      port_ = std::stoi(match[1]);
      if (Accepts(port_)) return {};
    }
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      pid_ = -1;
      return std::unexpected(argv_[0] + " exited at startup:\n" + output);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::unexpected(argv_[0] + " did not listen within 30 s:\n" + output);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void TestServer::Kill() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  (void)Reaped(pid_, std::chrono::seconds(5));
  pid_ = -1;
}

std::expected<void, std::string> TestServer::Restart() {
  if (pid_ > 0) return std::unexpected(std::string("the server is running"));
  if (std::find(argv_.begin(), argv_.end(), "{port}") == argv_.end()) {
    return std::unexpected(argv_.empty() ? std::string("no server") : argv_[0] + " cannot restart on its port");
  }
  return Spawn();
}

void TestServer::Stop() {
  if (pid_ > 0) {
    kill(-pid_, SIGTERM);
    kill(pid_, SIGTERM);
    if (!Reaped(pid_, std::chrono::seconds(5))) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      (void)Reaped(pid_, std::chrono::seconds(5));
    }
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    dir_.clear();
  }
}

TestServer::~TestServer() { Stop(); }

std::string TestServer::log() const { return dir_.empty() ? std::string() : ReadAll(dir_ + "/log"); }

}  // namespace hpfile::testing
