// SPDX-License-Identifier: Apache-2.0
// `hpfsctl import`: turns plain files of a backing directory (logs that were
// there before hpfs, which the mount does not show) into HPFiles in place.
// Nothing is copied: the file becomes the first segment of the new HPFile,
// sealed at its length, and keeps its mode, owner and times. Each import is
// atomic: a crash at any point leaves either the plain file or the finished
// HPFile (plus a leftover in the trash that the next mount deletes).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace hpfs::ctl {

// Imports each of `paths` (BACKING/PATH: a regular file with one link, inside
// a directory that hpfs has mounted, so that it holds .hpfs.lock or
// .hpfs-trash; not a reserved name, not inside an HPFile or the trash).
// Refuses a BACKING that a daemon serves (its .hpfs.lock is held) and holds
// that lock while importing. Prints one line per imported file to `out` and
// one per refusal to `err`, naming the path and why. Returns kExitOk when
// every file was imported, kExitFailed when some were not (the others are).
int ImportFiles(const std::vector<std::string>& paths, std::ostream& out, std::ostream& err);

}  // namespace hpfs::ctl
