// SPDX-License-Identifier: Apache-2.0
#include "fs/ctl/check_remote.h"

#include <filesystem>
#include <optional>
#include <vector>

#include "core/format.h"
#include "core/s3_client.h"
#include "core/tier_manifest.h"
#include "core/tiered_file.h"
#include "fs/backing_lock.h"
#include "fs/tiering.h"
#include "fs/ctl/check.h"

namespace hpfs::ctl {
namespace {

namespace stdfs = std::filesystem;

struct Found {
  std::vector<hpfile::Manifest> manifests;
  std::vector<std::string> rel_paths;  // of each manifest's HPFile
  bool complete = true;                // every manifest could be read
};

// Every hpfile.remote under BACKING, the trash included: a file deleted
// while open still owns its objects until the daemon drops them.
Found FindManifests(const std::string& backing, std::ostream& err) {
  Found found;
  std::error_code ec;
  stdfs::recursive_directory_iterator it(backing, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() != hpfile::format::kRemoteManifestName) continue;
    if (!it->is_regular_file(ec)) continue;
    const std::string dir = it->path().parent_path().string();
    const std::string rel = stdfs::relative(dir, backing, ec).string();
    std::string damage;
    auto manifest = hpfile::ReadManifest(hpfile::PosixIo::Default(), dir, &damage);
    if (!manifest || !manifest->has_value()) {
      err << "hpfsctl check: " << rel << "/" << hpfile::format::kRemoteManifestName << ": "
          << (damage.empty() ? (manifest ? std::string("vanished") : manifest.error().message()) : damage) << "\n";
      found.complete = false;
      continue;
    }
    found.manifests.push_back(std::move(**manifest));
    found.rel_paths.push_back(rel);
  }
  if (ec) {
    err << "hpfsctl check: " << backing << ": " << ec.message() << "\n";
    found.complete = false;
  }
  return found;
}

}  // namespace

int CheckRemoteBacking(const std::string& backing, const RemoteCheckOptions& options, std::ostream& out,
                       std::ostream& err) {
  auto url = hpfile::ParseTierUrl(options.tier_url);
  if (!url) {
    err << "hpfsctl check: --tier-url must be s3://BUCKET[/PREFIX], not '" << options.tier_url << "'\n";
    return kCheckUsage;
  }
  if (options.tier_endpoint.empty()) {
    err << "hpfsctl check: --remote needs --tier-endpoint=URL\n";
    return kCheckUsage;
  }
  auto credentials = LoadTierCredentials(options.tier_credentials);
  if (!credentials) {
    err << "hpfsctl check: " << credentials.error() << "\n";
    return kCheckOperational;
  }
  auto client = hpfile::S3Client::Create(hpfile::S3ClientOptions{.endpoint = options.tier_endpoint,
                                                                 .bucket = url->bucket,
                                                                 .region = options.tier_region,
                                                                 .credentials = std::move(*credentials)});
  if (!client) {
    err << "hpfsctl check: the S3 client: " << client.error().message() << "\n";
    return kCheckUsage;
  }
  std::optional<BackingLock> lock;
  if (options.repair) {
    auto taken = BackingLock::Acquire(backing);
    if (!taken) {
      err << "hpfsctl check: " << backing << ": "
          << (hpfile::IsErrno(taken.error(), EWOULDBLOCK) ? std::string("is in use by a running hpfs daemon; unmount it first")
                                                          : taken.error().message())
          << "\n";
      return kCheckOperational;
    }
    lock.emplace(std::move(*taken));
  }
  const Found found = FindManifests(backing, err);
  // Without every manifest an object may look orphaned that is not.
  const bool repair = options.repair && found.complete;
  if (options.repair && !repair) err << "hpfsctl check: not deleting orphans: a manifest could not be read\n";
  hpfile::TierStoreConfig config{.store = client->get(), .prefix = url->prefix};
  auto report = hpfile::CheckRemote(config, found.manifests, repair);
  if (!report) {
    err << "hpfsctl check: listing s3://" << url->bucket << "/" << url->prefix << ": " << report.error().message << "\n";
    return kCheckOperational;
  }
  for (const std::string& key : report->missing) out << key << ": missing (recorded in a manifest, not in the bucket)\n";
  for (const std::string& line : report->wrong_size) out << line << "\n";
  for (const std::string& key : report->orphans) {
    out << key << ": orphan (no manifest records it)" << (repair ? "" : "; --repair deletes it") << "\n";
  }
  size_t recorded = 0;
  for (const auto& m : found.manifests) recorded += m.segments.size();
  out << "checked " << recorded << " remote segments of " << found.manifests.size() << " tiered files: "
      << report->missing.size() << " missing, " << report->wrong_size.size() << " of the wrong size, "
      << report->orphans.size() << " orphans";
  if (repair) out << " (" << report->deleted << " deleted)";
  out << "\n";
  int status = kCheckClean;
  if (!found.complete) status |= kCheckOperational;
  if (!report->missing.empty() || !report->wrong_size.empty()) status |= kCheckUncorrected;
  if (report->deleted > 0) status |= kCheckCorrected;
  if (report->deleted < report->orphans.size()) status |= kCheckUncorrected;
  return status;
}

}  // namespace hpfs::ctl
