// SPDX-License-Identifier: Apache-2.0
// The HPFiles the daemon has open, one per backing directory.
//
// An HPFile owns its directory: a second HPFile::Open of it fails with EBUSY.
// More than the inode can hold an HPFile: the retention pass keeps one while
// it enforces limits, and the kernel may forget the inode meanwhile. A lookup
// that then loads the file again must share the HPFile still open, or wait
// until its last holder has closed it; it must never see EBUSY.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "core/hpfile.h"
#include "core/io.h"
#include "core/result.h"

namespace hpfs {

class OpenFiles {
 public:
  using Key = std::pair<dev_t, ino_t>;  // the backing directory
  using Opener = std::function<hpfile::Result<std::unique_ptr<hpfile::HPFile>>()>;

  // The HPFile open for `key`, or else the one `open` returns, which is then
  // known under `key` until its last holder lets go. While an HPFile of `key`
  // is being closed on another thread, waits for it to finish (a close only
  // writes the write buffer out, which the daemon does not use).
  // `keep_alive` is released only after the HPFile opened here is closed
  // (the directory descriptor its paths go through).
  [[nodiscard]] hpfile::Result<std::shared_ptr<hpfile::HPFile>> SharedOrOpen(
      Key key, const Opener& open, std::shared_ptr<const void> keep_alive = nullptr);
  // Whether an HPFile of `key` is open or still closing: until it is closed,
  // what is on disk need not be all of its state (a head not yet written).
  bool IsOpen(Key key) const;

 private:
  struct State {
    std::mutex mu;
    std::condition_variable closed;
    std::map<Key, std::weak_ptr<hpfile::HPFile>> files;  // mu
  };
  // Shared with the deleters, which may run after this object is gone.
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace hpfs
