// SPDX-License-Identifier: Apache-2.0
#include "fs/ctl/check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <system_error>
#include <vector>

#include "core/format.h"
#include "core/io.h"
#include "core/recovery.h"
#include "fs/backing_dir.h"
#include "fs/backing_lock.h"

namespace hpfs::ctl {
namespace {

namespace fmt_ = hpfile::format;
namespace stdfs = std::filesystem;

struct Counts {
  int files = 0;
  int ok = 0;
  int repaired = 0;
  int pending = 0;
  int damaged = 0;
  int unreadable = 0;
};

class Checker {
 public:
  Checker(const std::string& backing, const CheckOptions& options, std::ostream& out, std::ostream& err)
      : backing_(backing), options_(options), out_(out), err_(err) {}

  int Run();

 private:
  void WalkDir(const std::string& path, const std::string& rel, bool top);
  void CheckFile(const std::string& path, const std::string& rel);
  void CheckDamaged(const std::string& path, const std::string& rel, const hpfile::StoreScan& scan,
                    const std::string& damage);
  // A meta written by a repairing root must stay the daemon's, which may run
  // as the owner of the store rather than as root.
  void GiveMetaToOwner(const std::string& path, const std::string& rel);
  void CheckTrash();
  void Fail(const std::string& rel, const std::error_code& ec, const std::string& what) {
    err_ << "hpfsctl check: " << (rel.empty() ? backing_ : rel) << ": " << what << ": " << ec.message() << "\n";
    status_ |= kCheckOperational;
  }

  const std::string backing_;
  const CheckOptions options_;
  std::ostream& out_;
  std::ostream& err_;
  hpfile::Io& io_ = hpfile::PosixIo::Default();
  Counts counts_;
  int status_ = kCheckClean;
};

std::vector<stdfs::directory_entry> SortedEntries(const std::string& path, std::error_code& ec) {
  std::vector<stdfs::directory_entry> entries;
  for (stdfs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  return entries;
}

uint64_t TreeBytes(const stdfs::path& path) {
  std::error_code ec;
  const auto st = stdfs::symlink_status(path, ec);
  if (ec) return 0;
  if (stdfs::is_regular_file(st)) {
    const auto size = stdfs::file_size(path, ec);
    return ec ? 0 : size;
  }
  if (!stdfs::is_directory(st)) return 0;
  uint64_t total = 0;
  for (stdfs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) total += TreeBytes(it->path());
  return total;
}

int Checker::Run() {
  std::error_code ec;
  if (!stdfs::is_directory(backing_, ec)) {
    err_ << "hpfsctl check: " << backing_ << ": "
         << (ec ? ec.message() : std::string("not a directory")) << "\n";
    return kCheckOperational;
  }
  // The daemon's lock says whether the directory is served; held until we
  // return, it also keeps a daemon from mounting mid-check. A checking run
  // creates nothing: with no lock file there is no daemon to exclude.
  std::optional<BackingLock> repair_lock;
  hpfile::Fd peek_lock;
  const std::string lock_path = backing_ + "/" + std::string(fmt_::kLockName);
  std::error_code lock_error;
  if (options_.repair) {
    auto lock = BackingLock::Acquire(backing_);
    if (lock) {
      repair_lock.emplace(std::move(*lock));
    } else {
      lock_error = lock.error();
    }
  } else if (auto fd = hpfile::Fd::Open(io_, lock_path, O_RDONLY); fd) {
    peek_lock = std::move(*fd);
    if (auto locked = io_.TryLockExclusive(peek_lock.get()); !locked) lock_error = locked.error();
  } else if (!hpfile::IsErrno(fd.error(), ENOENT)) {
    lock_error = fd.error();
  }
  if (hpfile::IsErrno(lock_error, EWOULDBLOCK) || hpfile::IsErrno(lock_error, EBUSY)) {
    err_ << "hpfsctl check: " << backing_ << " is in use by a running hpfs daemon; unmount it first\n";
    return kCheckOperational;
  }
  if (lock_error) {
    err_ << "hpfsctl check: " << lock_path << ": cannot take the lock: " << lock_error.message() << "\n";
    return kCheckOperational;
  }

  WalkDir(backing_, "", true);
  CheckTrash();

  out_ << "checked " << counts_.files << " HPFiles: " << counts_.ok << " ok";
  if (counts_.repaired) out_ << ", " << counts_.repaired << " repaired";
  if (counts_.pending) out_ << ", " << counts_.pending << " need recovery";
  if (counts_.damaged) out_ << ", " << counts_.damaged << " damaged";
  if (counts_.unreadable) out_ << ", " << counts_.unreadable << " unreadable";
  out_ << "\n";
  return status_;
}

void Checker::WalkDir(const std::string& path, const std::string& rel, bool top) {
  std::error_code ec;
  const auto entries = SortedEntries(path, ec);
  if (ec) {
    Fail(rel, ec, "cannot list");
    return;
  }
  for (const auto& entry : entries) {
    const std::string name = entry.path().filename().string();
    const std::string child = path + "/" + name;
    const std::string child_rel = rel.empty() ? name : rel + "/" + name;
    if (top && (name == fmt_::kLockName || name == fmt_::kTrashName)) continue;
    const auto st = entry.symlink_status(ec);
    if (ec) {
      Fail(child_rel, ec, "cannot stat");
      continue;
    }
    if (stdfs::is_symlink(st)) continue;
    if (!stdfs::is_directory(st)) {
      // The mount neither shows nor touches it; worth knowing, not an error.
      const bool regular = stdfs::is_regular_file(st);
      out_ << child_rel << ": warning: stray " << (regular ? "file" : "special file")
           << ", not part of the store (the mount does not show it"
           << (regular ? "; `hpfsctl import` makes it a file of the mount" : "") << ")\n";
      continue;
    }
    // The daemon's own rule, so that what check reports is what a mount shows.
    const auto is_file = IsHPFileDir(AT_FDCWD, child);
    if (!is_file) {
      Fail(child_rel, is_file.error(), "cannot list");
      continue;
    }
    if (*is_file) {
      CheckFile(child, child_rel);
    } else {
      WalkDir(child, child_rel, false);
    }
  }
}

void Checker::CheckFile(const std::string& path, const std::string& rel) {
  ++counts_.files;
  auto scan = hpfile::ScanStore(io_, path);
  if (!scan) {
    ++counts_.unreadable;
    Fail(rel, scan.error(), "cannot read");
    return;
  }
  const hpfile::RecoveryPlan plan = hpfile::PlanRecovery(*scan);
  if (plan.damage) {
    CheckDamaged(path, rel, *scan, *plan.damage);
    return;
  }
  if (plan.remove.empty() && !plan.rewrite_meta) {
    ++counts_.ok;
    out_ << rel << ": ok\n";
    return;
  }
  if (!options_.repair) {
    ++counts_.pending;
    status_ |= kCheckUncorrected;
    out_ << rel << ": needs recovery (--repair, or opening the file on a mount, does this):\n";
    for (const std::string& line : plan.log) out_ << "  " << line << "\n";
    return;
  }
  if (auto applied = hpfile::ApplyRecovery(io_, path, *scan->meta, plan); !applied) {
    Fail(rel, applied.error(), "repair failed");
    return;
  }
  if (plan.rewrite_meta) GiveMetaToOwner(path, rel);
  ++counts_.repaired;
  status_ |= kCheckCorrected;
  out_ << rel << ": repaired:\n";
  for (const std::string& line : plan.log) out_ << "  " << line << "\n";
}

void Checker::GiveMetaToOwner(const std::string& path, const std::string& rel) {
  if (::geteuid() != 0) return;
  struct stat dir_st;
  const std::string meta_path = path + "/" + std::string(fmt_::kMetaName);
  if (::stat(path.c_str(), &dir_st) != 0 || ::lchown(meta_path.c_str(), dir_st.st_uid, dir_st.st_gid) != 0) {
    Fail(rel, std::error_code(errno, std::generic_category()), "cannot give the new meta to the file's owner");
  }
}

void Checker::CheckDamaged(const std::string& path, const std::string& rel, const hpfile::StoreScan& scan,
                           const std::string& damage) {
  auto repair = hpfile::PlanRepair(io_, path, scan, {.truncate_at_gap = options_.truncate_at_gap});
  if (!repair || !options_.repair || !repair->repairs()) {
    ++counts_.damaged;
    status_ |= kCheckUncorrected;
    out_ << rel << ": damaged: " << damage << "\n";
    if (!repair) {
      Fail(rel, repair.error(), "cannot work out a repair");
      return;
    }
    if (repair->repairs()) {
      out_ << "  --repair" << (options_.truncate_at_gap ? " --truncate-at-gap" : "") << " would:\n";
      for (const std::string& line : repair->log) out_ << "    " << line << "\n";
      return;
    }
    // A repair fixes the whole file or does nothing.
    out_ << "  not repairable" << (options_.repair ? " (nothing was changed)" : "") << ":\n";
    for (const std::string& line : repair->unrepairable) out_ << "    " << line << "\n";
    return;
  }
  if (auto applied = hpfile::ApplyRepair(io_, path, *repair); !applied) {
    ++counts_.damaged;
    status_ |= kCheckUncorrected;
    Fail(rel, applied.error(), "repair failed");
    return;
  }
  if (repair->rebuilt_meta) GiveMetaToOwner(path, rel);
  std::vector<std::string> log = repair->log;
  // What is left is a healthy file, maybe with a crash signature to recover.
  auto rescan = hpfile::ScanStore(io_, path);
  if (!rescan) {
    ++counts_.damaged;
    Fail(rel, rescan.error(), "cannot read after the repair");
    return;
  }
  const hpfile::RecoveryPlan recovery = hpfile::PlanRecovery(*rescan);
  if (recovery.damage) {
    ++counts_.damaged;
    status_ |= kCheckUncorrected;
    out_ << rel << ": damaged after the repair: " << *recovery.damage << "\n";
    return;
  }
  if (auto applied = hpfile::ApplyRecovery(io_, path, *rescan->meta, recovery); !applied) {
    ++counts_.damaged;
    Fail(rel, applied.error(), "recovery after the repair failed");
    return;
  }
  if (recovery.rewrite_meta) GiveMetaToOwner(path, rel);
  log.insert(log.end(), recovery.log.begin(), recovery.log.end());
  ++counts_.repaired;
  status_ |= kCheckCorrected;
  out_ << rel << ": repaired (was damaged: " << damage << "):\n";
  for (const std::string& line : log) out_ << "  " << line << "\n";
}

void Checker::CheckTrash() {
  const std::string trash = backing_ + "/" + std::string(fmt_::kTrashName);
  std::error_code ec;
  if (!stdfs::exists(stdfs::symlink_status(trash, ec))) return;
  const auto entries = SortedEntries(trash, ec);
  if (ec) {
    Fail(std::string(fmt_::kTrashName), ec, "cannot list");
    return;
  }
  if (entries.empty()) return;
  uint64_t bytes = 0;
  for (const auto& entry : entries) bytes += TreeBytes(entry.path());
  const std::string what = std::to_string(entries.size()) + " entries, " + std::to_string(bytes) + " bytes";
  if (!options_.repair) {
    // Leftovers of deleted files are normal after a daemon was killed: the
    // next mount deletes them. Not an error.
    out_ << fmt_::kTrashName << ": " << what << " of deleted files (the next mount or --repair deletes them)\n";
    constexpr size_t kListed = 20;
    for (size_t i = 0; i < entries.size() && i < kListed; ++i) {
      out_ << "  " << entries[i].path().filename().string() << "\n";
    }
    if (entries.size() > kListed) out_ << "  ... and " << entries.size() - kListed << " more\n";
    return;
  }
  for (const auto& entry : entries) {
    stdfs::remove_all(entry.path(), ec);
    if (ec) {
      Fail(std::string(fmt_::kTrashName) + "/" + entry.path().filename().string(), ec, "cannot delete");
      return;
    }
  }
  out_ << fmt_::kTrashName << ": emptied (" << what << ")\n";
}

}  // namespace

int CheckBacking(const std::string& backing, const CheckOptions& options, std::ostream& out, std::ostream& err) {
  return Checker(backing, options, out, err).Run();
}

}  // namespace hpfs::ctl
