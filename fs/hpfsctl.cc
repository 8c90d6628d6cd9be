// SPDX-License-Identifier: Apache-2.0
// hpfsctl: inspect and change files on an hpfs mount (stat, set) and check
// or repair an unmounted backing directory (check).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/text_file.h"
#include "fs/ctl/check.h"
#include "fs/ctl/check_remote.h"
#include "fs/ctl/ctl.h"
#include "fs/ctl/import.h"
#include "fs/hpfs_ioctl.h"

namespace hpfs::ctl {
namespace {

constexpr std::string_view kMainHelp =
    "Usage: hpfsctl COMMAND [ARGS...]\n"
    "\n"
    "Inspect and change files on an hpfs mount, and check a backing directory.\n"
    "\n"
    "Commands:\n"
    "  stat [--json] FILE...            show a file's head, size, segments, retention, damage\n"
    "  set FILE KEY=VALUE...            change segment_size, retain_bytes, retain_seconds\n"
    "  check [--repair [--truncate-at-gap]] [--remote --tier-url=URL ...] BACKING\n"
    "                                   check (and repair) an unmounted backing directory\n"
    "                                   and, with --remote, its bucket\n"
    "  import BACKING/PATH...           turn plain files of an unmounted backing directory\n"
    "                                   into files of the mount, in place\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "`hpfsctl COMMAND --help` describes each command, its output and its exit status.\n";

constexpr std::string_view kStatHelp =
    "Usage: hpfsctl stat [--json] FILE...\n"
    "\n"
    "Shows what a file on an hpfs mount holds, through the HPFS_IOC_STAT ioctl.\n"
    "Any user who can open the file for reading may run it.\n"
    "\n"
    "For each FILE, one key=value line per field:\n"
    "  head            first readable byte; bytes below it were pruned and read as zeros\n"
    "  size            end of the file\n"
    "  durable_size    bytes below this survive a power loss\n"
    "  segments        segment files holding the file\n"
    "  segment_size    capacity of segments created from now on\n"
    "  retain_bytes    byte limit of retention (0: none)\n"
    "  retain_seconds  age limit of retention (0: none)\n"
    "  pruned_segments segment files a prune dropped that are still to be deleted\n"
    "  pruned_bytes    their bytes: at most the space still to be freed\n"
    "  damaged         why the file is damaged, or `none`\n"
    "With several FILEs each block starts with file=FILE and blocks are\n"
    "separated by an empty line.\n"
    "\n"
    "Options:\n"
    "  --json      print a JSON array with one object per file; `damaged` is null\n"
    "              or the reason\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status:\n"
    "  0  every FILE was shown\n"
    "  1  some FILE could not be opened or is not on an hpfs mount (the others\n"
    "     are still shown)\n"
    "  2  usage error\n"
    "\n"
    "Examples:\n"
    "  hpfsctl stat /mnt/hpfs/app.log\n"
    "  hpfsctl stat --json /mnt/hpfs/*.log | jq '.[] | select(.damaged != null)'\n";

constexpr std::string_view kSetHelp =
    "Usage: hpfsctl set FILE KEY=VALUE...\n"
    "\n"
    "Changes the settings of a file on an hpfs mount, through the HPFS_IOC_SET\n"
    "ioctl. Needs write permission on FILE (it is opened for writing, never\n"
    "written). Every KEY=VALUE is checked first: if one is bad, nothing changes.\n"
    "\n"
    "Keys:\n"
    "  segment_size=SIZE     capacity of the segments created from now on (4K to 1T);\n"
    "                        existing segments keep theirs\n"
    "  retain_bytes=SIZE     keep at least the newest SIZE bytes; older whole\n"
    "                        segments may be dropped. 0 or `none`: no limit\n"
    "  retain_seconds=TIME   drop sealed segments last written longer ago than\n"
    "                        TIME. 0 or `none`: no limit\n"
    "SIZE is a number of bytes with an optional suffix K, M, G or T (powers of\n"
    "1024, case-insensitive); TIME is seconds with an optional suffix s, m, h or d.\n"
    "\n"
    "Options:\n"
    "  -h, --help  show this help\n"
    "\n"
    "On success it prints the file's settings as they now are (segment_size,\n"
    "retain_bytes, retain_seconds, as `hpfsctl stat` does).\n"
    "\n"
    "Exit status:\n"
    "  0  the settings were changed\n"
    "  1  a bad key or value (EINVAL: nothing changed), FILE could not be opened\n"
    "     for writing, is not on an hpfs mount, or is damaged\n"
    "  2  usage error\n"
    "\n"
    "Examples:\n"
    "  hpfsctl set /mnt/hpfs/app.log retain_bytes=10G retain_seconds=7d\n"
    "  hpfsctl set /mnt/hpfs/app.log retain_seconds=none segment_size=16M\n";

constexpr std::string_view kCheckHelp =
    "Usage: hpfsctl check [--repair [--truncate-at-gap]] BACKING\n"
    "       hpfsctl check --remote --tier-url=s3://BUCKET[/PREFIX] --tier-endpoint=URL\n"
    "                     [--tier-region=REGION] [--tier-credentials=FILE] [--repair] BACKING\n"
    "\n"
    "Checks the backing directory BACKING of an hpfs mount while it is not\n"
    "mounted: refuses (exit 8) while a daemon serves it. Every HPFile under\n"
    "BACKING (a directory holding hpfile.meta, or segments without one) is\n"
    "reported as one of:\n"
    "  ok              nothing to do\n"
    "  needs recovery  a crash left an interrupted operation (a temp file, a\n"
    "                  prune or truncate half done, unsynced bytes at the end of\n"
    "                  a sealed segment); the actions that finish it are listed.\n"
    "                  Mounting does them too, when the file is first opened\n"
    "  damaged         something no crash produces (a missing range, a segment\n"
    "                  longer than its slot, a missing or unreadable meta, a\n"
    "                  stray entry); the mount serves such a file read-only.\n"
    "                  What --repair would do about it, or why it cannot, follows\n"
    "Leftovers in the trash (.hpfs-trash, files deleted while the daemon was\n"
    "killed) and stray files outside HPFiles are reported but are not errors.\n"
    "A summary line comes last.\n"
    "\n"
    "Options:\n"
    "  --repair    carry out the recovery of every file that needs it (the same\n"
    "              actions opening the file takes, each one printed), repair\n"
    "              damaged files where that is safe, and empty the trash.\n"
    "              A lost meta (missing, or garbage) is rebuilt from the\n"
    "              segments: segment size from the newest segment, head at the\n"
    "              first segment, mode and owner from the segment files;\n"
    "              retention limits it held are lost. Other damage is left\n"
    "              alone, and a file that cannot be fully repaired is not\n"
    "              changed at all. BACKING stays locked against mounting until\n"
    "              the repair is done\n"
    "  --truncate-at-gap\n"
    "              with --repair, also repair a file with a gap (bytes no\n"
    "              segment holds) by deleting every segment after the first\n"
    "              gap: the file then ends there. This deletes data that is\n"
    "              still readable; the output names what goes. Without\n"
    "              --repair it only shows what would go\n"
    "  --remote    after the local check, check the bucket of a tiered BACKING:\n"
    "              list --tier-url's prefix and compare it with every file's\n"
    "              hpfile.remote: an object recorded but missing, or of another\n"
    "              size, is an error (its range reads as EIO); an object of\n"
    "              hpfs's naming that no manifest records is an orphan (an\n"
    "              upload a crash left unrecorded, a deleted file's, a dropped\n"
    "              one not yet deleted). --repair deletes orphans, never a\n"
    "              recorded object, and none at all when a manifest cannot be\n"
    "              read. The prefix must belong to this BACKING alone: another\n"
    "              store's objects there would be orphans. Credentials from\n"
    "              --tier-credentials (AWS shared-credentials format) or\n"
    "              AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; region us-east-1\n"
    "              unless --tier-region\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status (bits, as fsck uses them):\n"
    "  0   every file is ok\n"
    "  1   --repair recovered or repaired some files\n"
    "  4   errors left: damaged files, or files needing recovery without --repair\n"
    "  8   operational error: BACKING is mounted or unreadable, or a repair failed\n"
    "  16  usage error\n"
    "\n"
    "Examples:\n"
    "  fusermount3 -u /mnt/hpfs && hpfsctl check /var/lib/hpfs/backing\n"
    "  hpfsctl check --repair /var/lib/hpfs/backing; echo $?\n"
    "  hpfsctl check --truncate-at-gap /var/lib/hpfs/backing   # preview only\n";

constexpr std::string_view kImportHelp =
    "Usage: hpfsctl import BACKING/PATH...\n"
    "\n"
    "Turns plain files in the backing directory of an hpfs mount (logs that were\n"
    "there before hpfs; the mount does not show them) into files of the mount,\n"
    "in place and without copying: each file becomes the first segment of a new\n"
    "hpfs file, sealed at its length, with the file's mode, owner and times.\n"
    "Appends through the mount continue after its last byte.\n"
    "\n"
    "BACKING must not be mounted: import refuses while a daemon serves it, and\n"
    "holds its lock meanwhile. BACKING is the nearest directory above PATH that\n"
    "hpfs has mounted (it holds .hpfs.lock). Refused: anything but a regular\n"
    "file with one link, files larger than 1 TiB, reserved names, and files\n"
    "inside an hpfs file or the trash. Stop the programs that write a file\n"
    "before importing it. Each import is atomic: after a crash the file is\n"
    "either still plain or fully imported.\n"
    "\n"
    "Options:\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status:\n"
    "  0  every file was imported\n"
    "  1  some file was refused (the message says why; the others are imported)\n"
    "  2  usage error\n"
    "\n"
    "Examples:\n"
    "  fusermount3 -u /mnt/hpfs\n"
    "  hpfsctl import /var/lib/hpfs/backing/syslog /var/lib/hpfs/backing/nginx/*.log\n";

bool IsHelp(std::string_view arg) { return arg == "-h" || arg == "--help"; }

std::string ErrorText(int err, std::string_view action) {
  if (err == ENOTTY) return "not a file on an hpfs mount";
  return std::string(action) + ": " + std::strerror(err);
}

int Stat(const std::vector<std::string>& args) {
  bool json = false;
  std::vector<std::string> files;
  bool options_done = false;
  for (const std::string& arg : args) {
    if (!options_done && IsHelp(arg)) {
      std::cout << kStatHelp;
      return kExitOk;
    }
    if (!options_done && arg == "--json") {
      json = true;
    } else if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && arg.starts_with("-") && arg != "-") {
      std::cerr << "hpfsctl stat: unknown option '" << arg << "'\n" << kStatHelp;
      return kExitUsage;
    } else {
      files.push_back(arg);
    }
  }
  if (files.empty()) {
    std::cerr << "hpfsctl stat: no FILE given\n" << kStatHelp;
    return kExitUsage;
  }
  int status = kExitOk;
  bool first = true;
  if (json) std::cout << "[";
  for (const std::string& file : files) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    hpfs_stat st{};
    int err = 0;
    if (fd < 0) {
      err = errno;
    } else {
      if (::ioctl(fd, HPFS_IOC_STAT, &st) != 0) err = errno;
      ::close(fd);
    }
    if (err != 0) {
      std::cerr << "hpfsctl stat: " << file << ": " << ErrorText(err, fd < 0 ? "cannot open" : "stat failed") << "\n";
      status = kExitFailed;
      continue;
    }
    if (json) {
      std::cout << (first ? "\n  " : ",\n  ") << FormatStatJson(st, file);
    } else {
      if (!first) std::cout << "\n";
      std::cout << FormatStatText(st, files.size() > 1 ? std::optional<std::string>(file) : std::nullopt);
    }
    first = false;
  }
  if (json) std::cout << (first ? "]\n" : "\n]\n");
  return status;
}

int Set(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (IsHelp(arg)) {
      std::cout << kSetHelp;
      return kExitOk;
    }
  }
  std::vector<std::string> operands;
  for (const std::string& arg : args) {
    if (arg != "--") operands.push_back(arg);
  }
  if (operands.size() < 2) {
    std::cerr << "hpfsctl set: expected FILE and at least one KEY=VALUE\n" << kSetHelp;
    return kExitUsage;
  }
  const std::string& file = operands[0];
  const std::vector<std::string_view> assignments(operands.begin() + 1, operands.end());
  auto request = ParseAssignments(assignments);
  if (!request) {
    std::cerr << "hpfsctl set: " << request.error() << ": " << std::strerror(EINVAL) << "\n";
    return kExitFailed;
  }
  const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    std::cerr << "hpfsctl set: " << file << ": cannot open for writing: " << std::strerror(err) << "\n";
    return kExitFailed;
  }
  const int rc = ::ioctl(fd, HPFS_IOC_SET, &*request);
  const int err = errno;
  if (rc != 0) {
    ::close(fd);
    std::cerr << "hpfsctl set: " << file << ": "
              << (err == EIO ? std::string("the file is damaged or unreadable: ") + std::strerror(err)
                             : ErrorText(err, "set failed"))
              << "\n";
    return kExitFailed;
  }
  // What is in force now, all three settings, so a typo in a unit shows.
  hpfs_stat st{};
  const int stat_rc = ::ioctl(fd, HPFS_IOC_STAT, &st);
  const int stat_err = errno;
  ::close(fd);
  if (stat_rc != 0) {
    std::cerr << "hpfsctl set: " << file << ": changed, but cannot show the settings: " << std::strerror(stat_err)
              << "\n";
    return kExitOk;
  }
  std::cout << FormatSettingsText(st);
  return kExitOk;
}

int Check(const std::vector<std::string>& args) {
  CheckOptions options;
  bool remote = false;
  RemoteCheckOptions remote_options;
  std::vector<std::string> operands;
  bool options_done = false;
  for (const std::string& arg : args) {
    if (!options_done && IsHelp(arg)) {
      std::cout << kCheckHelp;
      return kCheckClean;
    }
    const auto value = hpfile::SplitKeyValue(arg);
    if (!options_done && arg == "--remote") {
      remote = true;
    } else if (!options_done && value && value->key == "--tier-url") {
      remote_options.tier_url = value->value;
    } else if (!options_done && value && value->key == "--tier-endpoint") {
      remote_options.tier_endpoint = value->value;
    } else if (!options_done && value && value->key == "--tier-region") {
      remote_options.tier_region = value->value;
    } else if (!options_done && value && value->key == "--tier-credentials") {
      remote_options.tier_credentials = value->value;
    } else if (!options_done && arg == "--repair") {
      options.repair = true;
    } else if (!options_done && arg == "--truncate-at-gap") {
      options.truncate_at_gap = true;
    } else if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && arg.starts_with("-")) {
      std::cerr << "hpfsctl check: unknown option '" << arg << "'\n" << kCheckHelp;
      return kCheckUsage;
    } else {
      operands.push_back(arg);
    }
  }
  if (operands.size() != 1) {
    std::cerr << "hpfsctl check: expected exactly one BACKING directory\n" << kCheckHelp;
    return kCheckUsage;
  }
  if (!remote && (!remote_options.tier_url.empty() || !remote_options.tier_endpoint.empty())) {
    std::cerr << "hpfsctl check: --tier-* options need --remote\n" << kCheckHelp;
    return kCheckUsage;
  }
  const int local = CheckBacking(operands[0], options, std::cout, std::cerr);
  if (!remote || (local & kCheckOperational) != 0) return local;
  remote_options.repair = options.repair;
  return local | CheckRemoteBacking(operands[0], remote_options, std::cout, std::cerr);
}

int Import(const std::vector<std::string>& args) {
  std::vector<std::string> paths;
  bool options_done = false;
  for (const std::string& arg : args) {
    if (!options_done && IsHelp(arg)) {
      std::cout << kImportHelp;
      return kExitOk;
    }
    if (!options_done && arg == "--") {
      options_done = true;
    } else if (!options_done && arg.starts_with("-")) {
      std::cerr << "hpfsctl import: unknown option '" << arg << "'\n" << kImportHelp;
      return kExitUsage;
    } else {
      paths.push_back(arg);
    }
  }
  if (paths.empty()) {
    std::cerr << "hpfsctl import: no BACKING/PATH given\n" << kImportHelp;
    return kExitUsage;
  }
  return ImportFiles(paths, std::cout, std::cerr);
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kMainHelp;
    return kExitUsage;
  }
  const std::string_view command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (IsHelp(command)) {
    std::cout << kMainHelp;
    return kExitOk;
  }
  if (command == "-V" || command == "--version") {
    std::cout << "hpfsctl " << HPFS_VERSION << "\n";
    return kExitOk;
  }
  if (command == "stat") return Stat(args);
  if (command == "set") return Set(args);
  if (command == "check") return Check(args);
  if (command == "import") return Import(args);
  std::cerr << "hpfsctl: unknown command '" << command << "'\n" << kMainHelp;
  return kExitUsage;
}

}  // namespace
}  // namespace hpfs::ctl

int main(int argc, char** argv) { return hpfs::ctl::Main(argc, argv); }
