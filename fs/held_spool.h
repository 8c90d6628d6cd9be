// SPDX-License-Identifier: Apache-2.0
// Write-back mode: where one file's held bytes go once the reorder buffer's
// memory is used up (docs/FILESYSTEM.md "Held writes"). A file of the
// backing directory's trash, unlinked as soon as it is open: the mount never
// shows it, its space goes with the last held bytes in it (or the
// descriptor, when the inode goes), and a crash leaves nothing behind but,
// at worst, a name in the trash, which the next mount deletes with the rest.
//
// Thread-safety: none; the owner (WritebackQueue) is guarded by write_mu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/io.h"
#include "core/result.h"

namespace hpfs {

class HeldSpool {
 public:
  // Stores `data` and returns where, opening the file as `name` in `dir_fd`
  // first if none is open.
  [[nodiscard]] hpfile::Result<uint64_t> Put(int dir_fd, const std::string& name, std::span<const std::byte> data);
  // Reads back exactly `out.size()` bytes stored at `at` (EIO if short).
  [[nodiscard]] hpfile::Result<void> Get(uint64_t at, std::span<std::byte> out) const;
  // [at, at + length) is no longer needed. Its blocks are freed where the
  // backing filesystem can punch holes; once nothing is needed the file is
  // closed, which frees the rest.
  void Drop(uint64_t at, uint64_t length);
  // Bytes stored and not dropped.
  uint64_t live_bytes() const { return live_; }
  bool open() const { return fd_.valid(); }

 private:
  hpfile::Fd fd_;
  uint64_t end_ = 0;
  uint64_t live_ = 0;
};

}  // namespace hpfs
