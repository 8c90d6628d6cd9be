// SPDX-License-Identifier: Apache-2.0
#include "core/segment.h"

#include <algorithm>

namespace hpfile {

long FindSegmentIndex(const std::deque<std::shared_ptr<Segment>>& segments, uint64_t offset) {
  if (segments.empty() || offset < segments.front()->base) return -1;
  // Usually every segment has the first one's capacity: try that slot first.
  const uint64_t guess = (offset - segments.front()->base) / segments.front()->capacity;
  if (guess < segments.size()) {
    const Segment& candidate = *segments[guess];
    if (candidate.base <= offset && offset < candidate.slot_end()) return static_cast<long>(guess);
  }
  // Otherwise the last segment whose base is <= offset.
  auto after = std::upper_bound(segments.begin(), segments.end(), offset,
                                [](uint64_t value, const std::shared_ptr<Segment>& s) { return value < s->base; });
  if (after == segments.begin()) return -1;
  auto found = std::prev(after);
  if (offset >= (*found)->slot_end()) return -1;
  return static_cast<long>(found - segments.begin());
}

}  // namespace hpfile
