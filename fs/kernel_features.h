// SPDX-License-Identifier: Apache-2.0
// What the running kernel's FUSE does that hpfs depends on, decided once.
#pragma once

#include <sys/utsname.h>

#include <cstdio>

namespace hpfs {

// Linux 6.6 made a FUSE direct write drop the cached pages it lands on;
// before that, a reader's cached page holding the end of the file would keep
// showing zeros where a direct write appended. hpfs uses direct I/O for
// writable handles only where this holds.
inline bool DirectWritesKeepCachesCoherent() {
  static const bool coherent = [] {
    utsname name{};
    int major = 0;
    int minor = 0;
    if (::uname(&name) != 0 || std::sscanf(name.release, "%d.%d", &major, &minor) != 2) return false;
    return major > 6 || (major == 6 && minor >= 6);
  }();
  return coherent;
}

}  // namespace hpfs
