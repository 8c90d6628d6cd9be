// SPDX-License-Identifier: Apache-2.0
// The record log's on-disk encodings: generation directory names, the
// CURRENT file (key=value lines, text_file.h) and the index entries.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "core/record_internal.h"

namespace hpfile::record_detail {

namespace rf = record_format;

namespace {

// Never 0, so an all-zero entry (a punched or zero-filled range) never passes.
uint32_t EntryCheck(uint64_t offset, uint32_t size, uint64_t position) {
  uint64_t x = (offset + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t{size} + 1) * 0xC2B2AE3D27D4EB4Full ^
               (position + 1) * 0x165667B19E3779F9ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  const auto check = static_cast<uint32_t>(x ^ (x >> 32));
  return check == 0 ? 1 : check;
}

void PutLe(std::byte* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}

uint64_t GetLe(const std::byte* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= std::to_integer<uint64_t>(in[i]) << (8 * i);
  return value;
}

}  // namespace

std::string GenerationName(uint64_t number) {
  char name[64];
  std::snprintf(name, sizeof name, "%.*s%0*" PRIu64, static_cast<int>(rf::kGenerationPrefix.size()),
                rf::kGenerationPrefix.data(), rf::kGenerationDigits, number);
  return name;
}

std::optional<uint64_t> ParseGenerationName(std::string_view name) {
  if (!name.starts_with(rf::kGenerationPrefix)) return std::nullopt;
  name.remove_prefix(rf::kGenerationPrefix.size());
  if (name.size() != static_cast<size_t>(rf::kGenerationDigits)) return std::nullopt;
  return ParseUnsigned(name);
}

std::string SerializeManifest(const Manifest& m) {
  std::string out;
  auto line = [&](std::string_view key, uint64_t value) { AppendKeyValue(out, key, std::to_string(value)); };
  line(rf::kKeyFormat, rf::kVersion);
  line(rf::kKeyGeneration, m.generation);
  line(rf::kKeyElementSize, m.element_size);
  line(rf::kKeyBase, m.base);
  return out;
}

std::expected<Manifest, std::string> ParseManifest(std::string_view text) {
  std::map<std::string, uint64_t, std::less<>> values;
  auto lines = ParseKeyValueLines(text);
  if (!lines) return std::unexpected("line without '=': " + std::string(lines.error().text));
  for (const KeyValueLine& line : *lines) {
    auto value = ParseUnsigned(line.value);
    if (!value) return std::unexpected("bad number in line: " + std::string(line.text));
    values[std::string(line.key)] = *value;
  }
  for (auto key : {rf::kKeyFormat, rf::kKeyGeneration, rf::kKeyElementSize, rf::kKeyBase}) {
    if (!values.contains(key)) return std::unexpected("missing key " + std::string(key));
  }
  if (values.find(rf::kKeyFormat)->second != static_cast<uint64_t>(rf::kVersion)) {
    return std::unexpected("unknown format " + std::to_string(values.find(rf::kKeyFormat)->second));
  }
  const uint64_t element_size = values.find(rf::kKeyElementSize)->second;
  if (element_size > rf::kMaxElementSize) return std::unexpected("element_size out of range");
  return Manifest{.generation = values.find(rf::kKeyGeneration)->second,
                  .element_size = static_cast<uint32_t>(element_size),
                  .base = values.find(rf::kKeyBase)->second};
}

void EncodeEntry(std::byte* out, const Entry& entry, uint64_t position) {
  PutLe(out, entry.offset, 8);
  PutLe(out + 8, entry.size, 4);
  PutLe(out + 12, EntryCheck(entry.offset, entry.size, position), 4);
}

EntryState DecodeEntry(const std::byte* in, uint64_t position, Entry& entry) {
  entry.offset = GetLe(in, 8);
  entry.size = static_cast<uint32_t>(GetLe(in + 8, 4));
  const auto check = static_cast<uint32_t>(GetLe(in + 12, 4));
  if (check == EntryCheck(entry.offset, entry.size, position)) return EntryState::kValid;
  if (std::all_of(in, in + kEntrySize, [](std::byte b) { return b == std::byte{0}; })) return EntryState::kZero;
  return EntryState::kCorrupt;
}

std::string PositionText(uint64_t position) { return "position " + std::to_string(position); }

}  // namespace hpfile::record_detail
