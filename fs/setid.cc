// SPDX-License-Identifier: Apache-2.0
#include "fs/setid.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace hpfs {
namespace {

constexpr int kCapFsetid = 4;  // linux/capability.h
// The inode of the initial user namespace's nsfs entry (PROC_USER_INIT_INO in
// linux/proc_ns.h): capable() asks about that namespace, so a capability held
// only inside a container does not count, as for the kernel.
constexpr ino_t kInitialUserNamespaceInode = 0xEFFFFFFDU;

// The text after "Key:" on the line that starts with it.
std::optional<std::string_view> Field(std::string_view status, std::string_view key) {
  for (size_t begin = 0; begin < status.size();) {
    size_t end = status.find('\n', begin);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(begin, end - begin);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') {
      return line.substr(key.size() + 1);
    }
    begin = end + 1;
  }
  return std::nullopt;
}

// Whitespace-separated numbers in `base`.
std::optional<std::vector<unsigned long long>> Numbers(std::string_view text, int base) {
  std::vector<unsigned long long> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i == text.size()) break;
    unsigned long long value = 0;
    const auto [next, ec] = std::from_chars(text.data() + i, text.data() + text.size(), value, base);
    if (ec != std::errc() || (next != text.data() + text.size() && *next != ' ' && *next != '\t')) {
      return std::nullopt;
    }
    out.push_back(value);
    i = static_cast<size_t>(next - text.data());
  }
  return out;
}

bool InInitialUserNamespace(pid_t tid) {
  struct stat st;
  const std::string path = "/proc/" + std::to_string(tid) + "/ns/user";
  return ::stat(path.c_str(), &st) == 0 && st.st_ino == kInitialUserNamespaceInode;
}

}  // namespace

mode_t ModeAfterWrite(mode_t mode, gid_t file_gid, const WriterCredentials& writer) {
  if ((mode & (S_ISUID | S_ISGID)) == 0 || writer.has_fsetid) return mode;
  mode &= ~S_ISUID;
  if (mode & S_ISGID) {
    const bool in_group = writer.fsgid == file_gid ||
                          std::find(writer.groups.begin(), writer.groups.end(), file_gid) != writer.groups.end();
    if ((mode & S_IXGRP) || !in_group) mode &= ~S_ISGID;
  }
  return mode;
}

std::optional<WriterCredentials> ParseProcStatus(std::string_view status) {
  const auto cap_eff = Field(status, "CapEff");
  const auto gid = Field(status, "Gid");
  const auto groups = Field(status, "Groups");
  if (!cap_eff || !gid || !groups) return std::nullopt;
  const auto caps = Numbers(*cap_eff, 16);
  // Real, effective, saved and filesystem gid: permission checks use the last.
  const auto gids = Numbers(*gid, 10);
  const auto supplementary = Numbers(*groups, 10);
  if (!caps || caps->size() != 1 || !gids || gids->size() != 4 || !supplementary) return std::nullopt;
  WriterCredentials out;
  out.has_fsetid = ((*caps)[0] >> kCapFsetid) & 1;
  out.fsgid = static_cast<gid_t>((*gids)[3]);
  for (auto g : *supplementary) out.groups.push_back(static_cast<gid_t>(g));
  return out;
}

WriterCredentials CredentialsOfThread(pid_t tid) {
  if (tid <= 0) return {};
  std::ifstream in("/proc/" + std::to_string(tid) + "/status");
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  auto credentials = ParseProcStatus(text.str());
  if (!credentials) return {};
  credentials->has_fsetid = credentials->has_fsetid && InInitialUserNamespace(tid);
  return *credentials;
}

}  // namespace hpfs
