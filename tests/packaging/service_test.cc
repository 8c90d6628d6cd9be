// SPDX-License-Identifier: Apache-2.0
// hpfs under a service manager and mount(8): the readiness datagrams of a
// Type=notify unit, and the fstab options that belong to mount(8) and
// mount.fuse3 rather than to the daemon.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "tests/mount/mount_harness.h"

namespace hpfs::mount_test {
namespace {

using std::chrono::seconds;

// Stands in for systemd's notification socket: a bound datagram socket that
// $NOTIFY_SOCKET names while it lives, so the daemon started meanwhile
// inherits it. A name starting with '@' is in the abstract namespace.
class NotifySocket {
 public:
  explicit NotifySocket(std::string name) : name_(std::move(name)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name_.data(), name_.size());
    if (name_[0] == '@') addr.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    bound_ = fd_ >= 0 && name_.size() < sizeof addr.sun_path &&
             ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), length) == 0;
    if (bound_) ::setenv("NOTIFY_SOCKET", name_.c_str(), 1);
  }
  ~NotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    if (fd_ >= 0) ::close(fd_);
    if (bound_ && name_[0] == '/') ::unlink(name_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool bound() const { return bound_; }

  // The next datagram, or "" when none arrives within `timeout`.
  std::string Receive(seconds timeout) {
    timeval tv{.tv_sec = static_cast<time_t>(timeout.count()), .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t n;
    do {
      n = ::recv(fd_, buf, sizeof buf, 0);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

 private:
  std::string name_;
  int fd_ = -1;
  bool bound_ = false;
};

class ServiceTest : public MountedTest {};

TEST_F(ServiceTest, ForegroundDaemonReportsReadyWhenMountedAndStoppingAtUnmount) {
  NotifySocket notify(S("notify"));
  ASSERT_TRUE(notify.bound()) << std::strerror(errno);
  Mount();
  EXPECT_EQ(notify.Receive(seconds(30)), "READY=1");
  // A unit ordered after ours may use the mount as soon as READY=1 arrives.
  ShellResult append = Shell("echo ready >> " + M("app.log") + " && cat " + M("app.log"), seconds(30));
  EXPECT_EQ(append.exit_code, 0) << append.output;
  EXPECT_EQ(append.output, "ready\n");
  Unmount();
  EXPECT_EQ(notify.Receive(seconds(30)), "STOPPING=1");
}

TEST_F(ServiceTest, ReadinessReachesAnAbstractNotifySocket) {
  NotifySocket notify("@hpfs-service-test-" + std::to_string(::getpid()));
  ASSERT_TRUE(notify.bound()) << std::strerror(errno);
  Mount();
  EXPECT_EQ(notify.Receive(seconds(30)), "READY=1");
  Unmount();
}

TEST_F(ServiceTest, OptionsOfMountAndFstabAreIgnoredByTheDaemon) {
  // What an fstab line may carry for mount(8), mount.fuse3 and systemd,
  // handed to hpfs directly (as a unit or script may do).
  Mount({"-o",
         "defaults,auto,noauto,user,nouser,users,owner,group,nofail,_netdev,comment=logs,"
         "x-systemd.automount,x-systemd.requires=local-fs.target,x-mount.mkdir,X-mount.mode=0755,"
         "segment_size=1M"});
  ShellResult append = Shell("seq 1 300000 >> " + M("app.log") + " && stat -c %s " + M("app.log"), seconds(60));
  ASSERT_EQ(append.exit_code, 0) << append.output;
  // The hpfs option among them still applies: 1.9 MB cross a 1 MiB segment.
  ShellResult segments = Shell("ls " + B("app.log") + " | grep -c '\\.seg$'", seconds(30));
  EXPECT_EQ(segments.output, "2\n");
  Unmount();
}

TEST_F(ServiceTest, NearMissOfAMountOptionIsStillRefused) {
  ShellResult result = RunDaemonToExit({"-f", "-o", "nofailure", backing_, mnt_}, seconds(30));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("nofailure"), std::string::npos) << result.output;
  EXPECT_FALSE(IsMountPoint(mnt_));
}

}  // namespace
}  // namespace hpfs::mount_test
