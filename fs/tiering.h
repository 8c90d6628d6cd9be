// SPDX-License-Identifier: Apache-2.0
// The mount's tiered storage (docs/FILESYSTEM.md, "Tiered storage"): the
// object-store client, the chunk cache in BACKING/.hpfs-tier-cache, and the
// one TieredFile of each HPFile the daemon has open.
//
// A TieredFile must be the only one over its HPFile (it serializes the
// prunes and truncates of the file), and an HPFile may be held by more than
// one inode for a while (OpenFiles), so TieredFiles are handed out by HPFile.
//
// Thread-safety: all methods may be called from any number of threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/hpfile.h"
#include "core/s3_client.h"
#include "core/tier_cache.h"
#include "core/tiered_file.h"
#include "fs/options.h"

namespace hpfs {

// The credentials tiering uses: from `file` (AWS shared-credentials format)
// if given, else from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. The error is a
// sentence that names the file but never a key.
[[nodiscard]] std::expected<hpfile::S3Credentials, std::string> LoadTierCredentials(const std::string& file);

// The cache's directory name inside BACKING (hidden from the mount).
inline constexpr std::string_view kTierCacheName = ".hpfs-tier-cache";

class Tiering {
 public:
  // Sets up the client for `tier` (tier.enabled()) and the cache's
  // directory. The error is a sentence for the mount's failure message.
  [[nodiscard]] static std::expected<std::unique_ptr<Tiering>, std::string> Create(const Config::Tier& tier,
                                                                                     const std::string& backing_dir);
  // Opens the chunk cache, which runs a thread of its own: only once the
  // daemon runs in the background (threads do not survive its fork). Until
  // then, and if it fails, For fails with EIO.
  [[nodiscard]] std::expected<void, std::string> Start();

  // The TieredFile over `file`, opening it (and finishing an interrupted
  // offload) when there is none yet. It keeps `file` alive.
  [[nodiscard]] hpfile::Result<std::shared_ptr<hpfile::TieredFile>> For(const std::shared_ptr<hpfile::HPFile>& file);

  // The local retention of a file with `meta`: its own local_retain_* if
  // set, else the mount's.
  hpfile::RetentionPolicy LocalPolicy(const hpfile::Meta& meta) const;

  // Backoff of a file whose offload or deletion failed: the tiering pass
  // leaves it alone until then (1 s after the first failure, doubling to
  // kMaxBackoff), so a store that is down costs one try per file per period.
  static constexpr std::chrono::seconds kMaxBackoff{300};
  bool Due(const hpfile::HPFile& file, std::chrono::steady_clock::time_point now);
  void Failed(const hpfile::HPFile& file, std::chrono::steady_clock::time_point now);
  void Succeeded(const hpfile::HPFile& file);

  const hpfile::TierStoreConfig& store_config() const { return store_config_; }

  // Unlinked files. Whether the trash entry `name` (in the directory
  // `trash_fd`) is a tiered file with a manifest: then it is queued here,
  // stays in the trash (the manifest keeps its objects known to `hpfsctl
  // check --remote`) and DeleteUnlinked deletes it.
  bool TakeUnlinked(int trash_fd, const std::string& name);
  // Deletes the objects of each queued entry not backing off
  // (hpfile::DeleteTieredFileObjects), then the entry. A failure is logged
  // and retried after a backoff as for Failed. Returns how many remain.
  size_t DeleteUnlinked(int trash_fd, std::chrono::steady_clock::time_point now);

 private:
  Tiering() = default;

  Config::Tier tier_;
  std::string cache_dir_;
  std::unique_ptr<hpfile::S3Client> client_;
  hpfile::TierStoreConfig store_config_;
  std::function<void(hpfile::OffloadStep)> after_step_;  // HPFS_TEST_TIER_KILL_AFTER
  std::unique_ptr<hpfile::ChunkCache> cache_;
  std::mutex mu_;
  std::map<const hpfile::HPFile*, std::weak_ptr<hpfile::TieredFile>> files_;  // mu_
  struct Backoff {
    std::chrono::seconds delay{0};
    std::chrono::steady_clock::time_point until;
  };
  static void Lengthen(Backoff& b, std::chrono::steady_clock::time_point now);
  // By the file's id: an HPFile opened again keeps its backoff.
  std::map<std::string, Backoff> backoff_;  // mu_
  // Trash entries whose objects are still to delete, by name.
  std::map<std::string, Backoff> unlinked_;  // mu_
};

}  // namespace hpfs
