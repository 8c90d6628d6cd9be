#!/usr/bin/env bash
# Runs a tier test program with HPFS_S3RVER set to the s3rver executable,
# installing the pinned s3rver first when it is missing. When it cannot be
# installed the test fails (exit 1) with the reason: a tier run without a
# real server is no pass.
# Usage: with_s3rver.sh PROGRAM [ARGS...]
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
if ! HPFS_S3RVER=$(hpfs_ensure_s3rver); then
  echo "FAIL: s3rver@$HPFS_S3RVER_VERSION could not be installed (see above); the tier tests need it" >&2
  exit 1
fi
export HPFS_S3RVER
exec "$@"
