// SPDX-License-Identifier: Apache-2.0
// Power loss at every step of every multi-step change. For each operation
// (segment roll, prune, truncate, meta replace, sync) the drill first counts
// the backing-store calls the operation makes (N); then, for k = 1 .. N + 1,
// it replays the operation on a fresh store whose process "dies" at call k
// (that call and every later one fail, nothing more reaches the disk, not even
// what closing the file would write), drops every byte that was never made
// durable, as the disk would after the machine lost power, and reopens. The
// store must open undamaged and well formed, hold every byte that was synced
// before the operation (less what the operation itself removes), show a head
// and size the operation could legally have left, read back correct bytes,
// recover to a fixed point (a second open has nothing to do) and keep working.
// k = N + 1 is the crash right after the operation returned: then the
// operation's own promise (it ends with a sync) must hold exactly.
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/fault_io.h"
#include "core/hpfile.h"
#include "core/meta.h"
#include "tests/core/test_util.h"

namespace hpfile {
namespace {

using testing::ForwardingIo;
using testing::NoFlushIo;
using testing::PatternByte;
using testing::PatternBytes;
using testing::ReadRange;
using testing::TempDir;

constexpr uint64_t kSegment = 4096;
// More calls than any operation here makes: reaching it means a runaway loop.
constexpr uint64_t kMaxCalls = 2000;

// The process under test: passes calls to the FaultIo below until call k of
// the operation, which switches that FaultIo to fail every call (EIO) from
// then on, as if the process had died there. The failing call itself may
// leave half its bytes behind (a torn write), as a dying process can.
class DyingIo final : public ForwardingIo {
 public:
  explicit DyingIo(FaultIo& fault) : ForwardingIo(fault), fault_(fault) {}

  // Counts calls from now on; call `k` (1-based) and all after it fail.
  // 0: never.
  void DieAtCall(uint64_t k) {
    calls_ = 0;
    die_at_ = k;
  }
  uint64_t calls() const { return calls_; }

 protected:
  Result<void> Admit() override {
    ++calls_;
    if (die_at_ != 0 && calls_ == die_at_) fault_.FailAlways(EIO, kAllIoOps);
    return {};
  }

 private:
  FaultIo& fault_;
  uint64_t calls_ = 0;
  uint64_t die_at_ = 0;
};

// The file's state before the operation: everything in it is durable.
struct Before {
  uint64_t head = 0;
  uint64_t size = 0;
  Meta meta;
};

// What the store holds after the power loss and recovery.
struct After {
  uint64_t head = 0;
  uint64_t size = 0;
  Meta meta;
};

struct Scenario {
  std::string name;
  // Builds the durable starting state (appends, prunes; a Sync follows).
  std::function<void(HPFile&)> prepare;
  // Changes made before the operation that are not synced (run unarmed).
  std::function<void(HPFile&)> unsynced = [](HPFile&) {};
  // The operation under test; the crash happens somewhere inside it.
  std::function<Result<void>(HPFile&)> operation;
  // Whether `after` is one of the outcomes a crash at some point of the
  // operation may leave (`completed`: the operation returned success, so
  // only its exact result is legal). Adds failures with the reason.
  std::function<void(const Before&, const After&, bool completed)> check_outcome;
  // The byte the file must hold at `offset` (for offsets at or above
  // `exact_from`; below it, between the recovered head and a lost prune
  // point, punched zeros are legal too).
  std::function<std::byte(uint64_t)> expected_byte = [](uint64_t offset) { return PatternByte(offset); };
  std::function<uint64_t(const Before&)> exact_from = [](const Before&) { return 0; };
  // Discarded segments move to a trash directory (as the daemon does)
  // instead of being unlinked.
  bool trash = false;
};

void AppendPattern(HPFile& file, uint64_t length) {
  const uint64_t at = file.Size();
  auto bytes = PatternBytes(at, length);
  auto offset = file.Append(bytes);
  ASSERT_TRUE(offset.has_value()) << offset.error().message();
  ASSERT_EQ(*offset, at);
}

Result<void> AppendPatternThenSync(HPFile& file, uint64_t length) {
  auto bytes = PatternBytes(file.Size(), length);
  if (auto appended = file.Append(bytes); !appended) return std::unexpected(appended.error());
  return file.Sync();
}

Result<void> ThenSync(HPFile& file, Result<void> done) {
  if (!done) return done;
  return file.Sync();
}

class PowerLossDrill {
 public:
  explicit PowerLossDrill(Scenario scenario) : scenario_(std::move(scenario)) {}

  void Run() {
    const uint64_t calls = CountCalls();
    ASSERT_GT(calls, 0u) << scenario_.name << " made no backing-store call";
    ASSERT_LT(calls, kMaxCalls) << scenario_.name;
    for (uint64_t k = 1; k <= calls + 1; ++k) {
      SCOPED_TRACE(scenario_.name + ": crash at call " + std::to_string(k) + " of " + std::to_string(calls));
      CrashAt(k, calls);
      // The first crash point that goes wrong says enough.
      if (::testing::Test::HasFailure()) return;
    }
  }

 private:
  Options OptionsFor(Io& io, const TempDir& tmp) const {
    Options options = testing::OptionsWithSegmentSize(kSegment);
    options.io = &io;
    options.max_open_segments = 4;
    if (scenario_.trash) {
      const std::string trash = tmp.Sub("trash");
      auto counter = std::make_shared<uint64_t>(0);
      options.discard_segment = [&io, trash, counter](const std::string& path) -> Result<void> {
        return io.Rename(path, trash + "/" + std::to_string(++*counter));
      };
    }
    return options;
  }

  // Builds the durable starting state in `tmp`; returns it.
  Before Prepare(const TempDir& tmp) {
    Before before;
    NoFlushIo io;
    if (scenario_.trash) EXPECT_OK(io.Mkdir(tmp.Sub("trash"), 0755));
    auto opened = HPFile::Open(tmp.Sub("file"), OptionsFor(io, tmp));
    EXPECT_TRUE(opened.has_value()) << opened.error().message();
    if (!opened) return before;
    HPFile& file = **opened;
    scenario_.prepare(file);
    EXPECT_OK(file.Sync());
    before.head = file.Head();
    before.size = file.Size();
    before.meta = file.GetMeta();
    return before;
  }

  // The operation run to completion without faults: how many calls it makes.
  uint64_t CountCalls() {
    TempDir tmp;
    Prepare(tmp);
    NoFlushIo base;
    FaultIo fault(base);
    DyingIo dying(fault);
    auto opened = HPFile::Open(tmp.Sub("file"), OptionsFor(dying, tmp));
    EXPECT_TRUE(opened.has_value()) << opened.error().message();
    if (!opened) return 0;
    scenario_.unsynced(**opened);
    dying.DieAtCall(0);
    auto done = scenario_.operation(**opened);
    EXPECT_TRUE(done.has_value()) << scenario_.name << " failed without a fault: " << done.error().message();
    return dying.calls();
  }

  void CrashAt(uint64_t k, uint64_t calls) {
    TempDir tmp;
    const Before before = Prepare(tmp);
    if (::testing::Test::HasFailure()) return;

    NoFlushIo base;
    FaultIo fault(base);
    fault.TrackDurability(tmp.path());
    DyingIo dying(fault);
    bool completed = false;
    {
      auto opened = HPFile::Open(tmp.Sub("file"), OptionsFor(dying, tmp));
      ASSERT_TRUE(opened.has_value()) << opened.error().message();
      std::unique_ptr<HPFile> file = std::move(*opened);
      scenario_.unsynced(*file);
      if (::testing::Test::HasFailure()) return;
      dying.DieAtCall(k);
      auto done = scenario_.operation(*file);
      completed = done.has_value();
      if (k <= calls) {
        EXPECT_TRUE(fault.Fired()) << "the operation made fewer calls than counted";
        EXPECT_FALSE(completed) << "the operation reported success although call " << k << " failed";
      } else {
        EXPECT_TRUE(completed) << done.error().message();
        EXPECT_FALSE(fault.Fired());
        // The crash comes right after the operation: closing writes nothing.
        fault.FailAlways(EIO, kAllIoOps);
      }
      // The process dies: the destructor's writes all fail.
    }
    ASSERT_EQ(fault.OpenDescriptors(), 0u) << "descriptors left open by a closed HPFile";
    fault.Heal();
    auto dropped = fault.DropUnsyncedData();
    ASSERT_TRUE(dropped.has_value()) << "power loss simulation: " << dropped.error().message();

    NoFlushIo io;
    After after;
    {
      auto reopened = HPFile::Open(tmp.Sub("file"), OptionsFor(io, tmp));
      ASSERT_TRUE(reopened.has_value()) << "the store does not open after the power loss: "
                                        << reopened.error().message();
      HPFile& file = **reopened;
      ASSERT_FALSE(file.Damage().has_value()) << "the power loss left the file damaged: " << *file.Damage();
      testing::ExpectWellFormed(file);
      after.head = file.Head();
      after.size = file.Size();
      after.meta = file.GetMeta();
      scenario_.check_outcome(before, after, completed);
      ExpectContent(file, before, after);
    }
    // Recovery reached a fixed point: a second open finds nothing to do.
    auto again = HPFile::Open(tmp.Sub("file"), OptionsFor(io, tmp));
    ASSERT_TRUE(again.has_value()) << again.error().message();
    HPFile& file = **again;
    EXPECT_TRUE(file.RecoveryLog().empty()) << "a second open recovered again: " << file.RecoveryLog().front();
    EXPECT_EQ(file.Head(), after.head);
    EXPECT_EQ(file.Size(), after.size);
    // And the file keeps working.
    const uint64_t end = file.Size();
    auto bytes = PatternBytes(end, kSegment + 7);
    auto at = file.Append(bytes);
    ASSERT_TRUE(at.has_value()) << "append after recovery: " << at.error().message();
    EXPECT_EQ(*at, end);
    EXPECT_OK(file.Sync());
    auto read = ReadRange(file, end, bytes.size());
    ASSERT_TRUE(read.has_value()) << read.error().message();
    EXPECT_TRUE(*read == bytes) << "bytes appended after recovery read back wrong";
    testing::ExpectWellFormed(file);
  }

  void ExpectContent(const HPFile& file, const Before& before, const After& after) {
    if (after.size == after.head) return;
    auto read = ReadRange(file, after.head, after.size - after.head);
    ASSERT_TRUE(read.has_value()) << "reading [" << after.head << ", " << after.size
                                  << ") after recovery: " << read.error().message();
    ASSERT_EQ(read->size(), after.size - after.head) << "short read inside the file";
    const uint64_t exact_from = scenario_.exact_from(before);
    for (uint64_t i = 0; i < read->size(); ++i) {
      const uint64_t offset = after.head + i;
      const std::byte got = (*read)[i];
      if (got == scenario_.expected_byte(offset)) continue;
      if (offset < exact_from && got == std::byte{0}) continue;  // punched by a prune whose head was lost
      ADD_FAILURE() << "byte " << offset << " is " << static_cast<int>(got) << ", expected "
                    << static_cast<int>(scenario_.expected_byte(offset)) << " (head " << after.head << ", size "
                    << after.size << ")";
      return;
    }
  }

  Scenario scenario_;
};

// ---- segment roll ----

// An append that rolls once, or several times, then a sync: every synced
// byte stays; the file ends anywhere between the old and the new end, and at
// the new end once the sync returned.
Scenario RollScenario(std::string name, uint64_t prepared, uint64_t appended) {
  Scenario s;
  s.name = std::move(name);
  s.prepare = [prepared](HPFile& f) { AppendPattern(f, prepared); };
  s.operation = [appended](HPFile& f) { return AppendPatternThenSync(f, appended); };
  s.check_outcome = [appended](const Before& b, const After& a, bool completed) {
    EXPECT_EQ(a.head, b.head);
    EXPECT_GE(a.size, b.size) << "synced bytes lost";
    EXPECT_LE(a.size, b.size + appended) << "the file grew past what was written";
    if (completed) {
      EXPECT_EQ(a.size, b.size + appended) << "bytes synced by the roll's sync lost";
    }
    EXPECT_EQ(a.meta, b.meta);
  };
  return s;
}

TEST(PowerLossDrill, RollInsideTheTail) {
  PowerLossDrill(RollScenario("roll", 3 * kSegment + 1000, 5000)).Run();
}

TEST(PowerLossDrill, RollAtAnExactSegmentBoundary) {
  PowerLossDrill(RollScenario("roll at boundary", 4 * kSegment, 100)).Run();
}

TEST(PowerLossDrill, AppendRollingSeveralSegments) {
  PowerLossDrill(RollScenario("several rolls", kSegment + 10, 3 * kSegment + 20)).Run();
}

// ---- prune ----

// A prune then a sync. A lost prune may come back with the head anywhere
// between the old and the new one (bytes in between read as they were, or as
// punched zeros); the bytes above the new head are untouched.
Scenario PruneScenario(std::string name, uint64_t prepared, uint64_t old_head, uint64_t new_head, bool trash) {
  Scenario s;
  s.name = std::move(name);
  s.trash = trash;
  s.prepare = [prepared, old_head](HPFile& f) {
    AppendPattern(f, prepared);
    if (old_head > 0) ASSERT_OK(f.PruneHead(old_head));
  };
  s.operation = [new_head](HPFile& f) { return ThenSync(f, f.PruneHead(new_head)); };
  s.exact_from = [new_head](const Before&) { return new_head; };
  s.check_outcome = [new_head](const Before& b, const After& a, bool completed) {
    const uint64_t target = std::min(new_head, b.size);
    EXPECT_EQ(a.size, b.size) << "a prune changed the size";
    EXPECT_GE(a.head, b.head) << "the synced head went back";
    EXPECT_LE(a.head, target) << "the head moved past the prune";
    if (completed) {
      EXPECT_EQ(a.head, target) << "a synced prune came back undone";
    }
  };
  return s;
}

TEST(PowerLossDrill, PruneDeletingSegmentsAndPunchingTheFirst) {
  PowerLossDrill(PruneScenario("prune", 6 * kSegment + 300, 0, 2 * kSegment + 1500, false)).Run();
}

TEST(PowerLossDrill, PruneFromAnEarlierHeadToASegmentBoundary) {
  PowerLossDrill(PruneScenario("prune to boundary", 6 * kSegment + 300, kSegment + 10, 4 * kSegment, false)).Run();
}

TEST(PowerLossDrill, PruneToTheEnd) {
  PowerLossDrill(PruneScenario("prune to end", 3 * kSegment + 300, 0, 3 * kSegment + 300, false)).Run();
}

TEST(PowerLossDrill, PruneMovingSegmentsToATrash) {
  PowerLossDrill(PruneScenario("prune into trash", 6 * kSegment + 300, 0, 3 * kSegment + 1, true)).Run();
}

// What a file's deleter does after a prune: the pruned segment files, a
// bounded step at a time, until none is left.
Result<void> DeleteAllPrunedInSteps(HPFile& file, uint64_t step) {
  for (;;) {
    auto left = file.DeletePrunedSegments(step);
    if (!left) return std::unexpected(left.error());
    if (*left == 0) return {};
  }
}

TEST(PowerLossDrill, PruneThenTheBackgroundDeletion) {
  Scenario s = PruneScenario("prune, then deletion", 8 * kSegment + 300, kSegment + 10, 6 * kSegment + 5, false);
  s.operation = [](HPFile& f) -> Result<void> {
    if (auto pruned = f.PruneHead(6 * kSegment + 5); !pruned) return pruned;
    if (auto deleted = DeleteAllPrunedInSteps(f, 2); !deleted) return deleted;
    return f.Sync();
  };
  PowerLossDrill(std::move(s)).Run();
}

// Retention moves the head without writing it; the deleter writes it before
// the first deletion below it.
TEST(PowerLossDrill, RetentionThenTheBackgroundDeletion) {
  Scenario s = PruneScenario("retention, then deletion", 6 * kSegment + 300, 0, 4 * kSegment, false);
  s.prepare = [](HPFile& f) {
    AppendPattern(f, 6 * kSegment + 300);
    ASSERT_OK(f.UpdateMeta([](Meta& meta) { meta.retain_bytes = 2 * kSegment; }));
  };
  s.operation = [](HPFile& f) -> Result<void> {
    const RetentionResult retained = f.ApplyRetention(0);
    if (retained.error) return std::unexpected(retained.error);
    if (auto deleted = DeleteAllPrunedInSteps(f, 1); !deleted) return deleted;
    return f.Sync();
  };
  PowerLossDrill(std::move(s)).Run();
}

// Segments a crash left pending are found by the next open and deleted by
// the next deleter, with the same guarantees.
TEST(PowerLossDrill, DeletionOfSegmentsAPreviousProcessPruned) {
  Scenario s = PruneScenario("deletion after reopen", 8 * kSegment + 300, 5 * kSegment + 7, 5 * kSegment + 7, false);
  s.operation = [](HPFile& f) -> Result<void> {
    if (f.PrunedSegments().segments != 5) return Errno(EINVAL);
    if (auto deleted = DeleteAllPrunedInSteps(f, 3); !deleted) return deleted;
    return f.Sync();
  };
  PowerLossDrill(std::move(s)).Run();
}

// ---- truncate ----

// A shrinking truncate then a sync: the cut may have stopped anywhere between
// the old end and n, never below n, never losing a byte below n.
Scenario ShrinkScenario(std::string name, uint64_t prepared, uint64_t head, uint64_t n, bool trash) {
  Scenario s;
  s.name = std::move(name);
  s.trash = trash;
  s.prepare = [prepared, head](HPFile& f) {
    AppendPattern(f, prepared);
    if (head > 0) ASSERT_OK(f.PruneHead(head));
  };
  s.operation = [n](HPFile& f) { return ThenSync(f, f.Truncate(n)); };
  s.check_outcome = [n](const Before& b, const After& a, bool completed) {
    EXPECT_GE(a.size, n) << "the truncate cut below its target";
    EXPECT_LE(a.size, b.size);
    if (n >= b.head) {
      EXPECT_EQ(a.head, b.head);
      if (completed) {
        EXPECT_EQ(a.size, n);
      }
    } else {
      // Below the head everything goes; a crash leaves either the old head
      // over what is left, or an empty file.
      EXPECT_TRUE(a.head == b.head || a.head == a.size) << "head " << a.head << " size " << a.size;
      if (completed) {
        EXPECT_EQ(a.head, n);
        EXPECT_EQ(a.size, n);
      }
    }
  };
  return s;
}

TEST(PowerLossDrill, TruncateAcrossSegments) {
  PowerLossDrill(ShrinkScenario("truncate", 6 * kSegment + 300, 0, 2 * kSegment + 77, false)).Run();
}

TEST(PowerLossDrill, TruncateToASegmentBoundary) {
  PowerLossDrill(ShrinkScenario("truncate to boundary", 5 * kSegment + 9, 0, 3 * kSegment, false)).Run();
}

TEST(PowerLossDrill, TruncateBelowTheHead) {
  PowerLossDrill(ShrinkScenario("truncate below head", 5 * kSegment + 9, 3 * kSegment + 5, kSegment + 3, false))
      .Run();
}

TEST(PowerLossDrill, TruncateMovingSegmentsToATrash) {
  PowerLossDrill(ShrinkScenario("truncate into trash", 6 * kSegment + 300, kSegment, 2 * kSegment + 77, true))
      .Run();
}

Scenario GrowScenario(std::string name, uint64_t prepared, uint64_t n) {
  Scenario s;
  s.name = std::move(name);
  s.prepare = [prepared](HPFile& f) { AppendPattern(f, prepared); };
  s.operation = [n](HPFile& f) { return ThenSync(f, f.Truncate(n)); };
  s.expected_byte = [prepared](uint64_t offset) { return offset < prepared ? PatternByte(offset) : std::byte{0}; };
  s.check_outcome = [n](const Before& b, const After& a, bool completed) {
    EXPECT_EQ(a.head, b.head);
    EXPECT_GE(a.size, b.size) << "synced bytes lost";
    EXPECT_LE(a.size, n);
    if (completed) {
      EXPECT_EQ(a.size, n);
    }
  };
  return s;
}

// The gap's whole slots become one wide sparse segment.
TEST(PowerLossDrill, TruncateGrowingAcrossManySlots) {
  PowerLossDrill(GrowScenario("truncate grow over many slots", kSegment + 500, 200 * kSegment + 100)).Run();
}

TEST(PowerLossDrill, TruncateGrowingAcrossSegments) {
  PowerLossDrill(GrowScenario("truncate grow", kSegment + 500, 4 * kSegment + 100)).Run();
}

// ---- meta replace ----

// A meta change is atomic and durable on return: after the crash the meta is
// wholly the old one or wholly the new one, and the new one once the call
// returned. The data is untouched either way.
Scenario MetaScenario(std::string name, std::function<Result<void>(HPFile&)> change,
                      std::function<void(Meta&)> expected_change) {
  Scenario s;
  s.name = std::move(name);
  s.prepare = [](HPFile& f) {
    AppendPattern(f, 2 * kSegment + 50);
    ASSERT_OK(f.UpdateMeta([](Meta& m) {
      m.mode = 0644;
      m.uid = 1000;
      m.unknown.emplace_back("origin", "drill");
    }));
  };
  s.operation = std::move(change);
  s.check_outcome = [expected_change](const Before& b, const After& a, bool completed) {
    EXPECT_EQ(a.head, b.head);
    EXPECT_EQ(a.size, b.size);
    Meta changed = b.meta;
    expected_change(changed);
    if (completed) {
      EXPECT_EQ(a.meta, changed) << "a returned meta change was lost";
    } else {
      EXPECT_TRUE(a.meta == b.meta || a.meta == changed)
          << "the meta is neither the old nor the new one: " << SerializeMeta(a.meta);
    }
  };
  return s;
}

TEST(PowerLossDrill, UpdateMetaIsAllOrNothing) {
  auto edit = [](Meta& m) {
    m.mode = 0600;
    m.gid = 42;
    m.retain_bytes = 123456;
    m.retain_seconds = 3600;
  };
  PowerLossDrill(MetaScenario("UpdateMeta", [edit](HPFile& f) { return f.UpdateMeta(edit); }, edit)).Run();
}

TEST(PowerLossDrill, SetSegmentSizeIsAllOrNothing) {
  PowerLossDrill(MetaScenario("SetSegmentSize", [](HPFile& f) { return f.SetSegmentSize(3 * kSegment); },
                              [](Meta& m) { m.segment_size = 3 * kSegment; }))
      .Run();
}

// ---- sync ----

// Appends across segments and a prune, none synced, then the sync itself:
// whatever it had not finished may be lost, never what was synced before.
TEST(PowerLossDrill, SyncOfAppendsRollsAndAPrune) {
  const uint64_t prepared = 2 * kSegment + 100;
  const uint64_t appended = 3 * kSegment + 900;
  const uint64_t pruned_to = 3 * kSegment + 10;
  Scenario s;
  s.name = "Sync";
  s.prepare = [prepared](HPFile& f) { AppendPattern(f, prepared); };
  s.unsynced = [appended, pruned_to](HPFile& f) {
    AppendPattern(f, appended);
    ASSERT_OK(f.PruneHead(pruned_to));
  };
  s.operation = [](HPFile& f) { return f.Sync(); };
  s.exact_from = [pruned_to](const Before&) { return pruned_to; };
  s.check_outcome = [appended, pruned_to](const Before& b, const After& a, bool completed) {
    EXPECT_GE(a.size, b.size) << "bytes synced before lost";
    EXPECT_LE(a.size, b.size + appended);
    EXPECT_GE(a.head, b.head);
    EXPECT_LE(a.head, std::max(b.head, std::min(pruned_to, a.size)));
    if (completed) {
      EXPECT_EQ(a.size, b.size + appended);
      EXPECT_EQ(a.head, pruned_to);
    }
  };
  PowerLossDrill(std::move(s)).Run();
}

// ---- a create whose durability waits for a sync (Options::durable_create) ----

// A create as the daemon makes it: the new file is written without a sync
// (the daemon builds it in its trash and renames it into place: to the
// disk, as here, a new entry of a directory not yet synced), then
// (`synced`) what the file's fsync adds: the file's Sync and its
// directory's (the daemon syncs the whole filesystem, which covers both).
// A crash at every call of that; after the power loss the name is absent or
// a whole, undamaged file with its meta: never a directory without one,
// which the daemon would show as an empty directory, nor a damaged file.
// Once the sync returned, the file is there with every byte.
void CreateDrill(bool synced) {
  constexpr uint64_t kAppended = 2 * kSegment + 100;
  const mode_t kMode = 0640;
  auto run = [&](const TempDir& tmp, Io& io) -> Result<void> {
    Options options = testing::OptionsWithSegmentSize(kSegment);
    options.io = &io;
    options.durable_create = false;
    options.initial_meta.mode = 0600;
    const std::string built = tmp.Sub("parent") + "/name";
    if (auto made = io.Mkdir(built, 0700); !made) return made;
    auto opened = HPFile::Open(built, options);
    if (!opened) return std::unexpected(opened.error());
    auto bytes = PatternBytes(0, kAppended);
    if (auto appended = (*opened)->Append(bytes); !appended) return std::unexpected(appended.error());
    // A meta change before the first sync is deferred as well.
    if (auto changed = (*opened)->UpdateMeta([&](Meta& meta) { meta.mode = kMode; }); !changed) return changed;
    if (!synced) return {};
    if (auto done = (*opened)->Sync(); !done) return done;
    return SyncDir(io, tmp.Sub("parent"));
  };
  auto prepare = [](const TempDir& tmp) { ASSERT_EQ(::mkdir(tmp.Sub("parent").c_str(), 0755), 0); };

  uint64_t calls = 0;
  {
    TempDir tmp;
    ASSERT_NO_FATAL_FAILURE(prepare(tmp));
    NoFlushIo base;
    FaultIo fault(base);
    DyingIo dying(fault);
    dying.DieAtCall(0);
    ASSERT_OK(run(tmp, dying));
    calls = dying.calls();
  }
  ASSERT_GT(calls, 0u);
  for (uint64_t k = 1; k <= calls + 1; ++k) {
    SCOPED_TRACE(std::string(synced ? "synced" : "unsynced") + " create: crash at call " + std::to_string(k) +
                 " of " + std::to_string(calls));
    TempDir tmp;
    ASSERT_NO_FATAL_FAILURE(prepare(tmp));
    NoFlushIo base;
    FaultIo fault(base);
    fault.TrackDurability(tmp.path());
    DyingIo dying(fault);
    dying.DieAtCall(k);
    const bool completed = run(tmp, dying).has_value();
    EXPECT_EQ(completed, k > calls);
    fault.FailAlways(EIO, kAllIoOps);  // the process is gone before anything else reaches the disk
    ASSERT_EQ(fault.OpenDescriptors(), 0u);
    fault.Heal();
    ASSERT_OK(fault.DropUnsyncedData());

    const std::string name = tmp.Sub("parent") + "/name";
    struct stat st;
    if (::stat(name.c_str(), &st) != 0) {
      EXPECT_FALSE(completed && synced) << "a synced create is gone";
      continue;
    }
    ASSERT_EQ(::stat((name + "/" + std::string(format::kMetaName)).c_str(), &st), 0)
        << "the name survived without its meta";
    NoFlushIo io;
    Options options = testing::OptionsWithSegmentSize(kSegment);
    options.io = &io;
    options.create_if_missing = false;
    auto reopened = HPFile::Open(name, options);
    ASSERT_TRUE(reopened.has_value()) << reopened.error().message();
    HPFile& file = **reopened;
    ASSERT_FALSE(file.Damage().has_value()) << "the power loss left the new file damaged: " << *file.Damage();
    testing::ExpectWellFormed(file);
    // The meta as created, or as changed; nothing in between.
    EXPECT_TRUE(file.GetMeta().mode == kMode || file.GetMeta().mode == 0600u);
    if (completed && synced) {
      EXPECT_EQ(file.GetMeta().mode, kMode);
    }
    EXPECT_LE(file.Size(), kAppended);
    if (completed && synced) {
      EXPECT_EQ(file.Size(), kAppended) << "bytes synced with the create lost";
    }
    if (file.Size() > 0) {
      auto read = ReadRange(file, 0, file.Size());
      ASSERT_TRUE(read.has_value()) << read.error().message();
      EXPECT_TRUE(*read == PatternBytes(0, file.Size())) << "the new file reads back wrong";
    }
  }
}

TEST(PowerLossDrill, AnUnsyncedCreateIsAbsentOrWhole) { CreateDrill(/*synced=*/false); }

TEST(PowerLossDrill, ACreateSurvivesOnceTheFileAndItsDirectoryAreSynced) { CreateDrill(/*synced=*/true); }

}  // namespace
}  // namespace hpfile
