// SPDX-License-Identifier: Apache-2.0
// Micro-benchmark of record logs (core/record_log.h) against the raw system
// calls on one plain file in the same directory: appends of 32-byte fixed-size
// and 100-700-byte variable-size elements made durable every batch, and random
// reads of single elements. The baseline for reads keeps every element's
// offset in memory, which a plain file needs to find variable-size elements
// at all; the record log reads them through its index.
//
// Rounds are interleaved and reported as in core_bench (tests/bench/bench_util.h).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/record_log.h"
#include "tests/bench/bench_util.h"

namespace hpfile::bench {
namespace {

constexpr double kRatioFloor = 0.9;

struct Config : Flags {
  Config() : Flags{.rounds = 7} {}

  uint64_t segment_size = format::kDefaultSegmentSize;
  size_t appends = 200'000;   // elements per variant and round
  size_t batch = 1'000;       // elements per Flush / fdatasync
  size_t fixed_elements = 1'000'000;    // in the read files (32 MB)
  size_t variable_elements = 200'000;   // about 80 MB
  size_t random_reads = 200'000;        // per variant and round
};

// The sizes of --quick and --tiny; ParseArgs sets their mode and rounds.
Config QuickConfig() {
  Config c;
  c.appends = 50'000;
  c.fixed_elements = 200'000;
  c.variable_elements = 50'000;
  c.random_reads = 50'000;
  return c;
}

Config TinyConfig() {
  Config c;
  c.segment_size = 1 * kMiB;
  c.appends = 2'000;
  c.batch = 100;
  c.fixed_elements = 5'000;
  c.variable_elements = 5'000;
  c.random_reads = 2'000;
  return c;
}

// ---- elements and files ------------------------------------------------------------

// A pool of distinct elements, cycled through by the workloads.
struct Elements {
  uint32_t element_size = 0;  // 0: variable, 100..700 bytes
  std::vector<std::vector<std::byte>> pool;

  const std::vector<std::byte>& operator[](size_t i) const { return pool[i % pool.size()]; }
  std::string Name() const { return element_size != 0 ? "32 B fixed" : "100-700 B variable"; }
};

Elements MakeElements(uint32_t element_size) {
  Elements e{element_size, {}};
  std::mt19937_64 rng(element_size + 1);
  std::uniform_int_distribution<size_t> size(100, 700);
  for (int i = 0; i < 4096; ++i) e.pool.push_back(RandomBytes(element_size != 0 ? element_size : size(rng), rng));
  return e;
}

std::unique_ptr<RecordLog> OpenLog(const std::string& path, uint32_t element_size, uint64_t segment_size) {
  RecordLogOptions options;
  options.element_size = element_size;
  options.segment_size = segment_size;
  return Must(RecordLog::Open(path, options), "RecordLog::Open");
}

// The same elements in a plain file (offsets kept in memory) and a record log.
struct ReadFiles {
  int plain_fd = -1;
  std::vector<uint64_t> offsets;  // offsets[i]..offsets[i + 1] is element i
  std::unique_ptr<RecordLog> log;

  ~ReadFiles() {
    if (plain_fd >= 0) ::close(plain_fd);
  }
};

// `workload` names the files: a log has one owner, and each workload keeps its own open.
std::shared_ptr<ReadFiles> MakeReadFiles(const Config& config, const Elements& elements, size_t count,
                                         const std::string& workload) {
  const std::string name = workload + (elements.element_size != 0 ? "-fixed" : "-variable");
  std::fprintf(stderr, "record_bench: writing %zu %s elements to a plain file and a record log\n", count,
               elements.Name().c_str());
  auto files = std::make_shared<ReadFiles>();
  const std::string plain = g_scratch + "/read-" + name + ".plain";
  files->plain_fd = ::open(plain.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (files->plain_fd < 0) DieErrno("open");
  files->log = OpenLog(g_scratch + "/read-" + name + ".log", elements.element_size, config.segment_size);
  files->offsets.push_back(0);
  std::vector<std::byte> chunk;
  for (size_t i = 0; i < count; ++i) {
    chunk.insert(chunk.end(), elements[i].begin(), elements[i].end());
    files->offsets.push_back(files->offsets.back() + elements[i].size());
    Must(files->log->Append(elements[i]), "RecordLog::Append");
    if (chunk.size() >= kMiB || i + 1 == count) {
      WriteAll(files->plain_fd, chunk);
      chunk.clear();
      Must(files->log->Flush(), "RecordLog::Flush");
    }
  }
  if (::fdatasync(files->plain_fd) != 0) DieErrno("fdatasync");
  // Read both once: every workload starts from a warm page cache, and the
  // two must hold the same elements or the comparison means nothing.
  std::vector<std::byte> a;
  std::vector<std::byte> b;
  for (size_t i = 0; i < count; ++i) {
    a.resize(files->offsets[i + 1] - files->offsets[i]);
    if (::pread(files->plain_fd, a.data(), a.size(), static_cast<off_t>(files->offsets[i])) !=
        static_cast<ssize_t>(a.size())) {
      DieErrno("pread");
    }
    Must(files->log->ReadInto(i, b), "RecordLog::ReadInto");
    if (a != b) Die("plain file and record log differ at element " + std::to_string(i));
  }
  return files;
}

// ---- workloads -------------------------------------------------------------------------

Workload AppendWorkload(const Config& config, std::shared_ptr<const Elements> elements) {
  const size_t count = config.appends;
  const size_t batch = config.batch;
  uint64_t bytes = 0;
  for (size_t i = 0; i < count; ++i) bytes += (*elements)[i].size();
  const std::string batch_text = std::to_string(batch);

  Workload w{"append " + elements->Name() + ", durable every " + batch_text, {}, {}};
  w.variants.push_back({"write(2), fdatasync every " + batch_text, false, [=] {
                          const std::string path = g_scratch + "/append.plain";
                          const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
                          if (fd < 0) DieErrno("open");
                          const Stopwatch watch;
                          for (size_t i = 0; i < count; ++i) {
                            WriteAll(fd, (*elements)[i]);
                            if ((i + 1) % batch == 0 || i + 1 == count) {
                              if (::fdatasync(fd) != 0) DieErrno("fdatasync");
                            }
                          }
                          const Measurement m = watch.Stop(count, bytes);
                          ::close(fd);
                          ::unlink(path.c_str());
                          return m;
                        }});
  w.variants.push_back({"RecordLog::Append, Flush every " + batch_text, false,
                        [=, segment_size = config.segment_size] {
                          const std::string path = g_scratch + "/append.log";
                          auto log = OpenLog(path, elements->element_size, segment_size);
                          const Stopwatch watch;
                          for (size_t i = 0; i < count; ++i) {
                            Must(log->Append((*elements)[i]), "RecordLog::Append");
                            if ((i + 1) % batch == 0 || i + 1 == count) Must(log->Flush(), "RecordLog::Flush");
                          }
                          const Measurement m = watch.Stop(count, bytes);
                          log.reset();
                          std::filesystem::remove_all(path);
                          return m;
                        }});
  return w;
}

// Reads of `stored` elements at positions in random order, or, `sequential`,
// in order from the first (where a RecordReader serves them from its buffer).
Workload ReadWorkload(const Config& config, std::shared_ptr<const Elements> elements, size_t stored,
                      bool sequential) {
  auto files = std::make_shared<std::shared_ptr<ReadFiles>>();
  auto positions = std::make_shared<std::vector<uint64_t>>(config.random_reads);
  std::mt19937_64 rng(stored);
  std::uniform_int_distribution<uint64_t> position(0, stored - 1);
  for (size_t i = 0; i < positions->size(); ++i) (*positions)[i] = sequential ? i % stored : position(rng);
  const size_t count = config.random_reads;
  auto bytes_read = [files, positions] {
    uint64_t bytes = 0;
    for (uint64_t p : *positions) bytes += (*files)->offsets[p + 1] - (*files)->offsets[p];
    return bytes;
  };

  const std::string order = sequential ? "sequential" : "random";
  Workload w{order + " read " + elements->Name(),
             {},
             [=, &config] { *files = MakeReadFiles(config, *elements, stored, order); }};
  w.variants.push_back({"pread(2), offsets in memory", false, [=] {
                          const ReadFiles& f = **files;
                          std::vector<std::byte> buf(1024);
                          const Stopwatch watch;
                          for (uint64_t p : *positions) {
                            const size_t size = f.offsets[p + 1] - f.offsets[p];
                            if (::pread(f.plain_fd, buf.data(), size, static_cast<off_t>(f.offsets[p])) !=
                                static_cast<ssize_t>(size)) {
                              DieErrno("pread");
                            }
                          }
                          return watch.Stop(count, bytes_read());
                        }});
  w.variants.push_back({"RecordLog::ReadInto", false, [=] {
                          const RecordLog& log = *(*files)->log;
                          std::vector<std::byte> buf;
                          const Stopwatch watch;
                          for (uint64_t p : *positions) Must(log.ReadInto(p, buf), "RecordLog::ReadInto");
                          return watch.Stop(count, bytes_read());
                        }});
  w.variants.push_back({"RecordSnapshot::ReadInto", true, [=] {
                          const RecordSnapshot snapshot = Must((*files)->log->Snapshot(), "RecordLog::Snapshot");
                          std::vector<std::byte> buf;
                          const Stopwatch watch;
                          for (uint64_t p : *positions) Must(snapshot.ReadInto(p, buf), "RecordSnapshot::ReadInto");
                          return watch.Stop(count, bytes_read());
                        }});
  if (sequential) {
    w.variants.push_back({"RecordReader::Read (views)", true, [=] {
                            RecordReader reader(*(*files)->log);
                            // Touches each element, as a caller of the copying reads does.
                            volatile std::byte first{};
                            const Stopwatch watch;
                            for (uint64_t p : *positions) first = Must(reader.Read(p), "RecordReader::Read").bytes.front();
                            (void)first;
                            return watch.Stop(count, bytes_read());
                          }});
  }
  return w;
}

std::string Json(const Config& config, const std::string& fs_type, const std::vector<Workload>& workloads) {
  return "{\n  \"mode\": " + JsonString(config.mode) + ", \"rounds\": " + std::to_string(config.rounds) +
         ", \"warmup_rounds\": " + std::to_string(config.warmup_rounds) + ", \"filesystem\": " + JsonString(fs_type) +
         ", \"dir\": " + JsonString(config.parent_dir) + ",\n  \"workloads\": " + WorkloadsJson(workloads) + "\n}\n";
}

std::string Legend(const Config& config, const std::string& fs_type) {
  return "Mode " + config.mode + ", " + std::to_string(config.rounds) + " rounds after " +
         std::to_string(config.warmup_rounds) + " warm-up, " + fs_type + " under " + config.parent_dir +
         ". Cells: median [min-max] over rounds. Ratio: variant throughput / baseline throughput in the same round "
         "(1 is parity). Appends: a variable-size log syncs its data and its index at each Flush, the baseline one "
         "file. Reads: the baseline knows every offset from memory; a variable-size log reads an index entry first.";
}

int Main(int argc, char** argv) {
  g_program = "record_bench";
  const Config config = ParseArgs(argc, argv, "the result table", QuickConfig, TinyConfig);
  MakeScratch(config.parent_dir, "record-bench");
  const std::string fs_type = ScratchFilesystemType();

  auto fixed = std::make_shared<const Elements>(MakeElements(32));
  auto variable = std::make_shared<const Elements>(MakeElements(0));
  std::vector<Workload> all;
  all.push_back(AppendWorkload(config, fixed));
  all.push_back(AppendWorkload(config, variable));
  all.push_back(ReadWorkload(config, fixed, config.fixed_elements, /*sequential=*/false));
  all.push_back(ReadWorkload(config, variable, config.variable_elements, /*sequential=*/false));
  all.push_back(ReadWorkload(config, fixed, config.fixed_elements, /*sequential=*/true));
  all.push_back(ReadWorkload(config, variable, config.variable_elements, /*sequential=*/true));
  std::vector<Workload> workloads = SelectWorkloads(std::move(all), config.only);
  RunRounds(workloads, config.warmup_rounds, config.rounds);

  const Table table = ThroughputTable(workloads, kRatioFloor);
  std::printf("records: record logs vs raw system calls (%s mode, %d rounds, %s under %s)\n%s\n\n%s\n",
              config.mode.c_str(), config.rounds, fs_type.c_str(), config.parent_dir.c_str(),
              Legend(config, fs_type).c_str(), table.Text().c_str());
  std::fflush(stdout);
  if (!config.json_path.empty()) WriteTextFile(config.json_path, Json(config, fs_type, workloads));
  if (!config.markdown_path.empty()) {
    WriteTextFile(config.markdown_path,
                  "## records: record logs vs raw system calls\n\n" + Legend(config, fs_type) + "\n\n" + table.Markdown());
  }
  workloads.clear();  // closes the files before their directory goes
  RemoveScratch();
  return 0;
}

}  // namespace
}  // namespace hpfile::bench

int main(int argc, char** argv) { return hpfile::bench::Main(argc, argv); }
