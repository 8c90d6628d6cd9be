// SPDX-License-Identifier: Apache-2.0
// Error handling shared by every libhpfile API: results carry an errno value so
// that a caller (the FUSE layer in particular) can hand it to the kernel as is.
#pragma once

#include <cerrno>
#include <expected>
#include <system_error>

namespace hpfile {

template <class T>
using Result = std::expected<T, std::error_code>;

[[nodiscard]] inline std::unexpected<std::error_code> Errno(int err) {
  return std::unexpected(std::error_code(err, std::generic_category()));
}

// The errno of the most recent failed libc call.
[[nodiscard]] inline std::unexpected<std::error_code> LastErrno() { return Errno(errno); }

// Whether `ec` carries the errno value `err`.
inline bool IsErrno(const std::error_code& ec, int err) { return ec == std::error_code(err, std::generic_category()); }

}  // namespace hpfile
