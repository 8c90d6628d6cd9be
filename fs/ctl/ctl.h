// SPDX-License-Identifier: Apache-2.0
// The parts of hpfsctl that are pure functions of their input: parsing the
// `set` assignments and printing `stat` results. The command-line driver
// (fs/hpfsctl.cc) does the opening and the ioctls.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/hpfs_ioctl.h"

namespace hpfs::ctl {

// Exit statuses of `stat` and `set`.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // some file could not be read or changed
inline constexpr int kExitUsage = 2;

// Parses `set` arguments ("retain_bytes=1G", "retain_seconds=7d",
// "segment_size=16M", "retain_bytes=none") into one request. Every argument
// is checked before anything is returned, so a caller that sends the result
// sends all of it or nothing. On failure the message names the offending
// argument (unknown key, bad value, a key given twice, no '=').
[[nodiscard]] std::expected<hpfs_set, std::string> ParseAssignments(const std::vector<std::string_view>& args);

// One file's figures as `key=value` lines, preceded by `file=NAME` when
// `name` is set. Every line ends in '\n'; newlines in the damage reason are
// replaced by spaces so each key stays on one line.
std::string FormatStatText(const hpfs_stat& st, const std::optional<std::string>& name);

// The settings `set` changes, as `key=value` lines in the order of
// FormatStatText (what `set` prints once they are changed).
std::string FormatSettingsText(const hpfs_stat& st);

// One file's figures as a JSON object (no trailing newline).
std::string FormatStatJson(const hpfs_stat& st, std::string_view name);

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view text);

}  // namespace hpfs::ctl
