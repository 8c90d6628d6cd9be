// SPDX-License-Identifier: Apache-2.0
// StrCat: the text of its arguments one after the other, for error
// messages (g++ 12 has no <format>). Numbers are written in decimal.
//
// Thread-safety: a pure function.
#pragma once

#include <sstream>
#include <string>

namespace hpfile {

template <class... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return std::move(out).str();
}

}  // namespace hpfile
