// SPDX-License-Identifier: Apache-2.0
// Write-back mode (Config::writeback, docs/FILESYSTEM.md "Write-back mode"):
// the kernel's page cache owns the file size and sends WRITE requests later,
// from the start of each page, so bytes the daemon stored already come again,
// and several requests of one file reach the daemon's threads in any order.
// These are the per-file pieces the Filesystem keeps for that.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <system_error>
#include <vector>

#include "core/hpfile.h"
#include "core/result.h"
#include "fs/held_spool.h"

namespace hpfs {

// Called exactly once with the outcome of a write request: all its bytes, or
// the errno. It may run later, on the thread whose write filled the gap in
// front of it, and never with a lock of the Filesystem held.
using WriteDone = std::function<void(hpfile::Result<size_t>)>;

// A WRITE that starts beyond the file's end: held, copied, until the bytes in
// front of it come.
//
// One from the page cache was answered when it was held (`done` empty): the
// kernel ends that page's write-back with the answer, and a write-back that
// gathered the bytes in front of it may wait for exactly that, so an answer
// kept until the gap fills can deadlock the kernel and the daemon. What goes
// wrong with its bytes later becomes the file's late error (WritebackQueue).
struct HeldWrite {
  // The bytes: in memory (`data`), or, past the reorder buffer's memory
  // bound, in the file's spool at `spooled_at` (`data` empty).
  std::vector<std::byte> data;
  uint64_t length = 0;
  std::optional<uint64_t> spooled_at;
  WriteDone done;  // empty: answered already
  // From a direct (uncached) handle: may be a write past the end on purpose,
  // whose gap is zeros, once a commit has shown no cached bytes fill it.
  bool direct = false;
  uint64_t commit_generation = 0;  // the commits finished when it was held
};

// One file's held writes. Guarded by Inode::write_mu.
struct WritebackQueue {
  std::map<uint64_t, HeldWrite> held;  // by offset
  uint64_t held_bytes = 0;  // in memory and spooled
  HeldSpool spool;
  // Held writes refused because the spool was at its bound.
  uint64_t spool_overflows = 0;
  size_t held_direct = 0;  // entries of `held` from direct handles
  // A write-back that would have extended the file failed: the kernel's size
  // is ahead of the stored end and the bytes in between will not come again,
  // so later writes past the end fail the same way instead of waiting.
  std::optional<std::error_code> broken;
  // Held bytes that were answered and then failed to land (an error when
  // appended, a changed prefix, a gap that never filled). Sticky, like a
  // failed fdatasync: every later fsync and close of a writer fails with it.
  std::optional<std::error_code> late_error;
  // Signalled whenever held writes leave `held`.
  std::condition_variable drained;
  // Where the held bytes end (0: none). The kernel's size is at least that,
  // and a stat must not show it shrink. Written under write_mu; read
  // without it for stat.
  std::atomic<uint64_t> held_end{0};
  // A truncate to above the stored end, not yet landed (0: none). The kernel
  // answers it first and only then sends its dirty pages below the new size,
  // so zeros written at once would stand where those bytes belong. Landed
  // (the rest up to it zeros) once the end reaches it, a write past it comes
  // (the kernel sent everything below first), an fsync, or a commit that
  // began after it. Written under write_mu; read without it for stat.
  std::atomic<uint64_t> grow_to{0};
  uint64_t grow_commit = 0;  // the commits started when it was set
};

// Where `data`, written at `offset`, meets a file that ends at `end`.
struct WritebackSplit {
  uint64_t compare_length = 0;  // bytes at `offset` that must equal stored ones
  uint64_t append_from = 0;     // index into `data` of the new tail
  bool starts_past_end = false;  // offset > end: nothing can be decided yet
};
WritebackSplit SplitAtEnd(uint64_t offset, size_t length, uint64_t end);

// Compares `data` with the file's bytes at `offset` (which must end at or
// before the file's end). Bytes below the head were stored and pruned: they
// are taken as equal. Returns the offset of the first differing byte, if any.
[[nodiscard]] hpfile::Result<std::optional<uint64_t>> FirstDifference(const hpfile::HPFile& file, uint64_t offset,
                                                                      std::span<const std::byte> data);

}  // namespace hpfs
