// SPDX-License-Identifier: Apache-2.0
// Retention: the rule that decides which sealed segments a file's retention
// limits (Meta::retain_bytes, Meta::retain_seconds) let go. Like Kafka's
// retention.bytes and retention.ms, it only ever drops whole segments from the
// head, oldest first, and never the tail (the segment being written), so
// enforcing it costs one segment deletion per segment and never a rewrite.
// HPFile::ApplyRetention and the check at each segment roll inside
// HPFile::Append apply it.
#pragma once

#include <cstdint>
#include <optional>
#include <system_error>

#include "core/meta.h"

namespace hpfile {

struct RetentionPolicy {
  // Keep at least this many of the newest bytes: a sealed segment goes once
  // everything from its slot's end to the end of the file is at least this.
  std::optional<uint64_t> retain_bytes;
  // A sealed segment goes once its last write is more than this many seconds
  // before now.
  std::optional<uint64_t> retain_seconds;

  static RetentionPolicy FromMeta(const Meta& meta) { return {meta.retain_bytes, meta.retain_seconds}; }
  bool empty() const { return !retain_bytes && !retain_seconds; }
  // Whether the byte limit alone lets a sealed segment whose slot ends at
  // `slot_end` go from a file of `size` bytes.
  bool BytesAllowDrop(uint64_t slot_end, uint64_t size) const {
    return retain_bytes && slot_end <= size && size - slot_end >= *retain_bytes;
  }
  // Whether the age limit alone lets a sealed segment last written at
  // `last_write` (seconds since the epoch) go at `now`.
  bool AgeAllowsDrop(int64_t last_write, int64_t now) const {
    return retain_seconds && last_write < now && static_cast<uint64_t>(now - last_write) > *retain_seconds;
  }
};

// What one enforcement of retention did to a file: the head moved from
// `old_head` to `new_head` (bytes dropped: the difference) by deleting
// `segments` segments. `error` is set when a deletion failed; the head then
// stands where the last successful one left it.
struct RetentionResult {
  uint64_t old_head = 0;
  uint64_t new_head = 0;
  uint64_t segments = 0;
  std::error_code error;

  uint64_t bytes_dropped() const { return new_head - old_head; }
  bool pruned() const { return segments > 0; }
};

}  // namespace hpfile
