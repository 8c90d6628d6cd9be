// SPDX-License-Identifier: Apache-2.0
// Filesystem: the per-file settings and statistics served through the
// HPFS_IOC_* ioctls and the user.hpfs.* extended attributes.
#include "fs/filesystem.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <optional>

#include "core/meta.h"
#include "fs/settings.h"

namespace hpfs {
namespace {

using hpfile::Errno;

constexpr std::string_view kXattrPrefix = "user.hpfs.";

}  // namespace

Result<hpfs_stat> Filesystem::IoctlStat(FileHandle& handle) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  hpfs_stat out{};
  const hpfile::Meta meta = file->GetMeta();
  out.head = file->Head();
  out.size = file->Size();
  out.durable_size = file->DurableSize();
  out.segments = file->Segments().size();
  const hpfile::HPFile::PrunedBacklog pruned = file->PrunedSegments();
  out.pruned_segments = pruned.segments;
  out.pruned_bytes = pruned.bytes;
  out.segment_size = meta.segment_size;
  out.retain_bytes = meta.retain_bytes.value_or(0);
  out.retain_seconds = meta.retain_seconds.value_or(0);
  out.local_retain_bytes = meta.local_retain_bytes.value_or(0);
  out.local_retain_seconds = meta.local_retain_seconds.value_or(0);
  out.local_bytes = out.size - out.head;
  out.local_segments = out.segments;
  if (auto tiered = handle.inode->Tiered()) {
    const hpfile::TierStats stats = tiered->Stats();
    out.flags |= HPFS_STAT_TIERED;
    out.head = tiered->Head();
    out.local_bytes = stats.local_bytes;
    out.local_segments = stats.local_segments;
    out.remote_bytes = stats.remote_bytes;
    out.remote_segments = stats.remote_segments;
    out.deleting_objects = stats.deleting;
    out.segments = stats.local_segments + stats.remote_segments;
  }
  if (config_.writeback) {
    out.flags |= HPFS_STAT_WRITEBACK;
    std::lock_guard lock(handle.inode->write_mu);
    if (handle.inode->writeback_queue) {
      const WritebackQueue& queue = handle.inode->writeback();
      out.held_bytes = static_cast<uint32_t>(std::min<uint64_t>(queue.held_bytes, UINT32_MAX));
      out.spooled_bytes = queue.spool.live_bytes();
      out.spool_overflows = queue.spool_overflows;
    }
  }
  if (const auto& damage = file->Damage()) {
    out.flags |= HPFS_STAT_DAMAGED;
    const size_t n = std::min(damage->size(), sizeof(out.damage) - 1);
    std::memcpy(out.damage, damage->data(), n);
  }
  return out;
}

Result<void> Filesystem::ApplySet(const Inode& inode, hpfile::HPFile& file, const hpfs_set& request) {
  if (!ValidRequest(request)) return Errno(EINVAL);
  constexpr uint32_t kMetaSettings = HPFS_SET_RETAIN_BYTES | HPFS_SET_RETAIN_SECONDS |
                                     HPFS_SET_LOCAL_RETAIN_BYTES | HPFS_SET_LOCAL_RETAIN_SECONDS;
  if (request.mask & kMetaSettings) {
    auto r = file.UpdateMeta([&](hpfile::Meta& meta) {
      auto value = [](uint64_t v) { return v == 0 ? std::nullopt : std::optional<uint64_t>(v); };
      if (request.mask & HPFS_SET_RETAIN_BYTES) meta.retain_bytes = value(request.retain_bytes);
      if (request.mask & HPFS_SET_RETAIN_SECONDS) meta.retain_seconds = value(request.retain_seconds);
      if (request.mask & HPFS_SET_LOCAL_RETAIN_BYTES) meta.local_retain_bytes = value(request.local_retain_bytes);
      if (request.mask & HPFS_SET_LOCAL_RETAIN_SECONDS) {
        meta.local_retain_seconds = value(request.local_retain_seconds);
      }
    });
    if (!r) return r;
  }
  if (request.mask & HPFS_SET_SEGMENT_SIZE) {
    if (auto r = file.SetSegmentSize(request.segment_size); !r) return r;
  }
  (void)inode;
  return {};
}


Result<void> Filesystem::IoctlSet(FileHandle& handle, const hpfs_set& request) {
  auto file = handle.inode->File();
  if (!file) return Errno(EIO);
  if (!handle.writable()) return Errno(EBADF);
  return ApplySet(*handle.inode, *file, request);
}


namespace {

// The figures served as read-only user.hpfs.* attributes; the settings
// (fs/settings.h) are served between segments and damage.
enum class Figure { kHead, kSize, kDurableSize, kSegments, kDamage };

struct FigureName {
  std::string_view name;
  Figure figure;
};

constexpr FigureName kFiguresBefore[] = {
    {"head", Figure::kHead},
    {"size", Figure::kSize},
    {"durable_size", Figure::kDurableSize},
    {"segments", Figure::kSegments},
};
constexpr FigureName kDamage = {"damage", Figure::kDamage};

// The part of an attribute name after user.hpfs., or nullopt for other names.
std::optional<std::string_view> HpfsKey(std::string_view name) {
  if (!name.starts_with(kXattrPrefix)) return std::nullopt;
  name.remove_prefix(kXattrPrefix.size());
  return name;
}

const FigureName* FindFigure(std::string_view key) {
  for (const auto& f : kFiguresBefore) {
    if (f.name == key) return &f;
  }
  return key == kDamage.name ? &kDamage : nullptr;
}

uint64_t MetaValue(const hpfile::Meta& meta, const Setting& setting) {
  switch (setting.mask) {
    case HPFS_SET_SEGMENT_SIZE:
      return meta.segment_size;
    case HPFS_SET_RETAIN_BYTES:
      return meta.retain_bytes.value_or(0);
    case HPFS_SET_LOCAL_RETAIN_BYTES:
      return meta.local_retain_bytes.value_or(0);
    case HPFS_SET_LOCAL_RETAIN_SECONDS:
      return meta.local_retain_seconds.value_or(0);
    default:
      return meta.retain_seconds.value_or(0);
  }
}

struct SettingTarget {
  std::shared_ptr<hpfile::HPFile> file;
  const Setting* setting;
};

// The file and the setting that changing the attribute `name` of `inode`
// changes: `unknown` for names that are not hpfs's (or a file without its
// HPFile), EPERM for the read-only figures.
Result<SettingTarget> SettingTargetOf(std::shared_ptr<hpfile::HPFile> file, std::string_view name, int unknown) {
  const auto key = HpfsKey(name);
  if (!key || !file) return Errno(unknown);
  const Setting* setting = FindSetting(*key);
  if (setting == nullptr) return Errno(FindFigure(*key) != nullptr ? EPERM : unknown);
  return SettingTarget{std::move(file), setting};
}

}  // namespace

Result<std::string> Filesystem::GetXattr(InodeId id, std::string_view name) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  const auto key = HpfsKey(name);
  auto opened = FileOf(**inode);
  auto file = opened ? *opened : nullptr;
  if (!key || !file) return Errno(ENODATA);
  if (const Setting* setting = FindSetting(*key)) return std::to_string(MetaValue(file->GetMeta(), *setting));
  const FigureName* f = FindFigure(*key);
  if (f == nullptr) return Errno(ENODATA);
  switch (f->figure) {
    case Figure::kHead:
      if (auto tiered = (*inode)->Tiered()) return std::to_string(tiered->Head());
      return std::to_string(file->Head());
    case Figure::kSize:
      return std::to_string(file->Size());
    case Figure::kDurableSize:
      return std::to_string(file->DurableSize());
    case Figure::kSegments:
      return std::to_string(file->Segments().size());
    case Figure::kDamage:
      if (!file->Damage()) return Errno(ENODATA);
      return *file->Damage();
  }
  return Errno(ENODATA);
}

Result<std::vector<std::string>> Filesystem::ListXattr(InodeId id) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  std::vector<std::string> names;
  auto opened = FileOf(**inode);
  auto file = opened ? *opened : nullptr;
  if (!file) return names;
  auto add = [&names](std::string_view key) { names.push_back(std::string(kXattrPrefix) + std::string(key)); };
  for (const auto& f : kFiguresBefore) add(f.name);
  for (const Setting& setting : Settings()) add(setting.name);
  if (file->Damage()) add(kDamage.name);
  return names;
}

Result<void> Filesystem::SetXattr(InodeId id, std::string_view name, std::string_view value) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  auto opened = FileOf(**inode);
  auto target = SettingTargetOf(opened ? *opened : nullptr, name, ENOTSUP);
  if (!target) return std::unexpected(target.error());
  // Values come from setfattr and friends, sometimes with a trailing NUL/newline.
  while (!value.empty() && (value.back() == '\0' || value.back() == '\n')) value.remove_suffix(1);
  const auto parsed = ParseSetting(*target->setting, value);
  if (!parsed) return Errno(EINVAL);
  hpfs_set request{};
  request.mask = target->setting->mask;
  RequestField(request, *target->setting) = *parsed;
  return ApplySet(**inode, *target->file, request);
}

Result<void> Filesystem::RemoveXattr(InodeId id, std::string_view name) {
  auto inode = GetInode(id);
  if (!inode) return std::unexpected(inode.error());
  auto opened = FileOf(**inode);
  auto target = SettingTargetOf(opened ? *opened : nullptr, name, ENODATA);
  if (!target) return std::unexpected(target.error());
  // Removing a setting clears it; one that cannot be cleared stays.
  if (!target->setting->clearable) return Errno(EPERM);
  hpfs_set request{};
  request.mask = target->setting->mask;
  return ApplySet(**inode, *target->file, request);
}

}  // namespace hpfs
