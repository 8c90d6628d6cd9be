// SPDX-License-Identifier: Apache-2.0
#include "fs/readahead.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace hpfs {
namespace {

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
std::string Unescape(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string digits(field.substr(i + 1, 3));
      char* end = nullptr;
      const long value = std::strtol(digits.c_str(), &end, 8);
      if (end == digits.c_str() + 3) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

}  // namespace

std::optional<std::string> MountDevice(std::string_view mountinfo, std::string_view mountpoint) {
  std::optional<std::string> found;
  std::istringstream lines{std::string(mountinfo)};
  std::string line;
  while (std::getline(lines, line)) {
    // ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    if (!(fields >> id >> parent >> device >> root >> point)) continue;
    if (Unescape(point) == mountpoint) found = device;
  }
  return found;
}

namespace {

// /sys/class/bdi/MAJOR:MINOR/NAME of the mount at `mountpoint`.
hpfile::Result<std::string> MountBdiPath(const std::string& mountpoint, std::string_view name) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return hpfile::LastErrno();
  std::stringstream text;
  text << in.rdbuf();
  const auto device = MountDevice(text.str(), mountpoint);
  if (!device) return hpfile::Errno(ENOENT);
  return "/sys/class/bdi/" + *device + "/" + std::string(name);
}

hpfile::Result<void> WriteMountBdi(const std::string& mountpoint, std::string_view name, uint64_t number) {
  auto path = MountBdiPath(mountpoint, name);
  if (!path) return std::unexpected(path.error());
  const int fd = ::open(path->c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return hpfile::LastErrno();
  const std::string value = std::to_string(number) + "\n";
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int write_errno = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) return hpfile::Errno(n < 0 ? write_errno : EIO);
  return {};
}

}  // namespace

hpfile::Result<void> SetMountReadAhead(const std::string& mountpoint, unsigned kib) {
  return WriteMountBdi(mountpoint, "read_ahead_kb", kib);
}

hpfile::Result<uint64_t> CapMountDirtyBytes(const std::string& mountpoint, uint64_t bytes) {
  auto path = MountBdiPath(mountpoint, "max_bytes");
  if (!path) return std::unexpected(path.error());
  std::ifstream in(*path);
  uint64_t current = 0;
  if (!(in >> current)) return hpfile::Errno(ENOENT);
  if (current <= bytes) return current;
  if (auto set = WriteMountBdi(mountpoint, "max_bytes", bytes); !set) return std::unexpected(set.error());
  return bytes;
}

}  // namespace hpfs
