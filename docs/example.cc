// SPDX-License-Identifier: Apache-2.0
// A log kept in an HPFile: append records, read one back by its offset, drop
// old records from the head, make everything durable. Built and run by the
// test suite, so it always compiles against the current library.
//
//   usage: example DIR
#include <cstdio>
#include <string>
#include <string_view>

#include "core/hpfile.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  hpfile::Options options;
  options.initial_meta.segment_size = 4096;  // small, so the example rolls segments
  auto opened = hpfile::HPFile::Open(argv[1], options);
  if (!opened) {
    std::fprintf(stderr, "open %s: %s\n", argv[1], opened.error().message().c_str());
    return 1;
  }
  hpfile::HPFile& log = **opened;

  // Append returns where each record starts; that offset never changes.
  uint64_t tenth = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string record = "record " + std::to_string(i) + "\n";
    auto offset = log.Append(std::as_bytes(std::span(record)));
    if (!offset) return 1;
    if (i == 10) tenth = *offset;
  }

  char buf[32];
  auto n = log.ReadAt(tenth, std::as_writable_bytes(std::span(buf)));
  if (!n) return 1;
  std::printf("at %llu: %.*s", static_cast<unsigned long long>(tenth),
              static_cast<int>(std::string_view(buf, *n).find('\n') + 1), buf);

  // Keep the newest 4 KiB: whole segments below the new head are deleted.
  if (!log.PruneHead(log.Size() - 4096)) return 1;
  if (!log.Sync()) return 1;
  std::printf("head %llu, size %llu, %zu segments, durable %llu\n",
              static_cast<unsigned long long>(log.Head()), static_cast<unsigned long long>(log.Size()),
              log.Segments().size(), static_cast<unsigned long long>(log.DurableSize()));

  // The record at `tenth` is gone now: reads below the head are an error value.
  auto gone = log.ReadAt(tenth, std::as_writable_bytes(std::span(buf)));
  std::printf("read below head: %s\n", gone ? "data" : gone.error().message().c_str());
  return gone ? 1 : 0;
}
