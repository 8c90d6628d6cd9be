// SPDX-License-Identifier: Apache-2.0
// A record log of variable-size elements: append, read back by position,
// rewind, prune the head, compact, and read a snapshot while the log moves on.
// Built and run by the test suite, so it always compiles against the current
// library.
//
//   usage: record_example DIR
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "core/record_log.h"

namespace {

std::string Text(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::span<const std::byte> Bytes(std::string_view text) { return std::as_bytes(std::span(text)); }

int Fail(const char* what, std::error_code error) {
  std::fprintf(stderr, "%s: %s\n", what, error.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  hpfile::RecordLogOptions options;
  options.element_size = 0;       // variable-size elements (an index HPFile keeps their offsets)
  options.segment_size = 4096;    // small, so the example spans segments
  auto opened = hpfile::RecordLog::Open(argv[1], options);
  if (!opened) return Fail("open", opened.error());
  hpfile::RecordLog& log = **opened;

  // Appends are pending (and readable) until Flush makes them durable.
  for (int i = 0; i < 1000; ++i) {
    std::string element = "element " + std::to_string(i);
    auto position = log.Append(Bytes(element));
    if (!position) return Fail("append", position.error());
  }
  if (auto flushed = log.Flush(); !flushed) return Fail("flush", flushed.error());

  // Rewind drops the tail at the next Flush (Discard would undo it).
  if (auto rewound = log.Rewind(990); !rewound) return Fail("rewind", rewound.error());
  if (auto appended = log.Append(Bytes("a replacement")); !appended) return Fail("append", appended.error());
  if (auto flushed = log.Flush(); !flushed) return Fail("flush", flushed.error());

  // A snapshot keeps this view whatever happens to the log afterwards.
  auto snapshot = log.Snapshot();
  if (!snapshot) return Fail("snapshot", snapshot.error());

  // Dropping the oldest elements deletes whole segments; positions stay put.
  if (auto pruned = log.PruneHead(500); !pruned) return Fail("prune", pruned.error());
  auto kept = log.Read(500);
  if (!kept) return Fail("read", kept.error());
  if (Text(*kept) != "element 500" || log.Read(499).has_value()) {
    std::fprintf(stderr, "prune moved positions\n");
    return 1;
  }

  // Compaction writes a new generation without the given positions and
  // switches to it atomically; later elements move down.
  const std::vector<uint64_t> removed = {500, 501};
  if (auto compacted = log.Compact(removed); !compacted) return Fail("compact", compacted.error());
  auto moved = log.Read(500);
  if (!moved) return Fail("read", moved.error());
  auto old_view = snapshot->Read(10);
  if (!old_view) return Fail("snapshot read", old_view.error());
  std::printf("first %llu, size %llu; position 500 now holds \"%s\"; the snapshot still has \"%s\" at 10\n",
              static_cast<unsigned long long>(log.First()), static_cast<unsigned long long>(log.Size()),
              Text(*moved).c_str(), Text(*old_view).c_str());
  return Text(*moved) == "element 502" && Text(*old_view) == "element 10" && log.Size() == 989 ? 0 : 1;
}
