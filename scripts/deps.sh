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
  libcurl4-openssl-dev
  libxml2-dev
  zlib1g-dev
  libssl-dev
  python3-botocore
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

# The S3-compatible server the tier tests run against, from the npm registry. The exact
# version is pinned so every machine tests against the same server.
HPFS_S3RVER_VERSION=3.7.1

# hpfs_ensure_s3rver: installs s3rver HPFS_S3RVER_VERSION into the per-user cache
# (${XDG_CACHE_HOME:-~/.cache}/hpfs/s3rver-VERSION) unless it is there already, and
# prints the path of its executable. Fails with a message saying what is missing.
hpfs_ensure_s3rver() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/hpfs/s3rver-$HPFS_S3RVER_VERSION"
  local bin="$dir/node_modules/.bin/s3rver"
  if [[ ! -x $bin ]]; then
    # A Node.js from elsewhere (nodesource) brings its own npm: Debian's only
    # when there is none.
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
      hpfs_ensure_deps nodejs npm || true
    fi
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
      echo "s3rver: node and npm are needed to install s3rver@$HPFS_S3RVER_VERSION (Debian: nodejs, npm)" >&2
      return 1
    fi
    # Installed into a fresh folder that is renamed into place, so an interrupted
    # install never looks complete.
    local tmp
    mkdir -p "$(dirname "$dir")" && tmp=$(mktemp -d "${dir}.XXXXXX") || return 1
    echo "s3rver: installing s3rver@$HPFS_S3RVER_VERSION into $dir" >&2
    if ! npm install --prefix "$tmp" --no-audit --no-fund --loglevel=error \
      "s3rver@$HPFS_S3RVER_VERSION" >&2; then
      rm -rf "$tmp"
      echo "s3rver: npm install s3rver@$HPFS_S3RVER_VERSION failed" >&2
      return 1
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir" || return 1
  fi
  printf '%s\n' "$bin"
}
