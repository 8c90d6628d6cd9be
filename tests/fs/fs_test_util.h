// SPDX-License-Identifier: Apache-2.0
// Helpers for the fs-layer tests: a scratch backing directory and shortcuts
// around Filesystem calls whose own behaviour is not under test.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <span>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fs/filesystem.h"
#include "tests/core/test_util.h"

namespace hpfs::testing {

// A fresh directory under /tmp, removed with everything below it.
using TempDir = hpfile::testing::TempDir;

inline std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// Names in a backing directory, "." and ".." left out, sorted.
inline std::vector<std::string> ListBacking(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// Materializes a read the way the FUSE glue would send it.
inline std::string Materialize(const ReadPlan& plan) {
  std::string out(plan.zeros, '\0');
  for (const auto& extent : plan.extents) {
    std::string part(extent.length, '\0');
    const ssize_t n = ::pread(extent.fd->get(), part.data(), extent.length, static_cast<off_t>(extent.file_offset));
    EXPECT_EQ(n, static_cast<ssize_t>(extent.length));
    out += part;
  }
  out.append(reinterpret_cast<const char*>(plan.buffered.data()), plan.buffered.size());
  return out;
}

}  // namespace hpfs::testing
