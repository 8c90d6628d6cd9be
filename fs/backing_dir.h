// SPDX-License-Identifier: Apache-2.0
// The backing directory as the daemon and hpfsctl see it: descriptor-relative
// open, stat, listing and removal, and THE rule that tells an HPFile's
// directory from a plain one (DESIGN.md section 2). The mount and
// `hpfsctl check` both classify through IsHPFileDir, so what check predicts
// is what a mount shows.
//
// Thread-safety: every function may be called from any number of threads.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/io.h"
#include "core/result.h"
#include "core/text_file.h"

namespace hpfs {

template <class T>
using Result = hpfile::Result<T>;

// Maps a libc return code (0 or -1 with errno) to a result.
[[nodiscard]] Result<void> CheckRc(int rc);

// openat(2) with O_CLOEXEC added, retried on EINTR.
[[nodiscard]] Result<hpfile::Fd> OpenAt(int dir_fd, std::string_view name, int flags);
[[nodiscard]] Result<struct stat> StatAt(int dir_fd, std::string_view name, int flags = AT_SYMLINK_NOFOLLOW);

// "/proc/self/fd/N": a path that names what descriptor N is open on, wherever
// it has since been renamed to. HPFiles are opened through it.
std::string ProcFdPath(int fd);

// The d_type of a file of mode `mode`: DT_REG, DT_DIR, DT_LNK or DT_UNKNOWN
// for anything else.
unsigned char DirentType(mode_t mode);

using ListedEntry = hpfile::DirEntry;

// hpfile::ListDirectory (core/text_file.h): a readdir that fails midway fails
// the listing, never a short list. Every listing of the daemon and hpfsctl
// goes through here, where FailListingsForTest reaches it.
[[nodiscard]] Result<std::vector<ListedEntry>> ListEntries(int dir_fd);

// ListEntries of a directory descriptor that nothing else reads, from where
// its position stands (a fresh descriptor: the start), without opening the
// directory again: two system calls for a small directory instead of seven.
// The descriptor's position is at the end afterwards. E2BIG, as soon as it
// is seen, when the directory holds more than `max_entries`.
[[nodiscard]] Result<std::vector<ListedEntry>> ListOwnEntries(int dir_fd, size_t max_entries = SIZE_MAX);

// The type of a listed entry of `dir_fd`, asking fstatat when readdir did not
// say. ENOENT when it went away since the listing.
[[nodiscard]] Result<unsigned char> EntryType(int dir_fd, const ListedEntry& entry);

// Whether the directory `name` of `parent_fd` (AT_FDCWD: `name` is a path) is
// an HPFile. It is when it holds a regular hpfile.meta; without one, when it
// holds a regular file only an HPFile holds (hpfile::MarksHPFileDirectory:
// it lost its meta and opens damaged, its intact bytes readable) and no
// directory or symlink, which are what users create in a plain directory.
// The answer does not depend on the order of the entries, and the common
// cases cost little: a file with its meta one stat, a plain directory with
// any file or directory of the mount in it the first entry of a listing.
[[nodiscard]] Result<bool> IsHPFileDir(int parent_fd, std::string_view name);

// For tests: the next `count` listings (ListEntries) fail with `error` after
// their first entry, as a readdir failing midway would.
void FailListingsForTest(int error, int count = 1);

}  // namespace hpfs
