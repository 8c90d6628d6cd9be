// SPDX-License-Identifier: Apache-2.0
#include "fs/ctl/ctl.h"

#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text_file.h"
#include "fs/settings.h"

namespace hpfs::ctl {
namespace {

std::string Damage(const hpfs_stat& st) {
  if ((st.flags & HPFS_STAT_DAMAGED) == 0) return {};
  // The daemon NUL-terminates, but a short or foreign reply must not make us
  // read past the field.
  std::string reason(st.damage, ::strnlen(st.damage, sizeof st.damage));
  if (reason.empty()) reason = "unknown reason";
  return reason;
}

// How the mount takes writes: "writeback" (-o writeback) or "writethrough".
std::string Mode(const hpfs_stat& st) { return (st.flags & HPFS_STAT_WRITEBACK) ? "writeback" : "writethrough"; }

std::string BadValue(std::string_view arg, std::string_view expected) {
  return "bad value in '" + std::string(arg) + "' (expected " + std::string(expected) + ")";
}

}  // namespace

std::expected<hpfs_set, std::string> ParseAssignments(const std::vector<std::string_view>& args) {
  hpfs_set request{};
  if (args.empty()) return std::unexpected("nothing to set (expected KEY=VALUE)");
  for (std::string_view arg : args) {
    const auto pair = hpfile::SplitKeyValue(arg);
    if (!pair) return std::unexpected("'" + std::string(arg) + "' is not KEY=VALUE");
    const auto [key, value] = *pair;
    const Setting* setting = FindSetting(key);
    if (setting == nullptr) {
      return std::unexpected("unknown key '" + std::string(key) +
                             "' (expected segment_size, retain_bytes, retain_seconds, local_retain_bytes or "
                             "local_retain_seconds)");
    }
    const auto parsed = ParseSetting(*setting, value);
    if (!parsed) return std::unexpected(BadValue(arg, setting->expected));
    const uint32_t bit = setting->mask;
    RequestField(request, *setting) = *parsed;
    if (request.mask & bit) return std::unexpected("key '" + std::string(key) + "' given twice");
    request.mask |= bit;
  }
  return request;
}

// The figures `hpfsctl stat` shows after the mode, in the order both forms
// print them; the tiered ones only for a file of a tiered mount.
namespace {
std::vector<std::pair<std::string_view, uint64_t>> StatFigures(const hpfs_stat& st) {
  std::vector<std::pair<std::string_view, uint64_t>> figures = {
      {"held_bytes", st.held_bytes}, {"pruned_segments", st.pruned_segments}, {"pruned_bytes", st.pruned_bytes}};
  if (st.flags & HPFS_STAT_WRITEBACK) {
    figures.insert(figures.end(), {{"spooled_bytes", st.spooled_bytes}, {"spool_overflows", st.spool_overflows}});
  }
  if (st.flags & HPFS_STAT_TIERED) {
    figures.insert(figures.end(), {{"local_bytes", st.local_bytes},
                                   {"local_segments", st.local_segments},
                                   {"remote_bytes", st.remote_bytes},
                                   {"remote_segments", st.remote_segments},
                                   {"deleting_objects", st.deleting_objects}});
  }
  return figures;
}
}  // namespace

std::string FormatStatText(const hpfs_stat& st, const std::optional<std::string>& name) {
  std::string out;
  auto line = [&out](std::string_view key, std::string_view value) {
    out.append(key).append("=").append(value).append("\n");
  };
  if (name) line("file", *name);
  line("head", std::to_string(st.head));
  line("size", std::to_string(st.size));
  line("durable_size", std::to_string(st.durable_size));
  line("segments", std::to_string(st.segments));
  out += FormatSettingsText(st);
  line("mode", Mode(st));
  for (const auto& [key, value] : StatFigures(st)) line(key, std::to_string(value));
  std::string damage = Damage(st);
  for (char& c : damage) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  line("damaged", damage.empty() ? "none" : damage);
  return out;
}

std::string FormatSettingsText(const hpfs_stat& st) {
  return "segment_size=" + std::to_string(st.segment_size) + "\nretain_bytes=" + std::to_string(st.retain_bytes) +
         "\nretain_seconds=" + std::to_string(st.retain_seconds) + "\n" +
         ((st.flags & HPFS_STAT_TIERED) ? "local_retain_bytes=" + std::to_string(st.local_retain_bytes) +
                                              "\nlocal_retain_seconds=" + std::to_string(st.local_retain_seconds) + "\n"
                                        : std::string());
}

std::string FormatStatJson(const hpfs_stat& st, std::string_view name) {
  std::string out = "{\"file\": " + JsonQuote(name);
  auto number = [&out](std::string_view key, uint64_t value) {
    out.append(", \"").append(key).append("\": ").append(std::to_string(value));
  };
  number("head", st.head);
  number("size", st.size);
  number("durable_size", st.durable_size);
  number("segments", st.segments);
  number("segment_size", st.segment_size);
  number("retain_bytes", st.retain_bytes);
  number("retain_seconds", st.retain_seconds);
  out += ", \"mode\": " + JsonQuote(Mode(st));
  if (st.flags & HPFS_STAT_TIERED) {
    number("local_retain_bytes", st.local_retain_bytes);
    number("local_retain_seconds", st.local_retain_seconds);
  }
  for (const auto& [key, value] : StatFigures(st)) number(key, value);
  const std::string damage = Damage(st);
  out += ", \"damaged\": " + (damage.empty() ? std::string("null") : JsonQuote(damage)) + "}";
  return out;
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace hpfs::ctl
