// SPDX-License-Identifier: Apache-2.0
// The one gateway between libhpfile and the operating system.
//
// Every system call the library makes goes through an Io object, so tests can
// substitute FaultIo (fault_io.h) to fail chosen calls or to simulate a power
// loss. PosixIo retries EINTR itself; ReadFull/WriteFull below turn short
// transfers into loops, so no other file deals with either.
//
// Thread-safety: Io implementations are safe to call from any number of threads.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace hpfile {

class Io {
 public:
  virtual ~Io() = default;

  // open(2) with O_CLOEXEC added. Returns the new descriptor.
  [[nodiscard]] virtual Result<int> Open(const std::string& path, int flags, mode_t mode) = 0;
  // close(2), never retried (the descriptor is gone even when it fails).
  virtual void Close(int fd) = 0;
  // One pread(2)/pwrite(2); the count may be short. 0 from Pread means EOF.
  [[nodiscard]] virtual Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) = 0;
  [[nodiscard]] virtual Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) = 0;
  [[nodiscard]] virtual Result<void> Fdatasync(int fd) = 0;
  // Starts writing fd's dirty pages back without waiting, so the fdatasyncs
  // of several files that follow overlap their I/O. Only a hint: it makes
  // nothing durable, and an implementation may do nothing.
  virtual void StartWriteback(int fd) { (void)fd; }
  // fsync(2); also the way to make a directory's entries durable.
  [[nodiscard]] virtual Result<void> Fsync(int fd) = 0;
  // syncfs(2): everything written to the filesystem holding `fd`, data,
  // sizes and directory entries, reaches the disk.
  [[nodiscard]] virtual Result<void> Syncfs(int fd) = 0;
  [[nodiscard]] virtual Result<void> Ftruncate(int fd, uint64_t length) = 0;
  [[nodiscard]] virtual Result<void> Fallocate(int fd, int mode, uint64_t offset, uint64_t length) = 0;
  [[nodiscard]] virtual Result<struct stat> Fstat(int fd) = 0;
  [[nodiscard]] virtual Result<struct stat> Stat(const std::string& path) = 0;
  [[nodiscard]] virtual Result<void> Unlink(const std::string& path) = 0;
  [[nodiscard]] virtual Result<void> Rename(const std::string& from, const std::string& to) = 0;
  [[nodiscard]] virtual Result<void> Mkdir(const std::string& path, mode_t mode) = 0;
  [[nodiscard]] virtual Result<void> Rmdir(const std::string& path) = 0;
  // Names in a directory, without "." and "..", in no particular order.
  [[nodiscard]] virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // flock(LOCK_EX | LOCK_NB): an advisory lock on the file `fd` refers to,
  // held until the last descriptor of this open (this open(2), not the file)
  // is closed, or the process dies. EBUSY while another open holds it, in
  // this process or another.
  [[nodiscard]] virtual Result<void> TryLockExclusive(int fd) = 0;
};

// The real thing. Stateless; Default() is a process-wide instance.
class PosixIo final : public Io {
 public:
  static PosixIo& Default();

  [[nodiscard]] Result<int> Open(const std::string& path, int flags, mode_t mode) override;
  void Close(int fd) override;
  [[nodiscard]] Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override;
  [[nodiscard]] Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) override;
  [[nodiscard]] Result<void> Fdatasync(int fd) override;
  void StartWriteback(int fd) override;
  [[nodiscard]] Result<void> Fsync(int fd) override;
  [[nodiscard]] Result<void> Syncfs(int fd) override;
  [[nodiscard]] Result<void> Ftruncate(int fd, uint64_t length) override;
  [[nodiscard]] Result<void> Fallocate(int fd, int mode, uint64_t offset, uint64_t length) override;
  [[nodiscard]] Result<struct stat> Fstat(int fd) override;
  [[nodiscard]] Result<struct stat> Stat(const std::string& path) override;
  [[nodiscard]] Result<void> Unlink(const std::string& path) override;
  [[nodiscard]] Result<void> Rename(const std::string& from, const std::string& to) override;
  [[nodiscard]] Result<void> Mkdir(const std::string& path, mode_t mode) override;
  [[nodiscard]] Result<void> Rmdir(const std::string& path) override;
  [[nodiscard]] Result<std::vector<std::string>> ListDir(const std::string& path) override;
  [[nodiscard]] Result<void> TryLockExclusive(int fd) override;
};

// Reads until `buf` is full or EOF. Returns the byte count; short only at EOF.
[[nodiscard]] Result<size_t> ReadFull(Io& io, int fd, std::span<std::byte> buf, uint64_t offset);
// Writes all of `data` or fails. After a failure, a prefix may have been written.
[[nodiscard]] Result<void> WriteFull(Io& io, int fd, std::span<const std::byte> data, uint64_t offset);

// A move-only owner of one open descriptor. -1 means empty.
class Fd {
 public:
  Fd() = default;
  Fd(Io& io, int fd) : io_(&io), fd_(fd) {}
  Fd(Fd&& other) noexcept : io_(other.io_), fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  void Reset();

  [[nodiscard]] static Result<Fd> Open(Io& io, const std::string& path, int flags, mode_t mode = 0);

 private:
  Io* io_ = nullptr;
  int fd_ = -1;
};

// fsync of a directory: makes creations, deletions and renames in it durable.
[[nodiscard]] Result<void> SyncDir(Io& io, const std::string& path);

// Whether a write of a small file is synced before it returns
// (ReplaceFileAtomically), or left for a later fsync of it and its directory.
enum class Durability { kSynced, kDeferred };

// Opens the directory `dir` and takes TryLockExclusive on it: who holds the
// descriptor owns the directory. EBUSY when another owner holds it.
[[nodiscard]] Result<Fd> LockDirectory(Io& io, const std::string& dir);

// The directory holding `path` ("." for a bare name), ignoring trailing
// slashes: where a creation, deletion or rename of `path` must be synced.
std::string ParentDir(const std::string& path);

}  // namespace hpfile
