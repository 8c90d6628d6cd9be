# shellcheck shell=bash
# What the bash scripts in scripts/ share. Each one sources it right after
# `set -euo pipefail`:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Sourcing only defines: hpfs_root, the functions below, and (from deps.sh)
# HPFS_DEPS, HPFS_PACKAGE_DEPS and hpfs_ensure_deps. Nothing runs, so a script
# can still check its arguments and the machine before it installs or builds.

# SPDX-License-Identifier: Apache-2.0

# The source tree: the parent of the folder this file is in, wherever the
# script is called from.
hpfs_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=scripts/deps.sh
source "$hpfs_root/scripts/deps.sh"

# Prints the calling script's header comment, which is its help: every comment
# line from the second line of the file up to the first line that is not one.
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }

# Where hpfs is mounted when no MOUNTPOINT is given: $HPFS_MOUNT, else
# /mnt/hpfs as root and ~/hpfs otherwise.
hpfs_default_mount() {
  if [[ -n ${HPFS_MOUNT:-} ]]; then
    printf '%s\n' "$HPFS_MOUNT"
  elif ((EUID == 0)); then
    printf '%s\n' /mnt/hpfs
  else
    printf '%s\n' "$HOME/hpfs"
  fi
}

# hpfs_configure BUILDDIR [-DNAME=VALUE...]
# Configures BUILDDIR for this source tree with the given options, reusing it
# when it already has them; options not named keep whatever value the folder
# has. Afterwards its build files and introspection data match the current
# meson.build files, also when a folder with a meson.build was added since.
hpfs_configure() {
  local dir=$1
  shift
  if [[ ! -f $dir/meson-private/coredata.dat ]]; then
    meson setup "$dir" "$hpfs_root" "$@"
  elif ! hpfs_build_options_match "$dir" "$@" || [[ -n $(hpfs_unread_meson_files "$dir") ]]; then
    meson setup --reconfigure "$dir" "$hpfs_root" "$@" || meson setup --wipe "$dir" "$hpfs_root" "$@"
  else
    ninja -C "$dir" build.ninja >/dev/null
  fi
}

# hpfs_build_options_match BUILDDIR [-DNAME=VALUE...]: whether BUILDDIR's
# options have every given value.
hpfs_build_options_match() {
  meson introspect "$1" --buildoptions | python3 -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
def text(v):
    if isinstance(v, bool):
        return str(v).lower()
    return ",".join(v) if isinstance(v, list) else str(v)
want = dict(a[2:].split("=", 1) for a in sys.argv[1:])
sys.exit(any(text(have.get(k)) != v for k, v in want.items()))
' "${@:2}"
}

# Prints the meson.build files in the source tree that BUILDDIR's configuration
# did not read: a folder added since (subdir() only if its meson.build exists).
hpfs_unread_meson_files() {
  meson introspect "$1" --buildsystem-files | python3 -c '
import json, os, sys
root = sys.argv[1]
read = {os.path.realpath(f) for f in json.load(sys.stdin)}
for top, dirs, names in os.walk(root):
    # Skip .git and build directories.
    dirs[:] = [d for d in dirs if d != ".git"
               and not os.path.exists(os.path.join(top, d, "meson-private"))]
    path = os.path.join(top, "meson.build")
    if "meson.build" in names and os.path.realpath(path) not in read:
        print(path)
' "$hpfs_root"
}
