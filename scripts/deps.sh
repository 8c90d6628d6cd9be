# shellcheck shell=bash
# Debian packages needed to build hpfs, run its tests and use the helper scripts.
# Sourced by scripts/lib.sh; `hpfs_ensure_deps [PACKAGE...]` installs whatever is missing.

# SPDX-License-Identifier: Apache-2.0

HPFS_DEPS=(
  meson
  ninja-build
  g++
  pkg-config
  libfuse3-dev
  fuse3
  libspdlog-dev
  libgtest-dev
  libgmock-dev
  attr
  util-linux
  coreutils
  psmisc
  fio
)

# What scripts/bench needs beyond HPFS_DEPS: gnuplot draws its chart.
# shellcheck disable=SC2034 # read by the scripts that source this file
HPFS_BENCH_DEPS=(
  gnuplot-nox
)

# What scripts/package needs to build and check the .debs, on top of the package's
# own Build-Depends (packaging/debian/control), which it installs with apt-get build-dep.
# shellcheck disable=SC2034 # read by the scripts that source this file
HPFS_PACKAGE_DEPS=(
  build-essential
  dpkg-dev
  debhelper
  fakeroot
  lintian
)

# Prints the packages among "$@" that are not installed, one per line.
hpfs_missing_deps() {
  local pkg
  for pkg in "$@"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != 'install ok installed' ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Installs the missing ones among "$@" (default: HPFS_DEPS). apt-get update runs only
# when something has to be installed, so a ready machine is not touched at all.
hpfs_ensure_deps() {
  local -a wanted=("$@") missing=() sudo=()
  ((${#wanted[@]})) || wanted=("${HPFS_DEPS[@]}")
  if ! command -v dpkg-query >/dev/null; then
    echo "deps: not a Debian system; make sure these are installed: ${wanted[*]}" >&2
    return 0
  fi
  mapfile -t missing < <(hpfs_missing_deps "${wanted[@]}")
  ((${#missing[@]})) || return 0
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "deps: missing packages and no sudo: ${missing[*]}" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "deps: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
