// SPDX-License-Identifier: Apache-2.0
// TieredFile: an HPFile whose oldest sealed segments live in an object
// store. The HPFile holds the local range [local head, size); the manifest
// (core/tier_manifest.h) the remote segments below it and the file's true
// head. Segments leave the disk oldest first, so local data is always one
// range at the end and an offset below the local head is remote (or, in a
// gap that a local prune left behind the remote segments, zeros).
//
// Offload of one segment, in this order, each step durable before the next:
//   1. PUT the object and verify it (UploadSegment);
//   2. write the manifest with its line: from here on the segment is remote;
//   3. PruneHead the HPFile past it and Sync: the local copy goes.
// A crash before 2 leaves the local copy and at most an orphan object, which
// the next upload of the segment replaces (same name) and CheckRemote
// reports; a crash between 2 and 3 leaves a local copy the manifest also
// names, which Open removes. No step loses the only copy.
//
// Prune and retention, in this order:
//   1. write the manifest with the new head and the dropped segments moved
//      to its `deleting` lines (no reader uses them from here on);
//   2. prune the HPFile if the new head is past the local head;
//   3. delete the objects (DeleteDroppedObjects, retried), then their lines.
// The manifest goes first so that it never names an object that is gone: a
// missing object is then always a fault worth reporting, never a leftover
// of a prune. A crash after 1 leaves `deleting` lines that the next
// DeleteDroppedObjects finishes.
//
// Truncate into a remote segment (below the local head) is refused with
// EPERM: objects are immutable and a cut would need a download and a new
// upload of the segment; truncating the local range is the HPFile's.
//
// Thread-safety: reads (ReadAt, Head, Stats) may run concurrently with each
// other and with one mutating call (Offload*, PruneHead, ApplyRetention,
// DeleteDroppedObjects, Truncate); mutating calls are serialized.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/hpfile.h"
#include "core/retention.h"
#include "core/tier_cache.h"
#include "core/tier_manifest.h"
#include "core/tier_uploader.h"

namespace hpfile {

// The steps of an offload (see the order above), for a test hook.
enum class OffloadStep { kPut, kRecord, kDelete };

struct TieredFileOptions {
  TierStoreConfig config;
  // Called after each step of an offload of a segment that was not yet
  // remote; unset in production. Crash drills stop the process there.
  std::function<void(OffloadStep)> after_step;
  // Where remote ranges are read from; null: such reads fail with EIO.
  RemoteSegmentSource* source = nullptr;
  Io* io = nullptr;  // nullptr: PosixIo::Default()
};

struct TierStats {
  uint64_t local_bytes = 0;
  uint64_t local_segments = 0;
  uint64_t remote_bytes = 0;
  uint64_t remote_segments = 0;
  // Objects dropped whose deletion is still to be confirmed.
  uint64_t deleting = 0;
};

class TieredFile {
 public:
  // Reads `file`'s manifest and finishes an offload a crash interrupted
  // (step 3 above). `file` must outlive the TieredFile, and while it lives
  // only the TieredFile prunes or truncates the HPFile. Gives the file an id
  // (format 2 meta) when it has none. Errors: the manifest's (EIO when it is
  // damaged, with the reason), the prune's.
  [[nodiscard]] static TierResult<std::unique_ptr<TieredFile>> Open(HPFile& file, TieredFileOptions options);

  uint64_t Size() const { return file_.Size(); }
  uint64_t Head() const;
  const std::string& file_id() const { return file_id_; }
  Manifest GetManifest() const;
  TierStats Stats() const;

  // HPFile::ReadAt over the whole file: remote ranges through the source.
  // ENODATA below the head; EIO (with the source's log line) when a remote
  // range cannot be read.
  [[nodiscard]] Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) const;

  // Offloads the oldest local sealed segment (never the tail). False when
  // there is none.
  [[nodiscard]] TierResult<bool> OffloadOldest();
  // Offloads every segment `local` (local_retain_bytes/_seconds) lets go at
  // `now`, oldest first; stops at the first failure. Returns how many went.
  [[nodiscard]] TierResult<size_t> OffloadDue(const RetentionPolicy& local, int64_t now);

  // Moves the head to min(max(Head(), n), Size()), remote segments included
  // (see the order above), then (with kNow) deletes the dropped objects; a
  // failed deletion, and every one with kLater (a caller that must not wait
  // for the store), is left for DeleteDroppedObjects and does not fail the
  // prune.
  enum class DropObjects { kNow, kLater };
  [[nodiscard]] TierResult<void> PruneHead(uint64_t n, DropObjects drop = DropObjects::kNow);
  // The meta's total retention (retain_bytes/_seconds) over remote and local
  // segments, oldest first. Returns how many remote segments it dropped.
  [[nodiscard]] TierResult<size_t> ApplyRetention(int64_t now);
  // Deletes the objects of the manifest's `deleting` lines and drops the
  // lines of those deleted. Returns how many remain.
  [[nodiscard]] TierResult<size_t> DeleteDroppedObjects();
  // HPFile::Truncate for n at or above the local head; EPERM below it.
  [[nodiscard]] Result<void> Truncate(uint64_t n);

 private:
  TieredFile(HPFile& file, TieredFileOptions options, std::string file_id, Manifest manifest);
  // Writes `next` as the manifest; on success it becomes the current one.
  [[nodiscard]] TierResult<void> CommitManifestLocked(Manifest next);
  [[nodiscard]] TierResult<void> PruneLocalTo(uint64_t n);
  // PruneLocalTo, then deletes the pruned segment files (bounded).
  [[nodiscard]] TierResult<void> DropLocalCopyTo(uint64_t n);
  [[nodiscard]] TierResult<void> PruneHeadLocked(uint64_t n);
  [[nodiscard]] TierResult<size_t> DeleteDroppedLocked();
  // A remote range [offset, offset + out.size()) below the local head.
  [[nodiscard]] Result<size_t> ReadBelowLocalHead(uint64_t offset, std::span<std::byte> out) const;

  HPFile& file_;
  const TieredFileOptions options_;
  Io& io_;
  const std::string file_id_;
  // Serializes mutating calls; held across store calls (readers never take it).
  std::mutex writer_mu_;
  // Guards manifest_ (copied out by readers).
  mutable std::mutex manifest_mu_;
  std::shared_ptr<const Manifest> manifest_;
};

// Deletes every object of the tiered file whose directory `dir` no longer
// has a name (an unlinked file's, in the trash), for its owner to remove the
// directory after. In this order, so that neither a crash nor a failure
// leaves a manifest naming a missing object, or an object nobody finds:
//   1. the objects under the file's prefix are listed (which also finds an
//      upload that was never recorded);
//   2. the manifest's segments move to its `deleting` lines (durably): from
//      here on `hpfsctl check --remote` counts them as orphans to delete;
//   3. the listed objects and those of the lines are deleted;
//   4. the manifest goes.
// Nothing to do without a manifest. Retryable errors leave the rest for the
// next call; the objects already deleted stay deleted.
[[nodiscard]] TierResult<void> DeleteTieredFileObjects(Io& io, const TierStoreConfig& config, const std::string& dir);

// What CheckRemote found under a bucket prefix.
struct RemoteCheckReport {
  // Objects a manifest names that the store does not have.
  std::vector<std::string> missing;
  // Objects a manifest names whose size differs from the manifest's: "KEY:
  // N bytes, the manifest says M".
  std::vector<std::string> wrong_size;
  // Objects under the prefix that no manifest names (an upload that a crash
  // left unrecorded, an object of a deleted file, a dropped one whose
  // deletion has not run): their keys.
  std::vector<std::string> orphans;
  // Orphans deleted (with repair).
  size_t deleted = 0;
  bool ok() const { return missing.empty() && wrong_size.empty() && orphans.empty(); }
};

// Lists every object under `config.prefix` and checks it against the
// manifests of every file that uses the prefix: each recorded object must
// exist with its size, and every object must be recorded. Objects on a
// manifest's `deleting` lines are orphans to delete, not faults. With
// `repair`, orphans are deleted (retried); deleting is never done for an
// object a manifest names. Costs one LIST per 1000 objects.
[[nodiscard]] TierResult<RemoteCheckReport> CheckRemote(const TierStoreConfig& config,
                                                        const std::vector<Manifest>& manifests, bool repair);

}  // namespace hpfile
