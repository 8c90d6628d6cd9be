// SPDX-License-Identifier: Apache-2.0
#include "fs/ctl/import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <expected>
#include <filesystem>
#include <map>
#include <optional>

#include "core/format.h"
#include "core/io.h"
#include "core/meta.h"
#include "core/segment_name.h"
#include "fs/backing_lock.h"
#include "fs/ctl/ctl.h"
#include "fs/filesystem.h"

namespace hpfs::ctl {
namespace {

namespace fmt_ = hpfile::format;
namespace stdfs = std::filesystem;

using Failure = std::unexpected<std::string>;

std::string ErrnoText(int err) { return std::strerror(err); }

// Where a file to import lives.
struct Target {
  std::string backing;  // real path of BACKING
  std::string parent;   // real path of the directory holding the file
  std::string name;
};

bool IsBackingRoot(const std::string& dir) {
  struct stat st;
  return ::lstat((dir + "/" + std::string(fmt_::kLockName)).c_str(), &st) == 0 ||
         ::lstat((dir + "/" + std::string(fmt_::kTrashName)).c_str(), &st) == 0;
}

std::expected<Target, std::string> Locate(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const stdfs::path p(path);
  Target target;
  target.name = p.filename().string();
  if (target.name.empty() || target.name == "." || target.name == "..") return Failure("not a file name");
  const std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
  char resolved[PATH_MAX];
  if (::realpath(parent.c_str(), resolved) == nullptr) return Failure(ErrnoText(errno));
  target.parent = resolved;
  // BACKING is the nearest directory above that a mount has used: the daemon
  // leaves its lock file and trash there.
  for (std::string dir = target.parent;;) {
    if (IsBackingRoot(dir)) {
      target.backing = dir;
      break;
    }
    if (dir == "/") {
      return Failure("not inside a backing directory (no directory above it holds " + std::string(fmt_::kLockName) +
                     "; a directory gets one when hpfs first mounts it)");
    }
    const size_t slash = dir.rfind('/');
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  // Every directory from BACKING down to the file's must be one the mount
  // shows as a directory: a file in an HPFile is one of its segments.
  std::string dir = target.backing;
  const std::string below = target.parent.substr(target.backing.size());
  for (size_t begin = 1; begin <= below.size();) {
    size_t end = below.find('/', begin);
    if (end == std::string::npos) end = below.size();
    const std::string component = below.substr(begin, end - begin);
    if (Filesystem::HiddenIn(dir == target.backing, component)) {
      return Failure("inside " + dir + "/" + component + ", which belongs to hpfs");
    }
    dir += "/" + component;
    struct stat st;
    if (::lstat((dir + "/" + std::string(fmt_::kMetaName)).c_str(), &st) == 0) {
      return Failure("inside the HPFile " + dir + " (a part of it, not a plain file)");
    }
    begin = end + 1;
  }
  if (Filesystem::HiddenIn(target.parent == target.backing, target.name)) {
    return Failure("a name reserved by hpfs");
  }
  if (hpfile::MarksHPFileDirectory(target.name)) {
    return Failure("named like a part of an HPFile (a segment or a meta); rename it first");
  }
  return target;
}

// Holds the lock of each backing directory imported into, until the end.
class Locks {
 public:
  std::optional<std::string> Take(const std::string& backing) {
    if (held_.contains(backing)) return std::nullopt;
    auto lock = BackingLock::Acquire(backing);
    if (!lock) {
      if (hpfile::IsErrno(lock.error(), EWOULDBLOCK)) {
        return backing + " is in use by a running hpfs daemon; unmount it first";
      }
      return backing + "/" + std::string(fmt_::kLockName) + ": cannot take the lock: " + lock.error().message();
    }
    held_.emplace(backing, std::move(*lock));
    return std::nullopt;
  }

 private:
  std::map<std::string, BackingLock> held_;
};

std::expected<hpfile::Fd, std::string> OpenDir(int dir_fd, const std::string& name) {
  const int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Failure(name + ": " + ErrnoText(errno));
  return hpfile::Fd(hpfile::PosixIo::Default(), fd);
}

std::expected<void, std::string> Fsync(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return Failure("fsync of " + what + ": " + ErrnoText(errno));
  return {};
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// The HPFile is built in the trash under `temp` (its meta, the file linked in
// as its segment) and then swapped with the plain file in one
// RENAME_EXCHANGE. Until the swap the plain file is untouched and the temp
// is a trash leftover; after it the HPFile has the name and the trash holds
// the plain file's old name, a second link to the segment. Either way the
// next mount empties the trash and nothing else is left to do.
std::expected<uint64_t, std::string> BuildAndSwap(const Target& target, int parent_fd, int trash_fd,
                                                  const std::string& temp, const struct stat& before) {
  const std::string temp_path = target.backing + "/" + std::string(fmt_::kTrashName) + "/" + temp;
  auto temp_fd = OpenDir(trash_fd, temp);
  if (!temp_fd) return Failure(temp_fd.error());

  hpfile::Meta meta;
  meta.mode = before.st_mode & 07777;
  meta.uid = before.st_uid;
  meta.gid = before.st_gid;
  if (auto r = hpfile::WriteMetaAtomically(hpfile::PosixIo::Default(), temp_path, meta); !r) {
    return Failure("cannot write the meta: " + r.error().message());
  }
  const uint64_t size = static_cast<uint64_t>(before.st_size);
  if (size > 0) {
    // Full at its length: the first segment, sealed; appends start the next.
    const std::string segment = hpfile::FormatSegmentName({0, size});
    if (::linkat(parent_fd, target.name.c_str(), temp_fd->get(), segment.c_str(), 0) != 0) {
      return Failure("cannot link it into the new file: " + ErrnoText(errno));
    }
  }
  // An empty file has no segment: the directory's times stand for it.
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ::futimens(temp_fd->get(), times);
  if (auto r = Fsync(temp_fd->get(), temp_path); !r) return Failure(r.error());

  struct stat now;
  if (::fstatat(parent_fd, target.name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || !SameFile(before, now)) {
    return Failure("it changed while being imported; stop whatever writes it and import it again");
  }
  if (::renameat2(parent_fd, target.name.c_str(), trash_fd, temp.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = errno;
    if (err == EINVAL) return Failure("the backing filesystem cannot exchange two names atomically");
    return Failure("cannot put the new file in place: " + ErrnoText(err));
  }
  if (auto r = Fsync(parent_fd, target.parent); !r) return Failure(r.error());
  return size;
}

std::expected<uint64_t, std::string> ImportOne(const Target& target) {
  auto backing_fd = OpenDir(AT_FDCWD, target.backing);
  if (!backing_fd) return Failure(backing_fd.error());
  auto parent_fd = OpenDir(AT_FDCWD, target.parent);
  if (!parent_fd) return Failure(parent_fd.error());
  struct stat st;
  if (::fstatat(parent_fd->get(), target.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Failure(ErrnoText(errno));
  }
  if (S_ISDIR(st.st_mode)) return Failure("a directory, not a plain file");
  if (!S_ISREG(st.st_mode)) return Failure("not a plain file");
  if (st.st_nlink != 1) {
    return Failure("it has " + std::to_string(st.st_nlink) + " hard links; appends would change the others too");
  }
  if (static_cast<uint64_t>(st.st_size) > fmt_::kMaxSegmentSize) {
    return Failure("larger than the largest segment (" + std::to_string(fmt_::kMaxSegmentSize) + " bytes)");
  }

  const std::string trash_name(fmt_::kTrashName);
  if (::mkdirat(backing_fd->get(), trash_name.c_str(), 0700) != 0 && errno != EEXIST) {
    return Failure("cannot create " + trash_name + ": " + ErrnoText(errno));
  }
  auto trash_fd = OpenDir(backing_fd->get(), trash_name);
  if (!trash_fd) return Failure(trash_fd.error());
  timespec clock;
  ::clock_gettime(CLOCK_REALTIME, &clock);
  const std::string temp = "import." + std::to_string(clock.tv_sec) + "." + std::to_string(clock.tv_nsec) + "." +
                           std::to_string(::getpid());
  if (::mkdirat(trash_fd->get(), temp.c_str(), 0700) != 0) {
    return Failure("cannot create the new file in " + trash_name + ": " + ErrnoText(errno));
  }
  auto size = BuildAndSwap(target, parent_fd->get(), trash_fd->get(), temp, st);
  // Before the swap: the unfinished HPFile; after it: the old name of the
  // plain file, its bytes kept by the segment's link.
  // Best effort: a leftover in the trash goes with the next mount's sweep of it.
  (void)hpfile::RemoveTreeAt(trash_fd->get(), temp);
  (void)::fsync(trash_fd->get());
  return size;
}

}  // namespace

int ImportFiles(const std::vector<std::string>& paths, std::ostream& out, std::ostream& err) {
  Locks locks;
  int status = kExitOk;
  for (const std::string& path : paths) {
    auto target = Locate(path);
    if (target) {
      if (auto refused = locks.Take(target->backing)) target = Failure(*refused);
    }
    auto imported = target ? ImportOne(*target) : std::expected<uint64_t, std::string>(Failure(target.error()));
    if (!imported) {
      err << "hpfsctl import: " << path << ": " << imported.error() << "\n";
      status = kExitFailed;
      continue;
    }
    out << "imported " << path << " (" << *imported << " bytes)\n";
  }
  return status;
}

}  // namespace hpfs::ctl
