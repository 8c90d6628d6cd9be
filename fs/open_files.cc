// SPDX-License-Identifier: Apache-2.0
#include "fs/open_files.h"

namespace hpfs {

hpfile::Result<std::shared_ptr<hpfile::HPFile>> OpenFiles::SharedOrOpen(Key key, const Opener& open,
                                                                    std::shared_ptr<const void> keep_alive) {
  std::unique_lock lock(state_->mu);
  for (;;) {
    auto known = state_->files.find(key);
    if (known == state_->files.end()) break;
    if (auto file = known->second.lock()) return file;
    // Expired but not yet erased: its destructor still holds the directory.
    state_->closed.wait(lock);
  }
  // Opened under the lock, so two loads of one directory cannot both open it.
  auto opened = open();
  if (!opened) return std::unexpected(opened.error());
  std::shared_ptr<hpfile::HPFile> file(opened->release(), [state = state_, key,
                                                            keep = std::move(keep_alive)](hpfile::HPFile* closing) {
    delete closing;  // releases the directory
    std::lock_guard lock(state->mu);
    state->files.erase(key);
    state->closed.notify_all();
  });
  state_->files[key] = file;
  return file;
}

bool OpenFiles::IsOpen(Key key) const {
  std::lock_guard lock(state_->mu);
  return state_->files.contains(key);
}

}  // namespace hpfs
