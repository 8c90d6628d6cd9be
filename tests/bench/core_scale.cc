// SPDX-License-Identifier: Apache-2.0
#include "tests/bench/core_scale.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/hpfile.h"
#include "core/segment_name.h"
#include "tests/bench/bench_util.h"

namespace hpfile::bench {
namespace {

constexpr uint64_t kCapacity = 4 * kKiB;
constexpr uint64_t kTailBytes = 1000;

double Ms(Clock::duration d) { return Seconds(d) * 1e3; }

// The process's resident set, from /proc.
double RssMiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// `count` files in a new DIR: full-size sealed segments (sparse, so building
// a million costs no data written) and a tail of kTailBytes; named as
// segments when `meta` (and a meta beside them), as plain files otherwise.
void BuildFiles(const std::string& dir, uint64_t count, bool meta) {
  if (::mkdir(dir.c_str(), 0755) != 0) DieErrno("mkdir " + dir);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) DieErrno("open " + dir);
  std::vector<char> tail(kTailBytes, 'x');
  for (uint64_t i = 0; i < count; ++i) {
    const std::string name = meta ? FormatSegmentName({i * kCapacity, kCapacity}) : std::to_string(i);
    const int fd = ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) DieErrno("create " + name);
    const bool last = i + 1 == count;
    if (last ? ::pwrite(fd, tail.data(), tail.size(), 0) != static_cast<ssize_t>(tail.size())
             : ::ftruncate(fd, static_cast<off_t>(kCapacity)) != 0) {
      DieErrno("size " + name);
    }
    ::close(fd);
  }
  if (meta) {
    const std::string text = "format=1\nsegment_size=" + std::to_string(kCapacity) + "\nhead=0\nmode=0644\n";
    const int fd = ::openat(dir_fd, "hpfile.meta", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) DieErrno("meta");
    ::close(fd);
  }
  ::close(dir_fd);
}

// Every name in DIR, as a listing reads them: the floor of an open.
uint64_t ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) DieErrno("opendir " + dir);
  uint64_t names = 0;
  while (::readdir(d) != nullptr) ++names;
  ::closedir(d);
  return names;
}

template <class T>
T Check(Result<T> result, const char* what) {
  if (!result) Die(std::string(what) + ": " + result.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

struct Row {
  std::string name;
  std::string unit;
  std::vector<double> hpfile;
  std::vector<double> baseline;  // empty: no baseline
  std::string baseline_label;
  std::string target;
};

struct RoundFigures {
  double list_ms, open_ms, rss_open, touch_ms, touch_plain_ms, rss_touched, sync_ms, sync_one_ms, prune_ms,
      meta_ms, delete_per_s, unlink_per_s, rss_pruned;
};

RoundFigures OneRound(uint64_t count, int round) {
  RoundFigures f{};
  const std::string dir = g_scratch + "/file";
  const std::string plain = g_scratch + "/plain";
  BuildFiles(dir, count, /*meta=*/true);
  BuildFiles(plain, count / 10 * 9, /*meta=*/false);
  ::sync();

  // Alternate which side goes first, so a drift favours neither.
  const bool baseline_first = round % 2 == 0;
  auto list = [&] {
    const auto start = Clock::now();
    ListDir(dir);
    f.list_ms = Ms(Clock::now() - start);
  };
  if (baseline_first) list();
  const double rss_before = RssMiB();
  Options options;
  options.create_if_missing = false;
  auto start = Clock::now();
  auto file = Check(HPFile::Open(dir, options), "open");
  std::byte word[512];
  const uint64_t size = file->Size();
  Check(file->ReadAt(size - 100, std::span(word, 100)), "first read");
  f.open_ms = Ms(Clock::now() - start);
  f.rss_open = RssMiB() - rss_before;
  if (!baseline_first) list();
  if (file->Damage()) Die("opened damaged: " + *file->Damage());

  // One 512-byte read in every segment: the map and the descriptor cache
  // at every slot. Baseline: the same reads at the same offsets of one file.
  const int plain_fd = ::open((dir + "/" + FormatSegmentName({0, kCapacity})).c_str(), O_RDONLY | O_CLOEXEC);
  auto touch_plain = [&] {
    const auto t = Clock::now();
    for (uint64_t i = 0; i + 1 < count; ++i) {
      if (::pread(plain_fd, word, sizeof word, static_cast<off_t>((i * 512) % kCapacity)) < 0) DieErrno("pread");
    }
    f.touch_plain_ms = Ms(Clock::now() - t);
  };
  if (baseline_first) touch_plain();
  start = Clock::now();
  for (uint64_t i = 0; i + 1 < count; ++i) Check(file->ReadAt(i * kCapacity + (i * 512) % kCapacity, word), "read");
  f.touch_ms = Ms(Clock::now() - start);
  f.rss_touched = RssMiB() - rss_before;
  if (!baseline_first) touch_plain();
  ::close(plain_fd);

  // The first Sync after the open; baseline: one fdatasync of the tail.
  const std::string tail_path = dir + "/" + FormatSegmentName({(count - 1) * kCapacity, kCapacity});
  auto sync_one = [&] {
    const int fd = ::open(tail_path.c_str(), O_RDONLY | O_CLOEXEC);
    const auto t = Clock::now();
    if (::fdatasync(fd) != 0) DieErrno("fdatasync");
    f.sync_one_ms = Ms(Clock::now() - t);
    ::close(fd);
  };
  if (baseline_first) sync_one();
  start = Clock::now();
  Check(file->Sync(), "sync");
  f.sync_ms = Ms(Clock::now() - start);
  if (!baseline_first) sync_one();

  // Prune 90%; baseline: one meta write (what the prune must do at least).
  auto meta_write = [&] {
    const auto t = Clock::now();
    // A mode the built file does not have, so the write is never skipped.
    Check(file->UpdateMeta([](Meta& meta) { meta.mode = 0600; }), "meta");
    f.meta_ms = Ms(Clock::now() - t);
  };
  if (baseline_first) meta_write();
  start = Clock::now();
  Check(file->PruneHead(count / 10 * 9 * kCapacity), "prune");
  f.prune_ms = Ms(Clock::now() - start);
  f.rss_pruned = RssMiB() - rss_before;
  if (!baseline_first) meta_write();

  // The deleter's work; baseline: unlink of as many files of a plain dir.
  auto unlink_plain = [&] {
    const int dir_fd = ::open(plain.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const uint64_t n = count / 10 * 9;
    const auto t = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      if (::unlinkat(dir_fd, std::to_string(i).c_str(), 0) != 0) DieErrno("unlink");
    }
    f.unlink_per_s = static_cast<double>(n) / Seconds(Clock::now() - t);
    ::close(dir_fd);
  };
  if (baseline_first) unlink_plain();
  const uint64_t pending = file->PrunedSegments().segments;
  start = Clock::now();
  // Batches as the daemon's deleter takes them.
  while (Check(file->DeletePrunedSegments(4096), "delete") > 0) {
  }
  f.delete_per_s = static_cast<double>(pending) / Seconds(Clock::now() - start);
  if (!baseline_first) unlink_plain();

  file.reset();
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(plain);
  return f;
}

}  // namespace

void RunScale(const ScaleConfig& config) {
  std::vector<Row> rows;
  for (const uint64_t count : config.segment_counts) {
    std::vector<RoundFigures> rounds;
    for (int r = 0; r < config.rounds; ++r) {
      const auto start = Clock::now();
      rounds.push_back(OneRound(count, r));
      std::fprintf(stderr, "core_bench scale: %llu segments, round %d: %.1f s\n",
                   static_cast<unsigned long long>(count), r + 1, Seconds(Clock::now() - start));
    }
    auto column = [&](double RoundFigures::*field) {
      std::vector<double> values;
      for (const RoundFigures& f : rounds) values.push_back(f.*field);
      return values;
    };
    const std::string n = std::to_string(count) + " segments";
    const bool big = count >= 1'000'000;
    rows.push_back({n + ": open + first read", "ms", column(&RoundFigures::open_ms), column(&RoundFigures::list_ms),
                    "readdir of the directory", big ? "< 1000" : "< 100"});
    rows.push_back({n + ": RSS growth after open + first read", "MiB", column(&RoundFigures::rss_open), {}, "", ""});
    rows.push_back({n + ": one 512 B read in every segment", "ms", column(&RoundFigures::touch_ms),
                    column(&RoundFigures::touch_plain_ms), "the same preads of one file", ""});
    rows.push_back(
        {n + ": RSS growth after reading every segment", "MiB", column(&RoundFigures::rss_touched), {}, "", "< 64"});
    rows.push_back({n + ": first Sync after open", "ms", column(&RoundFigures::sync_ms),
                    column(&RoundFigures::sync_one_ms), "one fdatasync of the tail",
                    "not one fdatasync per segment"});
    rows.push_back({n + ": PruneHead of 90%", "ms", column(&RoundFigures::prune_ms), column(&RoundFigures::meta_ms),
                    "one meta write (UpdateMeta)", "< 10"});
    rows.push_back({n + ": RSS growth after the prune", "MiB", column(&RoundFigures::rss_pruned), {}, "", ""});
    rows.push_back({n + ": DeletePrunedSegments", "segments/s", column(&RoundFigures::delete_per_s),
                    column(&RoundFigures::unlink_per_s), "unlinkat of as many plain files", ">= 20000"});
  }

  Table table;
  table.header = {"workload", "unit", "HPFile", "baseline", "HPFile / baseline", "baseline is", "target"};
  std::string json = "{\n  \"section\": \"scale-core\",\n  \"rounds\": " + std::to_string(config.rounds) +
                     ",\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    std::vector<double> ratios;
    for (size_t r = 0; r < row.baseline.size() && r < row.hpfile.size(); ++r) {
      if (row.baseline[r] > 0) ratios.push_back(row.hpfile[r] / row.baseline[r]);
    }
    table.rows.push_back({row.name, row.unit, WithSpread(Summarize(row.hpfile)),
                          row.baseline.empty() ? "-" : WithSpread(Summarize(row.baseline)),
                          ratios.empty() ? "-" : WithSpread(Summarize(ratios)),
                          row.baseline_label.empty() ? "-" : row.baseline_label,
                          row.target.empty() ? "-" : row.target});
    auto list = [](const std::vector<double>& v) {
      std::string out = "[";
      for (size_t k = 0; k < v.size(); ++k) out += (k ? ", " : "") + JsonNumber(v[k]);
      return out + "]";
    };
    json += "    {\"name\": " + JsonString(row.name) + ", \"unit\": " + JsonString(row.unit) +
            ", \"hpfile\": " + list(row.hpfile) + ", \"baseline\": " + list(row.baseline) +
            ", \"baseline_is\": " + JsonString(row.baseline_label) + ", \"target\": " + JsonString(row.target) +
            "}" + (i + 1 < rows.size() ? "," : "") + "\n";
  }
  json += "  ]\n}\n";
  std::printf("core scale: one HPFile of many 4 KiB segments (%d rounds; cells: median [min-max]; ratio per round)\n\n%s\n",
              config.rounds, table.Text().c_str());
  std::fflush(stdout);
  if (!config.json_path.empty()) WriteTextFile(config.json_path, json);
  if (!config.markdown_path.empty()) {
    WriteTextFile(config.markdown_path,
                  "## scale, core: one HPFile of many segments\n\n" + std::to_string(config.rounds) +
                      " rounds, each on a file built anew (sparse 4 KiB segments). Cells: median [min-max]; the "
                      "ratio is HPFile / baseline per round (for deletion, above 1 is faster than the baseline; "
                      "for times, below 1).\n\n" +
                      table.Markdown());
  }
}

}  // namespace hpfile::bench
