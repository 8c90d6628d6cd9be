// hpfs [options] BACKING MOUNTPOINT
//
// Order matters here: everything that can fail for a reason the user can fix
// (options, the backing directory, the single-mount lock) fails before the
// mount exists and while stderr is still the terminal.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "fs/backing_lock.h"
#include "fs/commit_thread.h"
#include "fs/filesystem.h"
#include "fs/fuse_ops.h"
#include "fs/options.h"

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
  std::printf("FUSE options (hpfs always adds default_permissions, subtype=hpfs and\n"
              "fsname=BACKING):\n");
  fuse_cmdline_help();
  fuse_lowlevel_help();
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

// Logs go to stderr until the daemon forks into the background (so that what
// goes wrong before the mount reaches the terminal), then to syslog.
void SetUpLogging(bool to_syslog, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (to_syslog) {
    logger = spdlog::syslog_logger_mt("hpfs-syslog", "hpfs", LOG_PID, LOG_DAEMON);
  } else {
    logger = spdlog::stderr_color_mt("hpfs");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::warn);
}

std::string EscapeOptionValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
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

  // Permission checks are the kernel's, as on a local filesystem.
  fuse_opt_add_arg(&args, "-odefault_permissions");
  fuse_opt_add_arg(&args, "-osubtype=hpfs");
  fuse_opt_add_arg(&args, ("-ofsname=" + EscapeOptionValue(backing)).c_str());

  // The session checks libfuse's own options: a bad one fails here, before
  // the backing directory is locked or touched. No request arrives before
  // the mount, so context.fs may be set later.
  hpfs::SessionContext context;
  const fuse_lowlevel_ops ops = hpfs::MakeLowlevelOps(state.options.config.xattr);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &context);
  if (se == nullptr) return kExitUsage;  // libfuse named the bad option
  std::unique_ptr<fuse_session, decltype(&fuse_session_destroy)> se_guard(se, &fuse_session_destroy);
  context.session = se;

  auto lock = hpfs::BackingLock::Acquire(backing);
  if (!lock) {
    if (lock.error().value() == EWOULDBLOCK) {
      std::fprintf(stderr,
                   "hpfs: %s is already in use by another hpfs process; unmount it first\n"
                   "(a daemon just unmounted may still be finishing deletions)\n",
                   backing.c_str());
    } else {
      std::fprintf(stderr, "hpfs: cannot lock %s: %s\n", backing.c_str(), lock.error().message().c_str());
    }
    return kExitFailure;
  }

  SetUpLogging(/*to_syslog=*/false, state.options.log_level);
  RaiseFileLimit();

  auto fs = hpfs::Filesystem::Open(backing, state.options.config);
  if (!fs) {
    std::fprintf(stderr, "hpfs: cannot open %s: %s\n", backing.c_str(), fs.error().message().c_str());
    return kExitFailure;
  }
  context.fs = fs->get();

  if (fuse_set_signal_handlers(se) != 0) return kExitFailure;
  if (fuse_session_mount(se, opts.mountpoint) != 0) {
    fuse_remove_signal_handlers(se);
    return kExitFailure;
  }
  if (fuse_daemonize(opts.foreground) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    return kExitFailure;
  }
  if (!opts.foreground) SetUpLogging(/*to_syslog=*/true, state.options.log_level);
  spdlog::info("mounted {} at {}", backing, opts.mountpoint);
  // The mount is live: requests that arrive before the loop runs wait in the
  // kernel's queue, so units ordered after ours may use it from now on.
  NotifyServiceManager("READY=1");

  // Threads only now: they would not survive fuse_daemonize's fork.
  (*fs)->StartDeleter();
  (*fs)->SetInvalidator([se](hpfs::InodeId id, uint64_t offset, uint64_t length) {
    const int rc = fuse_lowlevel_notify_inval_inode(se, id, static_cast<off_t>(offset), static_cast<off_t>(length));
    if (rc != 0 && rc != -ENOENT) spdlog::debug("cache invalidation of inode {}: {}", id, std::strerror(-rc));
  });
  (*fs)->StartRetention(kRetentionInterval, kRetentionWalkPerPass);
  std::unique_ptr<hpfs::CommitThread> commit;
  if (state.options.config.writeback) {
    commit = std::make_unique<hpfs::CommitThread>(
        **fs, opts.mountpoint, std::chrono::seconds(state.options.config.commit_seconds),
        [&context] { return context.cached_writers.load(std::memory_order_relaxed) > 0; });
  }

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
  NotifyServiceManager("STOPPING=1");
  (*fs)->StopRetention();
  (*fs)->SetInvalidator(nullptr);
  hpfs::ReleaseAllHandles(context);

  // The loop returns the signal number when a signal ended it.
  const bool clean = rc == 0 || rc == SIGINT || rc == SIGTERM || rc == SIGHUP;
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
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hpfs: %s\n", e.what());
    return kExitFailure;
  }
}
