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
  uint64_t head = 0;                      // the head after recovery
  bool rewrite_meta = false;              // the meta's head must be updated
  std::vector<std::string> log;           // one sentence per action
};

RecoveryPlan PlanRecovery(const StoreScan& scan);

// Carries out a plan with no damage: deletes what it names (then fsyncs the
// directory) and rewrites the meta with the new head when needed.
[[nodiscard]] Result<void> ApplyRecovery(Io& io, const std::string& dir, const Meta& meta, const RecoveryPlan& plan);

}  // namespace hpfile
