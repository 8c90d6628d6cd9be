// SPDX-License-Identifier: Apache-2.0
#include "fs/mount_point.h"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace hpfs {
namespace {

// An hpfs mount's backing directory may itself be on an hpfs mount; a chain
// longer than this is not followed further.
constexpr int kMaxHpfsNesting = 16;

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view digits = field.substr(i + 1, 3);
      if (digits.find_first_not_of("01234567") == std::string_view::npos) {
        out.push_back(static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Whether `path` is `dir` or below it, comparing whole components.
bool PathAtOrBelow(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path == dir || (path.starts_with(dir) && path[dir.size()] == '/');
}

std::optional<std::string> RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return std::nullopt;
  return std::string(resolved);
}

// Whether the real path `path` is the directory `dir` or below it: some
// directory on the way from `path` up to / is `dir` itself (the same device
// and inode, so a bind mount of `dir` elsewhere counts too).
bool AtOrBelowDirectory(const std::string& path, const struct stat& dir) {
  for (std::string p = path;;) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && st.st_dev == dir.st_dev && st.st_ino == dir.st_ino) return true;
    if (p == "/") return false;
    const size_t slash = p.rfind('/');
    p = slash == 0 ? "/" : p.substr(0, slash);
  }
}

std::vector<MountEntry> ReadMountInfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return ParseMountInfo(text.str());
}

}  // namespace

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountEntry> mounts;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> words;
    for (std::string w; fields >> w;) words.push_back(w);
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    size_t dash = 6;
    while (dash < words.size() && words[dash] != "-") ++dash;
    if (words.size() < 5 || dash + 2 >= words.size()) continue;
    mounts.push_back(MountEntry{Unescape(words[3]), Unescape(words[4]), Unescape(words[dash + 1]),
                                Unescape(words[dash + 2])});
  }
  return mounts;
}

std::optional<std::string> HpfsStoragePath(const std::string& path, const std::vector<MountEntry>& mounts) {
  const MountEntry* holder = nullptr;
  for (const auto& m : mounts) {
    if (!PathAtOrBelow(path, m.mount_point)) continue;
    if (holder == nullptr || m.mount_point.size() >= holder->mount_point.size()) holder = &m;
  }
  if (holder == nullptr || holder->fstype != "fuse.hpfs") return std::nullopt;
  std::string rest = holder->mount_point == "/" ? path : path.substr(holder->mount_point.size());
  std::string stored = holder->source;
  if (holder->root != "/") stored += holder->root;
  stored += rest;
  return stored;
}

std::optional<std::string> MountPointProblem(const std::string& backing, const std::string& mountpoint) {
  const auto mount = RealPath(mountpoint);
  if (!mount) return std::nullopt;
  struct stat mount_st, backing_st;
  if (::stat(mount->c_str(), &mount_st) != 0 || ::stat(backing.c_str(), &backing_st) != 0) return std::nullopt;
  if (mount_st.st_dev == backing_st.st_dev && mount_st.st_ino == backing_st.st_ino) {
    return "mount point " + *mount + " is the backing directory itself; mount it on another directory";
  }
  if (AtOrBelowDirectory(backing, mount_st)) {
    return "backing directory " + backing + " is inside the mount point " + *mount +
           ": the mount would hide it; choose a mount point outside it";
  }
  // Where the daemon's touches of BACKING end up: BACKING itself, and, when
  // it is on an hpfs mount, that mount's backing directory, and so on.
  const auto mounts = ReadMountInfo();
  std::string stored = backing;
  for (int depth = 0; depth <= kMaxHpfsNesting; ++depth) {
    struct stat st;
    if (::stat(stored.c_str(), &st) == 0 && AtOrBelowDirectory(*mount, st)) {
      std::string where = "inside the backing directory " + backing;
      if (stored != backing) where += " (stored in " + stored + " by the hpfs mount it is on)";
      return "mount point " + *mount + " is " + where +
             ": serving it would make hpfs wait for itself; choose a mount point outside it";
    }
    auto next = HpfsStoragePath(stored, mounts);
    if (!next) break;
    stored = *next;
  }
  return std::nullopt;
}

}  // namespace hpfs
