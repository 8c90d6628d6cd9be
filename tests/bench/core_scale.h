// SPDX-License-Identifier: Apache-2.0
// The core rows of the `scale` section: one HPFile of very many small
// segments, built on disk directly (the segment files created and sized here,
// far faster than appends), opened, read, synced, pruned and its pruned
// segments deleted, each step timed against the floor of the same work in
// raw system calls, measured in the same round.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hpfile::bench {

struct ScaleConfig {
  std::vector<uint64_t> segment_counts;
  int rounds = 3;
  std::string json_path;
  std::string markdown_path;
};

// Runs in g_scratch (MakeScratch first) and prints the table.
void RunScale(const ScaleConfig& config);

}  // namespace hpfile::bench
