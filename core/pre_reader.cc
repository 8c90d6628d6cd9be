// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cstring>

#include "core/hpfile.h"

namespace hpfile {

PreReader::PreReader(const HPFile& file, size_t buffer_size) : file_(file), buffer_(std::max<size_t>(buffer_size, 1)) {}

Result<size_t> PreReader::ReadAt(uint64_t offset, std::span<std::byte> buf) {
  // Cached bytes below a head that has since moved are gone for everyone.
  if (offset < file_.Head()) return Errno(ENODATA);
  if (buf.empty()) return file_.ReadAt(offset, buf);
  const uint64_t generation = file_.TruncateGeneration();
  const bool cache_valid = generation == generation_ && generation % 2 == 0;
  if (cache_valid && offset >= start_ && offset + buf.size() <= start_ + filled_) {
    std::memcpy(buf.data(), buffer_.data() + (offset - start_), buf.size());
    return buf.size();
  }
  if (buf.size() >= buffer_.size()) return file_.ReadAt(offset, buf);

  // Seqlock read: the bytes are cached only if no truncate ran meanwhile,
  // since one may have replaced some of them.
  const uint64_t before = file_.TruncateGeneration();
  auto filled = file_.ReadAt(offset, buffer_);
  if (!filled) {
    generation_ = 1;
    return filled;
  }
  const uint64_t after = file_.TruncateGeneration();
  if (before != after || before % 2 != 0) {
    generation_ = 1;
    return file_.ReadAt(offset, buf);
  }
  start_ = offset;
  filled_ = *filled;
  generation_ = before;
  const size_t n = std::min(buf.size(), filled_);
  std::memcpy(buf.data(), buffer_.data(), n);
  return n;
}

}  // namespace hpfile
