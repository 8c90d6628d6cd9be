// SPDX-License-Identifier: Apache-2.0
// Randomized model test: HPFile against a std::string holding the whole
// virtual file. Many short sequences of random operations, with segments of
// 1..64 bytes so that rolls, multi-segment appends and whole-segment prunes
// and truncates happen all the time, interleaved with clean reopens,
// simulated power losses (FaultIo), process deaths partway through an
// operation followed by a power loss, and process deaths (the kernel keeping
// every write) right after a prune or truncate that empties the file.
//
// Every sequence is determined by its seed. The failure message names it; to
// replay one: HPFILE_MODEL_SEED=<seed> core_model_test (a comma-separated list
// works too). HPFILE_MODEL_OPS changes the number of operations per sequence.
#include <algorithm>
#include <bitset>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/hpfile.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::DyingIo;
using testing::NoFlushIo;
using testing::TempDir;

constexpr uint64_t kMaxSegment = 64;
constexpr size_t kDefaultSeeds = 36;
constexpr size_t kDefaultOpsPerSequence = 150;

std::vector<uint64_t> Seeds() {
  std::vector<uint64_t> seeds;
  if (const char* env = std::getenv("HPFILE_MODEL_SEED"); env != nullptr && *env != '\0') {
    std::stringstream in(env);
    std::string item;
    while (std::getline(in, item, ',')) seeds.push_back(std::stoull(item));
    return seeds;
  }
  for (uint64_t seed = 1; seed <= kDefaultSeeds; ++seed) seeds.push_back(seed);
  return seeds;
}

size_t OpsPerSequence() {
  if (const char* env = std::getenv("HPFILE_MODEL_OPS"); env != nullptr && *env != '\0') return std::stoul(env);
  return kDefaultOpsPerSequence;
}

// What the test knows about the file. `data[i]` is virtual byte i; bytes
// below the head keep whatever they last were (nobody may read them).
struct Model {
  std::string data;
  uint64_t head = 0;
  uint64_t segment_size = 0;

  // Since the last successful Sync (or recovery):
  // bytes [durable_begin, durable_end) must survive a power loss unchanged;
  uint64_t durable_begin = 0;
  uint64_t durable_end = 0;
  // the head has stayed within [min_head, max_head];
  uint64_t min_head = 0;
  uint64_t max_head = 0;
  // allowed[i] holds every value byte i has had, so bytes a power loss brings
  // back from an older state can be told from bytes nobody ever wrote.
  std::vector<std::bitset<256>> allowed;
  // The head moved without a Sync; a reopen may show the older head.
  bool head_unsynced = false;

  uint64_t size() const { return data.size(); }

  void AllowZero(uint64_t offset) {
    if (allowed.size() <= offset) allowed.resize(offset + 1);
    allowed[offset].set(0);
  }

  void Allow(uint64_t offset) {
    if (allowed.size() <= offset) allowed.resize(offset + 1);
    allowed[offset].set(static_cast<unsigned char>(data[offset]));
  }

  void MarkDurable() {
    durable_begin = head;
    durable_end = size();
    min_head = max_head = head;
    allowed.assign(size(), {});
    for (uint64_t i = 0; i < size(); ++i) Allow(i);
    head_unsynced = false;
  }

  void SetHead(uint64_t new_head) {
    if (new_head != head) head_unsynced = true;
    // Pruned bytes are punched at once, the head is durable only after a
    // Sync: until then a crash may bring back an older head with zeros above it.
    for (uint64_t i = head; i < std::min<uint64_t>(new_head, size()); ++i) AllowZero(i);
    head = new_head;
    min_head = std::min(min_head, head);
    max_head = std::max(max_head, head);
    durable_begin = std::max(durable_begin, head);
  }

  void Append(std::string_view bytes) {
    const uint64_t start = size();
    data.append(bytes);
    for (uint64_t i = start; i < size(); ++i) Allow(i);
  }

  void Truncate(uint64_t n) {
    if (n <= size()) {
      data.resize(n);
    } else {
      Append(std::string(n - size(), '\0'));
    }
    durable_end = std::min(durable_end, n);
    if (n < head) SetHead(n);
  }

  void PruneHead(uint64_t n) { SetHead(std::min(std::max(head, n), size())); }
};

class ModelRun {
 public:
  explicit ModelRun(uint64_t seed) : seed_(seed), rng_(seed) {}

  void Run() {
    dir_ = tmp_.Sub("file");
    io_.TrackDurability(tmp_.path());
    model_.segment_size = Uniform(1, kMaxSegment);
    Options options = RandomOptions();
    options.initial_meta.segment_size = model_.segment_size;
    Log("create segment_size=" + std::to_string(model_.segment_size) + Describe(options));
    auto opened = HPFile::Open(dir_, options);
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
    write_buffer_size_ = options.write_buffer_size;
    // Creation syncs the meta and both directories.
    model_.MarkDurable();

    const size_t ops = OpsPerSequence();
    for (size_t step = 0; step < ops; ++step) {
      OneStep();
      if (!::testing::Test::HasFailure()) CheckInvariants();
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "seed " << seed_ << " (replay: HPFILE_MODEL_SEED=" << seed_ << "), operation " << step
                      << "; log so far:\n"
                      << History() << Layout();
        return;
      }
    }
    pre_reader_.reset();
    file_.reset();
    EXPECT_EQ(io_.OpenDescriptors(), 0u) << "descriptors leaked; seed " << seed_;
  }

 private:
  uint64_t Uniform(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  std::string RandomBytes(size_t n) {
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(rng_());
    return out;
  }

  Options RandomOptions() {
    Options options;
    options.io = &dying_;
    static constexpr size_t kBuffers[] = {0, 0, 7, 100};
    options.write_buffer_size = kBuffers[Uniform(0, 3)];
    options.max_open_segments = Uniform(1, 8);
    return options;
  }

  static std::string Describe(const Options& options) {
    return " write_buffer_size=" + std::to_string(options.write_buffer_size) +
           " max_open_segments=" + std::to_string(options.max_open_segments);
  }

  void Log(std::string line) { history_.push_back(std::move(line)); }

  std::string History() const {
    std::ostringstream out;
    const size_t first = history_.size() > 60 ? history_.size() - 60 : 0;
    if (first > 0) out << "  ... " << first << " earlier\n";
    for (size_t i = first; i < history_.size(); ++i) out << "  " << i << ": " << history_[i] << "\n";
    return out.str();
  }

  // The segments as the file reports them, for failure messages.
  std::string Layout() const {
    if (!file_) return "";
    std::ostringstream out;
    out << "segments (head " << file_->Head() << ", size " << file_->Size() << "):";
    for (const SegmentInfo& s : file_->Segments()) out << " " << s.file_name << "[len " << s.length << "]";
    return out.str();
  }

  void OneStep() {
    const uint64_t pick = Uniform(0, 99);
    if (pick < 30) return DoAppend();
    if (pick < 45) return DoRead();
    if (pick < 55) return DoPreRead();
    if (pick < 62) return DoTruncate();
    if (pick < 69) return DoPruneHead();
    if (pick < 73) return DoSetSegmentSize();
    if (pick < 82) return DoSync();
    if (pick < 84) return DoFlush();
    if (pick < 89) return DoReopen(/*crash=*/false);
    if (pick < 92) return DoCrashDuringOperation();
    if (pick < 96) return DoProcessCrashAfterEmptying();
    return DoPowerLoss();
  }

  // Appends `n` random bytes, in the file and the model.
  void AppendRandom(size_t n) {
    const std::string bytes = RandomBytes(n);
    Log("Append(" + std::to_string(n) + ") at " + std::to_string(model_.size()));
    auto offset = file_->Append(std::as_bytes(std::span(bytes)));
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
    EXPECT_EQ(*offset, model_.size());
    model_.Append(bytes);
  }

  // The sequences that once lost the end of the file, then a process crash
  // (not a power loss: the kernel keeps everything written): a prune to the
  // end of a full tail, or a truncate below the head and an append.
  void DoProcessCrashAfterEmptying() {
    if (Chance(0.5)) {
      if (model_.size() == model_.head) AppendRandom(Uniform(1, 16));
      if (::testing::Test::HasFailure()) return;
      // Buffered bytes have no segment yet.
      auto flushed = file_->Flush();
      ASSERT_TRUE(flushed.has_value()) << flushed.error().message();
      ASSERT_FALSE(file_->Segments().empty());
      const SegmentInfo tail = file_->Segments().back();
      if (tail.base + tail.capacity > model_.size()) AppendRandom(tail.base + tail.capacity - model_.size());
      if (::testing::Test::HasFailure()) return;
      const uint64_t n = model_.size();
      Log("PruneHead(" + std::to_string(n) + ") to the end of a full tail");
      auto pruned = file_->PruneHead(n);
      ASSERT_TRUE(pruned.has_value()) << pruned.error().message();
      model_.PruneHead(n);
    } else {
      const uint64_t n = model_.head > 0 ? Uniform(0, model_.head - 1) : Uniform(0, model_.size());
      Log("Truncate(" + std::to_string(n) + ") size " + std::to_string(model_.size()) + " head " +
          std::to_string(model_.head));
      auto truncated = file_->Truncate(n);
      ASSERT_TRUE(truncated.has_value()) << truncated.error().message();
      model_.Truncate(n);
      AppendRandom(Uniform(1, 2 * kMaxSegment));
      if (::testing::Test::HasFailure()) return;
    }
    // Everything in the kernel, so the crash may lose nothing.
    auto flushed = file_->Flush();
    ASSERT_TRUE(flushed.has_value()) << flushed.error().message();
    DoReopen(/*crash=*/true);
  }

  void DoAppend() {
    size_t n;
    const uint64_t kind = Uniform(0, 9);
    if (kind == 0) {
      n = 0;
    } else if (kind < 6) {
      n = Uniform(1, 16);
    } else if (kind < 9) {
      n = Uniform(17, 100);
    } else {
      n = Uniform(101, 400);
    }
    const std::string bytes = RandomBytes(n);
    const uint64_t old_size = model_.size();
    Log("Append(" + std::to_string(n) + ") at " + std::to_string(old_size));
    std::set<std::string> before;
    for (const SegmentInfo& s : file_->Segments()) before.insert(s.file_name);
    auto offset = file_->Append(std::as_bytes(std::span(bytes)));
    ASSERT_TRUE(offset.has_value()) << offset.error().message();
    EXPECT_EQ(*offset, old_size);
    model_.Append(bytes);
    // Segments this append created take the segment size now in force.
    for (const SegmentInfo& s : file_->Segments()) {
      if (!before.contains(s.file_name)) {
        EXPECT_EQ(s.capacity, model_.segment_size) << s.file_name;
      }
    }
  }

  // Checks one ReadAt-shaped call against the model.
  template <class ReadFn>
  void CheckRead(const std::string& what, uint64_t offset, size_t length, ReadFn read) {
    Log(what + "(" + std::to_string(offset) + ", " + std::to_string(length) + ")");
    std::vector<std::byte> buf(length);
    auto n = read(offset, std::span(buf));
    if (offset < model_.head) {
      ASSERT_FALSE(n.has_value()) << what << " below head " << model_.head << " returned " << *n;
      EXPECT_EQ(n.error().value(), ENODATA) << n.error().message();
      return;
    }
    ASSERT_TRUE(n.has_value()) << what << ": " << n.error().message();
    const uint64_t expected = offset >= model_.size() ? 0 : std::min<uint64_t>(length, model_.size() - offset);
    ASSERT_EQ(*n, expected) << what << " count; size " << model_.size();
    auto diff = testing::FirstDifference(
        std::span<const std::byte>(buf).first(*n),
        std::as_bytes(std::span(model_.data)).subspan(std::min<uint64_t>(offset, model_.size()), *n));
    EXPECT_FALSE(diff.has_value()) << what << " differs at offset " << offset + diff.value_or(0);
  }

  uint64_t RandomReadOffset() {
    const uint64_t kind = Uniform(0, 9);
    if (kind == 0 && model_.head > 0) return Uniform(0, model_.head - 1);
    if (kind == 1) return model_.size() + Uniform(0, 10);
    if (kind == 2) return model_.head;
    if (kind == 3) return model_.size() > 5 ? model_.size() - Uniform(0, 5) : 0;
    return Uniform(model_.head, model_.size());
  }

  void DoRead() {
    const uint64_t offset = RandomReadOffset();
    const size_t length = Chance(0.05) ? 0 : Uniform(1, 150);
    CheckRead("ReadAt", offset, length,
              [&](uint64_t o, std::span<std::byte> b) { return file_->ReadAt(o, b); });
  }

  void DoPreRead() {
    if (!pre_reader_) {
      const size_t buffer = Uniform(1, 200);
      Log("PreReader(buffer " + std::to_string(buffer) + ")");
      pre_reader_.emplace(*file_, buffer);
      cursor_ = model_.head;
    }
    // Mostly a sequential scan, as PreReader is meant for; sometimes a jump.
    if (Chance(0.2) || cursor_ > model_.size() + 10) cursor_ = RandomReadOffset();
    const size_t length = Uniform(1, 60);
    const uint64_t offset = cursor_;
    CheckRead("PreReader.ReadAt", offset, length,
              [&](uint64_t o, std::span<std::byte> b) { return pre_reader_->ReadAt(o, b); });
    cursor_ = offset + length;
  }

  void DoTruncate() {
    uint64_t n;
    const uint64_t kind = Uniform(0, 9);
    if (kind < 4 && model_.size() > model_.head) {
      n = Uniform(model_.head, model_.size() - 1);
    } else if (kind < 6 && model_.head > 0) {
      n = Uniform(0, model_.head - 1);
    } else if (kind < 9) {
      n = model_.size() + Uniform(1, 150);
    } else {
      n = model_.size();
    }
    Log("Truncate(" + std::to_string(n) + ") size " + std::to_string(model_.size()) + " head " +
        std::to_string(model_.head));
    auto truncated = file_->Truncate(n);
    ASSERT_TRUE(truncated.has_value()) << truncated.error().message();
    model_.Truncate(n);
  }

  void DoPruneHead() {
    uint64_t n;
    const uint64_t kind = Uniform(0, 9);
    auto segments = file_->Segments();
    if (kind < 2 && !segments.empty()) {
      n = segments[Uniform(0, segments.size() - 1)].base;  // a segment boundary
    } else if (kind < 3) {
      n = model_.head > 0 ? Uniform(0, model_.head) : 0;
    } else if (kind < 4) {
      n = model_.size() + Uniform(0, 100);
    } else {
      n = Uniform(model_.head, model_.size());
    }
    Log("PruneHead(" + std::to_string(n) + ") size " + std::to_string(model_.size()) + " head " +
        std::to_string(model_.head));
    auto pruned = file_->PruneHead(n);
    ASSERT_TRUE(pruned.has_value()) << pruned.error().message();
    model_.PruneHead(n);
  }

  void DoSetSegmentSize() {
    if (Chance(0.1)) {
      const uint64_t bad = Chance(0.5) ? 0 : format::kMaxSegmentSize + 1;
      Log("SetSegmentSize(" + std::to_string(bad) + ") invalid");
      auto set = file_->SetSegmentSize(bad);
      ASSERT_FALSE(set.has_value());
      EXPECT_EQ(set.error().value(), EINVAL);
      return;
    }
    const uint64_t size = Uniform(1, kMaxSegment);
    Log("SetSegmentSize(" + std::to_string(size) + ")");
    auto set = file_->SetSegmentSize(size);
    ASSERT_TRUE(set.has_value()) << set.error().message();
    model_.segment_size = size;
  }

  void DoSync() {
    Log("Sync()");
    auto synced = file_->Sync();
    ASSERT_TRUE(synced.has_value()) << synced.error().message();
    EXPECT_EQ(file_->DurableSize(), file_->Size());
    model_.MarkDurable();
    just_flushed_ = true;
  }

  void DoFlush() {
    Log("Flush()");
    auto flushed = file_->Flush();
    ASSERT_TRUE(flushed.has_value()) << flushed.error().message();
    just_flushed_ = true;
  }

  Options OpenAgain() {
    Options options = RandomOptions();
    // Must be ignored for an existing file.
    options.initial_meta.segment_size = Uniform(1, kMaxSegment);
    options.create_if_missing = Chance(0.5);
    return options;
  }

  // Closes and reopens the file; with `crash`, the process dies instead of
  // closing it: nothing more reaches the kernel, not even the destructor's
  // writes, but what was written stays (no power loss).
  void DoReopen(bool crash) {
    Options options = OpenAgain();
    Log(std::string(crash ? "process crash, then reopen" : "reopen") + Describe(options));
    pre_reader_.reset();
    if (crash) dying_.DieAfter(0);
    file_.reset();
    dying_.Revive();
    ASSERT_EQ(io_.OpenDescriptors(), 0u) << "descriptors left open by a closed HPFile";
    auto opened = HPFile::Open(dir_, options);
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
    write_buffer_size_ = options.write_buffer_size;
    EXPECT_FALSE(file_->Damage().has_value()) << *file_->Damage();
    EXPECT_EQ(file_->GetMeta().segment_size, model_.segment_size);
    EXPECT_EQ(file_->Size(), model_.size()) << "a close or process crash and reopen changed the size";
    EXPECT_LE(file_->DurableSize(), file_->Size());
    if (!model_.head_unsynced) {
      EXPECT_EQ(file_->Head(), model_.head);
      EXPECT_TRUE(file_->RecoveryLog().empty()) << "recovery acted after a close with nothing pending: "
                                                << file_->RecoveryLog().front();
    } else {
      // The head is durable only through Sync; an unsynced move may be lost,
      // and then the bytes in between read as the data they were or, punched,
      // as zeros.
      EXPECT_GE(file_->Head(), model_.min_head);
      EXPECT_LE(file_->Head(), model_.head);
    }
    if (::testing::Test::HasFailure()) return;
    const uint64_t reopened_head = file_->Head();
    if (reopened_head < model_.head) {
      auto below = testing::ReadRange(*file_, reopened_head, model_.head - reopened_head);
      ASSERT_TRUE(below.has_value()) << below.error().message();
      ASSERT_EQ(below->size(), model_.head - reopened_head);
      for (uint64_t i = 0; i < below->size(); ++i) {
        const uint64_t offset = reopened_head + i;
        const auto byte = std::to_integer<unsigned char>((*below)[i]);
        EXPECT_TRUE(byte == 0 || byte == static_cast<unsigned char>(model_.data[offset]))
            << "byte " << offset << " below the old head reads " << int(byte);
      }
      model_.head = reopened_head;
      model_.min_head = std::min(model_.min_head, reopened_head);
      for (uint64_t i = 0; i < below->size(); ++i) {
        model_.data[reopened_head + i] = static_cast<char>((*below)[i]);
        model_.Allow(reopened_head + i);
      }
    }
    ExpectContentMatches();
  }

  // The whole readable range, read in one pass.
  void ExpectContentMatches() {
    auto all = testing::ReadRange(*file_, model_.head, model_.size() - model_.head);
    ASSERT_TRUE(all.has_value()) << all.error().message();
    ASSERT_EQ(all->size(), model_.size() - model_.head);
    auto diff = testing::FirstDifference(*all, std::as_bytes(std::span(model_.data)).subspan(model_.head));
    EXPECT_FALSE(diff.has_value()) << "content differs at offset " << model_.head + diff.value_or(0);
  }

  void DoPowerLoss() {
    Log("power loss (size " + std::to_string(model_.size()) + ", head " + std::to_string(model_.head) +
        ", DurableSize " + std::to_string(file_->DurableSize()) + ", model durable [" +
        std::to_string(model_.durable_begin) + ", " + std::to_string(model_.durable_end) + "))");
    RecoverFromCrash(file_->DurableSize(), model_.head, std::nullopt);
  }

  // The process dies after a random number of I/O calls into an operation,
  // then the machine loses power. The model is updated as if the operation
  // had completed: the checks after recovery accept either outcome (and
  // anything in between), since they only insist on what was durable and on
  // bytes that some state of the file held.
  void DoCrashDuringOperation() {
    uint64_t claimed_durable = file_->DurableSize();
    // Most operations make a handful of calls; a Sync of many segments more.
    const uint64_t calls = Chance(0.7) ? Uniform(0, 12) : Uniform(13, 60);
    std::optional<uint64_t> new_segment_size;
    std::string what;
    const uint64_t kind = Uniform(0, 5);
    dying_.DieAfter(calls);
    if (kind == 0) {
      const std::string bytes = RandomBytes(Uniform(1, 3 * kMaxSegment));
      what = "Append(" + std::to_string(bytes.size()) + ") at " + std::to_string(model_.size());
      (void)file_->Append(std::as_bytes(std::span(bytes)));
      model_.Append(bytes);
    } else if (kind == 1) {
      const uint64_t n = Uniform(0, model_.size() + 100);
      what = "Truncate(" + std::to_string(n) + ") size " + std::to_string(model_.size()) + " head " +
             std::to_string(model_.head);
      (void)file_->Truncate(n);
      model_.Truncate(n);
    } else if (kind == 2) {
      const uint64_t n = Uniform(model_.head, model_.size() + 10);
      what = "PruneHead(" + std::to_string(n) + ") size " + std::to_string(model_.size()) + " head " +
             std::to_string(model_.head);
      (void)file_->PruneHead(n);
      model_.PruneHead(n);
    } else if (kind == 3) {
      what = "Sync()";
      (void)file_->Sync();
    } else if (kind == 4) {
      new_segment_size = Uniform(1, kMaxSegment);
      what = "SetSegmentSize(" + std::to_string(*new_segment_size) + ")";
      (void)file_->SetSegmentSize(*new_segment_size);
    } else {
      what = "Flush()";
      (void)file_->Flush();
    }
    claimed_durable = std::min(claimed_durable, model_.size());
    Log("crash " + std::to_string(calls) + " calls into " + what + ", then power loss (DurableSize before " +
        std::to_string(claimed_durable) + ", model durable [" + std::to_string(model_.durable_begin) + ", " +
        std::to_string(model_.durable_end) + "))");
    RecoverFromCrash(claimed_durable, model_.head, new_segment_size);
  }

  // Kills the process (nothing more reaches the disk, not even the
  // destructor's writes), drops what was not durable, reopens, and checks the
  // recovered file against what was promised: the model's durable range, and
  // HPFile's own DurableSize() `claimed_durable` taken when the head was
  // `head_before`. `other_segment_size` is a segment size that may or may not
  // have been made durable when the process died.
  void RecoverFromCrash(uint64_t claimed_durable, uint64_t head_before, std::optional<uint64_t> other_segment_size) {
    pre_reader_.reset();
    dying_.DieAfter(0);
    file_.reset();
    dying_.Revive();
    ASSERT_EQ(io_.OpenDescriptors(), 0u) << "descriptors left open by a closed HPFile";
    auto dropped = io_.DropUnsyncedData();
    ASSERT_TRUE(dropped.has_value()) << dropped.error().message();

    Options options = OpenAgain();
    Log("  reopen" + Describe(options));
    auto opened = HPFile::Open(dir_, options);
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    file_ = std::move(*opened);
    write_buffer_size_ = options.write_buffer_size;
    for (const auto& line : file_->RecoveryLog()) Log("  recovery: " + line);
    ASSERT_FALSE(file_->Damage().has_value()) << "a power loss left the file damaged: " << *file_->Damage();
    const uint64_t segment_size = file_->GetMeta().segment_size;
    if (other_segment_size && segment_size == *other_segment_size) {
      model_.segment_size = segment_size;
    } else {
      EXPECT_EQ(segment_size, model_.segment_size) << "SetSegmentSize is durable on return";
    }

    const uint64_t head = file_->Head();
    const uint64_t size = file_->Size();
    Log("  recovered head " + std::to_string(head) + " size " + std::to_string(size));
    ASSERT_LE(head, size);
    EXPECT_GE(head, model_.min_head) << "recovered head below any head since the last sync";
    EXPECT_LE(head, model_.max_head) << "recovered head above any head since the last sync";
    EXPECT_LE(size, model_.allowed.size()) << "recovered file longer than it ever was since the last sync";
    if (model_.durable_begin < model_.durable_end) {
      EXPECT_LE(head, model_.durable_begin);
      EXPECT_GE(size, model_.durable_end) << "synced bytes lost";
    }
    // What HPFile itself promised: bytes below DurableSize() survive as they were.
    if (claimed_durable > head_before) {
      EXPECT_LE(head, head_before) << "bytes below DurableSize() " << claimed_durable << " became unreadable";
      EXPECT_GE(size, claimed_durable) << "bytes below DurableSize() lost";
    }
    if (::testing::Test::HasFailure()) return;

    auto recovered = testing::ReadRange(*file_, head, size - head);
    ASSERT_TRUE(recovered.has_value()) << recovered.error().message();
    ASSERT_EQ(recovered->size(), size - head);
    for (uint64_t offset = head; offset < size; ++offset) {
      const auto byte = static_cast<unsigned char>((*recovered)[offset - head]);
      const bool durable = (offset >= model_.durable_begin && offset < model_.durable_end) ||
                           (offset >= head_before && offset < claimed_durable);
      if (durable) {
        ASSERT_EQ(byte, static_cast<unsigned char>(model_.data[offset])) << "synced byte " << offset << " changed";
      } else {
        ASSERT_TRUE(offset < model_.allowed.size() && model_.allowed[offset].test(byte))
            << "byte " << offset << " reads " << int(byte) << ", a value it never had since the last sync";
      }
    }

    // The recovered state is the new truth, and all of it is on disk now.
    model_.data.resize(size);
    for (uint64_t offset = head; offset < size; ++offset) model_.data[offset] = static_cast<char>((*recovered)[offset - head]);
    model_.head = head;
    model_.MarkDurable();
  }

  void CheckInvariants() {
    EXPECT_EQ(file_->Size(), model_.size());
    EXPECT_EQ(file_->Head(), model_.head);
    EXPECT_LE(file_->DurableSize(), file_->Size());
    EXPECT_FALSE(file_->Damage().has_value());
    if (write_buffer_size_ == 0 || just_flushed_) testing::ExpectWellFormed(*file_);
    just_flushed_ = false;
  }

  const uint64_t seed_;
  std::mt19937_64 rng_;
  TempDir tmp_;
  std::string dir_;
  NoFlushIo disk_;
  FaultIo io_{disk_};
  DyingIo dying_{io_};
  Model model_;
  std::unique_ptr<HPFile> file_;
  size_t write_buffer_size_ = 0;
  bool just_flushed_ = false;
  std::optional<PreReader> pre_reader_;
  uint64_t cursor_ = 0;
  std::vector<std::string> history_;
};

class ModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ModelTest, RandomOperationsMatchModel) {
  SCOPED_TRACE("seed " + std::to_string(GetParam()));
  ModelRun run(GetParam());
  run.Run();
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::ValuesIn(Seeds()));

}  // namespace
}  // namespace hpfile
