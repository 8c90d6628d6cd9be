// SPDX-License-Identifier: Apache-2.0
// Filesystem: open directories, their listing and fsync.
#include "fs/filesystem.h"

#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include <spdlog/spdlog.h>

#include "fs/backing_dir.h"

namespace hpfs {
namespace {

using hpfile::Errno;
using hpfile::LastErrno;

}  // namespace

Result<std::unique_ptr<DirHandle>> Filesystem::OpenDir(InodeId id) {
  auto inode = GetDirectory(id);
  if (!inode) return std::unexpected(inode.error());
  auto handle = std::make_unique<DirHandle>();
  handle->inode = *inode;
  if (auto r = RefreshDir(*handle); !r) return std::unexpected(r.error());
  return handle;
}

Result<void> Filesystem::RefreshDir(DirHandle& handle) {
  const Inode& dir_inode = *handle.inode;
  auto dir_fd = Descriptor(dir_inode);
  if (!dir_fd) return std::unexpected(dir_fd.error());
  const int fd = (*dir_fd)->get();
  auto listed = ListEntries(fd);
  if (!listed) return std::unexpected(listed.error());
  std::vector<DirEntry> entries;
  entries.push_back(DirEntry{".", dir_inode.backing_ino, DT_DIR});
  struct stat parent_st;
  entries.push_back(DirEntry{"..", ::fstatat(fd, "..", &parent_st, 0) == 0 ? parent_st.st_ino : 0, DT_DIR});
  std::vector<std::string> plain_files;
  for (auto& listed_entry : *listed) {
    const std::string_view name = listed_entry.name;
    if (Hidden(dir_inode, name)) continue;
    auto type = EntryType(fd, listed_entry);
    if (type && *type == DT_DIR) {
      auto is_file = IsHPFileDir(fd, name);
      if (!is_file) type = std::unexpected(is_file.error());
      else if (*is_file) type = static_cast<unsigned char>(DT_REG);
    } else if (type && *type != DT_LNK) {
      // Plain backing files, fifos...: not part of the format.
      if (*type == DT_REG) plain_files.emplace_back(name);
      continue;
    }
    if (!type) {
      // Gone since the listing: as if listed a moment later.
      if (hpfile::IsErrno(type.error(), ENOENT)) continue;
      // One entry the daemon cannot classify must not hide its siblings.
      spdlog::warn("{}/{}: left out of the listing: {}", DisplayName(dir_inode), name, type.error().message());
      continue;
    }
    entries.push_back(DirEntry{std::move(listed_entry.name), listed_entry.ino, *type});
  }
  if (!plain_files.empty()) {
    struct stat dir_st;
    if (::fstat(fd, &dir_st) == 0) {
      WarnOfPlainFiles(dir_st, dir_inode.id == kRootInode ? "" : DisplayName(dir_inode), plain_files);
    }
  }
  handle.entries = std::move(entries);
  handle.listed_once = false;
  return {};
}

Result<std::vector<InodeId>> Filesystem::ReadDir(DirHandle& handle, off_t offset, bool plus, const DirSink& add) {
  if (offset == 0 && handle.listed_once) {
    if (auto r = RefreshDir(handle); !r) return std::unexpected(r.error());
  }
  handle.listed_once = true;
  std::vector<InodeId> handed_out;
  for (size_t i = offset < 0 ? 0 : static_cast<size_t>(offset); i < handle.entries.size(); ++i) {
    const DirEntry& de = handle.entries[i];
    const off_t next = static_cast<off_t>(i + 1);
    std::optional<Entry> entry;
    if (plus && de.name != "." && de.name != "..") {
      // A failed lookup (EMFILE at the descriptor limit, or removed since
      // the listing) keeps the name listed: a later stat reports the error
      // instead of the name silently missing from `ls -l`.
      if (auto looked_up = Lookup(handle.inode->id, de.name)) entry = *looked_up;
    }
    if (!add(de, entry ? &*entry : nullptr, next)) {
      if (entry) Forget(entry->id, 1);
      break;
    }
    if (entry) handed_out.push_back(entry->id);
  }
  return handed_out;
}

Result<void> Filesystem::FsyncDir(InodeId id) {
  auto inode = GetDirectory(id);
  if (!inode) return std::unexpected(inode.error());
  // A create not yet durable may be in this directory (or be renamed into
  // it): its meta must be durable before its name, which one syncfs does.
  const bool creates_pending = creates_.load() > creates_durable_.load();
  if (creates_pending) {
    if (auto named = MakeCreatesDurable(creates_.load()); !named) return named;
  }
  auto fd = Descriptor(**inode);
  if (!fd) return std::unexpected(fd.error());
  // A directory on a filesystem mounted inside BACKING: the syncfs above
  // did not reach it.
  if (creates_pending && (*inode)->backing_dev != root_dev_) return CheckRc(::syncfs((*fd)->get()));
  return CheckRc(::fsync((*fd)->get()));
}
}  // namespace hpfs
