#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Appends through a tiered mount (uploading to s3rver in the background)
against a mount without tiering, same run, interleaved rounds.

Usage: tier_append.py HPFS S3RVER WORKDIR [--mib N] [--rounds R] [--json PATH]

Both mounts use 1 MiB segments; the tiered one keeps 4 MiB local, so that
while a round appends, the tier worker uploads and deletes the segments of
this and the earlier rounds. Each round writes N MiB (default 64) with
1 MiB writes and one fsync to a new file on each mount, the order of the two
sides alternating by round. Reports MB/s medians, min-max spread and the
median of the per-round ratios tiered/plain.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def start_s3rver(s3rver, work):
    data = os.path.join(work, "s3rver")
    os.makedirs(data)
    log = open(os.path.join(work, "s3rver.log"), "w")
    env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
    proc = subprocess.Popen([s3rver, "-d", data, "-a", "127.0.0.1", "-p", "0", "--configure-bucket", "bench"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            return proc, "http://127.0.0.1:" + m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    sys.exit("tier_append: s3rver did not start:\n" + open(log.name).read())


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def mount(hpfs, work, name, options):
    backing, mnt = os.path.join(work, name + "-backing"), os.path.join(work, name + "-mnt")
    os.makedirs(backing)
    os.makedirs(mnt)
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen([hpfs, "-f", "-o", options, backing, mnt], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("tier_append: the %s mount failed:\n%s" % (name, open(log.name).read()))
        time.sleep(0.05)
    return proc, mnt


def unmount(proc, mnt):
    subprocess.run(["fusermount3", "-u", mnt], check=False)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-l", mnt], check=False)


def append(path, block, count):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, block)
        os.fsync(fd)
        return count * len(block) / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hpfs")
    ap.add_argument("s3rver")
    ap.add_argument("work")
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tier-append-", dir=opts.work)
    server, endpoint = start_s3rver(opts.s3rver, work)
    creds = os.path.join(work, "credentials")
    with open(creds, "w") as f:
        f.write("[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
    mounts = {}
    try:
        mounts["plain"] = mount(opts.hpfs, work, "plain", "segment_size=1M")
        mounts["tiered"] = mount(opts.hpfs, work, "tiered",
                                 "segment_size=1M,local_retain_bytes=4M,tier_url=s3://bench/b,tier_endpoint=%s,"
                                 "tier_credentials=%s" % (endpoint, creds))
        block = os.urandom(MiB)
        values = {"plain": [], "tiered": []}
        ratios = []
        for r in range(opts.rounds):
            order = ["plain", "tiered"] if r % 2 == 0 else ["tiered", "plain"]
            got = {}
            for side in order:
                got[side] = append(os.path.join(mounts[side][1], "f%d" % r), block, opts.mib)
                values[side].append(got[side])
            ratios.append(got["tiered"] / got["plain"])
        tiered_dir = os.path.join(work, "tiered-backing")
        left = sum(1 for d in os.listdir(tiered_dir) if d.startswith("f")
                   for s in os.listdir(os.path.join(tiered_dir, d)) if s.endswith(".seg"))
        result = {
            "mib_per_round": opts.mib, "rounds": opts.rounds,
            "plain_mbps": {"median": statistics.median(values["plain"]),
                           "min": min(values["plain"]), "max": max(values["plain"])},
            "tiered_mbps": {"median": statistics.median(values["tiered"]),
                            "min": min(values["tiered"]), "max": max(values["tiered"])},
            "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "tiered_local_segments_at_end": left,
        }
        print("appends of %d MiB, %d rounds: plain %.0f MB/s (%.0f-%.0f), tiered %.0f MB/s (%.0f-%.0f), "
              "ratio tiered/plain %.2f (%.2f-%.2f); %d segment files still local at the end"
              % (opts.mib, opts.rounds, result["plain_mbps"]["median"], result["plain_mbps"]["min"],
                 result["plain_mbps"]["max"], result["tiered_mbps"]["median"], result["tiered_mbps"]["min"],
                 result["tiered_mbps"]["max"], result["ratio"]["median"], result["ratio"]["min"],
                 result["ratio"]["max"], left))
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
    finally:
        for proc, mnt in mounts.values():
            unmount(proc, mnt)
        stop(server)
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
