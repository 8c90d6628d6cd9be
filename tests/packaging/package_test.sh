#!/usr/bin/env bash
# The Debian packages as a user gets them: builds them with scripts/package,
# installs them with apt-get, mounts through `mount -t fuse.hpfs` and through an
# /etc/fstab line (`mount MOUNTPOINT`), appends, reads, prunes and checks with
# hpfsctl, builds and runs a program against the installed libhpfile with
# pkg-config, then removes the packages.
#
# Needs root: it installs packages, mounts and edits
# /etc/fstab. It always puts things back: mounts are removed, /etc/fstab is
# restored byte for byte, the packages are purged (an hpfs package installed
# before the test is replaced, then removed too). Exit 77 (skipped) only when
# dpkg-buildpackage is unavailable.
set -euo pipefail

root=${HPFS_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

if ! command -v dpkg-buildpackage >/dev/null; then
  echo "SKIP: dpkg-buildpackage is unavailable (package dpkg-dev, Debian only): the packages cannot be built"
  exit 77
fi

if ((EUID != 0)); then
  echo "FAIL: needs root: it installs packages, mounts and edits /etc/fstab"
  exit 1
fi
for stray in /usr/local/bin/hpfs /usr/local/sbin/hpfs; do
  if [[ -e $stray ]]; then
    echo "FAIL: $stray (a meson install?) would be run by mount.fuse3 instead of the package's hpfs; remove it"
    exit 1
  fi
done

work=$(mktemp -d /tmp/hpfs-package-test.XXXXXX)
backing=$work/backing
mnt=$work/mnt
fstab_backup=$work/fstab.orig
installed=0

step() { echo; echo "=== $* ==="; }
fail() { echo "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if mountpoint -q "$mnt" 2>/dev/null || ! stat "$mnt" >/dev/null 2>&1; then
    umount "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
  fi
  if [[ -f $fstab_backup ]] && ! cmp -s "$fstab_backup" /etc/fstab; then
    cp "$fstab_backup" /etc/fstab && echo "cleanup: /etc/fstab restored"
  fi
  if ((installed)); then
    env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq hpfs libhpfile-dev >/dev/null &&
      echo "cleanup: packages removed"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The daemon of the mount at $mnt holds $backing/.hpfs.lock until it has
# finished; a new mount of $backing waits for that.
wait_lock_free() {
  timeout 30 flock "$backing/.hpfs.lock" true || fail "the daemon did not exit after the unmount"
}

stat_field() { hpfsctl stat "$1" | sed -n "s/^$2=//p"; }

# The smoke check on a mount at $mnt: appends and reads across segments,
# refuses an overwrite, prunes the head, and the counts agree with hpfsctl.
smoke() {
  local file=$mnt/$1
  seq 1 300000 >>"$file"
  seq 1 300000 | cmp - "$file" || fail "read back differs from what was appended"
  [[ $(stat_field "$file" size) == "$(seq 1 300000 | wc -c)" ]] || fail "hpfsctl stat: size"
  [[ $(stat_field "$file" segment_size) == 1048576 ]] || fail "hpfsctl stat: segment_size"
  [[ $(stat_field "$file" segments) == 2 ]] || fail "hpfsctl stat: segments"
  if printf x | dd of="$file" conv=notrunc bs=1 seek=0 status=none 2>/dev/null; then
    fail "an overwrite of existing bytes succeeded"
  fi
  fallocate --punch-hole --offset 0 --length 1M "$file"
  [[ $(stat_field "$file" head) == 1048576 ]] || fail "hpfsctl stat: head after the punch"
  [[ $(stat_field "$file" segments) == 1 ]] || fail "hpfsctl stat: segments after the punch"
  tail -n 1 "$file" | grep -qx 300000 || fail "the tail is not readable after the punch"
  hpfsctl set "$file" retain_bytes=10G retain_seconds=7d
  [[ $(stat_field "$file" retain_seconds) == 604800 ]] || fail "hpfsctl set: retain_seconds"
}

step "build the packages"
if ! timeout 900 "$root/scripts/package" "$work/debs" >"$work/package.log" 2>&1; then
  tail -n 60 "$work/package.log"
  fail "scripts/package failed"
fi
# What lintian said (warnings are allowed, errors failed the build).
sed -n '/^package: lintian/,$p' "$work/package.log"
debs=("$work"/debs/hpfs_*.deb "$work"/debs/libhpfile-dev_*.deb)
[[ -f ${debs[0]} && -f ${debs[1]} ]] || fail "scripts/package left no hpfs and libhpfile-dev .debs"

step "install them"
installed=1
env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
[[ $(command -v hpfs) == /usr/bin/hpfs && $(command -v hpfsctl) == /usr/bin/hpfsctl ]] ||
  fail "hpfs and hpfsctl are not in /usr/bin"
for page in hpfs hpfsctl; do
  [[ -f /usr/share/man/man8/$page.8.gz ]] || fail "no man page $page(8)"
done
[[ -f /usr/lib/systemd/system/hpfs@.service ]] || fail "no hpfs@.service"
grep -q '^ExecStart=/usr/bin/hpfs -f ' /usr/lib/systemd/system/hpfs@.service ||
  fail "hpfs@.service does not run /usr/bin/hpfs in the foreground"
[[ -f /usr/share/doc/hpfs/examples/fstab.example || -f /usr/share/doc/hpfs/fstab.example ]] ||
  fail "no fstab example in /usr/share/doc/hpfs"
[[ $(hpfs --version) == "hpfs version "* ]] || fail "hpfs --version"

mkdir -p "$backing" "$mnt"

step "mount -t fuse.hpfs"
# Options of mount(8) and systemd next to hpfs's own, as an fstab line has them.
mount -t fuse.hpfs "$backing" "$mnt" -o segment_size=1M,nofail,_netdev,x-systemd.requires=local-fs.target
[[ $(findmnt -n -o FSTYPE,SOURCE "$mnt" | tr -s ' ') == "fuse.hpfs $backing" ]] ||
  fail "findmnt: $(findmnt -n "$mnt")"
smoke app.log
umount "$mnt"
mountpoint -q "$mnt" && fail "still mounted after umount"
wait_lock_free

step "mount MOUNTPOINT from /etc/fstab"
cp -p /etc/fstab "$fstab_backup"
printf '%s  %s  fuse.hpfs  segment_size=1M,nofail,_netdev  0  0\n' "$backing" "$mnt" |
  tee -a /etc/fstab >/dev/null
mount "$mnt"
[[ $(findmnt -n -o FSTYPE "$mnt") == fuse.hpfs ]] || fail "mount $mnt did not mount fuse.hpfs"
# What the first mount left is all there.
[[ $(stat_field "$mnt/app.log" head) == 1048576 ]] || fail "the head did not survive the remount"
tail -n 1 "$mnt/app.log" | grep -qx 300000 || fail "the data did not survive the remount"
smoke fstab.log
umount "$mnt"
wait_lock_free
cp "$fstab_backup" /etc/fstab
cmp -s "$fstab_backup" /etc/fstab || fail "/etc/fstab was not restored"

step "build a program against the installed libhpfile"
pc=$(pkg-config --cflags --libs hpfile) || fail "pkg-config does not know hpfile"
echo "pkg-config --cflags --libs hpfile: $pc"
read -ra flags <<<"$pc"
# From a directory outside the source tree, so only the installed headers count.
(cd "$work" && g++ -std=c++23 -o example "$root/docs/example.cc" "${flags[@]}")
"$work/example" "$work/example-log" || fail "the example program failed"
# Every header of the library is installed (fault_io.h and fake_object_store.h belong
# to the tests).
for header in "$root"/core/*.h; do
  name=$(basename "$header")
  [[ $name == fault_io.h || $name == fake_object_store.h || -f /usr/include/hpfile/core/$name ]] ||
    fail "core/$name is not installed (add it to hpfile_headers in core/meson.build)"
done

step "remove the packages"
env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq hpfs libhpfile-dev >/dev/null
installed=0
[[ ! -e /usr/bin/hpfs && ! -e /usr/include/hpfile ]] || fail "files left after the purge"

echo
echo "PASS: packages built, installed, mounted with mount -t fuse.hpfs and from /etc/fstab, used, removed"
