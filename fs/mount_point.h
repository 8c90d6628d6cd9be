// SPDX-License-Identifier: Apache-2.0
// Mount points that would make the daemon serve itself. A request is served
// by touching the backing directory; if the mount point is below it, a
// listing or a lookup reaches the mount again and waits for the very threads
// that are waiting for it: every thread blocks, SIGTERM goes unanswered, and
// only an abort through fusectl frees the mount. So such a mount point is
// refused before anything is mounted.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hpfs {

// Why `mountpoint` must not serve `backing` (a real path), or nullopt. Refused:
// the mount point is the backing directory, or below it (also through a bind
// mount of it, or through an hpfs mount whose backing directory holds it),
// or the backing directory is below the mount point (the mount would hide
// it from everything but the daemon). A mount point that does not resolve is
// left for the mount to report.
std::optional<std::string> MountPointProblem(const std::string& backing, const std::string& mountpoint);

// One line of /proc/self/mountinfo, as far as the check needs it.
struct MountEntry {
  std::string root;         // the directory of the filesystem mounted there
  std::string mount_point;
  std::string fstype;
  std::string source;       // for hpfs: its backing directory (fsname)
};

// The lines of a mountinfo text, in order (later lines are mounted on top of
// earlier ones); lines that do not parse are left out.
std::vector<MountEntry> ParseMountInfo(std::string_view text);

// Where `path` (a real path) is stored when it lies on an hpfs mount: the
// backing directory of the topmost mount holding it, joined with the rest of
// the path; nullopt when that mount is not hpfs.
std::optional<std::string> HpfsStoragePath(const std::string& path, const std::vector<MountEntry>& mounts);

}  // namespace hpfs
