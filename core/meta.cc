// SPDX-License-Identifier: Apache-2.0
#include "core/meta.h"

#include <cstdio>
#include <set>

#include "core/text_file.h"

namespace hpfile {
namespace {

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

bool ValidFileId(std::string_view id) {
  return id.size() == format::kFileIdHexDigits &&
         id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

bool ValidSegmentSize(uint64_t segment_size) {
  return segment_size > 0 && segment_size <= format::kMaxSegmentSize;
}

std::expected<Meta, std::string> ParseMeta(std::string_view text) {
  Meta meta;
  bool has_format = false;
  bool tiered_format = false;
  bool has_segment_size = false;
  std::set<std::string, std::less<>> seen;
  for (const KeyValueLine& line : SplitKeyValueLines(text)) {
    auto fail = [&](std::string_view why) {
      return std::unexpected("hpfile.meta line " + std::to_string(line.number) + " " + Quote(line.text) + ": " +
                             std::string(why));
    };
    if (!line.well_formed()) return fail("not key=value");
    const std::string_view key = line.key;
    const std::string_view value = line.value;
    if (!seen.emplace(key).second) return fail("key repeated");

    if (key == format::kKeyFormat) {
      auto version = ParseUnsigned(value);
      if (!version) return fail("format is not a number");
      if (!format::SupportedVersion(*version)) {
        return fail("format " + std::string(value) + " is not supported (this version reads formats " +
                    std::to_string(format::kVersion) + " and " + std::to_string(format::kTieredVersion) + ")");
      }
      has_format = true;
      tiered_format = *version == static_cast<uint64_t>(format::kTieredVersion);
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
    } else if (key == format::kKeyLocalRetainBytes || key == format::kKeyLocalRetainSeconds) {
      auto amount = ParseUnsigned(value);
      if (!amount) return fail("not a number");
      (key == format::kKeyLocalRetainBytes ? meta.local_retain_bytes : meta.local_retain_seconds) = *amount;
    } else if (key == format::kKeyFileId) {
      if (!ValidFileId(value)) return fail("file_id must be 32 lowercase hex digits");
      meta.file_id = std::string(value);
    } else {
      meta.unknown.emplace_back(std::string(key), std::string(value));
    }
  }
  if (!has_format) return std::unexpected(std::string("hpfile.meta has no format line"));
  if (!has_segment_size) return std::unexpected(std::string("hpfile.meta has no segment_size line"));
  // The format says how to read the file: a format 1 meta naming a file id,
  // or a format 2 one without, was not written by hpfs.
  if (tiered_format != meta.file_id.has_value()) {
    return std::unexpected(std::string(tiered_format ? "hpfile.meta of format 2 has no file_id line"
                                                     : "hpfile.meta of format 1 has a file_id line"));
  }
  return meta;
}

std::string SerializeMeta(const Meta& meta) {
  std::string text;
  auto line = [&](std::string_view key, const std::string& value) { AppendKeyValue(text, key, value); };
  line(format::kKeyFormat, std::to_string(meta.file_id ? format::kTieredVersion : format::kVersion));
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
  if (meta.local_retain_bytes) line(format::kKeyLocalRetainBytes, std::to_string(*meta.local_retain_bytes));
  if (meta.local_retain_seconds) line(format::kKeyLocalRetainSeconds, std::to_string(*meta.local_retain_seconds));
  if (meta.file_id) line(format::kKeyFileId, *meta.file_id);
  for (const auto& [key, value] : meta.unknown) line(key, value);
  return text;
}

Result<void> WriteMetaAtomically(Io& io, const std::string& dir, const Meta& meta, Durability durability) {
  return ReplaceFileAtomically(io, dir, format::kMetaName, format::kMetaTempName, SerializeMeta(meta), nullptr,
                               durability);
}

Result<std::string> ReadMetaText(Io& io, const std::string& dir) {
  return ReadMetaFile(io, dir + "/" + std::string(format::kMetaName));
}

Result<std::string> ReadMetaFile(Io& io, const std::string& path) { return ReadSmallFile(io, path); }

}  // namespace hpfile
