// SPDX-License-Identifier: Apache-2.0
// Micro-benchmark of libhpfile against the raw system calls it wraps, on one
// plain file in the same directory of the same filesystem.
//
// The machines this runs on are shared and noisy, so the variants of each
// workload run back to back inside every round (in reversed order every other
// round, so a drift in machine speed favours neither), and the report gives the
// median over rounds with its min and max, and for each libhpfile variant the
// median of its per-round ratio to the baseline of the same round. A ratio is
// throughput / baseline throughput: 1.0 is parity, above 1 is faster.
//
// The latency workload measures single ReadAt calls on a file while another
// thread appends and syncs it: libhpfile promises that readers never wait for
// a writer's disk I/O, so no read should take as long as a sync. Reads that
// slept are counted; to see what they slept on:
//   perf record -e sched:sched_switch --filter 'prev_state != 0'
//       --call-graph dwarf core_bench --only latency      (one line)
//   perf script
// A futex under HPFile::ReadAt is a libhpfile lock; folio_wait_bit_common
// under pread is the page cache (a page being read in), which the plain-file
// baseline meets as well.
//
// The timing harness and the report's tables and JSON are in
// tests/bench/bench_util.h, shared with record_bench.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <latch>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/hpfile.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/core_scale.h"

namespace hpfile::bench {
namespace {

// A read slower than this counts as a stall: a disk sync takes about this long
// or more, so a reader that waited for one would show up here.
constexpr uint64_t kStallLimitNs = 1'000'000;
// Ratios below this are called out in the report.
constexpr double kRatioFloor = 0.9;

// ---- configuration -------------------------------------------------------------

struct Config : Flags {
  // Segment size of the append and read files (the daemon's default).
  uint64_t segment_size = format::kDefaultSegmentSize;
  size_t small_appends = 400'000;  // 128 B records per variant and round
  size_t large_appends = 32'768;   // 4 KiB records: 128 MiB, so one segment roll
  uint64_t read_file_size = 256 * kMiB;
  size_t random_reads = 250'000;  // per thread, variant and round
  uint64_t small_scan_bytes = 64 * kMiB;
  double stall_seconds = 1.5;
  uint64_t stall_prefill = 64 * kMiB;
  // Small segments make the writer roll (create a segment, fsync the
  // directory) about once a round in the latency workload, which a reader
  // must not feel either.
  uint64_t stall_segment_size = 4 * kMiB;
};

// The sizes of --quick and --tiny; ParseArgs sets their mode and rounds.
Config QuickConfig() {
  Config c;
  c.small_appends = 50'000;
  c.large_appends = 8'192;
  c.read_file_size = 64 * kMiB;
  c.random_reads = 50'000;
  c.small_scan_bytes = 16 * kMiB;
  c.stall_seconds = 0.3;
  c.stall_prefill = 16 * kMiB;
  c.stall_segment_size = 1 * kMiB;
  return c;
}

// Exercises every code path (several segments everywhere) in about a second.
Config TinyConfig() {
  Config c;
  c.segment_size = 1 * kMiB;
  c.small_appends = 2'000;
  c.large_appends = 512;
  c.read_file_size = 4 * kMiB;
  c.random_reads = 2'000;
  c.small_scan_bytes = 1 * kMiB;
  c.stall_seconds = 0.05;
  c.stall_prefill = 2 * kMiB;
  c.stall_segment_size = 1 * kMiB;
  return c;
}

// ---- measurements ----------------------------------------------------------------

// Latency percentiles of one run; sorts `ns`.
void AddPercentiles(std::vector<uint64_t>& ns, Measurement& m) {
  if (ns.empty()) return;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    const size_t index = std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    return static_cast<double>(ns[index]) / 1e3;
  };
  m.p50_us = at(0.50);
  m.p99_us = at(0.99);
  m.max_us = static_cast<double>(ns.back()) / 1e3;
  m.slow_ops = static_cast<uint64_t>(ns.end() - std::upper_bound(ns.begin(), ns.end(), kStallLimitNs));
}

// Runs body(thread) on `threads` threads released together and times them from
// the release to the last one finishing.
Measurement RunThreads(size_t threads, uint64_t ops, uint64_t bytes, const std::function<void(size_t)>& body) {
  std::latch ready(static_cast<std::ptrdiff_t>(threads));
  std::latch go(1);
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ready.count_down();
      go.wait();
      body(t);
    });
  }
  ready.wait();
  const Stopwatch watch;
  go.count_down();
  for (std::thread& worker : workers) worker.join();
  return watch.Stop(ops, bytes);
}

std::string SizeName(uint64_t bytes) {
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  if (bytes >= kKiB && bytes % kKiB == 0) return std::to_string(bytes / kKiB) + " KiB";
  return std::to_string(bytes) + " B";
}

// ---- files -----------------------------------------------------------------------

std::unique_ptr<HPFile> OpenHpfile(const std::string& path, uint64_t segment_size, size_t write_buffer_size = 0) {
  Options options;
  options.initial_meta.segment_size = segment_size;
  options.write_buffer_size = write_buffer_size;
  return Must(HPFile::Open(path, options), "HPFile::Open");
}

// The same bytes as a plain file and as an HPFile, side by side.
struct FilePair {
  std::string plain_path;
  int plain_fd = -1;
  std::unique_ptr<HPFile> hp;
  uint64_t size = 0;

  FilePair() = default;
  FilePair(const FilePair&) = delete;
  FilePair& operator=(const FilePair&) = delete;
  ~FilePair() {
    if (plain_fd >= 0) ::close(plain_fd);
  }
};

// Writes `size` random bytes to both files, syncs them (so background
// writeback does not run into the measurements) and reads them once, so every
// read workload starts from a warm page cache.
std::shared_ptr<FilePair> MakeFilePair(const std::string& dir, const std::string& name, uint64_t size,
                                       uint64_t segment_size) {
  auto pair = std::make_shared<FilePair>();
  pair->plain_path = dir + "/" + name + ".plain";
  pair->plain_fd = ::open(pair->plain_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (pair->plain_fd < 0) DieErrno("open");
  pair->hp = OpenHpfile(dir + "/" + name + ".hpfile", segment_size);
  pair->size = size;

  std::mt19937_64 rng(size ^ segment_size);
  for (uint64_t done = 0; done < size;) {
    const auto chunk = RandomBytes(static_cast<size_t>(std::min(size - done, 1 * kMiB)), rng);
    WriteAll(pair->plain_fd, chunk);
    Must(pair->hp->Append(chunk), "HPFile::Append");
    done += chunk.size();
  }
  if (::fdatasync(pair->plain_fd) != 0) DieErrno("fdatasync");
  Must(pair->hp->Sync(), "HPFile::Sync");

  std::vector<std::byte> a(1 * kMiB);
  std::vector<std::byte> b(1 * kMiB);
  for (uint64_t offset = 0; offset < size; offset += a.size()) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(a.size(), size - offset));
    if (::pread(pair->plain_fd, a.data(), want, static_cast<off_t>(offset)) != static_cast<ssize_t>(want)) {
      DieErrno("pread");
    }
    if (Must(pair->hp->ReadAt(offset, std::span(b.data(), want)), "HPFile::ReadAt") != want) Die("short ReadAt");
    // Both must hold the same bytes, or the comparison would be meaningless.
    if (std::memcmp(a.data(), b.data(), want) != 0) Die("HPFile and plain file differ at " + std::to_string(offset));
  }
  return pair;
}

// A FilePair made by the first setup that needs it, so workloads left out by
// --only cost nothing.
class LazyFilePair {
 public:
  LazyFilePair(std::string dir, std::string name, uint64_t size, uint64_t segment_size)
      : dir_(std::move(dir)), name_(std::move(name)), size_(size), segment_size_(segment_size) {}
  void Make() {
    if (!pair_) {
      std::fprintf(stderr, "core_bench: writing a plain file and an HPFile of %s each (%s)\n",
                   SizeName(size_).c_str(), name_.c_str());
      pair_ = MakeFilePair(dir_, name_, size_, segment_size_);
    }
  }
  FilePair& get() const { return *pair_; }
  uint64_t size() const { return size_; }

 private:
  const std::string dir_;
  const std::string name_;
  const uint64_t size_;
  const uint64_t segment_size_;
  std::shared_ptr<FilePair> pair_;
};

std::vector<std::vector<uint64_t>> RandomOffsets(size_t threads, size_t count, uint64_t limit, uint64_t seed) {
  std::vector<std::vector<uint64_t>> offsets(threads);
  for (size_t t = 0; t < threads; ++t) {
    std::mt19937_64 rng(seed + t);
    std::uniform_int_distribution<uint64_t> offset(0, limit);
    offsets[t].resize(count);
    for (uint64_t& o : offsets[t]) o = offset(rng);
  }
  return offsets;
}

// ---- workloads ---------------------------------------------------------------------

Workload AppendWorkload(const Config& config, const std::string& dir, size_t record_size, size_t count) {
  std::mt19937_64 rng(record_size);
  auto record = std::make_shared<std::vector<std::byte>>(RandomBytes(record_size, rng));
  const uint64_t bytes = static_cast<uint64_t>(count) * record_size;

  Workload w{.name = "append " + SizeName(record_size)};
  w.variants.push_back({"write(2), O_APPEND", false, [=] {
                          const std::string path = dir + "/append.plain";
                          const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
                          if (fd < 0) DieErrno("open");
                          const Stopwatch watch;
                          for (size_t i = 0; i < count; ++i) {
                            if (::write(fd, record->data(), record->size()) != static_cast<ssize_t>(record->size())) {
                              DieErrno("write");
                            }
                          }
                          const Measurement m = watch.Stop(count, bytes);
                          ::close(fd);
                          ::unlink(path.c_str());
                          return m;
                        }});
  for (const size_t buffer : {size_t{0}, size_t{64 * kKiB}}) {
    const std::string label = buffer == 0 ? "HPFile::Append" : "HPFile::Append, " + SizeName(buffer) + " write buffer";
    w.variants.push_back({label, buffer != 0, [=, segment_size = config.segment_size] {
                            const std::string path = dir + "/append.hpfile";
                            auto file = OpenHpfile(path, segment_size, buffer);
                            const Stopwatch watch;
                            for (size_t i = 0; i < count; ++i) Must(file->Append(*record), "HPFile::Append");
                            // Buffered bytes count once they reach the kernel, as the baseline's do.
                            Must(file->Flush(), "HPFile::Flush");
                            const Measurement m = watch.Stop(count, bytes);
                            file.reset();
                            std::filesystem::remove_all(path);
                            return m;
                          }});
  }
  return w;
}

Workload RandomReadWorkload(const Config& config, std::shared_ptr<LazyFilePair> files, size_t length,
                            size_t threads) {
  const size_t count = config.random_reads;
  auto offsets = std::make_shared<std::vector<std::vector<uint64_t>>>(
      RandomOffsets(threads, count, files->size() - length, length * 31 + threads));
  const uint64_t ops = static_cast<uint64_t>(count) * threads;
  const std::string name =
      "random read " + SizeName(length) + ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");

  Workload w{.name = name, .setup = [files] { files->Make(); }};
  w.variants.push_back({"pread(2)", false, [=] {
                          const int fd = files->get().plain_fd;
                          return RunThreads(threads, ops, ops * length, [&](size_t t) {
                            std::vector<std::byte> buf(length);
                            for (const uint64_t offset : (*offsets)[t]) {
                              if (::pread(fd, buf.data(), length, static_cast<off_t>(offset)) !=
                                  static_cast<ssize_t>(length)) {
                                DieErrno("pread");
                              }
                            }
                          });
                        }});
  w.variants.push_back({"HPFile::ReadAt", false, [=] {
                          const HPFile& file = *files->get().hp;
                          return RunThreads(threads, ops, ops * length, [&](size_t t) {
                            std::vector<std::byte> buf(length);
                            for (const uint64_t offset : (*offsets)[t]) {
                              auto n = file.ReadAt(offset, buf);
                              if (!n || *n != length) Die("HPFile::ReadAt failed or came back short");
                            }
                          });
                        }});
  return w;
}

Workload ScanWorkload(std::shared_ptr<LazyFilePair> files, size_t read_size, uint64_t bytes, bool with_plain_read_at) {
  bytes -= bytes % read_size;
  const uint64_t ops = bytes / read_size;
  Workload w{.name = "sequential scan, " + SizeName(read_size) + " reads", .setup = [files] { files->Make(); }};
  w.variants.push_back({"read(2)", false, [=] {
                          const int fd = files->get().plain_fd;
                          std::vector<std::byte> buf(read_size);
                          if (::lseek(fd, 0, SEEK_SET) != 0) DieErrno("lseek");
                          const Stopwatch watch;
                          for (uint64_t done = 0; done < bytes; done += read_size) {
                            if (::read(fd, buf.data(), read_size) != static_cast<ssize_t>(read_size)) DieErrno("read");
                          }
                          return watch.Stop(ops, bytes);
                        }});
  w.variants.push_back({"PreReader::ReadAt", false, [=] {
                          std::vector<std::byte> buf(read_size);
                          const Stopwatch watch;
                          // Its read-ahead buffer is part of what a scan costs.
                          PreReader reader(*files->get().hp);
                          for (uint64_t offset = 0; offset < bytes; offset += read_size) {
                            auto n = reader.ReadAt(offset, buf);
                            if (!n || *n != read_size) Die("PreReader::ReadAt failed or came back short");
                          }
                          return watch.Stop(ops, bytes);
                        }});
  if (with_plain_read_at) {
    w.variants.push_back({"HPFile::ReadAt", true, [=] {
                            const HPFile& file = *files->get().hp;
                            std::vector<std::byte> buf(read_size);
                            const Stopwatch watch;
                            for (uint64_t offset = 0; offset < bytes; offset += read_size) {
                              auto n = file.ReadAt(offset, buf);
                              if (!n || *n != read_size) Die("HPFile::ReadAt failed or came back short");
                            }
                            return watch.Stop(ops, bytes);
                          }});
  }
  return w;
}

// Appends and syncs in a loop until `stop`, recording how many syncs ran and
// the slowest.
constexpr size_t kStallRecord = 4 * kKiB;
constexpr int kStallAppendsPerSync = 4;

template <class AppendFn, class SyncFn>
void WriteAndSyncUntil(const std::atomic<bool>& stop, Measurement& m, AppendFn append, SyncFn sync) {
  double slowest = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < kStallAppendsPerSync; ++i) append();
    const auto start = Clock::now();
    sync();
    slowest = std::max(slowest, Seconds(Clock::now() - start));
    ++m.writer_syncs;
  }
  m.writer_sync_max_ms = slowest * 1e3;
}

// Times each read of random 4 KiB in the first `limit` bytes for `seconds`,
// with `writer` (if any) running on another thread meanwhile.
template <class ReadFn>
Measurement TimeReads(double seconds, uint64_t limit, ReadFn read,
                      const std::function<void(const std::atomic<bool>&, Measurement&)>& writer) {
  Measurement m;
  std::vector<uint64_t> latencies;
  latencies.reserve(static_cast<size_t>(seconds * 2e6) + 1024);
  std::vector<std::byte> buf(kStallRecord);
  std::mt19937_64 rng(limit);
  std::uniform_int_distribution<uint64_t> offset(0, limit - kStallRecord);

  std::atomic<bool> stop{false};
  std::thread writer_thread;
  if (writer) writer_thread = std::thread([&] { writer(stop, m); });
  const auto begin = Clock::now();
  const auto deadline = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  // On a shared machine most slow reads are the reader being preempted; a
  // read that waited (for a lock, for the disk) shows as a voluntary context
  // switch instead, so the two are told apart. getrusage runs outside the
  // timed span.
  struct rusage before {};
  ::getrusage(RUSAGE_THREAD, &before);
  for (;;) {
    const uint64_t at = offset(rng);
    const auto start = Clock::now();
    read(at, buf);
    const auto end = Clock::now();
    const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
    latencies.push_back(ns);
    struct rusage after {};
    ::getrusage(RUSAGE_THREAD, &after);
    if (after.ru_nvcsw != before.ru_nvcsw) {
      ++m.blocked_ops;
      if (ns > kStallLimitNs) ++m.slow_blocked_ops;
    }
    before = after;
    if (end >= deadline) break;
  }
  m.seconds = Seconds(Clock::now() - begin);
  stop.store(true, std::memory_order_relaxed);
  if (writer_thread.joinable()) writer_thread.join();
  m.ops = latencies.size();
  m.bytes = m.ops * kStallRecord;
  AddPercentiles(latencies, m);
  return m;
}

Workload StallWorkload(const Config& config, std::shared_ptr<LazyFilePair> files) {
  const double seconds = config.stall_seconds;
  const uint64_t limit = files->size();
  auto record = std::make_shared<std::vector<std::byte>>(kStallRecord, std::byte{0x5a});

  auto pread_4k = [files](uint64_t offset, std::span<std::byte> buf) {
    if (::pread(files->get().plain_fd, buf.data(), buf.size(), static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(buf.size())) {
      DieErrno("pread");
    }
  };
  auto read_at_4k = [files](uint64_t offset, std::span<std::byte> buf) {
    auto n = files->get().hp->ReadAt(offset, buf);
    if (!n || *n != buf.size()) Die("HPFile::ReadAt failed or came back short");
  };
  auto plain_writer = [files, record](const std::atomic<bool>& stop, Measurement& m) {
    const int fd = ::open(files->get().plain_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) DieErrno("open");
    WriteAndSyncUntil(
        stop, m, [&] { WriteAll(fd, *record); },
        [&] {
          if (::fdatasync(fd) != 0) DieErrno("fdatasync");
        });
    ::close(fd);
  };
  auto hp_writer = [files, record](const std::atomic<bool>& stop, Measurement& m) {
    HPFile& file = *files->get().hp;
    WriteAndSyncUntil(
        stop, m, [&] { Must(file.Append(*record), "HPFile::Append"); }, [&] { Must(file.Sync(), "HPFile::Sync"); });
  };

  Workload w{.name = "4 KiB read latency", .setup = [files] { files->Make(); }, .latency = true};
  w.variants.push_back({"pread(2), file idle", false, [=] { return TimeReads(seconds, limit, pread_4k, nullptr); }});
  w.variants.push_back({"pread(2), writer: write(2) + fdatasync loop", false,
                        [=] { return TimeReads(seconds, limit, pread_4k, plain_writer); }});
  w.variants.push_back(
      {"HPFile::ReadAt, file idle", false, [=] { return TimeReads(seconds, limit, read_at_4k, nullptr); }});
  w.variants.push_back({"HPFile::ReadAt, writer: Append + Sync loop", false,
                        [=] { return TimeReads(seconds, limit, read_at_4k, hp_writer); }});
  return w;
}

// ---- report --------------------------------------------------------------------------

constexpr const char* kLatencyLegend =
    "Random 4 KiB read latency, on an idle file and beside a thread that appends and syncs it. "
    "\"Waiting\" reads slept of their own accord (a lock, the disk) rather than being preempted.";

struct Report {
  Table throughput;
  Table latency;
  std::vector<std::string> notes;
};

const Variant* FindVariant(const Workload& w, std::string_view prefix, bool with_writer) {
  for (const Variant& v : w.variants) {
    if (v.label.starts_with(prefix) && (v.label.find("writer") != std::string::npos) == with_writer) return &v;
  }
  return nullptr;
}

struct StallFigures {
  double worst_us = 0;
  uint64_t slow = 0;
  uint64_t slow_blocked = 0;
};

StallFigures Stalls(const Variant& v) {
  StallFigures f;
  for (const Measurement& m : v.rounds) {
    f.worst_us = std::max(f.worst_us, m.max_us);
    f.slow += m.slow_ops;
    f.slow_blocked += m.slow_blocked_ops;
  }
  return f;
}

std::string StallVerdict(const Variant& hp, const Variant& plain) {
  const StallFigures h = Stalls(hp);
  const StallFigures p = Stalls(plain);
  const double limit_us = static_cast<double>(kStallLimitNs) / 1e3;
  // A read can sleep on a libhpfile lock or on the page cache (a page being
  // read in); only the first would be a miss, and only perf tells them apart
  // (see the top of this file).
  std::string verdict = h.worst_us <= limit_us ? "met"
                        : h.slow_blocked == 0
                            ? "met as far as this run shows (every read over 1 ms was preempted, none slept)"
                            : "to check: " + std::to_string(h.slow_blocked) +
                                  " reads over 1 ms slept, on a lock or on the disk";
  return "Stall target (no HPFile::ReadAt over 1 ms while Sync runs): " + verdict + ". HPFile::ReadAt beside Sync: worst " +
         Number(h.worst_us) + " us, " + std::to_string(h.slow) + " reads over 1 ms, " + std::to_string(h.slow_blocked) +
         " of them waiting; pread(2) beside fdatasync: worst " + Number(p.worst_us) + " us, " + std::to_string(p.slow) +
         " over 1 ms, " + std::to_string(p.slow_blocked) + " waiting.";
}

Report BuildReport(const std::vector<Workload>& workloads) {
  Report report;
  report.throughput = ThroughputTable(workloads, kRatioFloor);
  report.latency.header = {"variant", "reads/round", "p50 us", "p99 us", "max us", "worst max us",
                           "reads > 1 ms (waiting)", "waiting reads", "writer syncs/round", "slowest sync ms"};
  for (const Workload& w : workloads) {
    if (w.latency) {
      for (const Variant& v : w.variants) {
        uint64_t slow = 0;
        uint64_t slow_blocked = 0;
        uint64_t blocked = 0;
        for (const Measurement& m : v.rounds) {
          slow += m.slow_ops;
          slow_blocked += m.slow_blocked_ops;
          blocked += m.blocked_ops;
        }
        const Spread max = SummarizeRounds(v, [](const Measurement& m) { return m.max_us; });
        const bool has_writer = v.rounds.empty() ? false : v.rounds[0].writer_syncs > 0;
        report.latency.rows.push_back({
            v.label,
            Number(SummarizeRounds(v, [](const Measurement& m) { return static_cast<double>(m.ops); }).median),
            WithSpread(SummarizeRounds(v, [](const Measurement& m) { return m.p50_us; })),
            WithSpread(SummarizeRounds(v, [](const Measurement& m) { return m.p99_us; })),
            WithSpread(max),
            Number(max.max),
            std::to_string(slow) + " (" + std::to_string(slow_blocked) + ")",
            std::to_string(blocked),
            has_writer ? Number(SummarizeRounds(v, [](const Measurement& m) {
                                  return static_cast<double>(m.writer_syncs);
                                }).median)
                       : "-",
            has_writer ? Number(SummarizeRounds(v, [](const Measurement& m) { return m.writer_sync_max_ms; }).max)
                       : "-",
        });
      }
      const Variant* hp = FindVariant(w, "HPFile", true);
      const Variant* plain = FindVariant(w, "pread", true);
      if (hp != nullptr && plain != nullptr && !hp->rounds.empty()) {
        report.notes.push_back(StallVerdict(*hp, *plain));
      }
      continue;
    }
    // The rows are ThroughputTable's; these are the notes on them.
    for (size_t i = 1; i < w.variants.size(); ++i) {
      const Variant& v = w.variants[i];
      const Spread ratio = Ratio(w, v);
      if (!v.info && ratio.median < kRatioFloor) {
        report.notes.push_back("Below " + Number(kRatioFloor) + " of baseline: " + w.name + ", " + v.label + " (" +
                               Number(ratio.median) + ").");
      }
    }
  }
  return report;
}

// ---- JSON --------------------------------------------------------------------------------

// The per-round figures of a latency variant.
std::string LatencyJson(const Variant& v) {
  std::string out = ", \"reads\": " + JsonRounds(v, [](const Measurement& m) { return static_cast<double>(m.ops); });
  out += ", \"p50_us\": " + JsonRounds(v, [](const Measurement& m) { return m.p50_us; });
  out += ", \"p99_us\": " + JsonRounds(v, [](const Measurement& m) { return m.p99_us; });
  out += ", \"max_us\": " + JsonRounds(v, [](const Measurement& m) { return m.max_us; });
  out += ", \"reads_over_limit\": " +
         JsonRounds(v, [](const Measurement& m) { return static_cast<double>(m.slow_ops); });
  out += ", \"waiting_reads_over_limit\": " +
         JsonRounds(v, [](const Measurement& m) { return static_cast<double>(m.slow_blocked_ops); });
  out += ", \"waiting_reads\": " +
         JsonRounds(v, [](const Measurement& m) { return static_cast<double>(m.blocked_ops); });
  out += ", \"writer_syncs\": " +
         JsonRounds(v, [](const Measurement& m) { return static_cast<double>(m.writer_syncs); });
  out += ", \"writer_sync_max_ms\": " + JsonRounds(v, [](const Measurement& m) { return m.writer_sync_max_ms; });
  return out;
}

std::string ToJson(const Config& config, const std::string& fs_type, const std::vector<Workload>& workloads) {
  std::string out = "{\n";
  out += "  \"section\": \"core\",\n";
  out += "  \"mode\": " + JsonString(config.mode) + ",\n";
  out += "  \"rounds\": " + std::to_string(config.rounds) + ",\n";
  out += "  \"warmup_rounds\": " + std::to_string(config.warmup_rounds) + ",\n";
  out += "  \"dir\": " + JsonString(config.parent_dir) + ",\n";
  out += "  \"filesystem\": " + JsonString(fs_type) + ",\n";
  out += "  \"ratio\": \"variant throughput / baseline throughput of the same round; 1 is parity\",\n";
  out += "  \"stall_limit_us\": " + JsonNumber(static_cast<double>(kStallLimitNs) / 1e3) + ",\n";
  out += "  \"workloads\": " + WorkloadsJson(workloads, JsonLayout{.kind = true, .mb_per_s = true,
                                                                 .latency_fields = LatencyJson}) + "\n}\n";
  return out;
}

std::string Markdown(const Config& config, const std::string& fs_type, const Report& report) {
  std::string out = "## core: libhpfile vs raw system calls\n\n";
  out += "Mode " + config.mode + ", " + std::to_string(config.rounds) + " rounds after " +
         std::to_string(config.warmup_rounds) + " warm-up, " + fs_type + " under " + config.parent_dir +
         ". Cells: median [min-max] over rounds. Ratio: variant throughput / baseline throughput in the same "
         "round (1 is parity). CPU columns: process CPU time per operation (medians), which busy neighbours do not "
         "inflate; the kernel splits it into user and sys by sampling at each tick, so short (quick mode) runs "
         "show it coarsely.\n\n";
  if (!report.throughput.rows.empty()) out += report.throughput.Markdown() + "\n";
  if (!report.latency.rows.empty()) out += std::string(kLatencyLegend) + "\n\n" + report.latency.Markdown() + "\n";
  for (const std::string& note : report.notes) out += "- " + note + "\n";
  return out;
}

// ---- main ----------------------------------------------------------------------------------

int Main(int argc, char** argv) {
  g_program = "core_bench";
  const Config config = ParseArgs(argc, argv, "the result tables", QuickConfig, TinyConfig);
  MakeScratch(config.parent_dir, "hpfile-bench");
  const std::string fs_type = ScratchFilesystemType();
  if (config.only == "scale") {
    // The core rows of scripts/bench's scale section (core_scale.h);
    // HPFS_BENCH_SCALE_SEGMENTS=N,M... overrides the segment counts.
    ScaleConfig scale{.segment_counts = {100'000, 1'000'000}, .rounds = config.rounds,
                      .json_path = config.json_path, .markdown_path = config.markdown_path};
    if (config.mode == "quick") scale.segment_counts = {10'000, 100'000};
    if (config.mode == "tiny") scale.segment_counts = {200};
    if (const char* env = std::getenv("HPFS_BENCH_SCALE_SEGMENTS")) {
      scale.segment_counts.clear();
      for (std::string_view rest = env; !rest.empty();) {
        const size_t comma = std::min(rest.find(','), rest.size());
        scale.segment_counts.push_back(std::strtoull(std::string(rest.substr(0, comma)).c_str(), nullptr, 10));
        rest.remove_prefix(std::min(comma + 1, rest.size()));
      }
    }
    RunScale(scale);
    RemoveScratch();
    return 0;
  }

  auto read_files = std::make_shared<LazyFilePair>(g_scratch, "read", config.read_file_size, config.segment_size);
  auto stall_files =
      std::make_shared<LazyFilePair>(g_scratch, "stall", config.stall_prefill, config.stall_segment_size);
  std::vector<Workload> all;
  all.push_back(AppendWorkload(config, g_scratch, 128, config.small_appends));
  all.push_back(AppendWorkload(config, g_scratch, 4 * kKiB, config.large_appends));
  for (const size_t length : {size_t{4 * kKiB}, size_t{128}}) {
    for (const size_t threads : {size_t{1}, size_t{2}}) all.push_back(RandomReadWorkload(config, read_files, length, threads));
  }
  all.push_back(ScanWorkload(read_files, 64 * kKiB, config.read_file_size, /*with_plain_read_at=*/true));
  all.push_back(ScanWorkload(read_files, 128, config.small_scan_bytes, /*with_plain_read_at=*/false));
  all.push_back(StallWorkload(config, stall_files));

  std::vector<Workload> workloads = SelectWorkloads(std::move(all), config.only);
  const auto setup_start = Clock::now();
  RunSetups(workloads);
  std::fprintf(stderr, "core_bench: setup took %.1f s\n", Seconds(Clock::now() - setup_start));
  RunRounds(workloads, config.warmup_rounds, config.rounds);

  const Report report = BuildReport(workloads);
  std::printf("core: libhpfile vs raw system calls (%s mode, %d rounds, %s under %s)\n", config.mode.c_str(),
              config.rounds, fs_type.c_str(), config.parent_dir.c_str());
  std::printf("cells: median [min-max] over rounds; ratio = variant throughput / baseline throughput, same round;\n"
              "CPU columns: process CPU time per operation (medians), which busy neighbours do not inflate;\n"
              "the user/sys split is sampled at each tick, so short (quick mode) runs show it coarsely\n\n");
  if (!report.throughput.rows.empty()) std::printf("%s\n", report.throughput.Text().c_str());
  if (!report.latency.rows.empty()) std::printf("%s\n%s\n", kLatencyLegend, report.latency.Text().c_str());
  for (const std::string& note : report.notes) std::printf("%s\n", note.c_str());
  std::fflush(stdout);

  if (!config.json_path.empty()) WriteTextFile(config.json_path, ToJson(config, fs_type, workloads));
  if (!config.markdown_path.empty()) WriteTextFile(config.markdown_path, Markdown(config, fs_type, report));
  workloads.clear();  // closes the files before their directory goes
  RemoveScratch();
  return 0;
}

}  // namespace
}  // namespace hpfile::bench

int main(int argc, char** argv) { return hpfile::bench::Main(argc, argv); }
