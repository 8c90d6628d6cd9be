// SPDX-License-Identifier: Apache-2.0
#include "core/meta.h"

#include <fcntl.h>

#include <charconv>
#include <cstring>
#include <set>

namespace hpfile {
namespace {

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  uint64_t value = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<uint32_t> ParseUnsigned32(std::string_view text, int base = 10) {
  uint32_t value = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A garbage meta may hold any bytes: the quoted text goes to terminals and
// logs, so it is kept printable and short.
std::string Quote(std::string_view text) {
  constexpr size_t kShown = 80;
  std::string out = "\"";
  for (char c : text.substr(0, kShown)) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  out += text.size() > kShown ? "\"..." : "\"";
  return out;
}

}  // namespace

bool ValidSegmentSize(uint64_t segment_size) {
  return segment_size > 0 && segment_size <= format::kMaxSegmentSize;
}

std::expected<Meta, std::string> ParseMeta(std::string_view text) {
  Meta meta;
  bool has_format = false;
  bool has_segment_size = false;
  std::set<std::string, std::less<>> seen;
  size_t line_number = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++line_number;
    if (line.empty()) continue;
    auto fail = [&](std::string_view why) {
      return std::unexpected("hpfile.meta line " + std::to_string(line_number) + " " + Quote(line) + ": " +
                             std::string(why));
    };
    size_t equals = line.find('=');
    if (equals == std::string_view::npos || equals == 0) return fail("not key=value");
    std::string_view key = line.substr(0, equals);
    std::string_view value = line.substr(equals + 1);
    if (!seen.emplace(key).second) return fail("key repeated");

    if (key == format::kKeyFormat) {
      auto version = ParseUnsigned(value);
      if (!version) return fail("format is not a number");
      if (*version != static_cast<uint64_t>(format::kVersion)) {
        return fail("format " + std::string(value) + " is not supported (this version reads format " +
                    std::to_string(format::kVersion) + ")");
      }
      has_format = true;
    } else if (key == format::kKeySegmentSize) {
      auto size = ParseUnsigned(value);
      if (!size || !ValidSegmentSize(*size)) return fail("segment_size must be 1.." + std::to_string(format::kMaxSegmentSize));
      meta.segment_size = *size;
      has_segment_size = true;
    } else if (key == format::kKeyHead) {
      auto head = ParseUnsigned(value);
      if (!head || *head > format::kMaxSlotEnd) return fail("head is not a valid offset");
      meta.head = *head;
    } else if (key == format::kKeyMode) {
      auto mode = ParseUnsigned32(value, 8);
      if (!mode || *mode > 07777) return fail("mode is not an octal permission");
      meta.mode = *mode;
    } else if (key == format::kKeyUid || key == format::kKeyGid) {
      auto id = ParseUnsigned32(value);
      if (!id) return fail("not a numeric id");
      (key == format::kKeyUid ? meta.uid : meta.gid) = *id;
    } else if (key == format::kKeyRetainBytes || key == format::kKeyRetainSeconds) {
      auto amount = ParseUnsigned(value);
      if (!amount) return fail("not a number");
      (key == format::kKeyRetainBytes ? meta.retain_bytes : meta.retain_seconds) = *amount;
    } else {
      meta.unknown.emplace_back(std::string(key), std::string(value));
    }
  }
  if (!has_format) return std::unexpected(std::string("hpfile.meta has no format line"));
  if (!has_segment_size) return std::unexpected(std::string("hpfile.meta has no segment_size line"));
  return meta;
}

std::string SerializeMeta(const Meta& meta) {
  std::string text;
  auto line = [&](std::string_view key, const std::string& value) {
    text.append(key);
    text.push_back('=');
    text.append(value);
    text.push_back('\n');
  };
  line(format::kKeyFormat, std::to_string(format::kVersion));
  line(format::kKeySegmentSize, std::to_string(meta.segment_size));
  line(format::kKeyHead, std::to_string(meta.head));
  if (meta.mode) {
    char octal[16];
    std::snprintf(octal, sizeof(octal), "%04o", *meta.mode);
    line(format::kKeyMode, octal);
  }
  if (meta.uid) line(format::kKeyUid, std::to_string(*meta.uid));
  if (meta.gid) line(format::kKeyGid, std::to_string(*meta.gid));
  if (meta.retain_bytes) line(format::kKeyRetainBytes, std::to_string(*meta.retain_bytes));
  if (meta.retain_seconds) line(format::kKeyRetainSeconds, std::to_string(*meta.retain_seconds));
  for (const auto& [key, value] : meta.unknown) line(key, value);
  return text;
}

Result<void> WriteMetaAtomically(Io& io, const std::string& dir, const Meta& meta) {
  const std::string temp_path = dir + "/" + std::string(format::kMetaTempName);
  const std::string final_path = dir + "/" + std::string(format::kMetaName);
  const std::string text = SerializeMeta(meta);
  {
    auto fd = Fd::Open(io, temp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd) return std::unexpected(fd.error());
    auto written = WriteFull(io, fd->get(), std::as_bytes(std::span(text)), 0);
    if (written) written = io.Fsync(fd->get());
    if (!written) {
      fd->Reset();
      (void)io.Unlink(temp_path);  // best effort; recovery removes it otherwise
      return written;
    }
  }
  if (auto renamed = io.Rename(temp_path, final_path); !renamed) {
    (void)io.Unlink(temp_path);
    return renamed;
  }
  return SyncDir(io, dir);
}

Result<std::string> ReadMetaText(Io& io, const std::string& dir) {
  return ReadMetaFile(io, dir + "/" + std::string(format::kMetaName));
}

Result<std::string> ReadMetaFile(Io& io, const std::string& path) {
  auto fd = Fd::Open(io, path, O_RDONLY);
  if (!fd) return std::unexpected(fd.error());
  std::string text;
  uint64_t offset = 0;
  for (;;) {
    char chunk[4096];
    auto n = io.Pread(fd->get(), std::as_writable_bytes(std::span(chunk)), offset);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    text.append(chunk, *n);
    offset += *n;
    // A meta file is a few lines; anything this large is not one.
    if (text.size() > (1 << 20)) return Errno(EFBIG);
  }
  return text;
}

}  // namespace hpfile
