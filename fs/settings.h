// SPDX-License-Identifier: Apache-2.0
// The per-file settings (segment_size, retain_bytes, retain_seconds): one
// table of their names, parsers, limits and clear values, used by every way
// there is to set them, so that each takes the same values and refuses the
// same ones:
//   - the mount options (fs/options.cc), as defaults for new files;
//   - `hpfsctl set` (fs/ctl/ctl.cc), which sends them through HPFS_IOC_SET;
//   - the ioctl itself (raw numbers: the limits, and 0 as the clear value);
//   - the user.hpfs.* extended attributes (fs/file_settings.cc).
// Who may set them: whoever may write the file (a handle open for writing
// for the ioctl, write access for the xattrs), and the mounting user as
// defaults; no setting needs more than that.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "fs/hpfs_ioctl.h"
#include "fs/options.h"

namespace hpfs {

struct Setting {
  enum class Unit { kBytes, kSeconds };
  std::string_view name;      // as in `-o NAME=`, `hpfsctl set NAME=`, user.hpfs.NAME
  uint32_t mask;              // its HPFS_SET_* bit
  Unit unit;                  // ParseSize or ParseDuration
  // Whether the setting can be cleared (no limit): then "0" and "none" clear
  // it, as 0 does in the ioctl and as removing the xattr does.
  bool clearable;
  uint64_t min;               // smallest value that is not the clear value
  uint64_t max;
  std::string_view expected;  // what error messages say a good value is
};

// Every setting, in the order `hpfsctl stat` prints them.
std::span<const Setting> Settings();
// The setting called `name`, or nullptr.
const Setting* FindSetting(std::string_view name);

// The value `text` sets (0: cleared), or nullopt when `setting` does not
// take it.
std::optional<uint64_t> ParseSetting(const Setting& setting, std::string_view text);
// Whether `value` is one `setting` takes, as a raw number (the ioctl).
bool ValidSettingValue(const Setting& setting, uint64_t value);

// The field of `request` that carries `setting`.
uint64_t& RequestField(hpfs_set& request, const Setting& setting);
uint64_t RequestField(const hpfs_set& request, const Setting& setting);
// Whether `request` names only known settings and carries values they take.
bool ValidRequest(const hpfs_set& request);

// Makes `value` (as ParseSetting returns it) the mount's default for new files.
void SetDefault(Config& config, const Setting& setting, uint64_t value);

}  // namespace hpfs
