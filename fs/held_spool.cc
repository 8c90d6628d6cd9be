// SPDX-License-Identifier: Apache-2.0
#include "fs/held_spool.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>


namespace hpfs {

using hpfile::Errno;

hpfile::Result<uint64_t> HeldSpool::Put(int dir_fd, const std::string& name, std::span<const std::byte> data) {
  if (!fd_.valid()) {
    const int fd = ::openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return hpfile::LastErrno();
    hpfile::Fd owned(hpfile::PosixIo::Default(), fd);
    // Nothing may ever find it by name: the bytes are the daemon's alone,
    // and they are not worth keeping across a crash (the kernel's pages in
    // front of them are gone then too).
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0) return hpfile::LastErrno();
    fd_ = std::move(owned);
    end_ = 0;
  }
  const uint64_t at = end_;
  if (auto written = hpfile::WriteFull(hpfile::PosixIo::Default(), fd_.get(), data, at); !written) {
    // Nothing of it counts; an empty spool keeps no descriptor.
    if (live_ == 0) fd_.Reset();
    return std::unexpected(written.error());
  }
  end_ += data.size();
  live_ += data.size();
  return at;
}

hpfile::Result<void> HeldSpool::Get(uint64_t at, std::span<std::byte> out) const {
  if (!fd_.valid()) return Errno(EIO);
  auto got = hpfile::ReadFull(hpfile::PosixIo::Default(), fd_.get(), out, at);
  if (!got) return std::unexpected(got.error());
  if (*got != out.size()) return Errno(EIO);
  return {};
}

void HeldSpool::Drop(uint64_t at, uint64_t length) {
  live_ -= length;
  if (live_ == 0) {
    fd_.Reset();
    end_ = 0;
    return;
  }
  // Held bytes can stay for a long time behind a gap that keeps moving while
  // others come and go: without the punch the file would only grow. Where
  // the filesystem cannot punch, the space comes back when the file closes.
  (void)::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at),
                    static_cast<off_t>(length));
}

}  // namespace hpfs
