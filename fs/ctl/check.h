// SPDX-License-Identifier: Apache-2.0
// `hpfsctl check`: the offline check (and safe repair) of a backing directory
// that no daemon serves. It reports each HPFile with the same scan and
// recovery plan that opening the file applies (core/recovery.h), so what it
// predicts is exactly what a mount would do.
#pragma once

#include <ostream>
#include <string>

namespace hpfs::ctl {

// Exit status bits, as fsck(8) uses them; a run may combine several.
inline constexpr int kCheckClean = 0;
inline constexpr int kCheckCorrected = 1;    // --repair changed something
inline constexpr int kCheckUncorrected = 4;  // damage, or recovery not applied
inline constexpr int kCheckOperational = 8;  // mounted, unreadable, a repair failed
inline constexpr int kCheckUsage = 16;

struct CheckOptions {
  // Apply each file's recovery plan when it has no damage, repair damaged
  // files where hpfile::PlanRepair can (a lost meta is rebuilt), and empty
  // the trash.
  bool repair = false;
  // With repair: also delete everything after the first gap of a damaged
  // file (hpfile::RepairOptions). Without repair it only shows what would go.
  bool truncate_at_gap = false;
};

// Checks BACKING, writing one line (or block) per HPFile to `out`, a summary
// line last, and errors to `err`. Refuses with kCheckOperational when a
// daemon holds the backing lock; a repairing run holds that lock itself until
// it returns, so no daemon can mount the directory meanwhile.
int CheckBacking(const std::string& backing, const CheckOptions& options, std::ostream& out, std::ostream& err);

}  // namespace hpfs::ctl
