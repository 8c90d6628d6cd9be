// SPDX-License-Identifier: Apache-2.0
// Timing harness shared by the micro-benchmarks: the common flags, a scratch
// directory removed on every way out, wall and CPU time per run, interleaved
// rounds (variants of a workload back to back, in reversed order every other
// round), medians with min and max, per-round ratios to the baseline, and the
// text, markdown and JSON forms of a result table.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/result.h"

namespace hpfile::bench {

using Clock = std::chrono::steady_clock;

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;

// ---- failure and cleanup -------------------------------------------------------

// The program name for messages, and the scratch directory, set once before
// any other thread starts.
inline std::string g_program = "bench";
inline std::string g_scratch;

inline void RemoveScratch() {
  if (g_scratch.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(g_scratch, ignored);
}

[[noreturn]] inline void Die(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", g_program.c_str(), message.c_str());
  RemoveScratch();
  // Other threads may still be using the files: skip destructors and atexit.
  std::_Exit(1);
}

[[noreturn]] inline void DieErrno(const std::string& what) { Die(what + ": " + std::strerror(errno)); }

template <class T>
T Must(Result<T> result, const char* what) {
  if (!result) Die(std::string(what) + ": " + result.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// Makes the scratch directory under `parent` and removes it on SIGINT, SIGTERM
// and SIGHUP, taken by one thread with sigwait so the cleanup runs in a normal
// context rather than in a signal handler.
inline void MakeScratch(const std::string& parent, const std::string& name) {
  std::string pattern = parent + "/" + name + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) DieErrno("mkdtemp in " + parent);
  g_scratch = pattern;
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([signals] {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) return;
    std::fprintf(stderr, "%s: interrupted, removing %s\n", g_program.c_str(), g_scratch.c_str());
    RemoveScratch();
    std::_Exit(128 + sig);
  }).detach();
}

// ---- flags ---------------------------------------------------------------------------

// The flags every benchmark takes; a benchmark's Config adds its sizes.
struct Flags {
  std::string mode = "full";
  int rounds = 5;
  int warmup_rounds = 1;
  std::string parent_dir = "/var/tmp";
  std::string only;
  std::string json_path;
  std::string markdown_path;
};

// The usage text; `markdown` says what --markdown writes.
inline std::string Usage(std::string_view markdown) {
  return "Usage: " + g_program + " [--quick | --tiny] [--dir DIR] [--rounds N] [--only TEXT]\n" +
         std::string(g_program.size() + 8, ' ') +
         "[--json FILE] [--markdown FILE]\n"
         "  --quick          small sizes, well under a minute\n"
         "  --tiny           smallest sizes, for a smoke test\n"
         "  --dir DIR        parent of the scratch directory (default /var/tmp); use the\n"
         "                   filesystem you want to measure, not tmpfs\n"
         "  --rounds N       measured rounds (after the warm-up round)\n"
         "  --only TEXT      run only workloads whose name contains TEXT\n"
         "  --json FILE      write the results as JSON\n"
         "  --markdown FILE  write " +
         std::string(markdown) + " as markdown\n";
}

// Parses the flags into a Config. Its sizes come from `quick` and `tiny` for
// those presets, which also set the mode and fewer rounds, and from its
// default constructor otherwise. `markdown` is as for Usage.
template <class Config>
Config ParseArgs(int argc, char** argv, std::string_view markdown, Config (*quick)(), Config (*tiny)()) {
  static_assert(std::is_base_of_v<Flags, Config>);
  const std::string usage = Usage(markdown);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  Config config;
  // The preset first, so the other flags refine it in any order.
  for (std::string_view arg : args) {
    if (arg == "--quick") {
      config = quick();
      config.mode = "quick";
      config.rounds = 3;
    } else if (arg == "--tiny") {
      config = tiny();
      config.mode = "tiny";
      config.rounds = 2;
      config.warmup_rounds = 0;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) Die(std::string(arg) + " needs a value");
      return std::string(args[++i]);
    };
    if (arg == "--quick" || arg == "--tiny") {
      continue;
    } else if (arg == "--dir") {
      config.parent_dir = value();
    } else if (arg == "--rounds") {
      config.rounds = std::atoi(value().c_str());
      if (config.rounds < 1) Die("--rounds must be at least 1");
    } else if (arg == "--only") {
      config.only = value();
    } else if (arg == "--json") {
      config.json_path = value();
    } else if (arg == "--markdown") {
      config.markdown_path = value();
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(usage.c_str(), stdout);
      std::exit(0);
    } else {
      std::fputs(usage.c_str(), stderr);
      Die("unknown argument " + std::string(arg));
    }
  }
  return config;
}

// ---- measurements ------------------------------------------------------------------

struct Measurement {
  double seconds = 0;
  // CPU time of the whole process over the same span: unlike wall time it does
  // not grow when the machine is busy.
  double user_seconds = 0;
  double sys_seconds = 0;
  uint64_t ops = 0;
  uint64_t bytes = 0;
  // Latency workloads only.
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  uint64_t slow_ops = 0;  // slower than the benchmark's stall limit
  // Reads during which the thread slept of its own accord (waited for a lock
  // or for I/O), in all and among the slow ones.
  uint64_t blocked_ops = 0;
  uint64_t slow_blocked_ops = 0;
  uint64_t writer_syncs = 0;
  double writer_sync_max_ms = 0;

  double NsPerOp() const { return PerOp(seconds); }
  double UserNsPerOp() const { return PerOp(user_seconds); }
  double SysNsPerOp() const { return PerOp(sys_seconds); }
  double PerOp(double total_seconds) const { return ops == 0 ? 0 : total_seconds * 1e9 / static_cast<double>(ops); }
  double MegabytesPerSecond() const { return seconds == 0 ? 0 : static_cast<double>(bytes) / seconds / 1e6; }
};

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
inline double Seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// Wall and CPU time from construction to Stop.
class Stopwatch {
 public:
  Stopwatch() {
    ::getrusage(RUSAGE_SELF, &usage_);
    start_ = Clock::now();
  }
  Measurement Stop(uint64_t ops, uint64_t bytes) const {
    const auto end = Clock::now();
    struct rusage usage {};
    ::getrusage(RUSAGE_SELF, &usage);
    return Measurement{.seconds = Seconds(end - start_),
                       .user_seconds = Seconds(usage.ru_utime) - Seconds(usage_.ru_utime),
                       .sys_seconds = Seconds(usage.ru_stime) - Seconds(usage_.ru_stime),
                       .ops = ops,
                       .bytes = bytes};
  }

 private:
  struct rusage usage_ {};
  Clock::time_point start_;
};

struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
};

inline Spread Summarize(std::vector<double> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

// ---- workloads and rounds ------------------------------------------------------------

struct Variant {
  std::string label;
  // Shown for information; not one of the comparisons held to the baseline.
  bool info = false;
  std::function<Measurement()> run;
  std::vector<Measurement> rounds;  // measured rounds only
};

struct Workload {
  std::string name;
  std::vector<Variant> variants;  // variants[0] is the baseline
  // Runs once before the first round.
  std::function<void()> setup;
  // Timed call by call rather than for throughput: ThroughputTable leaves it
  // out, and WorkloadsJson writes its variants with JsonLayout::latency_fields.
  bool latency = false;
};

// The workloads whose name contains `only` (all of them if it is empty).
inline std::vector<Workload> SelectWorkloads(std::vector<Workload> all, const std::string& only) {
  std::vector<Workload> selected;
  for (Workload& w : all) {
    if (only.empty() || w.name.find(only) != std::string::npos) selected.push_back(std::move(w));
  }
  if (selected.empty()) Die("no workload matches --only " + only);
  return selected;
}

template <class F>
Spread SummarizeRounds(const Variant& variant, F metric) {
  std::vector<double> values;
  for (const Measurement& m : variant.rounds) values.push_back(metric(m));
  return Summarize(std::move(values));
}

// Per-round throughput ratio of `variant` to the baseline of the same round.
inline Spread Ratio(const Workload& workload, const Variant& variant) {
  const Variant& baseline = workload.variants[0];
  std::vector<double> ratios;
  for (size_t r = 0; r < variant.rounds.size() && r < baseline.rounds.size(); ++r) {
    const double ns = variant.rounds[r].NsPerOp();
    if (ns > 0) ratios.push_back(baseline.rounds[r].NsPerOp() / ns);
  }
  return Summarize(std::move(ratios));
}

// Runs each workload's setup, once: a later call (RunRounds makes one) finds
// nothing left to do, so a caller may run them first to time them alone.
inline void RunSetups(std::vector<Workload>& workloads) {
  for (Workload& w : workloads) {
    std::function<void()> setup = std::move(w.setup);
    w.setup = nullptr;
    if (setup) setup();
  }
}

// Runs every workload's setup, then `warmup + rounds` rounds; in each round the
// variants of a workload run back to back, in reversed order every other
// round, so a drift in machine speed favours no side.
inline void RunRounds(std::vector<Workload>& workloads, int warmup, int rounds) {
  RunSetups(workloads);
  for (int round = -warmup; round < rounds; ++round) {
    const auto start = Clock::now();
    for (Workload& w : workloads) {
      std::vector<size_t> order(w.variants.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      if ((round + warmup) % 2 == 1) std::reverse(order.begin(), order.end());
      for (const size_t i : order) {
        Measurement m = w.variants[i].run();
        if (round >= 0) w.variants[i].rounds.push_back(m);
      }
    }
    std::fprintf(stderr, "%s: %s %d/%d done in %.1f s\n", g_program.c_str(), round < 0 ? "warm-up round" : "round",
                 round < 0 ? round + warmup + 1 : round + 1, round < 0 ? warmup : rounds,
                 Seconds(Clock::now() - start));
  }
}

// ---- report --------------------------------------------------------------------------

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string Text() const {
    std::vector<size_t> width(header.size());
    for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
    for (const auto& row : rows) {
      for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    }
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
      for (size_t c = 0; c < cells.size(); ++c) {
        out += cells[c];
        if (c + 1 < cells.size()) out += std::string(width[c] - cells[c].size() + 2, ' ');
      }
      out += '\n';
    };
    line(header);
    std::vector<std::string> rule;
    for (size_t w : width) rule.push_back(std::string(w, '-'));
    line(rule);
    for (const auto& row : rows) line(row);
    return out;
  }

  std::string Markdown() const {
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
      out += '|';
      for (const auto& cell : cells) out += ' ' + cell + " |";
      out += '\n';
    };
    line(header);
    line(std::vector<std::string>(header.size(), "---"));
    for (const auto& row : rows) line(row);
    return out;
  }
};

inline std::string Number(double v) {
  char text[32];
  const char* format = v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f";
  std::snprintf(text, sizeof(text), format, v);
  return text;
}

inline std::string WithSpread(const Spread& s) {
  return Number(s.median) + " [" + Number(s.min) + "-" + Number(s.max) + "]";
}

// "median [min-max]", flagged when the median is below `floor`.
inline std::string RatioText(const Spread& s, double floor) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f [%.2f-%.2f]%s", s.median, s.min, s.max, s.median < floor ? " <0.9" : "");
  return text;
}

// One row per non-baseline variant of the throughput workloads: baseline and
// variant ns/op, the ratio, CPU.
inline Table ThroughputTable(const std::vector<Workload>& workloads, double ratio_floor) {
  Table table;
  table.header = {"workload", "variant vs baseline", "baseline ns/op", "variant ns/op", "ratio",
                  "user CPU ns/op (base/var)", "sys CPU ns/op (base/var)"};
  for (const Workload& w : workloads) {
    if (w.latency) continue;
    const Variant& baseline = w.variants[0];
    const Spread baseline_ns = SummarizeRounds(baseline, [](const Measurement& m) { return m.NsPerOp(); });
    const double baseline_user = SummarizeRounds(baseline, [](const Measurement& m) { return m.UserNsPerOp(); }).median;
    const double baseline_sys = SummarizeRounds(baseline, [](const Measurement& m) { return m.SysNsPerOp(); }).median;
    for (size_t i = 1; i < w.variants.size(); ++i) {
      const Variant& v = w.variants[i];
      table.rows.push_back({
          w.name,
          v.label + " vs " + baseline.label + (v.info ? " (info)" : ""),
          WithSpread(baseline_ns),
          WithSpread(SummarizeRounds(v, [](const Measurement& m) { return m.NsPerOp(); })),
          RatioText(Ratio(w, v), ratio_floor),
          Number(baseline_user) + " / " +
              Number(SummarizeRounds(v, [](const Measurement& m) { return m.UserNsPerOp(); }).median),
          Number(baseline_sys) + " / " +
              Number(SummarizeRounds(v, [](const Measurement& m) { return m.SysNsPerOp(); }).median),
      });
    }
  }
  return table;
}

inline std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + '"';
}

inline std::string JsonNumber(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", v);
  return text;
}

inline std::string JsonSpread(const Spread& s) {
  return "{\"median\": " + JsonNumber(s.median) + ", \"min\": " + JsonNumber(s.min) + ", \"max\": " +
         JsonNumber(s.max) + "}";
}

template <class F>
std::string JsonRounds(const Variant& v, F metric) {
  std::string out = "[";
  for (size_t i = 0; i < v.rounds.size(); ++i) out += (i ? ", " : "") + JsonNumber(metric(v.rounds[i]));
  return out + "]";
}

// What a benchmark's JSON gives beyond the fields every one has.
struct JsonLayout {
  // Each workload's "kind": "throughput" or "latency".
  bool kind = false;
  // Each throughput variant's "mb_per_s" spread.
  bool mb_per_s = false;
  // The fields of a latency workload's variant after its label, baseline and
  // info, each led by ", ".
  std::function<std::string(const Variant&)> latency_fields;
};

// The workloads as a JSON array: per variant its label, ns/op spread and
// rounds, CPU per op, and (except the baseline) its ratio; more as `layout` says.
inline std::string WorkloadsJson(const std::vector<Workload>& workloads, const JsonLayout& layout = {}) {
  std::string out = "[";
  for (size_t wi = 0; wi < workloads.size(); ++wi) {
    const Workload& w = workloads[wi];
    out += std::string(wi ? "," : "") + "\n    {\"name\": " + JsonString(w.name);
    if (layout.kind) out += std::string(", \"kind\": ") + (w.latency ? "\"latency\"" : "\"throughput\"");
    out += ", \"variants\": [";
    for (size_t i = 0; i < w.variants.size(); ++i) {
      const Variant& v = w.variants[i];
      out += std::string(i ? "," : "") + "\n      {\"label\": " + JsonString(v.label) +
             ", \"baseline\": " + (i == 0 ? "true" : "false") + ", \"info\": " + (v.info ? "true" : "false");
      if (w.latency) {
        if (layout.latency_fields) out += layout.latency_fields(v);
        out += "}";
        continue;
      }
      out += ", \"ops_per_round\": " + std::to_string(v.rounds.empty() ? 0 : v.rounds[0].ops);
      out += ", \"ns_per_op\": " + JsonSpread(SummarizeRounds(v, [](const Measurement& m) { return m.NsPerOp(); }));
      if (layout.mb_per_s) {
        out += ", \"mb_per_s\": " +
               JsonSpread(SummarizeRounds(v, [](const Measurement& m) { return m.MegabytesPerSecond(); }));
      }
      out += ", \"ns_per_op_rounds\": " + JsonRounds(v, [](const Measurement& m) { return m.NsPerOp(); });
      out += ", \"user_cpu_ns_per_op\": " +
             JsonSpread(SummarizeRounds(v, [](const Measurement& m) { return m.UserNsPerOp(); }));
      out += ", \"sys_cpu_ns_per_op\": " +
             JsonSpread(SummarizeRounds(v, [](const Measurement& m) { return m.SysNsPerOp(); }));
      if (i > 0) out += ", \"ratio\": " + JsonSpread(Ratio(w, v));
      out += "}";
    }
    out += "\n    ]}";
  }
  return out + "\n  ]";
}

inline void WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) Die("cannot write " + path);
}

inline std::string FilesystemType(const std::string& dir) {
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case EXT4_SUPER_MAGIC: return "ext2/3/4";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    default: {
      char text[32];
      std::snprintf(text, sizeof(text), "0x%lx", static_cast<unsigned long>(st.f_type));
      return text;
    }
  }
}

// The filesystem of the scratch directory, with a warning if it is tmpfs.
inline std::string ScratchFilesystemType() {
  std::string type = FilesystemType(g_scratch);
  if (type == "tmpfs") {
    std::fprintf(stderr, "%s: warning: %s is on tmpfs, not a disk filesystem\n", g_program.c_str(), g_scratch.c_str());
  }
  return type;
}

// ---- files -------------------------------------------------------------------------------

inline void WriteAll(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) DieErrno("write");
    data = data.subspan(static_cast<size_t>(n));
  }
}

inline std::vector<std::byte> RandomBytes(size_t n, std::mt19937_64& rng) {
  std::vector<std::byte> bytes(n);
  for (size_t i = 0; i < n; i += sizeof(uint64_t)) {
    const uint64_t word = rng();
    std::memcpy(bytes.data() + i, &word, std::min(sizeof(word), n - i));
  }
  return bytes;
}

}  // namespace hpfile::bench
