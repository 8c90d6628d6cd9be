// SPDX-License-Identifier: Apache-2.0
// Hooks for tests of the daemon through a real mount, set from the
// environment (hpfs(8) ENVIRONMENT); unset, they cost one pointer test.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>

#include "core/tiered_file.h"

namespace hpfs {

// A test hook (HPFS_TEST_DELAY_WRITE=OFFSET:MILLISECONDS, hpfs(8)
// ENVIRONMENT): the first WRITE request that starts at `offset` waits that
// long before it is handled, so that later requests of the same write-back
// overtake it, as they may on a busy machine.
struct DelayedWrite {
  uint64_t offset = 0;
  std::chrono::milliseconds delay{0};
  std::atomic<bool> done{false};
};
// OFFSET:MILLISECONDS, both decimal; nullopt when it is not that.
std::optional<std::pair<uint64_t, std::chrono::milliseconds>> ParseDelayedWrite(std::string_view text);

// Holds up the calling worker thread if `chosen` picks the WRITE at `off`,
// once; libfuse starts another thread for the requests that come meanwhile.
void DelayIfChosen(DelayedWrite* chosen, off_t off);

// A test hook (HPFS_TEST_TIER_KILL_AFTER=put|record|delete, hpfs(8)
// ENVIRONMENT): the daemon SIGKILLs itself right after that step of its
// first offload of a segment, as a crash there would leave things.
std::optional<hpfile::OffloadStep> ParseTierKillStep(std::string_view text);
// The hook for TieredFileOptions::after_step that does it.
std::function<void(hpfile::OffloadStep)> KillAfterStep(hpfile::OffloadStep step);

}  // namespace hpfs
