// SPDX-License-Identifier: Apache-2.0
// `hpfsctl check --remote`: the bucket of a tiered backing directory against
// the manifests (hpfile.remote) of its files, through hpfile::CheckRemote:
// every recorded object must exist with its size, and objects of hpfs's
// naming that no manifest records are orphans, deleted with --repair.
#pragma once

#include <ostream>
#include <string>

namespace hpfs::ctl {

struct RemoteCheckOptions {
  std::string tier_url;          // s3://BUCKET[/PREFIX]
  std::string tier_endpoint;     // http(s)://HOST[:PORT]
  std::string tier_region = "us-east-1";
  // An AWS shared-credentials file; empty: AWS_ACCESS_KEY_ID and
  // AWS_SECRET_ACCESS_KEY from the environment.
  std::string tier_credentials;
  bool repair = false;
};

// Checks the bucket for BACKING, one line per problem to `out` and a summary
// line last, errors to `err`. Returns the check's exit bits (check.h). With
// repair it holds BACKING's lock while it deletes, so no daemon can upload
// (and make an orphan recorded) meanwhile; refuses while one is mounted.
int CheckRemoteBacking(const std::string& backing, const RemoteCheckOptions& options, std::ostream& out,
                       std::ostream& err);

}  // namespace hpfs::ctl
