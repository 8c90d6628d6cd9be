// SPDX-License-Identifier: Apache-2.0
#include "core/recovery.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string_view>

#include "core/format.h"
#include "core/text_file.h"

namespace hpfile {
namespace {

std::string Range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// Deletes DIR/NAME for each of `names` (one already gone is fine) and makes
// the deletions durable.
Result<void> RemoveFiles(Io& io, const std::string& dir, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    auto removed = io.Unlink(dir + "/" + name);
    if (!removed && !IsErrno(removed.error(), ENOENT)) return removed;
  }
  if (!names.empty()) return SyncDir(io, dir);
  return {};
}

}  // namespace

Result<StoreScan> ScanStore(Io& io, const std::string& dir) {
  auto names = io.ListDir(dir);
  if (!names) return std::unexpected(names.error());
  std::sort(names->begin(), names->end());
  StoreScan scan;
  for (const std::string& name : *names) {
    const std::string path = dir + "/" + name;
    if (name == format::kMetaName) {
      scan.has_meta = true;
      // An I/O error is the caller's to see (it may pass: EMFILE, EINTR-like
      // faults); only content that is there and wrong makes a file damaged.
      auto text = ReadMetaText(io, dir);
      if (!text) return std::unexpected(text.error());
      auto meta = ParseMeta(*text);
      if (meta) {
        scan.meta = std::move(*meta);
      } else {
        scan.meta_error = meta.error();
      }
    } else if (name == format::kRemoteManifestName) {
      // A tiered file's; core/tier_manifest.h reads it.
    } else if (name.ends_with(format::kTempSuffix)) {
      scan.temp_files.push_back(name);
    } else if (LooksLikeSegment(name)) {
      auto parsed = ParseSegmentName(name);
      if (!parsed) {
        scan.problems.push_back("segment name \"" + name + "\" does not parse");
        continue;
      }
      // One stat per segment, the largest part of opening a file of many
      // (about half of it at 100,000). The lengths of sealed segments are
      // what finds the crash signature (a sealed segment short of its slot,
      // after a power loss that kept a later segment's entry but not this
      // one's size) and overlong ones; nothing on disk records which
      // segments were synced, so no cheaper source gives the same answer,
      // and the recovery guarantee keeps the stat.
      auto st = io.Stat(path);
      if (!st) return std::unexpected(st.error());
      if (!S_ISREG(st->st_mode)) {
        scan.problems.push_back("segment " + name + " is not a regular file");
      } else {
        scan.segments.push_back({*parsed, name, static_cast<uint64_t>(st->st_size), st->st_uid, st->st_gid,
                                 static_cast<uint32_t>(st->st_mode & 07777)});
      }
    } else {
      scan.problems.push_back("unexpected entry \"" + name + "\"");
    }
  }
  std::sort(scan.segments.begin(), scan.segments.end(),
            [](const ScannedSegment& a, const ScannedSegment& b) { return a.name.base < b.name.base; });
  return scan;
}

RecoveryPlan PlanRecovery(const StoreScan& scan) {
  RecoveryPlan plan;
  std::vector<std::string> problems = scan.problems;
  if (!scan.has_meta) problems.push_back("hpfile.meta is missing");
  if (scan.meta_error) problems.push_back(*scan.meta_error);

  const auto& segments = scan.segments;
  // The first sealed segment shorter than its slot: a crash signature when
  // everything else is in order (see docs/FORMAT.md, "Recovery").
  std::optional<size_t> short_sealed;
  // Segments wholly below the meta's head wait for their deletion after a
  // prune that made that head durable first; their bytes were never needed
  // again, so one that lost unsynced bytes in a power loss is no crash
  // signature (it must not cut the live segments after it). The newest
  // segment stays a candidate: when the head lies beyond the end, it is what
  // says where the file ends.
  size_t below_head = 0;
  if (scan.meta) {
    while (below_head + 1 < segments.size() &&
           segments[below_head].name.base + segments[below_head].name.capacity <= scan.meta->head) {
      ++below_head;
    }
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const ScannedSegment& s = segments[i];
    const uint64_t slot_end = s.name.base + s.name.capacity;
    if (s.length > s.name.capacity) {
      problems.push_back("segment " + s.file_name + " holds " + std::to_string(s.length) +
                         " bytes, more than its capacity");
    }
    if (i + 1 < segments.size()) {
      const uint64_t next = segments[i + 1].name.base;
      if (next < slot_end) {
        problems.push_back("segments " + s.file_name + " and " + segments[i + 1].file_name + " overlap");
      } else if (next > slot_end && i >= below_head) {
        // Before the first segment above the head nothing is ever read, and
        // nothing is missing: the head rises to that segment's base, as when
        // no segment lies below it.
        problems.push_back("bytes " + Range(slot_end, next) + " are missing (no segment holds them)");
      } else if (next == slot_end && s.length < s.name.capacity && !short_sealed && i >= below_head) {
        short_sealed = i;
      }
    }
  }

  plan.segments = segments;
  if (!problems.empty()) {
    std::string reason;
    for (const std::string& p : problems) reason += (reason.empty() ? "" : "; ") + p;
    plan.damage = reason;
    plan.head = scan.meta ? scan.meta->head : 0;
    if (!segments.empty()) plan.head = std::max(plan.head, segments.front().name.base);
    return plan;
  }

  for (const std::string& temp : scan.temp_files) {
    plan.remove.push_back(temp);
    plan.log.push_back("removed " + temp + ", left by an interrupted write");
  }

  if (short_sealed) {
    // Everything after the short segment was written after bytes that never
    // reached the disk, so it cannot be trusted to follow them: cut there.
    const ScannedSegment& cut = segments[*short_sealed];
    const uint64_t end = cut.name.base + cut.length;
    uint64_t dropped = 0;
    for (size_t i = segments.size(); i-- > *short_sealed + 1;) {
      plan.remove.push_back(segments[i].file_name);
      dropped += segments[i].length;
    }
    plan.segments.resize(*short_sealed + 1);
    plan.log.push_back("segment " + cut.file_name + " ends at " + std::to_string(end) +
                       " short of its capacity (bytes never synced before a crash): the file is cut there, dropping " +
                       std::to_string(dropped) + " bytes in " + std::to_string(segments.size() - *short_sealed - 1) +
                       " later segments");
  }

  const uint64_t meta_head = scan.meta->head;
  uint64_t head = meta_head;
  if (below_head < plan.segments.size()) head = std::max(head, plan.segments[below_head].name.base);
  uint64_t end = plan.segments.empty() ? head : plan.segments.back().name.base + plan.segments.back().length;
  if (head > end) {
    // Only a truncate below the head that was not synced leaves this.
    plan.log.push_back("head " + std::to_string(head) + " lay beyond the end " + std::to_string(end) +
                       " (a truncate that was not synced): head set to the end");
    head = end;
  }
  // Whole slots below the head are what a prune left for its background
  // deletion: they stay on disk, off the map, for the file's deleter. (A
  // tail whose slot reaches past the head stays, even when all its bytes are
  // below it: PruneHead keeps it too, and appends go on filling it.) The
  // head that puts them below it is durable once ApplyRecovery returns.
  size_t pruned = 0;
  while (pruned < plan.segments.size() &&
         plan.segments[pruned].name.base + plan.segments[pruned].name.capacity <= head) {
    ++pruned;
  }
  plan.pruned.assign(plan.segments.begin(), plan.segments.begin() + static_cast<long>(pruned));
  plan.segments.erase(plan.segments.begin(), plan.segments.begin() + static_cast<long>(pruned));
  plan.head = head;
  plan.rewrite_meta = head != meta_head;
  return plan;
}

Result<void> ApplyRecovery(Io& io, const std::string& dir, const Meta& meta, const RecoveryPlan& plan) {
  if (plan.damage) return Errno(EIO);
  // The meta first: once segments are deleted, a head that was lowered to the
  // end could no longer be worked out again if the meta still said otherwise.
  if (plan.rewrite_meta) {
    Meta updated = meta;
    updated.head = plan.head;
    if (auto written = WriteMetaAtomically(io, dir, updated); !written) return written;
  }
  return RemoveFiles(io, dir, plan.remove);
}

namespace {

std::string Octal(uint32_t mode) {
  char text[16];
  std::snprintf(text, sizeof text, "%04o", mode);
  return text;
}

// The version a meta's format line names, when it has one that parses.
std::optional<uint64_t> FormatLine(std::string_view text) {
  for (const KeyValueLine& line : SplitKeyValueLines(text)) {
    if (line.key != format::kKeyFormat) continue;
    if (auto version = ParseUnsigned(line.value)) return version;
  }
  return std::nullopt;
}

}  // namespace

Result<RepairPlan> PlanRepair(Io& io, const std::string& dir, const StoreScan& scan, const RepairOptions& options) {
  RepairPlan plan;
  const auto& segments = scan.segments;

  // The first gap, and what dropping everything after it would cost.
  size_t kept = segments.size();
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const uint64_t slot_end = segments[i].name.base + segments[i].name.capacity;
    if (segments[i + 1].name.base <= slot_end) continue;
    uint64_t bytes = 0;
    for (size_t j = i + 1; j < segments.size(); ++j) bytes += segments[j].length;
    const std::string what = "bytes " + Range(slot_end, segments[i + 1].name.base) + " are missing; " +
                             std::to_string(bytes) + " bytes in " + std::to_string(segments.size() - i - 1) +
                             " segments follow the gap";
    if (options.truncate_at_gap) {
      kept = i + 1;
      for (size_t j = segments.size(); j-- > kept;) plan.remove.push_back(segments[j].file_name);
      plan.log.push_back(what + ": deleted them (--truncate-at-gap); the file now ends at " +
                         std::to_string(segments[i].name.base + segments[i].length));
    } else {
      plan.unrepairable.push_back(what + " (--truncate-at-gap deletes them, ending the file at the gap)");
    }
    break;
  }

  // What no repair touches, in the segments that stay.
  plan.unrepairable.insert(plan.unrepairable.end(), scan.problems.begin(), scan.problems.end());
  for (size_t i = 0; i < kept; ++i) {
    const ScannedSegment& s = segments[i];
    if (s.length > s.name.capacity) {
      plan.unrepairable.push_back("segment " + s.file_name + " holds " + std::to_string(s.length) +
                                  " bytes, more than its capacity");
    }
    if (i + 1 < kept && segments[i + 1].name.base < s.name.base + s.name.capacity) {
      plan.unrepairable.push_back("segments " + s.file_name + " and " + segments[i + 1].file_name + " overlap");
    }
  }

  if (!scan.has_meta || scan.meta_error) {
    std::optional<uint64_t> version;
    if (scan.has_meta) {
      auto text = ReadMetaText(io, dir);
      if (!text) return std::unexpected(text.error());
      version = FormatLine(*text);
    }
    const std::string lost = scan.has_meta ? "hpfile.meta does not parse (" + *scan.meta_error + ")"
                                           : std::string("hpfile.meta is missing");
    // A format 2 meta names the file's objects by an id no rebuild can
    // guess, so only a format 1 one is ever replaced.
    if (version && *version != static_cast<uint64_t>(format::kVersion)) {
      plan.unrepairable.push_back(lost + "; it is of format " + std::to_string(*version) +
                                  ", written by another version of hpfs: not replaced");
    } else {
      std::optional<Meta> from_temp;
      const bool has_temp = std::find(scan.temp_files.begin(), scan.temp_files.end(),
                                      std::string(format::kMetaTempName)) != scan.temp_files.end();
      if (!scan.has_meta && has_temp) {
        auto text = ReadMetaFile(io, dir + "/" + std::string(format::kMetaTempName));
        if (!text) return std::unexpected(text.error());
        if (auto parsed = ParseMeta(*text)) from_temp = std::move(*parsed);
      }
      const uint64_t first_base = kept > 0 ? segments.front().name.base : 0;
      if (from_temp) {
        from_temp->head = std::max(from_temp->head, first_base);
        plan.rebuilt_meta = std::move(from_temp);
        plan.log.push_back(lost + ": restored from the complete " + std::string(format::kMetaTempName) +
                           " an interrupted write left");
      } else {
        Meta meta;
        std::string owner_source;
        if (kept > 0) {
          const ScannedSegment& newest = segments[kept - 1];
          meta.segment_size = newest.name.capacity;
          meta.mode = segments.front().mode & 07777;
          meta.uid = segments.front().uid;
          meta.gid = segments.front().gid;
          owner_source = "the segment files";
        } else {
          auto st = io.Stat(dir);
          if (!st) return std::unexpected(st.error());
          meta.mode = 0644;
          meta.uid = st->st_uid;
          meta.gid = st->st_gid;
          owner_source = "the file's directory";
        }
        meta.head = first_base;
        plan.log.push_back(lost + ": rebuilt from the segments: segment_size=" + std::to_string(meta.segment_size) +
                           (kept > 0 ? " (the newest segment's capacity)" : " (the default)") +
                           ", head=" + std::to_string(meta.head) + " (the first segment's base), mode=" +
                           Octal(*meta.mode) + ", uid=" + std::to_string(*meta.uid) + " gid=" +
                           std::to_string(*meta.gid) + " (from " + owner_source +
                           "); retention limits and other settings it held are lost: check the owner and "
                           "mode and set them again through the mount");
        plan.rebuilt_meta = std::move(meta);
      }
    }
  }

  if (!plan.unrepairable.empty()) {
    plan.rebuilt_meta.reset();
    plan.remove.clear();
  }
  return plan;
}

Result<void> ApplyRepair(Io& io, const std::string& dir, const RepairPlan& plan) {
  if (!plan.repairs()) return Errno(EINVAL);
  // The meta first: if the deletions are interrupted, the next check finds a
  // healthy meta and the same gap, and goes on from there.
  if (plan.rebuilt_meta) {
    if (auto written = WriteMetaAtomically(io, dir, *plan.rebuilt_meta); !written) return written;
  }
  return RemoveFiles(io, dir, plan.remove);
}

}  // namespace hpfile
