// SPDX-License-Identifier: Apache-2.0
// Seeded torture of a write-back mount (-o writeback) by several processes at
// once: writers with buffered O_APPEND writes of 1 B to 64 KiB, fsync, close
// and reopen, reads through cached handles, and a reader that also watches
// the size. The processes run in phases; between two phases
// this process truncates, punches the head, sets retention with hpfsctl,
// makes direct writes at the end (appended) and below it (EPERM), or
// reads through a direct handle, or remounts. The processes also read and
// write through direct handles while the others append (a direct write at
// the end it saw may lose the race to an appender: EPERM, as below the end);
// HPFS_TORTURE_RACE_DIRECT=0 leaves direct I/O to the quiet moments between
// phases. With processes racing, the exact file cannot be predicted, so each
// phase is checked for what a model can still decide:
//
// - every byte stored before the phase is unchanged (zeros only below the head);
// - what the phase added is exactly the concatenation of every acknowledged
//   write of the phase, each whole, in an order that keeps each process's own
//   order, with no zeros and nothing else;
// - every byte a reader saw is the byte the file holds there (or, below the
//   head, zero), and the size a reader saw never shrank.
//
// Each writer's bytes name it and their place in its stream (writer w's k-th
// byte is 1 + 40 w + k % 40), so a phase's bytes can be taken apart again.
// The test runs three seeds; HPFS_TORTURE_SEED runs that one alone, and
// HPFS_TORTURE_OPS sets a run's length (default 6000 operations of the
// processes, in 30 phases; each run takes about 5 s).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/drills/drill_harness.h"

namespace hpfs::drills {
namespace {

constexpr int kWriters = 3;
constexpr int kProcesses = kWriters + 1;  // the last one only reads
constexpr size_t kMaxWrite = 64 << 10;
constexpr size_t kMaxRead = 16 << 10;
constexpr uint64_t kSegment = 64 << 10;

char StreamByte(int writer, uint64_t k) { return static_cast<char>(1 + 40 * writer + k % 40); }
int WriterOf(char byte) { return (static_cast<unsigned char>(byte) - 1) / 40; }

enum class OpKind : uint8_t { kAppend, kDirectAtEnd, kDirectBelowEnd, kFsync, kReopen, kCachedRead, kDirectRead };

const char* OpName(OpKind kind) {
  switch (kind) {
    case OpKind::kAppend: return "append";
    case OpKind::kDirectAtEnd: return "direct write at the end";
    case OpKind::kDirectBelowEnd: return "direct write below the end";
    case OpKind::kFsync: return "fsync";
    case OpKind::kReopen: return "reopen";
    case OpKind::kCachedRead: return "cached read";
    case OpKind::kDirectRead: return "direct read";
  }
  return "?";
}

struct Op {
  OpKind kind;
  uint64_t length;  // bytes to write or read
  uint64_t where;   // a random number the process turns into an offset below the size
};

// What a process reports, one record per event, through a file of its own.
// A read is followed by the bytes it returned.
struct Event {
  enum Kind : uint32_t { kWrote, kRead, kFailed } kind;
  int32_t err = 0;
  uint64_t offset = 0;      // kWrote: where a direct write landed (UINT64_MAX: an append); kRead: where
  uint64_t length = 0;      // bytes written or read
  uint64_t stream_pos = 0;  // kWrote: the writer's stream position of its first byte; kFailed: the op
};
constexpr uint64_t kAppended = UINT64_MAX;

// `race_direct` (unless HPFS_TORTURE_RACE_DIRECT=0): the processes also read
// and write through direct handles while the others append.
std::vector<Op> PlanProcess(std::mt19937_64& rng, bool writer, int ops, bool race_direct) {
  auto pick = [&rng](uint64_t n) { return rng() % n; };
  std::vector<Op> plan;
  for (int i = 0; i < ops; ++i) {
    const uint64_t r = pick(100);
    Op op{OpKind::kCachedRead, 1 + pick(kMaxRead), rng()};
    const bool direct_read = race_direct && r % 2 == 0;
    if (!writer) {
      op.kind = direct_read ? OpKind::kDirectRead : OpKind::kCachedRead;
    } else if (r < 60) {
      op.kind = OpKind::kAppend;
      op.length = pick(8) == 0 ? 1 + pick(kMaxWrite) : 1 + pick(200);
    } else if (r < 68 && race_direct) {
      op.kind = OpKind::kDirectAtEnd;
      op.length = 1 + pick(5000);
    } else if (r < 74 && race_direct) {
      op.kind = OpKind::kDirectBelowEnd;
    } else if (r < 74) {
      op.kind = OpKind::kAppend;
      op.length = 1 + pick(200);
    } else if (r < 79) {
      op.kind = OpKind::kFsync;
    } else if (r < 84) {
      op.kind = OpKind::kReopen;
    } else {
      op.kind = direct_read ? OpKind::kDirectRead : OpKind::kCachedRead;
    }
    plan.push_back(op);
  }
  return plan;
}

uint64_t PlannedBytes(const std::vector<Op>& plan) {
  uint64_t n = 0;
  for (const Op& op : plan) {
    if (op.kind == OpKind::kAppend || op.kind == OpKind::kDirectAtEnd) n += op.length;
  }
  return n;
}

// The body of one forked process: plain system calls on buffers allocated
// before the fork, so nothing it does can wait on a lock another thread of
// the test held at the fork.
class Process {
 public:
  Process(std::string path, int writer, const std::vector<Op>* plan, uint64_t stream_pos, int log_fd)
      : path_(std::move(path)), writer_(writer), plan_(plan), stream_pos_(stream_pos), log_fd_(log_fd),
        buffer_(std::max(kMaxWrite, kMaxRead)) {}

  // Returns the exit status; the log says what went wrong.
  int Run() {
    appender_ = writer_ >= 0 ? ::open(path_.c_str(), O_WRONLY | O_APPEND) : -1;
    direct_ = writer_ >= 0 ? ::open(path_.c_str(), O_WRONLY) : -1;
    cached_reader_ = ::open(path_.c_str(), O_RDONLY);
    direct_reader_ = ::open(path_.c_str(), O_RDWR);  // read-write: a direct handle
    if ((writer_ >= 0 && (appender_ < 0 || direct_ < 0)) || cached_reader_ < 0 || direct_reader_ < 0) {
      return Fail(errno, UINT64_MAX);
    }
    for (size_t i = 0; i < plan_->size(); ++i) {
      if (!Step((*plan_)[i])) return Fail(errno, i);
      struct stat st {};
      if (::fstat(cached_reader_, &st) != 0) return Fail(errno, i);
      if (static_cast<uint64_t>(st.st_size) < last_size_) return Fail(-1, i);  // the size shrank
      last_size_ = static_cast<uint64_t>(st.st_size);
    }
    for (int fd : {appender_, direct_}) {
      if (fd >= 0 && ::close(fd) != 0) return Fail(errno, plan_->size());
    }
    ::close(cached_reader_);
    ::close(direct_reader_);
    return 0;
  }

 private:
  bool Step(const Op& op) {
    switch (op.kind) {
      case OpKind::kAppend:
        Fill(op.length);
        if (::write(appender_, buffer_.data(), op.length) != static_cast<ssize_t>(op.length)) return false;
        Log({Event::kWrote, 0, kAppended, op.length, stream_pos_});
        stream_pos_ += op.length;
        return true;
      case OpKind::kDirectAtEnd: {
        // Another process may append in between: then this one is below the end.
        const uint64_t end = Size();
        Fill(op.length);
        const ssize_t n = ::pwrite(direct_, buffer_.data(), op.length, static_cast<off_t>(end));
        if (n < 0) return errno == EPERM;
        if (n != static_cast<ssize_t>(op.length)) return false;
        Log({Event::kWrote, 0, end, op.length, stream_pos_});
        stream_pos_ += op.length;
        return true;
      }
      case OpKind::kDirectBelowEnd: {
        const uint64_t end = Size();
        if (end == 0) return true;
        if (::pwrite(direct_, "Z", 1, static_cast<off_t>(op.where % end)) != -1) {
          errno = 0;
          return false;
        }
        return errno == EPERM;
      }
      case OpKind::kFsync:
        return ::fsync(appender_) == 0;
      case OpKind::kReopen:
        if (::close(appender_) != 0) return false;
        appender_ = ::open(path_.c_str(), O_WRONLY | O_APPEND);
        return appender_ >= 0;
      case OpKind::kCachedRead:
      case OpKind::kDirectRead: {
        const uint64_t end = Size();
        const uint64_t at = op.where % (end + 1);
        const int fd = op.kind == OpKind::kCachedRead ? cached_reader_ : direct_reader_;
        const ssize_t n = ::pread(fd, buffer_.data(), op.length, static_cast<off_t>(at));
        if (n < 0) return false;
        Log({Event::kRead, 0, at, static_cast<uint64_t>(n), 0});
        return WriteAll(buffer_.data(), static_cast<size_t>(n));
      }
    }
    return false;
  }

  uint64_t Size() const {
    struct stat st {};
    return ::fstat(cached_reader_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
  void Fill(uint64_t length) {
    for (uint64_t i = 0; i < length; ++i) buffer_[i] = StreamByte(writer_, stream_pos_ + i);
  }
  void Log(const Event& event) { WriteAll(reinterpret_cast<const char*>(&event), sizeof event); }
  bool WriteAll(const char* data, size_t length) {
    while (length > 0) {
      const ssize_t n = ::write(log_fd_, data, length);
      if (n <= 0) return false;
      data += n;
      length -= static_cast<size_t>(n);
    }
    return true;
  }
  int Fail(int err, uint64_t op) {
    Log({Event::kFailed, err, 0, 0, op});
    return 1;
  }

  const std::string path_;
  const int writer_;  // -1: the reader
  const std::vector<Op>* plan_;
  uint64_t stream_pos_;
  const int log_fd_;
  std::vector<char> buffer_;
  int appender_ = -1, direct_ = -1, cached_reader_ = -1, direct_reader_ = -1;
  uint64_t last_size_ = 0;
};

struct Read {
  uint64_t offset;
  std::string bytes;
};

// One process's log, taken apart.
struct Report {
  std::deque<Event> writes;
  std::vector<Read> reads;
  std::vector<Event> failures;
};

Report ParseLog(const std::string& log) {
  Report report;
  size_t at = 0;
  while (at + sizeof(Event) <= log.size()) {
    Event event;
    std::memcpy(&event, log.data() + at, sizeof event);
    at += sizeof event;
    if (event.kind == Event::kWrote) {
      report.writes.push_back(event);
    } else if (event.kind == Event::kRead) {
      report.reads.push_back({event.offset, log.substr(at, event.length)});
      at += event.length;
    } else {
      report.failures.push_back(event);
    }
  }
  return report;
}

class WritebackConcurrentTorture : public DrillTest {
 protected:
  const std::vector<std::string> options_ = {"-o", "writeback,commit=1,segment_size=64K"};

  std::string Contents() {
    const std::string contents = mount_test::ReadFile(M("t"));
    return contents;
  }
  uint64_t Head() {
    const int fd = ::open(M("t").c_str(), O_RDONLY);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    const auto hs = StatHeadSize(fd);
    ::close(fd);
    EXPECT_TRUE(hs.has_value());
    return hs ? hs->head : 0;
  }
  void SetRetainBytes(uint64_t bytes) {
    const auto r = Run("\"$CTL\" set t retain_bytes=" + std::to_string(bytes));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
};

// What a phase added, [from, end of contents), taken apart into the writes
// the processes acknowledged. Empty when it checks out, else what is wrong.
std::string CheckPhase(const std::string& contents, uint64_t from, std::vector<Report>& reports) {
  uint64_t at = from;
  while (at < contents.size()) {
    if (contents[at] == '\0') return "a zero above the head at " + std::to_string(at);
    const int w = WriterOf(contents[at]);
    if (w >= kWriters || reports[w].writes.empty()) {
      return "byte " + std::to_string(at) + " belongs to no acknowledged write (writer " + std::to_string(w) + ")";
    }
    const Event write = reports[w].writes.front();
    reports[w].writes.pop_front();
    if (write.offset != kAppended && write.offset != at) {
      return "writer " + std::to_string(w) + "'s direct write at " + std::to_string(write.offset) + " is at " +
             std::to_string(at);
    }
    for (uint64_t i = 0; i < write.length; ++i) {
      if (at + i >= contents.size() || contents[at + i] != StreamByte(w, write.stream_pos + i)) {
        return "writer " + std::to_string(w) + "'s write of " + std::to_string(write.length) + " B (stream " +
               std::to_string(write.stream_pos) + ") placed at " + std::to_string(at) + " differs at byte " +
               std::to_string(i);
      }
    }
    at += write.length;
  }
  for (int w = 0; w < kWriters; ++w) {
    if (!reports[w].writes.empty()) {
      return std::to_string(reports[w].writes.size()) + " acknowledged writes of writer " + std::to_string(w) +
             " are missing, the first of " + std::to_string(reports[w].writes.front().length) + " B";
    }
  }
  return "";
}

// Whether a byte read at AT is right while the head moved from HEAD_BEFORE to
// HEAD_AFTER during the read: zeros below the old head, the model's byte at or
// above the new one, either in between.
bool ReadRight(char got, uint64_t at, uint64_t head_before, uint64_t head_after, const std::string& model) {
  if (at < head_before) return got == '\0';
  if (at < head_after && got == '\0') return true;
  return got == model[at];
}

class WritebackConcurrentTortureSeeds : public WritebackConcurrentTorture,
                                        public ::testing::WithParamInterface<uint64_t> {};

INSTANTIATE_TEST_SUITE_P(Seeds, WritebackConcurrentTortureSeeds, ::testing::Values(20261204, 1, 15));

TEST_P(WritebackConcurrentTortureSeeds, EveryPhaseKeepsTheOldBytesAndExactlyTheAcknowledgedWrites) {
  const char* seed_env = std::getenv("HPFS_TORTURE_SEED");
  const char* ops_env = std::getenv("HPFS_TORTURE_OPS");
  if (seed_env != nullptr && GetParam() != 20261204) GTEST_SKIP() << "HPFS_TORTURE_SEED runs one seed";
  const uint64_t seed = seed_env ? std::stoull(seed_env) : GetParam();
  const int total_ops = ops_env ? std::stoi(ops_env) : 6000;
  const char* race_env = std::getenv("HPFS_TORTURE_RACE_DIRECT");
  const bool race_direct = race_env == nullptr || std::string(race_env) != "0";
  constexpr int kPhases = 30;
  const int ops_per_process = std::max(1, total_ops / (kPhases * kProcesses));
  SCOPED_TRACE("HPFS_TORTURE_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Mount(options_);
  {
    const int fd = ::open(M("t").c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ::close(fd);
  }
  std::string model;  // the file's bytes, zeros below the head
  uint64_t stream_pos[kWriters] = {};
  bool retention = false;
  // How much of each kind the run did, so that it cannot pass by doing nothing.
  uint64_t appends = 0, direct_landed = 0, reads = 0, retention_drops = 0;

  for (int phase = 0; phase < kPhases; ++phase) {
    std::vector<std::vector<Op>> plans;
    uint64_t planned = 0;
    for (int p = 0; p < kProcesses; ++p) {
      plans.push_back(PlanProcess(rng, p < kWriters, ops_per_process, race_direct));
      planned += PlannedBytes(plans.back());
    }
    // Retention keeps more than the phase can add, so the head stays below
    // what the phase starts from and the phase's bytes can all be checked.
    if (retention) SetRetainBytes(planned + 2 * kSegment);
    std::string step = "phase " + std::to_string(phase);
    SCOPED_TRACE(step);

    const uint64_t from = model.size();
    std::vector<std::string> log_paths;
    std::vector<pid_t> children;
    for (int p = 0; p < kProcesses; ++p) {
      log_paths.push_back(S("log." + std::to_string(p)));
      const int log_fd = ::open(log_paths.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ASSERT_GE(log_fd, 0);
      Process process(M("t"), p < kWriters ? p : -1, &plans[p], p < kWriters ? stream_pos[p] : 0, log_fd);
      const pid_t child = ::fork();
      ASSERT_GE(child, 0);
      if (child == 0) ::_exit(process.Run());
      ::close(log_fd);
      children.push_back(child);
    }
    std::vector<Report> reports;
    for (int p = 0; p < kProcesses; ++p) {
      int status = 0;
      ASSERT_EQ(::waitpid(children[p], &status, 0), children[p]);
      reports.push_back(ParseLog(mount_test::ReadFile(log_paths[p])));
      for (const Event& failure : reports.back().failures) {
        const bool in_plan = failure.stream_pos < plans[p].size();
        ADD_FAILURE() << "process " << p << " failed at op " << failure.stream_pos << " ("
                      << (in_plan ? OpName(plans[p][failure.stream_pos].kind) : "open/close") << "): "
                      << (failure.err > 0 ? std::strerror(failure.err) : "the size shrank");
      }
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "process " << p << " status " << status;
      for (const Event& write : reports.back().writes) {
        stream_pos[p] += write.length;
        ++(write.offset == kAppended ? appends : direct_landed);
      }
      reads += reports.back().reads.size();
    }

    // Retention keeps running while the file is read, so a byte between the
    // head before the read and the head after it may be either.
    const uint64_t head_before = Head();
    const std::string contents = Contents();
    const uint64_t head = Head();
    // Retention dropped bytes while the processes ran (punches happen between phases).
    if (head > 0 && (from == 0 || model[head - 1] != '\0')) ++retention_drops;
    ASSERT_GE(contents.size(), from) << "the file shrank during the phase";
    ASSERT_LE(head, from) << "retention dropped bytes of the phase itself";
    for (uint64_t i = 0; i < from; ++i) {
      ASSERT_TRUE(ReadRight(contents[i], i, head_before, head, model))
          << "byte " << i << " of the file before the phase changed (head " << head_before << " to " << head << ")";
    }
    const std::string wrong = CheckPhase(contents, from, reports);
    ASSERT_EQ(wrong, "");
    for (int p = 0; p < kProcesses; ++p) {
      for (const Read& read : reports[p].reads) {
        for (uint64_t i = 0; i < read.bytes.size(); ++i) {
          const uint64_t at = read.offset + i;
          ASSERT_LT(at, contents.size()) << "process " << p << " read beyond the end";
          const bool dropped_later = at < head && read.bytes[i] == model[at];
          ASSERT_TRUE(read.bytes[i] == contents[at] || dropped_later)
              << "process " << p << " read a wrong byte at " << at;
        }
      }
    }
    model = contents;

    // Between phases, changes no process races with.
    const int fd = ::open(M("t").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    if (rng() % 2 == 0) {
      // Direct writes: below the end refused, at the end appended.
      if (!model.empty()) {
        const uint64_t below = rng() % model.size();
        EXPECT_EQ(::pwrite(fd, "Z", 1, static_cast<off_t>(below)), -1) << "direct write at " << below;
        EXPECT_EQ(errno, EPERM) << "direct write at " << below;
      }
      std::string data(1 + rng() % 5000, '\0');
      for (size_t i = 0; i < data.size(); ++i) data[i] = StreamByte(0, stream_pos[0] + i);
      ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(model.size())),
                static_cast<ssize_t>(data.size()))
          << "direct write at the end: " << std::strerror(errno);
      stream_pos[0] += data.size();
      model += data;
      ++direct_landed;
      // And read back through a direct (read-write) handle.
      const int rw = ::open(M("t").c_str(), O_RDWR);
      ASSERT_GE(rw, 0) << std::strerror(errno);
      const uint64_t at = rng() % model.size();
      std::string got(std::min<uint64_t>(kMaxRead, model.size() - at), '\0');
      const uint64_t head_before = Head();
      ASSERT_EQ(::pread(rw, got.data(), got.size(), static_cast<off_t>(at)), static_cast<ssize_t>(got.size()));
      ::close(rw);
      const uint64_t head = Head();
      for (uint64_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(ReadRight(got[i], at + i, head_before, head, model)) << "direct read at " << at + i;
      }
    }
    const uint64_t r = rng() % 100;
    if (r < 15 && !model.empty()) {
      const uint64_t n = rng() % model.size();
      ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(n)), 0) << "truncate to " << n << ": " << std::strerror(errno);
      model.resize(n);
    } else if (r < 22) {
      const uint64_t n = model.size() + rng() % 10000;
      ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(n)), 0) << "truncate to " << n << ": " << std::strerror(errno);
      model.resize(n, '\0');
    } else if (r < 40 && !model.empty()) {
      const uint64_t to = 1 + rng() % model.size();
      ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(to)), 0)
          << "punch to " << to << ": " << std::strerror(errno);
    } else if (r < 55) {
      retention = !retention;
      if (!retention) SetRetainBytes(0);
    } else if (r < 70) {
      ::close(fd);
      Unmount();
      Mount(options_);
      continue;  // the head and the bytes are checked by the next phase
    }
    ::close(fd);
    const uint64_t new_head = Head();
    std::fill(model.begin(), model.begin() + static_cast<ptrdiff_t>(std::min<uint64_t>(new_head, model.size())),
              '\0');
  }

  // Everything, through a fresh mount.
  Unmount();
  Mount(options_);
  const uint64_t head_before = Head();
  const std::string stored = Contents();
  ASSERT_EQ(stored.size(), model.size());
  const uint64_t head = Head();
  for (uint64_t i = 0; i < stored.size(); ++i) {
    ASSERT_TRUE(ReadRight(stored[i], i, head_before, head, model)) << "byte " << i << " differs after the last remount";
  }
  EXPECT_EQ(StatOf("t")["held_bytes"], "0");
  Unmount();
  std::printf("%llu appends, %llu direct writes at the end landed, %llu reads; retention dropped bytes during %llu phases\n",
              static_cast<unsigned long long>(appends), static_cast<unsigned long long>(direct_landed),
              static_cast<unsigned long long>(reads), static_cast<unsigned long long>(retention_drops));
  EXPECT_GT(appends, 0u);
  EXPECT_GT(direct_landed, 0u);
  EXPECT_GT(reads, 0u);
}

}  // namespace
}  // namespace hpfs::drills
