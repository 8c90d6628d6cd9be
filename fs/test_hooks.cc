// SPDX-License-Identifier: Apache-2.0
#include "fs/test_hooks.h"

#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <thread>

#include <spdlog/spdlog.h>

namespace hpfs {

std::optional<std::pair<uint64_t, std::chrono::milliseconds>> ParseDelayedWrite(std::string_view text) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  uint64_t offset = 0, ms = 0;
  const std::string_view offset_text = text.substr(0, colon), ms_text = text.substr(colon + 1);
  const auto [offset_end, offset_ec] = std::from_chars(offset_text.begin(), offset_text.end(), offset);
  const auto [ms_end, ms_ec] = std::from_chars(ms_text.begin(), ms_text.end(), ms);
  if (offset_text.empty() || ms_text.empty() || offset_ec != std::errc() || ms_ec != std::errc() ||
      offset_end != offset_text.end() || ms_end != ms_text.end()) {
    return std::nullopt;
  }
  return std::pair{offset, std::chrono::milliseconds(ms)};
}

void DelayIfChosen(DelayedWrite* chosen, off_t off) {
  if (chosen == nullptr || off < 0 || static_cast<uint64_t>(off) != chosen->offset) return;
  if (chosen->done.exchange(true)) return;
  spdlog::warn("test hook: delaying the WRITE at offset {} by {} ms", off, chosen->delay.count());
  std::this_thread::sleep_for(chosen->delay);
}

std::optional<hpfile::OffloadStep> ParseTierKillStep(std::string_view text) {
  if (text == "put") return hpfile::OffloadStep::kPut;
  if (text == "record") return hpfile::OffloadStep::kRecord;
  if (text == "delete") return hpfile::OffloadStep::kDelete;
  return std::nullopt;
}

std::function<void(hpfile::OffloadStep)> KillAfterStep(hpfile::OffloadStep step) {
  return [step](hpfile::OffloadStep done) {
    if (done != step) return;
    spdlog::warn("test hook: killing the daemon after step {} of an offload", static_cast<int>(step));
    spdlog::default_logger()->flush();
    ::kill(::getpid(), SIGKILL);
  };
}

}  // namespace hpfs
