// SPDX-License-Identifier: Apache-2.0
// Shared by the record log tests: elements whose bytes are a function
// of an id, so any element read anywhere can be checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/record_log.h"
#include "tests/core/test_util.h"

namespace hpfile::testing {

// The element with id `id`: its size (for a variable-size log, 1..max_size
// bytes, chosen by the id) and its bytes, seeded by the id.
inline std::vector<std::byte> ElementFor(uint64_t id, uint32_t element_size, uint32_t max_size = 300) {
  const size_t size = element_size != 0 ? element_size : 1 + (id * 2654435761ull >> 7) % max_size;
  return SeededBytes(id, 0, size);
}

inline RecordLogOptions RecordOptions(uint32_t element_size, uint64_t segment_size, Io* io = nullptr) {
  RecordLogOptions options;
  options.element_size = element_size;
  options.segment_size = segment_size;
  options.io = io;
  return options;
}

}  // namespace hpfile::testing
