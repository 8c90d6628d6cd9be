// SPDX-License-Identifier: Apache-2.0
// The stat of a file of the mount, and how to answer it without opening the
// file's HPFile.
//
// A lookup (and every entry of a readdirplus) must answer with the entry's
// attributes. Opening the HPFile for that costs its lock, recovery's checks
// and several opens through /proc/self/fd: most of an `ls -l` of a big
// directory. A file that recovery would leave exactly as it is has a stat
// that follows from its directory alone: the meta (mode, owner), the listing
// and one stat per segment (size, blocks, times). StatClosedFile computes it
// with hpfile::ScanStore and hpfile::PlanRecovery, the checks HPFile::Open
// itself applies, so whatever it answers is what an open would answer; it
// gives up (nullopt) on anything an open would act on or report, and the
// caller opens the file instead.
//
// Thread-safety: the functions may be called from any number of threads.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/meta.h"
#include "core/result.h"

namespace hpfs {

// The mode of a file whose meta does not say.
inline constexpr mode_t kDefaultFileMode = 0644;
// st_blksize reported for files: the largest request the mount takes, so
// tools that size their buffers by it (cp, dd conv=...) move 1 MiB at a time.
inline constexpr blksize_t kFileBlockSize = 1 << 20;
// StatClosedFile gives up on directories with more entries than this: a
// file of many segments is opened instead (its open lists the directory once
// and need not stat every segment; a stat of each here would cost more).
inline constexpr size_t kClosedStatMaxEntries = 16;

// A file's stat from its parts: `dir` is the fstat of its backing directory
// (device, inode number, ctime of attribute changes; the times of a file
// without segments), `tail` the stat of its tail segment, if it has one.
// `blocks` counts every segment file it still has on disk.
struct stat FileStat(const struct stat& dir, const hpfile::Meta& meta, uint64_t size, blkcnt_t blocks,
                     const struct stat* tail, bool unlinked);

// A file's stat as an inode keeps it while the file is closed: what
// FileStat does not set alike for every file, nor takes from the inode
// (device and inode number), in half the size of a struct stat.
struct KeptStat {
  int64_t size = 0;
  int64_t blocks = 0;
  timespec atim{}, mtim{}, ctim{};
  uint32_t mode = 0, uid = 0, gid = 0;

  static KeptStat Of(const struct stat& st);
  struct stat ToStat(dev_t dev, ino_t ino, bool unlinked) const;
};

// The stat of the file whose backing directory `dir_fd` is (fstat: `dir`),
// made without opening it; lists `dir_fd` itself (ListOwnEntries), so it
// must be a descriptor nothing else reads yet; nullopt when an open would change or report
// something (recovery to do, damage, a temp file, pruned segments waiting
// for the deleter, a tiered file) or the directory holds more than
// kClosedStatMaxEntries entries. Errors are the backing filesystem's.
[[nodiscard]] hpfile::Result<std::optional<struct stat>> StatClosedFile(int dir_fd, const struct stat& dir);

}  // namespace hpfs
