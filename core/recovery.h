// SPDX-License-Identifier: Apache-2.0
// What opening an HPFile finds in its directory and what it does about it.
// HPFile::Open applies the plan; a checking tool can print it without applying.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/io.h"
#include "core/meta.h"
#include "core/result.h"
#include "core/segment_name.h"

namespace hpfile {

struct ScannedSegment {
  SegmentName name;
  std::string file_name;
  uint64_t length = 0;  // bytes in the file
  // The segment file's owner and permission bits, for rebuilding a lost meta.
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0;
};

struct StoreScan {
  bool has_meta = false;
  std::optional<Meta> meta;        // set when the meta parsed
  std::optional<std::string> meta_error;  // why the meta did not parse
  std::vector<ScannedSegment> segments;  // in base order
  std::vector<std::string> temp_files;   // interrupted writes of ours
  std::vector<std::string> problems;     // unreadable or unexpected entries
};

// Lists and classifies DIR's entries. Fails with the errno when DIR, the meta
// or a segment's attributes cannot be read; wrong content is reported in the
// scan instead.
[[nodiscard]] Result<StoreScan> ScanStore(Io& io, const std::string& dir);

struct RecoveryPlan {
  // Set when the directory holds something no crash can produce. Then nothing
  // is changed on disk: `remove` is empty and the file opens damaged.
  std::optional<std::string> damage;
  std::vector<std::string> remove;        // file names to delete, in this order
  std::vector<ScannedSegment> segments;   // what remains, in base order
  // Segments whose slot lies wholly below `head`: left by a prune for its
  // background deletion (HPFile::DeletePrunedSegments), never read, and not
  // deleted by recovery, so that opening costs nothing per pending segment.
  std::vector<ScannedSegment> pruned;
  uint64_t head = 0;                      // the head after recovery
  bool rewrite_meta = false;              // the meta's head must be updated
  std::vector<std::string> log;           // one sentence per action
};

RecoveryPlan PlanRecovery(const StoreScan& scan);

// Carries out a plan with no damage: deletes what it names (then fsyncs the
// directory) and rewrites the meta with the new head when needed.
[[nodiscard]] Result<void> ApplyRecovery(Io& io, const std::string& dir, const Meta& meta, const RecoveryPlan& plan);

// Repair of a damaged file, for an operator's explicit request (`hpfsctl
// check --repair`); HPFile::Open never repairs (see docs/FORMAT.md, "Repair").
// Two kinds of damage can be repaired:
// - a lost meta (missing, or not parseable as format 1): rebuilt from a
//   complete hpfile.meta.tmp when one is there (a creation interrupted before
//   its rename), else from the segments: segment_size is the newest
//   segment's capacity, head the first segment's base, mode and owner those
//   of the segment files (of DIR when there are none). Retention limits and
//   unknown keys it held are lost. A meta of another format is never
//   replaced: a newer version wrote it.
// - a gap (a range no segment holds), only with `truncate_at_gap`: every
//   segment after the first gap is deleted, so the file ends there.
// Anything else (overlapping or overlong segments, unparseable names,
// unexpected entries) is left to the operator; a plan that cannot make the
// file healthy does nothing at all.
struct RepairOptions {
  bool truncate_at_gap = false;
};

struct RepairPlan {
  // Why the file stays damaged even after the repair: then the plan does
  // nothing. Empty when the plan repairs the file.
  std::vector<std::string> unrepairable;
  std::optional<Meta> rebuilt_meta;   // written in place of the lost meta
  std::vector<std::string> remove;    // segment files after the first gap
  std::vector<std::string> log;       // one sentence per action (and per option not taken)
  bool repairs() const { return unrepairable.empty() && (rebuilt_meta || !remove.empty()); }
};

// Works out the repair of the file in DIR from its scan. Reads DIR's meta and
// temp files and stats DIR itself; changes nothing.
[[nodiscard]] Result<RepairPlan> PlanRepair(Io& io, const std::string& dir, const StoreScan& scan,
                                            const RepairOptions& options);

// Carries out a plan that repairs(): writes the rebuilt meta, then deletes
// the segments after the gap and fsyncs DIR. Recovery (PlanRecovery) then
// finishes the job as for any file. EINVAL for a plan that does not repair.
[[nodiscard]] Result<void> ApplyRepair(Io& io, const std::string& dir, const RepairPlan& plan);

}  // namespace hpfile
