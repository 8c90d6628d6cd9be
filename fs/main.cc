// SPDX-License-Identifier: Apache-2.0
// hpfs [options] BACKING MOUNTPOINT
//
// Order matters here: everything that can fail for a reason the user can fix
// (options, the backing directory, the single-mount lock) fails before the
// mount exists and while stderr is still the terminal.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "fs/backing_lock.h"
#include "fs/commit_thread.h"
#include "fs/filesystem.h"
#include "fs/fuse_ops.h"
#include "fs/graceful_stop.h"
#include "fs/log_file.h"
#include "fs/mount_point.h"
#include "fs/options.h"
#include "fs/readahead.h"

#ifndef HPFS_VERSION
#define HPFS_VERSION "unknown"
#endif

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitFailure = 1;

// Retention runs once a second over the files the kernel knows, and walks
// this many entries of the rest of the store per run (each file with a limit
// is opened for it): a store of N entries is covered every N/256 seconds.
constexpr std::chrono::milliseconds kRetentionInterval{1000};
constexpr size_t kRetentionWalkPerPass = 256;

struct ParseState {
  hpfs::DaemonOptions options;
  std::string backing;
  bool bad = false;
  std::optional<unsigned> max_read;  // given as -o max_read=N (libfuse's)
};

int OptionProc(void* data, const char* arg, int key, fuse_args*) {
  auto& state = *static_cast<ParseState*>(data);
  if (key == FUSE_OPT_KEY_NONOPT) {
    if (state.backing.empty()) {
      state.backing = arg;
      return 0;
    }
    return 1;  // the mount point, for fuse_parse_cmdline
  }
  if (key != FUSE_OPT_KEY_OPT || arg[0] == '-') return 1;  // -f, -d, --help...: libfuse's
  if (hpfs::IsMountUtilityOption(arg)) return 0;  // dropped
  if (const std::string_view option(arg); option.starts_with("max_read=")) {
    unsigned value = 0;
    const std::string_view digits = option.substr(9);
    if (std::from_chars(digits.begin(), digits.end(), value).ptr == digits.end()) state.max_read = value;
    return 1;  // libfuse checks it and hands it to the kernel
  }
  auto applied = hpfs::ApplyHpfsOption(arg, state.options);
  if (!applied) {
    std::fprintf(stderr, "%s\n", applied.error().c_str());
    state.bad = true;
    return -1;
  }
  return *applied ? 0 : 1;
}

void PrintUsage(const char* program) {
  std::printf("usage: %s [options] BACKING MOUNTPOINT\n\n", program);
  std::printf("Mounts the backing directory BACKING at MOUNTPOINT. Each regular file is a\n"
              "head-prunable file: it only grows at the end, and its head can be dropped\n"
              "with fallocate --punch-hole. Runs in the background (logging to syslog)\n"
              "unless -f or -d is given.\n\n");
  std::printf("%s\n", hpfs::HpfsOptionsHelp().c_str());
  // libfuse's own help text would advertise clone_fd as a choice, and its
  // allow_other line does not say that root gets it by default.
  std::printf("FUSE options (hpfs always adds default_permissions, subtype=hpfs and\n"
              "fsname=BACKING):\n"
              "    -h   --help            print this help\n"
              "    -V   --version         print the versions of hpfs and libfuse\n"
              "    -d   -o debug          print every request (implies -f and log_level=debug)\n"
              "    -f                     stay in the foreground, logging to stderr (or log_file)\n"
              "    -s                     serve all requests from one thread\n"
              "    -o max_threads=N       the most worker threads (default 10)\n"
              "    -o max_idle_threads=N  the most idle worker threads kept (default: all)\n"
              "    -o max_read=BYTES      the largest read request (default 1032192, the\n"
              "                           largest whose reply is still spliced)\n"
              "    -o clone_fd            accepted and ignored: every thread always has its\n"
              "                           own /dev/fuse descriptor\n"
              "    -o allow_root          let root in besides the mounting user (turns the\n"
              "                           allow_other default off)\n"
              "    -o auto_unmount        remove the mount when the daemon ends, even by SIGKILL\n"
              "Kernel mount options (ro, nosuid, nodev, noexec, noatime, ...) as for any\n"
              "file system; see hpfs(8).\n");
}

// Tells the service manager (a systemd unit of Type=notify) how the daemon is
// doing: one datagram to the socket $NOTIFY_SOCKET names, if any ('@' starts
// an abstract name). Without libsystemd: the protocol is this one sendto. A
// failure costs only the notification.
void NotifyServiceManager(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return;
  sockaddr_un addr{};
  const size_t length = std::strlen(path);
  if (length < 2 || length > sizeof addr.sun_path) return;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path, length);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const auto addr_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  if (sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr),
             addr_length) < 0) {
    spdlog::warn("cannot notify the service manager at {}: {}", path, std::strerror(errno));
  }
  close(fd);
}

// Each open file, cached directory and segment takes a descriptor.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Logs go to the log file when there is one; otherwise to stderr until the
// daemon forks into the background (so that what goes wrong before the mount
// reaches the terminal), then to syslog.
void SetUpLogging(bool to_syslog, const std::string& level, const std::shared_ptr<hpfs::LogFileSink>& log_file) {
  std::shared_ptr<spdlog::logger> logger;
  if (log_file) {
    logger = std::make_shared<spdlog::logger>("hpfs", log_file);
  } else if (to_syslog) {
    logger = spdlog::syslog_logger_mt("hpfs-syslog", "hpfs", LOG_PID, LOG_DAEMON);
  } else {
    logger = spdlog::stderr_color_mt("hpfs");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::warn);
}

// Whether syslog(3) has a listener: it sends to /dev/log and drops every
// message without a word when nothing is there (a container, a rescue shell).
bool SyslogReachable() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, "/dev/log");
  for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
    const int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const bool connected = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (connected) return true;
  }
  return false;
}

// Opens -o log_file's path, made absolute first (the daemon leaves its
// working directory when it detaches). A log file inside the mount would
// have the daemon wait on itself; it is refused. Errors go to stderr.
std::shared_ptr<hpfs::LogFileSink> OpenLogFile(const std::string& path, const char* mountpoint) {
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) {
    std::fprintf(stderr, "hpfs: log_file %s: %s\n", path.c_str(), ec.message().c_str());
    return nullptr;
  }
  std::error_code dir_ec, mount_ec;
  const std::filesystem::path dir = std::filesystem::weakly_canonical(absolute.parent_path(), dir_ec);
  const std::filesystem::path mount = std::filesystem::weakly_canonical(mountpoint, mount_ec);
  if (!dir_ec && !mount_ec) {
    auto [mount_end, dir_at] = std::mismatch(mount.begin(), mount.end(), dir.begin(), dir.end());
    if (mount_end == mount.end()) {
      std::fprintf(stderr, "hpfs: log_file %s lies inside the mount point %s\n", absolute.c_str(), mountpoint);
      return nullptr;
    }
  }
  auto sink = hpfs::LogFileSink::Open(absolute);
  if (!sink) {
    std::fprintf(stderr, "hpfs: log_file %s: %s\n", absolute.c_str(), sink.error().message().c_str());
    return nullptr;
  }
  return *sink;
}

std::string EscapeOptionValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// A user's mount keeps the kernel's 128 KiB (the bdi is root's to change),
// which halves cold sequential reads; hpfs(8) says so.
void SetReadAhead(const char* mountpoint) {
  if (auto set = hpfs::SetMountReadAhead(mountpoint, hpfs::kMountReadAheadKib); set) {
    spdlog::info("read-ahead of {}: {} KiB", mountpoint, hpfs::kMountReadAheadKib);
  } else {
    spdlog::info("read-ahead of {} left at the kernel's default: {}", mountpoint, set.error().message());
  }
}

// Write-back mode: keeps what the kernel may send out of order within the
// reorder buffer's bound (fs/readahead.h).
void CapDirtyBytes(const char* mountpoint, uint64_t bytes) {
  if (auto cap = hpfs::CapMountDirtyBytes(mountpoint, bytes); cap) {
    spdlog::info("dirty pages of {}: at most {} bytes", mountpoint, *cap);
  } else {
    spdlog::warn("dirty pages of {} left at the kernel's cap ({}): past {} bytes, the kernel's write-back can send "
                 "more out of order than the reorder buffer and its spool hold",
                 mountpoint, cap.error().message(), bytes);
  }
}

int Run(int argc, char* argv[]) {
  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  std::unique_ptr<fuse_args, decltype(&fuse_opt_free_args)> args_guard(&args, &fuse_opt_free_args);
  ParseState state;
  static const fuse_opt kNoTemplates[] = {FUSE_OPT_END};
  if (fuse_opt_parse(&args, &state, kNoTemplates, OptionProc) != 0) {
    if (!state.bad) std::fprintf(stderr, "hpfs: cannot parse the command line\n");
    return kExitUsage;
  }
  if (auto problem = hpfs::CheckTierOptions(state.options.config)) {
    std::fprintf(stderr, "%s\n", problem->c_str());
    return kExitUsage;
  }

  fuse_cmdline_opts opts;
  std::memset(&opts, 0, sizeof opts);
  if (fuse_parse_cmdline(&args, &opts) != 0) return kExitUsage;
  std::unique_ptr<char, decltype(&std::free)> mountpoint_guard(opts.mountpoint, &std::free);
  if (opts.show_help) {
    PrintUsage(argv[0]);
    return kExitOk;
  }
  if (opts.show_version) {
    std::printf("hpfs version %s\n", HPFS_VERSION);
    // libfuse prints the rest, partly from a child process: ours goes first.
    std::fflush(stdout);
    fuse_lowlevel_version();
    return kExitOk;
  }
  if (state.backing.empty() || opts.mountpoint == nullptr) {
    std::fprintf(stderr, "usage: %s [options] BACKING MOUNTPOINT (see --help)\n", argv[0]);
    return kExitUsage;
  }
  // -d means at least debug (trace stays trace).
  if (opts.debug && state.options.log_level != "trace") state.options.log_level = "debug";

  char resolved[PATH_MAX];
  if (realpath(state.backing.c_str(), resolved) == nullptr) {
    std::fprintf(stderr, "hpfs: backing directory %s: %s\n", state.backing.c_str(), std::strerror(errno));
    return kExitFailure;
  }
  const std::string backing = resolved;
  struct stat st;
  if (stat(backing.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "hpfs: backing %s is not a directory\n", backing.c_str());
    return kExitFailure;
  }
  if (const auto problem = hpfs::MountPointProblem(backing, opts.mountpoint)) {
    std::fprintf(stderr, "hpfs: %s\n", problem->c_str());
    return kExitFailure;
  }

  // Permission checks are the kernel's, as on a local filesystem.
  fuse_opt_add_arg(&args, "-odefault_permissions");
  if (hpfs::AllowOther(state.options, geteuid())) fuse_opt_add_arg(&args, "-oallow_other");
  fuse_opt_add_arg(&args, "-osubtype=hpfs");
  if (!state.max_read) {
    state.max_read = hpfs::kMaxReadSize;
    fuse_opt_add_arg(&args, ("-omax_read=" + std::to_string(hpfs::kMaxReadSize)).c_str());
  }
  fuse_opt_add_arg(&args, ("-ofsname=" + EscapeOptionValue(backing)).c_str());

  // The session checks libfuse's own options: a bad one fails here, before
  // the backing directory is locked or touched. No request arrives before
  // the mount, so context.fs may be set later.
  hpfs::SessionContext context;
  context.max_read = *state.max_read;
  const fuse_lowlevel_ops ops = hpfs::MakeLowlevelOps(state.options.config.xattr);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &context);
  if (se == nullptr) return kExitUsage;  // libfuse named the bad option
  std::unique_ptr<fuse_session, decltype(&fuse_session_destroy)> se_guard(se, &fuse_session_destroy);
  context.session = se;
  if (const char* delay = std::getenv("HPFS_TEST_DELAY_WRITE")) {
    const auto parsed = hpfs::ParseDelayedWrite(delay);
    if (!parsed) {
      std::fprintf(stderr, "hpfs: HPFS_TEST_DELAY_WRITE must be OFFSET:MILLISECONDS, not %s\n", delay);
      return kExitUsage;
    }
    context.delayed_write = std::make_unique<hpfs::DelayedWrite>();
    std::tie(context.delayed_write->offset, context.delayed_write->delay) = *parsed;
  }

  auto lock = hpfs::BackingLock::Acquire(backing);
  if (!lock) {
    if (hpfile::IsErrno(lock.error(), EWOULDBLOCK)) {
      std::fprintf(stderr,
                   "hpfs: %s is already in use by another hpfs process; unmount it first\n"
                   "(a daemon just unmounted may still be finishing deletions)\n",
                   backing.c_str());
    } else {
      std::fprintf(stderr, "hpfs: cannot lock %s: %s\n", backing.c_str(), lock.error().message().c_str());
    }
    return kExitFailure;
  }

  std::shared_ptr<hpfs::LogFileSink> log_file;
  if (!state.options.log_file.empty()) {
    log_file = OpenLogFile(state.options.log_file, opts.mountpoint);
    if (!log_file) return kExitFailure;
  } else if (!opts.foreground && !SyslogReachable()) {
    std::fprintf(stderr,
                 "hpfs: warning: no syslog listening at /dev/log: once in the background, the daemon's\n"
                 "messages (retention drops, damaged files, errors) are lost; use -o log_file=PATH or -f\n");
  }
  SetUpLogging(/*to_syslog=*/false, state.options.log_level, log_file);
  RaiseFileLimit();

  auto fs = hpfs::Filesystem::Open(backing, state.options.config);
  if (!fs) {
    std::fprintf(stderr, "hpfs: cannot open %s: %s\n", backing.c_str(), fs.error().message().c_str());
    return kExitFailure;
  }
  context.fs = fs->get();

  if (fuse_set_signal_handlers(se) != 0) return kExitFailure;
  // SIGHUP reopens the log file (logrotate) and never ends the daemon.
  hpfs::HangupHandler hangup;
  if (auto installed = hangup.Install(); !installed) {
    std::fprintf(stderr, "hpfs: cannot handle SIGHUP: %s\n", installed.error().message().c_str());
    fuse_remove_signal_handlers(se);
    return kExitFailure;
  }
  if (fuse_session_mount(se, opts.mountpoint) != 0) {
    fuse_remove_signal_handlers(se);
    return kExitFailure;
  }
  if (fuse_daemonize(opts.foreground) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    return kExitFailure;
  }
  if (!opts.foreground) SetUpLogging(/*to_syslog=*/true, state.options.log_level, log_file);
  spdlog::info("mounted {} at {}", backing, opts.mountpoint);
  SetReadAhead(opts.mountpoint);
  if (state.options.config.writeback) {
    CapDirtyBytes(opts.mountpoint, state.options.config.reorder_bound + state.options.config.spool_bound);
  }
  // The mount is live: requests that arrive before the loop runs wait in the
  // kernel's queue, so units ordered after ours may use it from now on.
  NotifyServiceManager("READY=1");

  // Threads only now: they would not survive fuse_daemonize's fork.
  if (state.options.config.writeback) hpfs::GracefulStop::BlockStopSignals();
  hangup.Start([&log_file] {
    if (!log_file) {
      spdlog::info("SIGHUP: no log file to reopen");
    } else if (auto reopened = log_file->Reopen(); !reopened) {
      spdlog::error("cannot reopen log file {}: {}", log_file->path(), reopened.error().message());
    } else {
      spdlog::info("reopened log file {}", log_file->path());
    }
  });
  (*fs)->StartDeleter();
  (*fs)->SetInvalidator([se](hpfs::InodeId id, uint64_t offset, uint64_t length) {
    const int rc = fuse_lowlevel_notify_inval_inode(se, id, static_cast<off_t>(offset), static_cast<off_t>(length));
    if (rc != 0 && rc != -ENOENT) spdlog::debug("cache invalidation of inode {}: {}", id, std::strerror(-rc));
  });
  (*fs)->StartRetention(kRetentionInterval, kRetentionWalkPerPass);
  if (auto tiering = (*fs)->StartTiering(kRetentionInterval, kRetentionWalkPerPass); !tiering) {
    fuse_session_exit(se);
  }
  std::unique_ptr<hpfs::CommitThread> commit;
  if (state.options.config.writeback) {
    commit = std::make_unique<hpfs::CommitThread>(
        **fs, opts.mountpoint, std::chrono::seconds(state.options.config.commit_seconds),
        [&context] { return context.cached_writers.load(std::memory_order_relaxed) > 0; });
  }

  std::unique_ptr<hpfs::GracefulStop> graceful_stop;
  if (state.options.config.writeback) graceful_stop = std::make_unique<hpfs::GracefulStop>(se, opts.mountpoint);

  int rc;
  if (opts.singlethread) {
    rc = fuse_session_loop(se);
  } else {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, 1);
    // libfuse marks unset values with UINT_MAX.
    if (opts.max_threads > 0 && opts.max_threads != UINT_MAX) {
      fuse_loop_cfg_set_max_threads(config, opts.max_threads);
    }
    if (opts.max_idle_threads != UINT_MAX) fuse_loop_cfg_set_idle_threads(config, opts.max_idle_threads);
    rc = fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
  }
  graceful_stop.reset();
  NotifyServiceManager("STOPPING=1");
  hangup.Stop();
  (*fs)->StopRetention();
  (*fs)->StopTiering();
  (*fs)->SetInvalidator(nullptr);
  hpfs::ReleaseAllHandles(context);

  // The loop returns the signal number when a signal ended it.
  const bool clean = rc == 0 || rc == SIGINT || rc == SIGTERM;
  if (auto r = (*fs)->SyncAll(); !r) spdlog::error("sync at unmount failed: {}", r.error().message());
  // Writes held for bytes that will not come now fail; a commit still in
  // progress ends with the mount.
  (*fs)->FailHeldWrites(std::make_error_code(std::errc::io_error));
  fuse_session_unmount(se);
  commit.reset();
  fuse_remove_signal_handlers(se);
  spdlog::info("unmounted {}", opts.mountpoint);
  // The mount is gone; storage of files unlinked during it is freed now. A
  // signal from here on ends the process, and the next mount deletes the rest.
  if (const size_t pending = (*fs)->PendingDeletions(); pending > 0) {
    spdlog::info("finishing {} pending deletions", pending);
  }
  fs->reset();
  spdlog::shutdown();
  return clean ? kExitOk : kExitFailure;
}

}  // namespace

int main(int argc, char* argv[]) {
  // glibc gives every FUSE worker thread an arena of its own: a file opened
  // and closed on one thread, between inodes kept from lookups on others,
  // leaves holes in each that it never returns. Two arenas keep the RSS of a
  // mount of many idle files near its heap (docs/PERFORMANCE.md, scale).
  ::mallopt(M_ARENA_MAX, 2);
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hpfs: %s\n", e.what());
    return kExitFailure;
  }
}
