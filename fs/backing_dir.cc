// SPDX-License-Identifier: Apache-2.0
#include "fs/backing_dir.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
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
  const int injected = InjectedListFailure();
  if (injected == 0) return hpfile::ListDirectory(dir_fd);
  // As a readdir failing midway would: after the first entry.
  auto first = hpfile::VisitDirectory(dir_fd, [](const ListedEntry&) { return false; });
  if (!first) return std::unexpected(first.error());
  return Errno(injected);
}

Result<std::vector<ListedEntry>> ListOwnEntries(int dir_fd, size_t max_entries) {
  // A failure to inject goes the way of every other listing.
  if (list_failures_left.load() > 0) {
    auto listed = ListEntries(dir_fd);
    if (listed && listed->size() > max_entries) return Errno(E2BIG);
    return listed;
  }
  std::vector<ListedEntry> entries;
  alignas(dirent64) char buf[8192];
  for (;;) {
    const ssize_t n = ::getdents64(dir_fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return LastErrno();
    }
    if (n == 0) return entries;
    for (ssize_t at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buf + at);
      at += entry->d_reclen;
      const std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      // A directory of a million segments is not read to its end to say so.
      if (entries.size() == max_entries) return Errno(E2BIG);
      entries.push_back(ListedEntry{std::string(name), entry->d_ino, entry->d_type});
    }
  }
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

void FailListingsForTest(int error, int count) {
  list_failure_error.store(error);
  list_failures_left.store(count);
}

}  // namespace hpfs
