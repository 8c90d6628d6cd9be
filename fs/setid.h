// SPDX-License-Identifier: Apache-2.0
// The set-user-ID and set-group-ID bits of a file across a write, as a local
// filesystem keeps them (Linux's setattr_should_drop_suidgid): a writer
// without CAP_FSETID clears S_ISUID, and S_ISGID when the file is
// group-executable or the writer is not in the file's group.
//
// The kernel clears the bits itself before a write through the page cache and
// before a truncate (a setattr of the mode, which hpfs applies as any other).
// Before a direct-I/O write it does not: it only flags the request
// (FUSE_WRITE_KILL_SUIDGID), and libfuse 3.14 passes no such flag on. So for
// writes the daemon decides itself, from the writing thread's credentials.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string_view>
#include <vector>

namespace hpfs {

// No gid is -1 (chown(2) uses it for "unchanged"): a writer in no group.
inline constexpr gid_t kNoGroup = static_cast<gid_t>(-1);

struct WriterCredentials {
  bool has_fsetid = false;  // CAP_FSETID, effective in the initial user namespace
  gid_t fsgid = kNoGroup;
  std::vector<gid_t> groups;  // supplementary groups
};

// The mode a regular file has after `writer` wrote to it.
mode_t ModeAfterWrite(mode_t mode, gid_t file_gid, const WriterCredentials& writer);

// The credentials in the text of /proc/TID/status (CapEff, Gid, Groups);
// nullopt when one of those lines is missing or unreadable. has_fsetid is
// what CapEff says, whatever the namespace.
std::optional<WriterCredentials> ParseProcStatus(std::string_view status);

// The credentials of thread `tid` (the pid of a FUSE request). A thread that
// cannot be read (gone, pid 0, another pid namespace) counts as holding no
// privilege, so the bits go: a write never keeps them by mistake.
WriterCredentials CredentialsOfThread(pid_t tid);

}  // namespace hpfs
