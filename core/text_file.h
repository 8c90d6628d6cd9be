// SPDX-License-Identifier: Apache-2.0
// Small files and directory trees: the one home of the facts every small
// record file (hpfile.meta, a record log's CURRENT) and every directory walk
// share. Number and key=value parsing; reading a small file whole; replacing
// one atomically; listing a directory with readdir's errors checked; deleting
// a tree.
//
// The calls that take an Io go through it, so FaultIo (fault_io.h) can fail
// or power-cut every step. The ones that take a directory descriptor make
// their *at(2) calls directly: Io has no descriptor-relative calls.
//
// Thread-safety: every function is safe to call from any number of threads
// (VisitDirEntries and ReadDirEntries on a DIR* of each thread's own).
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/io.h"
#include "core/result.h"

namespace hpfile {

// ---- numbers ------------------------------------------------------------------------------

// The whole of `text` as an unsigned number in `base`: nullopt when it is
// empty, holds anything but digits (no sign, no space) or overflows.
std::optional<uint64_t> ParseUnsigned(std::string_view text, int base = 10);
std::optional<uint32_t> ParseUnsigned32(std::string_view text, int base = 10);

// ---- key=value lines ----------------------------------------------------------------------

// `text` split at its first '=' (into key and value), for one KEY=VALUE
// argument or option; nullopt when it has no '='. The key may be empty.
struct KeyValue {
  std::string_view key;
  std::string_view value;
};
std::optional<KeyValue> SplitKeyValue(std::string_view text);

// One nonempty line of a key=value text. `key` is what precedes the first
// '=', `value` what follows it; both are empty when the line has no '='.
struct KeyValueLine {
  size_t number = 0;      // 1-based, counting empty lines too
  std::string_view text;  // the whole line, without its newline
  std::string_view key;
  std::string_view value;
  // A key, then '='.
  bool well_formed() const { return !key.empty(); }
};

// Every nonempty line of `text`, well formed or not, for readers that look
// for one key in a text that may be damaged. The views point into `text`.
std::vector<KeyValueLine> SplitKeyValueLines(std::string_view text);
// The same, but the first line that is not key=value (no '=', or nothing
// before it) is the error, for the caller to report.
[[nodiscard]] std::expected<std::vector<KeyValueLine>, KeyValueLine> ParseKeyValueLines(std::string_view text);
// Appends "key=value\n" to `out`.
void AppendKeyValue(std::string& out, std::string_view key, std::string_view value);

// ---- small files --------------------------------------------------------------------------

// How large a file ReadSmallFile reads by default: every record file is a
// few lines, so one this large is something else.
inline constexpr size_t kMaxSmallFileBytes = 1 << 20;

// The file at `path`, whole. ENOENT when missing, EFBIG when larger than
// `max_bytes`, or what the reads fail with.
[[nodiscard]] Result<std::string> ReadSmallFile(Io& io, const std::string& path,
                                                size_t max_bytes = kMaxSmallFileBytes);

// Replaces DIR/NAME with `text` atomically: writes DIR/TEMP_NAME, fsyncs it,
// renames it over NAME and fsyncs DIR. After a crash at any point DIR/NAME is
// the old file (or missing, if it was) or the new one, whole; a failure before
// the rename removes the temp file (best effort: recovery removes a leftover).
// `renamed`, when given, says whether the new content is in place, which it
// is even when only the final directory sync failed (and a power loss may
// then still bring back the old file).
// Durability::kDeferred skips both syncs (it only starts the write-back of
// the temp file before the rename, so that a filesystem ordering data before
// metadata, as ext4's data=ordered does, has its blocks to order): for a file
// nobody relies on yet, made durable later by an fsync of NAME and of DIR.
[[nodiscard]] Result<void> ReplaceFileAtomically(Io& io, const std::string& dir, std::string_view name,
                                                 std::string_view temp_name, std::string_view text,
                                                 bool* renamed = nullptr,
                                                 Durability durability = Durability::kSynced);

// ---- directories --------------------------------------------------------------------------

// Makes sure `dir` is a directory: ENOTDIR when it is something else; when
// it is missing, ENOENT unless `create`, which creates it (mode 0755; one
// another process made meanwhile will do). True when it was missing: the
// caller syncs the parent if the creation must be durable.
[[nodiscard]] Result<bool> EnsureDirectory(Io& io, const std::string& dir, bool create);

// One entry of a directory listing.
struct DirEntry {
  std::string name;
  ino_t ino = 0;
  unsigned char type = DT_UNKNOWN;  // d_type: DT_UNKNOWN when the filesystem does not say
};

// readdir(3), or a stand-in for it in tests.
using ReadDirFunction = dirent* (*)(DIR*);

// Called for each entry of a listing; false stops it there.
using DirEntryVisitor = std::function<bool(const DirEntry&)>;

// Passes the rest of the open directory `dir`, "." and ".." left out, to
// `visit` until it returns false. A readdir that fails (returns null with
// errno set) fails the listing: it is not the end of the directory. `dir`
// stays open; the caller closes it.
[[nodiscard]] Result<void> VisitDirEntries(DIR* dir, const DirEntryVisitor& visit,
                                           ReadDirFunction read_dir = ::readdir);
// The same, collected.
[[nodiscard]] Result<std::vector<DirEntry>> ReadDirEntries(DIR* dir, ReadDirFunction read_dir = ::readdir);

// The entries of the directory `dir_fd`, "." and ".." left out, in no
// particular order. Read through a descriptor of its own: a dup would share
// the directory position with `dir_fd`, which other threads may be listing.
[[nodiscard]] Result<std::vector<DirEntry>> ListDirectory(int dir_fd);
// The same, entry by entry until `visit` returns false: for a scan that can
// stop at the first entry that decides it.
[[nodiscard]] Result<void> VisitDirectory(int dir_fd, const DirEntryVisitor& visit);

// Deletes `name` in the directory `dir_fd` and, when it is a directory,
// everything under it. Symbolic links are removed, never followed. A name
// that is missing, or that vanishes meanwhile, is not an error.
[[nodiscard]] Result<void> RemoveTreeAt(int dir_fd, const std::string& name);

// The same through `io`, for a path: deletes PATH and everything under it.
[[nodiscard]] Result<void> RemoveTree(Io& io, const std::string& path);

}  // namespace hpfile
