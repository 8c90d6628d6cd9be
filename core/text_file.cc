// SPDX-License-Identifier: Apache-2.0
#include "core/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <memory>
#include <span>

namespace hpfile {
namespace {

template <class T>
std::optional<T> ParseWhole(std::string_view text, int base) {
  if (text.empty()) return std::nullopt;
  T value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Closes a DIR* on every path out.
struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

// What the visiting listing `list` passes, collected.
Result<std::vector<DirEntry>> Collect(const std::function<Result<void>(const DirEntryVisitor&)>& list) {
  std::vector<DirEntry> entries;
  auto listed = list([&](const DirEntry& entry) {
    entries.push_back(entry);
    return true;
  });
  if (!listed) return std::unexpected(listed.error());
  return entries;
}

}  // namespace

std::optional<uint64_t> ParseUnsigned(std::string_view text, int base) { return ParseWhole<uint64_t>(text, base); }

std::optional<uint32_t> ParseUnsigned32(std::string_view text, int base) { return ParseWhole<uint32_t>(text, base); }

std::optional<KeyValue> SplitKeyValue(std::string_view text) {
  const size_t equals = text.find('=');
  if (equals == std::string_view::npos) return std::nullopt;
  return KeyValue{.key = text.substr(0, equals), .value = text.substr(equals + 1)};
}

std::vector<KeyValueLine> SplitKeyValueLines(std::string_view text) {
  std::vector<KeyValueLine> lines;
  size_t number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++number;
    if (line.empty()) continue;
    KeyValueLine parsed{.number = number, .text = line};
    if (auto pair = SplitKeyValue(line)) {
      parsed.key = pair->key;
      parsed.value = pair->value;
    }
    lines.push_back(parsed);
  }
  return lines;
}

std::expected<std::vector<KeyValueLine>, KeyValueLine> ParseKeyValueLines(std::string_view text) {
  std::vector<KeyValueLine> lines = SplitKeyValueLines(text);
  for (const KeyValueLine& line : lines) {
    if (!line.well_formed()) return std::unexpected(line);
  }
  return lines;
}

void AppendKeyValue(std::string& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.push_back('=');
  out.append(value);
  out.push_back('\n');
}

Result<std::string> ReadSmallFile(Io& io, const std::string& path, size_t max_bytes) {
  auto fd = Fd::Open(io, path, O_RDONLY);
  if (!fd) return std::unexpected(fd.error());
  std::string text;
  char chunk[4096];
  for (uint64_t offset = 0;;) {
    auto n = io.Pread(fd->get(), std::as_writable_bytes(std::span(chunk)), offset);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return text;
    text.append(chunk, *n);
    offset += *n;
    if (text.size() > max_bytes) return Errno(EFBIG);
  }
}

Result<void> ReplaceFileAtomically(Io& io, const std::string& dir, std::string_view name, std::string_view temp_name,
                                   std::string_view text, bool* renamed, Durability durability) {
  const bool sync = durability == Durability::kSynced;
  if (renamed != nullptr) *renamed = false;
  const std::string temp = dir + "/" + std::string(temp_name);
  {
    auto fd = Fd::Open(io, temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd) return std::unexpected(fd.error());
    Result<void> written = WriteFull(io, fd->get(), std::as_bytes(std::span(text.data(), text.size())), 0);
    if (written && sync) written = io.Fsync(fd->get());
    if (written && !sync) io.StartWriteback(fd->get());
    if (!written) {
      fd->Reset();
      (void)io.Unlink(temp);  // best effort, see the header
      return written;
    }
  }
  if (auto moved = io.Rename(temp, dir + "/" + std::string(name)); !moved) {
    (void)io.Unlink(temp);
    return moved;
  }
  if (renamed != nullptr) *renamed = true;
  if (!sync) return {};
  return SyncDir(io, dir);
}

Result<bool> EnsureDirectory(Io& io, const std::string& dir, bool create) {
  auto st = io.Stat(dir);
  if (st) return S_ISDIR(st->st_mode) ? Result<bool>(false) : Errno(ENOTDIR);
  if (!IsErrno(st.error(), ENOENT)) return std::unexpected(st.error());
  if (!create) return Errno(ENOENT);
  if (auto made = io.Mkdir(dir, 0755); !made && !IsErrno(made.error(), EEXIST)) return std::unexpected(made.error());
  return true;
}

Result<void> VisitDirEntries(DIR* dir, const DirEntryVisitor& visit, ReadDirFunction read_dir) {
  for (;;) {
    // readdir returns null both at the end and on failure; only errno tells
    // them apart, so it is cleared before every call.
    errno = 0;
    const dirent* entry = read_dir(dir);
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (!visit(DirEntry{std::string(name), entry->d_ino, entry->d_type})) return {};
  }
  if (errno != 0) return LastErrno();
  return {};
}

Result<std::vector<DirEntry>> ReadDirEntries(DIR* dir, ReadDirFunction read_dir) {
  return Collect([&](const DirEntryVisitor& visit) { return VisitDirEntries(dir, visit, read_dir); });
}

Result<void> VisitDirectory(int dir_fd, const DirEntryVisitor& visit) {
  const int own_fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (own_fd < 0) return LastErrno();
  DirHandle dir(::fdopendir(own_fd));
  if (!dir) {
    const int err = errno;
    ::close(own_fd);
    return Errno(err);
  }
  return VisitDirEntries(dir.get(), visit);
}

Result<std::vector<DirEntry>> ListDirectory(int dir_fd) {
  return Collect([&](const DirEntryVisitor& visit) { return VisitDirectory(dir_fd, visit); });
}

Result<void> RemoveTreeAt(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return LastErrno();
  }
  if (S_ISDIR(st.st_mode)) {
    const int sub_fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub_fd < 0) return errno == ENOENT ? Result<void>{} : LastErrno();
    Fd sub(PosixIo::Default(), sub_fd);
    auto entries = ListDirectory(sub.get());
    if (!entries) return std::unexpected(entries.error());
    for (const DirEntry& entry : *entries) {
      if (auto removed = RemoveTreeAt(sub.get(), entry.name); !removed) return removed;
    }
  }
  if (::unlinkat(dir_fd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
    return LastErrno();
  }
  return {};
}

Result<void> RemoveTree(Io& io, const std::string& path) {
  auto names = io.ListDir(path);
  if (!names) return IsErrno(names.error(), ENOENT) ? Result<void>{} : std::unexpected(names.error());
  for (const std::string& name : *names) {
    const std::string child = path + "/" + name;
    auto st = io.Stat(child);
    if (!st) {
      if (IsErrno(st.error(), ENOENT)) continue;
      return std::unexpected(st.error());
    }
    auto removed = S_ISDIR(st->st_mode) ? RemoveTree(io, child) : io.Unlink(child);
    if (!removed && !IsErrno(removed.error(), ENOENT)) return removed;
  }
  if (auto gone = io.Rmdir(path); !gone && !IsErrno(gone.error(), ENOENT)) return gone;
  return {};
}

}  // namespace hpfile
