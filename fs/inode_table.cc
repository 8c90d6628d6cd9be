// SPDX-License-Identifier: Apache-2.0
#include "fs/inode_table.h"

namespace hpfs {

std::shared_ptr<Inode> InodeTable::Get(InodeId id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::shared_ptr<Inode> InodeTable::FindByBacking(dev_t dev, ino_t ino) const {
  std::lock_guard lock(mu_);
  auto it = by_backing_.find(BackingKey{dev, ino});
  if (it == by_backing_.end()) return nullptr;
  return by_id_.at(it->second);
}

std::shared_ptr<Inode> InodeTable::AcquireByBacking(dev_t dev, ino_t ino) {
  std::lock_guard lock(mu_);
  auto it = by_backing_.find(BackingKey{dev, ino});
  if (it == by_backing_.end()) return nullptr;
  auto& inode = by_id_.at(it->second);
  ++inode->lookups;
  return inode;
}

std::shared_ptr<Inode> InodeTable::Insert(std::shared_ptr<Inode> inode, InodeId id) {
  std::lock_guard lock(mu_);
  const BackingKey key{inode->backing_dev, inode->backing_ino};
  if (auto it = by_backing_.find(key); it != by_backing_.end()) {
    auto& existing = by_id_.at(it->second);
    ++existing->lookups;
    return existing;
  }
  inode->id = id != 0 ? id : next_id_++;
  inode->lookups = 1;
  by_backing_.emplace(key, inode->id);
  by_id_.emplace(inode->id, inode);
  return inode;
}

void InodeTable::AddLookup(Inode& inode) {
  std::lock_guard lock(mu_);
  ++inode.lookups;
}

std::shared_ptr<Inode> InodeTable::Forget(InodeId id, uint64_t n) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  auto inode = it->second;
  inode->lookups -= std::min(n, inode->lookups);
  if (inode->lookups > 0) return nullptr;
  by_id_.erase(it);
  auto b = by_backing_.find(BackingKey{inode->backing_dev, inode->backing_ino});
  if (b != by_backing_.end() && b->second == id) by_backing_.erase(b);
  return inode;
}

void InodeTable::Unbind(const Inode& inode) {
  std::lock_guard lock(mu_);
  auto b = by_backing_.find(BackingKey{inode.backing_dev, inode.backing_ino});
  if (b != by_backing_.end() && b->second == inode.id) by_backing_.erase(b);
}

uint64_t InodeTable::Lookups(InodeId id) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? 0 : it->second->lookups;
}

size_t InodeTable::size() const {
  std::lock_guard lock(mu_);
  return by_id_.size();
}

std::vector<std::shared_ptr<Inode>> InodeTable::Snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Inode>> out;
  out.reserve(by_id_.size());
  for (const auto& [id, inode] : by_id_) out.push_back(inode);
  return out;
}

}  // namespace hpfs
