// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the libhpfile tests: temporary directories, byte patterns
// that make every byte a function of its offset, plain POSIX file access for
// building and inspecting backing directories by hand, and checks of the
// invariants every healthy HPFile keeps.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/hpfile.h"
#include "core/io.h"
#include "core/meta.h"
#include "core/segment_name.h"
#include "core/result.h"

namespace hpfile {

// Lets gtest show a Meta as its file text instead of a byte dump.
inline void PrintTo(const Meta& meta, std::ostream* os) {
  *os << "Meta{" << SerializeMeta(meta) << "}";
}

}  // namespace hpfile

namespace hpfile::testing {

// ---------------------------------------------------------------------------
// Assertions on Result values. The message carries the expression and errno
// text so a failure says what went wrong without a debugger.

#define HP_TEST_CONCAT_INNER(a, b) a##b
#define HP_TEST_CONCAT(a, b) HP_TEST_CONCAT_INNER(a, b)

#define ASSERT_OK(expr)                                                              \
  do {                                                                               \
    const auto& hp_result_ = (expr);                                                 \
    ASSERT_TRUE(hp_result_.has_value()) << #expr << " failed: " << hp_result_.error().message(); \
  } while (0)

#define EXPECT_OK(expr)                                                              \
  do {                                                                               \
    const auto& hp_result_ = (expr);                                                 \
    EXPECT_TRUE(hp_result_.has_value()) << #expr << " failed: " << hp_result_.error().message(); \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(HP_TEST_CONCAT(hp_result_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                                \
  auto tmp = (expr);                                                             \
  ASSERT_TRUE(tmp.has_value()) << #expr << " failed: " << tmp.error().message(); \
  lhs = std::move(*tmp)

// The call must fail with exactly errno `err`.
#define EXPECT_ERRNO(expr, err)                                                          \
  do {                                                                                   \
    const auto& hp_result_ = (expr);                                                     \
    if (hp_result_.has_value()) {                                                        \
      ADD_FAILURE() << #expr << " succeeded, expected " << std::strerror(err);           \
    } else {                                                                             \
      EXPECT_EQ(hp_result_.error().value(), err)                                         \
          << #expr << " failed with " << hp_result_.error().message() << ", expected "   \
          << std::strerror(err);                                                         \
    }                                                                                    \
  } while (0)

// ---------------------------------------------------------------------------
// Byte patterns.

// A byte determined by its offset alone, so any byte read anywhere can be
// checked without remembering what was written. Multiplicative hashing keeps
// neighbouring offsets and offsets one segment apart different.
inline std::byte PatternByte(uint64_t offset) {
  return static_cast<std::byte>((offset * 2654435761ull) >> 13);
}

inline std::vector<std::byte> PatternBytes(uint64_t offset, size_t length) {
  std::vector<std::byte> out(length);
  for (size_t i = 0; i < length; ++i) out[i] = PatternByte(offset + i);
  return out;
}

// Same, but a different function per `seed`: bytes written over the same
// offsets twice with different seeds tell the two writes apart.
inline std::byte SeededByte(uint64_t seed, uint64_t offset) {
  uint64_t x = (offset + 1) * 0x9E3779B97F4A7C15ull ^ (seed + 1) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<std::byte>(x);
}

inline std::vector<std::byte> SeededBytes(uint64_t seed, uint64_t offset, size_t length) {
  std::vector<std::byte> out(length);
  for (size_t i = 0; i < length; ++i) out[i] = SeededByte(seed, offset + i);
  return out;
}

inline std::vector<std::byte> ToBytes(std::string_view text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

// Index of the first difference, or nullopt when equal.
inline std::optional<size_t> FirstDifference(std::span<const std::byte> a,
                                             std::span<const std::byte> b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return i;
  }
  if (a.size() != b.size()) return n;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Process crashes.

// Runs `body` in a forked child that then ends with _exit, running no
// destructor: a process crash at the end of `body`. The kernel keeps what the
// child wrote (unlike a power loss), and releases its locks. `body` returns
// false to report a failure of its own. True when the child ran it through.
inline bool RunInChildThatCrashes(const std::function<bool()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return false;
  }
  if (pid == 0) ::_exit(body() ? 0 : 1);
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) {
    ADD_FAILURE() << "waitpid: " << std::strerror(errno);
    return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// ---------------------------------------------------------------------------
// Temporary directories.

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/hpfile_test.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(std::string_view name) const { return path_ + "/" + std::string(name); }
  std::string operator/(std::string_view name) const { return Sub(name); }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------
// Io wrappers.

// Passes every call on to `base`. A subclass overrides the calls it changes,
// or Admit() to fail every call but Close before it reaches `base`; an
// override of a call replaces it whole, Admit() included.
class ForwardingIo : public Io {
 public:
  explicit ForwardingIo(Io& base = PosixIo::Default()) : base_(base) {}

  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    return Forward([&] { return base_.Open(path, flags, mode); });
  }
  void Close(int fd) override { base_.Close(fd); }
  Result<size_t> Pread(int fd, std::span<std::byte> buf, uint64_t offset) override {
    return Forward([&] { return base_.Pread(fd, buf, offset); });
  }
  Result<size_t> Pwrite(int fd, std::span<const std::byte> buf, uint64_t offset) override {
    return Forward([&] { return base_.Pwrite(fd, buf, offset); });
  }
  Result<void> Fdatasync(int fd) override {
    return Forward([&] { return base_.Fdatasync(fd); });
  }
  Result<void> Fsync(int fd) override {
    return Forward([&] { return base_.Fsync(fd); });
  }
  Result<void> Syncfs(int fd) override {
    return Forward([&] { return base_.Syncfs(fd); });
  }
  Result<void> Ftruncate(int fd, uint64_t length) override {
    return Forward([&] { return base_.Ftruncate(fd, length); });
  }
  Result<void> Fallocate(int fd, int mode, uint64_t offset, uint64_t length) override {
    return Forward([&] { return base_.Fallocate(fd, mode, offset, length); });
  }
  Result<struct stat> Fstat(int fd) override {
    return Forward([&] { return base_.Fstat(fd); });
  }
  Result<struct stat> Stat(const std::string& path) override {
    return Forward([&] { return base_.Stat(path); });
  }
  Result<void> Unlink(const std::string& path) override {
    return Forward([&] { return base_.Unlink(path); });
  }
  Result<void> Rename(const std::string& from, const std::string& to) override {
    return Forward([&] { return base_.Rename(from, to); });
  }
  Result<void> Mkdir(const std::string& path, mode_t mode) override {
    return Forward([&] { return base_.Mkdir(path, mode); });
  }
  Result<void> Rmdir(const std::string& path) override {
    return Forward([&] { return base_.Rmdir(path); });
  }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return Forward([&] { return base_.ListDir(path); });
  }
  Result<void> TryLockExclusive(int fd) override {
    return Forward([&] { return base_.TryLockExclusive(fd); });
  }

 protected:
  // Runs before every forwarded call; an error is returned in its place.
  virtual Result<void> Admit() { return {}; }

 private:
  template <typename Call>
  auto Forward(Call call) -> decltype(call()) {
    if (auto admitted = Admit(); !admitted) return std::unexpected(admitted.error());
    return call();
  }

  Io& base_;
};

// Forwards to another Io until told to die: after a given number of further
// calls every call fails with EIO, as if the process were gone at that point
// and nothing it did afterwards reached the disk. Close still closes.
class DyingIo final : public ForwardingIo {
 public:
  explicit DyingIo(Io& base) : ForwardingIo(base) {}
  void DieAfter(uint64_t calls) {
    dying_ = true;
    remaining_ = calls;
  }
  void Revive() { dying_ = false; }

 protected:
  // Counts the call when dying; EIO once the countdown has run out.
  Result<void> Admit() override {
    if (!dying_) return {};
    if (remaining_ == 0) return Errno(EIO);
    --remaining_;
    return {};
  }

 private:
  bool dying_ = false;
  uint64_t remaining_ = 0;
};

// Reports fsync and fdatasync done without flushing anything. FaultIo
// simulates what a sync makes durable by itself, so skipping the disk flush
// underneath keeps tests that sync thousands of times fast. A closed
// descriptor still fails, as it would in the real call.
class NoFlushIo final : public ForwardingIo {
 public:
  Result<void> Fdatasync(int fd) override { return Valid(fd); }
  Result<void> Fsync(int fd) override { return Valid(fd); }
  Result<void> Syncfs(int fd) override { return Valid(fd); }

 private:
  static Result<void> Valid(int fd) {
    if (::fcntl(fd, F_GETFD) < 0) return LastErrno();
    return {};
  }
};

// ---------------------------------------------------------------------------
// Plain POSIX access to backing files, independent of the library under test.

inline std::string SegmentFileName(uint64_t base, uint64_t capacity) {
  char name[64];
  std::snprintf(name, sizeof name, "%020" PRIu64 "-%" PRIu64 ".seg", base, capacity);
  return name;
}

inline std::vector<std::string> ListDirSorted(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Names ending in ".seg", sorted (20-digit bases sort by offset).
inline std::vector<std::string> SegmentFilesOnDisk(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& name : ListDirSorted(dir)) {
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, ".seg") == 0) out.push_back(name);
  }
  return out;
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// -1 when the file does not exist.
inline int64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return st.st_size;
}

// 512-byte blocks allocated to the file, -1 when it does not exist.
inline int64_t FileBlocks(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return st.st_blocks;
}

inline std::vector<std::byte> ReadFileBytes(const std::string& path) {
  std::vector<std::byte> out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return out;
  }
  std::byte chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ADD_FAILURE() << "read " << path << ": " << std::strerror(errno);
      break;
    }
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  ::close(fd);
  return out;
}

inline std::string ReadFileText(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

inline void WriteFileBytes(const std::string& path, std::span<const std::byte> data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ADD_FAILURE() << "write " << path << ": " << std::strerror(errno);
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

inline void WriteFileText(const std::string& path, std::string_view text) {
  WriteFileBytes(path, std::as_bytes(std::span(text.data(), text.size())));
}

// Every file in `dir` with its bytes, to show that something left them alone.
inline std::map<std::string, std::vector<std::byte>> SnapshotDir(const std::string& dir) {
  std::map<std::string, std::vector<std::byte>> out;
  for (auto& name : ListDirSorted(dir)) out[name] = ReadFileBytes(dir + "/" + name);
  return out;
}

inline void ExpectSameSnapshot(const std::map<std::string, std::vector<std::byte>>& before,
                               const std::map<std::string, std::vector<std::byte>>& after) {
  for (auto& [name, bytes] : before) {
    auto it = after.find(name);
    if (it == after.end()) {
      ADD_FAILURE() << name << " was removed";
      continue;
    }
    EXPECT_TRUE(it->second == bytes) << name << " changed: " << bytes.size() << " bytes before, "
                                     << it->second.size() << " after";
  }
  for (auto& [name, bytes] : after) {
    if (!before.contains(name)) ADD_FAILURE() << name << " appeared";
  }
}

// Whether the filesystem holding `dir` releases blocks for FALLOC_FL_PUNCH_HOLE.
inline bool PunchHoleReleasesBlocks(const std::string& dir) {
  std::string probe = dir + "/punch-probe";
  int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::vector<char> data(1 << 20, 'x');
  bool ok = ::pwrite(fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd) == 0;
  struct stat before, after;
  ok = ok && ::fstat(fd, &before) == 0 &&
       ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, data.size()) == 0 &&
       ::fstat(fd, &after) == 0 && after.st_blocks < before.st_blocks;
  ::close(fd);
  ::unlink(probe.c_str());
  return ok;
}

// Descriptors open in this process right now.
inline size_t CountOpenFds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  // The listing includes the descriptor opendir used for it.
  return n - 1;
}

// ---------------------------------------------------------------------------
// HPFile helpers.

inline Options OptionsWithSegmentSize(uint64_t segment_size, size_t write_buffer_size = 0) {
  Options options;
  options.initial_meta.segment_size = segment_size;
  options.write_buffer_size = write_buffer_size;
  return options;
}

// Reads [offset, offset + length) with ReadAt; the vector is cut to the count.
inline Result<std::vector<std::byte>> ReadRange(const HPFile& file, uint64_t offset, size_t length) {
  std::vector<std::byte> out(length);
  auto n = file.ReadAt(offset, out);
  if (!n) return std::unexpected(n.error());
  out.resize(*n);
  return out;
}

// Checks what every healthy HPFile keeps, in memory and on disk: segments in
// base order, each ending where the next begins, sealed ones full, the tail
// ending at Size(), the first starting at or below Head(), and the backing
// directory holding exactly these segment files with these lengths.
inline void ExpectWellFormed(const HPFile& file) {
  SCOPED_TRACE("ExpectWellFormed(" + file.dir() + ")");
  EXPECT_FALSE(file.Damage().has_value()) << *file.Damage();
  EXPECT_LE(file.Head(), file.Size());
  auto segments = file.Segments();
  std::vector<std::string> names;
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentInfo& s = segments[i];
    names.push_back(s.file_name);
    EXPECT_EQ(s.file_name, SegmentFileName(s.base, s.capacity)) << "segment " << i;
    EXPECT_GT(s.capacity, 0u) << s.file_name;
    EXPECT_LE(s.length, s.capacity) << s.file_name;
    if (i + 1 < segments.size()) {
      EXPECT_EQ(s.base + s.capacity, segments[i + 1].base) << s.file_name << " is not contiguous";
      EXPECT_EQ(s.length, s.capacity) << "sealed segment " << s.file_name << " is not full";
    } else {
      EXPECT_EQ(s.base + s.length, file.Size()) << "tail " << s.file_name << " does not end at Size()";
    }
    // The segment's length on disk: the write buffer may hold the tail's last
    // bytes, so the file may be shorter than the length, never longer.
    int64_t on_disk = FileSize(file.dir() + "/" + s.file_name);
    EXPECT_GE(on_disk, 0) << s.file_name << " is missing on disk";
    EXPECT_LE(static_cast<uint64_t>(on_disk), s.length) << s.file_name;
  }
  if (!segments.empty()) {
    EXPECT_LE(segments.front().base, file.Head());
    // Nothing wholly below the head is kept (an empty tail at the head is fine).
    EXPECT_TRUE(segments.front().base + segments.front().capacity > file.Head() ||
                (segments.size() == 1 && segments.front().length == 0 &&
                 segments.front().base + segments.front().length == file.Head()))
        << segments.front().file_name << " lies wholly below head " << file.Head();
  } else {
    EXPECT_EQ(file.Head(), file.Size()) << "a file without segments must be empty";
  }
  // Besides the map's segments, the disk holds only those a prune left for
  // DeletePrunedSegments, each wholly below the head.
  std::sort(names.begin(), names.end());
  std::vector<std::string> live_on_disk;
  uint64_t pruned = 0;
  for (const std::string& name : SegmentFilesOnDisk(file.dir())) {
    if (std::binary_search(names.begin(), names.end(), name)) {
      live_on_disk.push_back(name);
      continue;
    }
    auto parsed = ParseSegmentName(name);
    EXPECT_TRUE(parsed.has_value()) << name;
    if (!parsed) continue;
    EXPECT_LE(parsed->base + parsed->capacity, file.Head()) << name << " is on disk but not in the map";
    ++pruned;
  }
  EXPECT_EQ(live_on_disk, names);
  EXPECT_EQ(pruned, file.PrunedSegments().segments) << "segment files below the head not awaiting deletion";
}

// Deletes every segment file the prunes left: what a file's deleter does.
inline void DeleteAllPruned(HPFile& file) {
  auto left = file.DeletePrunedSegments(std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(left.has_value()) << left.error().message();
  EXPECT_EQ(*left, 0u);
}

}  // namespace hpfile::testing
