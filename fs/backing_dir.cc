// SPDX-License-Identifier: Apache-2.0
#include "fs/backing_dir.h"

#include <unistd.h>

#include <atomic>
#include <memory>
#include <cerrno>

#include "core/format.h"
#include "core/segment_name.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::IsErrno;
using hpfile::LastErrno;

std::atomic<int> list_failure_error{0};
std::atomic<int> list_failures_left{0};

// Whether a listing should fail now, for FailListingsForTest.
int InjectedListFailure() {
  int left = list_failures_left.load();
  while (left > 0) {
    if (list_failures_left.compare_exchange_weak(left, left - 1)) return list_failure_error.load();
  }
  return 0;
}

// Closes a DIR* on every path out of a listing.
struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};

}  // namespace

Result<void> CheckRc(int rc) {
  if (rc != 0) return LastErrno();
  return {};
}

Result<hpfile::Fd> OpenAt(int dir_fd, std::string_view name, int flags) {
  const std::string path(name);
  int fd;
  do {
    fd = ::openat(dir_fd, path.c_str(), flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return LastErrno();
  return hpfile::Fd(hpfile::PosixIo::Default(), fd);
}

Result<struct stat> StatAt(int dir_fd, std::string_view name, int flags) {
  struct stat st;
  if (::fstatat(dir_fd, std::string(name).c_str(), &st, flags) != 0) return LastErrno();
  return st;
}

std::string ProcFdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

unsigned char DirentType(mode_t mode) {
  if (S_ISREG(mode)) return DT_REG;
  if (S_ISDIR(mode)) return DT_DIR;
  if (S_ISLNK(mode)) return DT_LNK;
  return DT_UNKNOWN;
}

Result<std::vector<ListedEntry>> ListEntries(int dir_fd) {
  const int own_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (own_fd < 0) return LastErrno();
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(own_fd));
  if (!dir) {
    const auto error = LastErrno();
    ::close(own_fd);
    return error;
  }
  const int injected = InjectedListFailure();
  std::vector<ListedEntry> entries;
  for (;;) {
    // readdir says "the end" and "failed" both with nullptr; errno tells.
    errno = 0;
    const dirent* d = ::readdir(dir.get());
    if (d == nullptr) {
      if (errno != 0) return LastErrno();
      break;
    }
    const std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    entries.push_back(ListedEntry{std::string(name), d->d_ino, d->d_type});
    if (injected != 0) return Errno(injected);
  }
  if (injected != 0) return Errno(injected);
  return entries;
}

Result<unsigned char> EntryType(int dir_fd, const ListedEntry& entry) {
  if (entry.type != DT_UNKNOWN) return entry.type;
  auto st = StatAt(dir_fd, entry.name);
  if (!st) return std::unexpected(st.error());
  return DirentType(st->st_mode);
}

Result<bool> IsHPFileDir(int parent_fd, std::string_view name) {
  const std::string dir_name(name);
  auto meta = StatAt(parent_fd, dir_name + "/" + std::string(hpfile::format::kMetaName));
  if (meta && S_ISREG(meta->st_mode)) return true;
  if (!meta && !IsErrno(meta.error(), ENOENT)) return std::unexpected(meta.error());
  auto dir_fd = OpenAt(parent_fd, dir_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir_fd) return std::unexpected(dir_fd.error());
  auto entries = ListEntries(dir_fd->get());
  if (!entries) return std::unexpected(entries.error());
  bool marked = false;
  for (const auto& entry : *entries) {
    auto type = EntryType(dir_fd->get(), entry);
    if (!type) {
      if (IsErrno(type.error(), ENOENT)) continue;  // removed since the listing
      return std::unexpected(type.error());
    }
    if (*type == DT_DIR || *type == DT_LNK) return false;
    if (*type == DT_REG && hpfile::MarksHPFileDirectory(entry.name)) marked = true;
  }
  return marked;
}

Result<void> RemoveTree(int dir_fd, const std::string& name) {
  auto st = StatAt(dir_fd, name);
  if (!st) {
    if (IsErrno(st.error(), ENOENT)) return {};
    return std::unexpected(st.error());
  }
  if (!S_ISDIR(st->st_mode)) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return LastErrno();
    return {};
  }
  auto sub = OpenAt(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!sub) return std::unexpected(sub.error());
  auto entries = ListEntries(sub->get());
  if (!entries) return std::unexpected(entries.error());
  for (const auto& entry : *entries) {
    if (auto r = RemoveTree(sub->get(), entry.name); !r) return r;
  }
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return LastErrno();
  return {};
}

void FailListingsForTest(int error, int count) {
  list_failure_error.store(error);
  list_failures_left.store(count);
}

}  // namespace hpfs
