// SPDX-License-Identifier: Apache-2.0
#include "fs/tiering.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "core/format.h"
#include "core/io.h"
#include "core/text_file.h"
#include "core/tier_uploader.h"
#include "fs/backing_dir.h"
#include "fs/test_hooks.h"

namespace hpfs {

std::expected<hpfile::S3Credentials, std::string> LoadTierCredentials(const std::string& file) {
  if (!file.empty()) {
    auto read = hpfile::ReadS3CredentialsFile(file);
    if (!read) return std::unexpected(file + ": " + read.error().message());
    return std::move(*read);
  }
  if (auto env = hpfile::S3CredentialsFromEnvironment()) return std::move(*env);
  return std::unexpected(std::string(
      "no credentials: give a credentials file or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
}

std::expected<std::unique_ptr<Tiering>, std::string> Tiering::Create(const Config::Tier& tier,
                                                                      const std::string& backing_dir) {
  const auto url = hpfile::ParseTierUrl(tier.url);
  if (!url) return std::unexpected("tier_url must be s3://BUCKET[/PREFIX], not '" + tier.url + "'");
  auto credentials = LoadTierCredentials(tier.credentials);
  if (!credentials) return std::unexpected("tiered storage: " + credentials.error());
  // AWS itself when no endpoint is named; any other server needs one.
  const std::string endpoint =
      tier.endpoint.empty() ? "https://s3." + tier.region + ".amazonaws.com" : tier.endpoint;
  auto client = hpfile::S3Client::Create(hpfile::S3ClientOptions{
      .endpoint = endpoint, .bucket = url->bucket, .region = tier.region, .credentials = std::move(*credentials)});
  if (!client) return std::unexpected("tiered storage: the S3 client: " + client.error().message());

  std::unique_ptr<Tiering> tiering(new Tiering());
  tiering->tier_ = tier;
  tiering->client_ = std::move(*client);
  tiering->store_config_ = hpfile::TierStoreConfig{.store = tiering->client_.get(), .prefix = url->prefix};
  tiering->cache_dir_ = backing_dir + "/" + std::string(kTierCacheName);
  // The cache opens later (Start); a directory it cannot use fails the mount now.
  if (::mkdir(tiering->cache_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected("tiered storage: cannot create " + tiering->cache_dir_ + ": " + std::strerror(errno));
  }
  if (::access(tiering->cache_dir_.c_str(), R_OK | W_OK | X_OK) != 0) {
    return std::unexpected("tiered storage: cannot use " + tiering->cache_dir_ + ": " + std::strerror(errno));
  }
  if (const char* kill_after = std::getenv("HPFS_TEST_TIER_KILL_AFTER")) {
    const auto step = ParseTierKillStep(kill_after);
    if (!step) {
      return std::unexpected("HPFS_TEST_TIER_KILL_AFTER must be put, record or delete, not '" + std::string(kill_after) +
                             "'");
    }
    tiering->after_step_ = KillAfterStep(*step);
  }
  spdlog::info("tiered storage: s3://{}/{} at {}", url->bucket, url->prefix, endpoint);
  return tiering;
}

std::expected<void, std::string> Tiering::Start() {
  std::lock_guard lock(mu_);
  if (cache_) return {};
  auto cache = hpfile::ChunkCache::Open(
      store_config_,
      hpfile::ChunkCacheOptions{.dir = cache_dir_,
                                .capacity_bytes = tier_.cache_bytes,
                                .log = [](const std::string& line) { spdlog::error("tiered storage: {}", line); }});
  if (!cache) return std::unexpected("tiered storage: the chunk cache in " + cache_dir_ + ": " + cache.error().message());
  cache_ = std::move(*cache);
  return {};
}

bool Tiering::Due(const hpfile::HPFile& file, std::chrono::steady_clock::time_point now) {
  const auto id = file.GetMeta().file_id;
  std::lock_guard lock(mu_);
  auto it = id ? backoff_.find(*id) : backoff_.end();
  return it == backoff_.end() || now >= it->second.until;
}

void Tiering::Failed(const hpfile::HPFile& file, std::chrono::steady_clock::time_point now) {
  const auto id = file.GetMeta().file_id;
  if (!id) return;
  std::lock_guard lock(mu_);
  Lengthen(backoff_[*id], now);
}

void Tiering::Lengthen(Backoff& b, std::chrono::steady_clock::time_point now) {
  b.delay = std::min<std::chrono::seconds>(kMaxBackoff, b.delay == std::chrono::seconds(0) ? std::chrono::seconds(1)
                                                                                           : b.delay * 2);
  b.until = now + b.delay;
}

bool Tiering::TakeUnlinked(int trash_fd, const std::string& name) {
  const std::string manifest = name + "/" + std::string(hpfile::format::kRemoteManifestName);
  if (::faccessat(trash_fd, manifest.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0) return false;
  std::lock_guard lock(mu_);
  unlinked_.try_emplace(name);
  return true;
}

size_t Tiering::DeleteUnlinked(int trash_fd, std::chrono::steady_clock::time_point now) {
  std::vector<std::string> due;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, b] : unlinked_) {
      if (now >= b.until) due.push_back(name);
    }
  }
  for (const std::string& name : due) {
    // The entry's path through the trash's descriptor: the trash may be
    // reached by no path that stays valid.
    const std::string dir = ProcFdPath(trash_fd) + "/" + name;
    auto deleted = hpfile::DeleteTieredFileObjects(hpfile::PosixIo::Default(), store_config_, dir);
    if (deleted) {
      if (auto removed = hpfile::RemoveTreeAt(trash_fd, name); !removed) {
        spdlog::warn("cannot delete {}/{}: {} (retried at the next mount)", hpfile::format::kTrashName, name,
                     removed.error().message());
      }
    } else {
      spdlog::warn("tiered storage: the objects of a deleted file ({}/{}): {} (retried later)",
                   hpfile::format::kTrashName, name, deleted.error().message);
    }
    std::lock_guard lock(mu_);
    if (deleted) {
      unlinked_.erase(name);
    } else {
      Lengthen(unlinked_[name], now);
    }
  }
  std::lock_guard lock(mu_);
  return unlinked_.size();
}

void Tiering::Succeeded(const hpfile::HPFile& file) {
  const auto id = file.GetMeta().file_id;
  if (!id) return;
  std::lock_guard lock(mu_);
  backoff_.erase(*id);
}

hpfile::Result<std::shared_ptr<hpfile::TieredFile>> Tiering::For(const std::shared_ptr<hpfile::HPFile>& file) {
  std::lock_guard lock(mu_);
  if (!cache_) {
    spdlog::error("tiered storage: the chunk cache is not open");
    return std::unexpected(std::error_code(EIO, std::generic_category()));
  }
  if (auto known = files_[file.get()].lock()) return known;
  auto opened = hpfile::TieredFile::Open(*file, hpfile::TieredFileOptions{.config = store_config_, .after_step = after_step_, .source = cache_.get()});
  if (!opened) {
    files_.erase(file.get());
    spdlog::error("tiered storage: {}", opened.error().message);
    return std::unexpected(std::error_code(opened.error().err, std::generic_category()));
  }
  // The TieredFile refers to the HPFile: the deleter keeps it alive as long.
  hpfile::TieredFile* raw = opened->release();
  std::shared_ptr<hpfile::TieredFile> shared(raw, [keep = file](hpfile::TieredFile* t) { delete t; });
  files_[file.get()] = shared;
  // Entries of closed files go on the next open; a mount has few at a time.
  std::erase_if(files_, [](const auto& entry) { return entry.second.expired(); });
  return shared;
}

hpfile::RetentionPolicy Tiering::LocalPolicy(const hpfile::Meta& meta) const {
  return {meta.local_retain_bytes ? meta.local_retain_bytes : tier_.local_retain_bytes,
          meta.local_retain_seconds ? meta.local_retain_seconds : tier_.local_retain_seconds};
}

}  // namespace hpfs
