// SPDX-License-Identifier: Apache-2.0
#include "core/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <utility>

#include "core/text_file.h"

namespace hpfile {
namespace {

// Runs a libc call until it is not interrupted by a signal.
template <class F>
auto RetryOnEintr(F call) {
  for (;;) {
    auto result = call();
    if (result >= 0 || errno != EINTR) return result;
  }
}

Result<void> VoidResult(int rc) {
  if (rc < 0) return LastErrno();
  return {};
}

}  // namespace

PosixIo& PosixIo::Default() {
  static PosixIo io;
  return io;
}

Result<int> PosixIo::Open(const std::string& path, int flags, mode_t mode) {
  int fd = RetryOnEintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) return LastErrno();
  return fd;
}

// Not retried on EINTR: Linux releases the descriptor even then, and a retry
// could close one that another thread has just been given.
void PosixIo::Close(int fd) { ::close(fd); }

Result<size_t> PosixIo::Pread(int fd, std::span<std::byte> buf, uint64_t offset) {
  ssize_t n = RetryOnEintr([&] { return ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset)); });
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<size_t> PosixIo::Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) {
  ssize_t n = RetryOnEintr([&] { return ::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(offset)); });
  if (n < 0) return LastErrno();
  return static_cast<size_t>(n);
}

Result<void> PosixIo::Syncfs(int fd) { return VoidResult(RetryOnEintr([&] { return ::syncfs(fd); })); }

Result<void> PosixIo::Fdatasync(int fd) { return VoidResult(RetryOnEintr([&] { return ::fdatasync(fd); })); }

// An error here (EIO, ENOSPC from a failed write-back) is not lost: the
// fdatasync that follows reports it.
void PosixIo::StartWriteback(int fd) { (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); }

Result<void> PosixIo::Fsync(int fd) { return VoidResult(RetryOnEintr([&] { return ::fsync(fd); })); }

Result<void> PosixIo::Ftruncate(int fd, uint64_t length) {
  return VoidResult(RetryOnEintr([&] { return ::ftruncate(fd, static_cast<off_t>(length)); }));
}

Result<void> PosixIo::Fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
  return VoidResult(RetryOnEintr(
      [&] { return ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)); }));
}

Result<struct stat> PosixIo::Fstat(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return LastErrno();
  return st;
}

Result<struct stat> PosixIo::Stat(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) return LastErrno();
  return st;
}

Result<void> PosixIo::Unlink(const std::string& path) { return VoidResult(::unlink(path.c_str())); }

Result<void> PosixIo::Rename(const std::string& from, const std::string& to) {
  return VoidResult(::rename(from.c_str(), to.c_str()));
}

Result<void> PosixIo::Mkdir(const std::string& path, mode_t mode) { return VoidResult(::mkdir(path.c_str(), mode)); }

Result<void> PosixIo::Rmdir(const std::string& path) { return VoidResult(::rmdir(path.c_str())); }

Result<std::vector<std::string>> PosixIo::ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return LastErrno();
  auto entries = ReadDirEntries(dir);
  ::closedir(dir);
  if (!entries) return std::unexpected(entries.error());
  std::vector<std::string> names;
  names.reserve(entries->size());
  for (DirEntry& entry : *entries) names.push_back(std::move(entry.name));
  return names;
}

Result<void> PosixIo::TryLockExclusive(int fd) {
  if (RetryOnEintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) == 0) return {};
  if (errno == EWOULDBLOCK) return Errno(EBUSY);
  return LastErrno();
}

Result<size_t> ReadFull(Io& io, int fd, std::span<std::byte> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    auto n = io.Pread(fd, buf.subspan(done), offset + done);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    done += *n;
  }
  return done;
}

Result<void> WriteFull(Io& io, int fd, std::span<const std::byte> data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    auto n = io.Pwrite(fd, data.subspan(done), offset + done);
    if (!n) return std::unexpected(n.error());
    // A zero-byte write of a nonempty buffer would loop forever; the kernel
    // only does it when no space can be found.
    if (*n == 0) return Errno(ENOSPC);
    done += *n;
  }
  return {};
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    Reset();
    io_ = other.io_;
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void Fd::Reset() {
  if (fd_ >= 0) io_->Close(fd_);
  fd_ = -1;
}

Result<Fd> Fd::Open(Io& io, const std::string& path, int flags, mode_t mode) {
  auto fd = io.Open(path, flags, mode);
  if (!fd) return std::unexpected(fd.error());
  return Fd(io, *fd);
}

std::string ParentDir(const std::string& path) {
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const size_t slash = trimmed.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return trimmed.substr(0, slash);
}

Result<Fd> LockDirectory(Io& io, const std::string& dir) {
  auto fd = Fd::Open(io, dir, O_RDONLY | O_DIRECTORY);
  if (!fd) return std::unexpected(fd.error());
  if (auto locked = io.TryLockExclusive(fd->get()); !locked) return std::unexpected(locked.error());
  return fd;
}

Result<void> SyncDir(Io& io, const std::string& path) {
  auto dir = Fd::Open(io, path, O_RDONLY | O_DIRECTORY);
  if (!dir) return std::unexpected(dir.error());
  return io.Fsync(dir->get());
}

}  // namespace hpfile
