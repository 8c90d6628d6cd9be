// SPDX-License-Identifier: Apache-2.0
#include "fs/log_file.h"

#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "tests/core/test_util.h"

namespace hpfs {
namespace {

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(LogFileSinkTest, ReopenAfterARenameWritesToANewFileAtThePath) {
  hpfile::testing::TempDir tmp;
  const std::string path = tmp.Sub("hpfs.log");
  auto sink = LogFileSink::Open(path);
  ASSERT_TRUE(sink) << sink.error().message();
  spdlog::logger logger("test", *sink);
  logger.info("before rotation");
  std::filesystem::rename(path, tmp.Sub("hpfs.log.1"));
  logger.info("between rename and reopen");
  ASSERT_TRUE((*sink)->Reopen());
  logger.info("after rotation");

  const std::string old = Contents(tmp.Sub("hpfs.log.1"));
  EXPECT_NE(old.find("before rotation\n"), std::string::npos) << old;
  EXPECT_NE(old.find("between rename and reopen\n"), std::string::npos) << old;
  EXPECT_EQ(old.find("after rotation"), std::string::npos) << old;
  const std::string fresh = Contents(path);
  EXPECT_NE(fresh.find("after rotation\n"), std::string::npos) << fresh;
  EXPECT_EQ(fresh.find("before"), std::string::npos) << fresh;
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777 & ~0640u, 0u) << "a log is for its owner and group only";
}

TEST(LogFileSinkTest, OpenAppendsToAnExistingFile) {
  hpfile::testing::TempDir tmp;
  const std::string path = tmp.Sub("hpfs.log");
  std::ofstream(path) << "from an earlier run\n";
  auto sink = LogFileSink::Open(path);
  ASSERT_TRUE(sink);
  spdlog::logger logger("test", *sink);
  logger.info("this run");
  const std::string text = Contents(path);
  EXPECT_TRUE(text.starts_with("from an earlier run\n")) << text;
  EXPECT_NE(text.find("this run\n"), std::string::npos) << text;
}

TEST(LogFileSinkTest, FailuresAreErrnosAndAFailedReopenKeepsTheOldFile) {
  hpfile::testing::TempDir tmp;
  auto in_missing_dir = LogFileSink::Open(tmp.Sub("no/such/dir/hpfs.log"));
  ASSERT_FALSE(in_missing_dir);
  EXPECT_EQ(in_missing_dir.error().value(), ENOENT);
  auto a_directory = LogFileSink::Open(tmp.Sub(""));
  ASSERT_FALSE(a_directory);
  EXPECT_EQ(a_directory.error().value(), EISDIR);

  std::filesystem::create_directories(tmp.Sub("logs"));
  const std::string path = tmp.Sub("logs/hpfs.log");
  auto sink = LogFileSink::Open(path);
  ASSERT_TRUE(sink);
  spdlog::logger logger("test", *sink);
  std::filesystem::rename(tmp.Sub("logs"), tmp.Sub("gone"));
  auto reopened = (*sink)->Reopen();
  ASSERT_FALSE(reopened);
  EXPECT_EQ(reopened.error().value(), ENOENT);
  logger.info("still somewhere");
  EXPECT_NE(Contents(tmp.Sub("gone/hpfs.log")).find("still somewhere\n"), std::string::npos);
}

TEST(HangupHandlerTest, SighupRunsTheCallbackAndLeavesTheProcessAlive) {
  HangupHandler handler;
  ASSERT_TRUE(handler.Install());
  // A SIGHUP before Start is remembered, as one before the daemon detaches.
  ASSERT_EQ(::raise(SIGHUP), 0);
  std::atomic<int> hangups{0};
  handler.Start([&hangups] { ++hangups; });
  ASSERT_EQ(::raise(SIGHUP), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (hangups < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(hangups, 2);
  handler.Stop();
  // After Stop a SIGHUP still does not end the process.
  ASSERT_EQ(::raise(SIGHUP), 0);
  EXPECT_EQ(hangups, 2);
}

}  // namespace
}  // namespace hpfs
