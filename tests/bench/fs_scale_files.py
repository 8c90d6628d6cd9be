# SPDX-License-Identifier: Apache-2.0
"""Rows of the `scale` section for a mount of many files (fs_scale.py): every
file opened and read once, then idle (the daemon's descriptors against
-o max_open_files, its RSS); `ls -l` of one directory of them; `tar x` of
many small files. The last two against the same on the backing filesystem
itself (native), in interleaved rounds: medians, with min-max spread."""

import os
import shutil
import statistics
import subprocess
import tarfile
import time

# The bound the rows run with, and what the daemon holds besides.
MAX_OPEN_FILES = 1024


def _ms(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def _spread(values):
    return f"median of {len(values)}, {min(values):.4g}-{max(values):.4g}"


def _make_backing_files(backing, template, n):
    """n copies of the HPFile `template` (one line) as d/f<i>, each with its own line."""
    names = sorted(os.listdir(template))
    meta = open(os.path.join(template, "hpfile.meta"), "rb").read()
    segment = [x for x in names if x != "hpfile.meta"][0]
    d = os.path.join(backing, "d")
    os.makedirs(d)
    for i in range(n):
        f = os.path.join(d, f"f{i:06d}")
        os.mkdir(f, 0o700)
        with open(os.path.join(f, "hpfile.meta"), "wb") as out:
            out.write(meta)
        with open(os.path.join(f, segment), "wb") as out:
            out.write(b"line %06d\n" % i)


def rows(binary, work, s, Daemon, add):
    n, tar_n, rounds = s["scale_many_files"], s["scale_tar_files"], max(3, s["rounds"])
    backing, mnt = os.path.join(work, "many-backing"), os.path.join(work, "many-mnt")
    native = os.path.join(work, "many-native")
    os.makedirs(backing)
    os.makedirs(mnt)
    os.makedirs(os.path.join(native, "d"))
    opts = f"max_open_files={MAX_OPEN_FILES}"
    d = Daemon(binary, backing, mnt, opts)
    try:
        d.start()
        with open(os.path.join(mnt, "template"), "wb") as f:
            f.write(b"x\n")
    finally:
        d.stop()
    _make_backing_files(backing, os.path.join(backing, "template"), n)
    for i in range(n):
        with open(os.path.join(native, "d", f"f{i:06d}"), "wb") as out:
            out.write(b"line %06d\n" % i)

    # ls -l: a fresh daemon each round (the kernel and the daemon know no
    # name yet), native with the dentries it has cached, as a user's second ls.
    hp, nat = [], []
    ls = lambda p: subprocess.run(["ls", "-l", p], check=True, stdout=subprocess.DEVNULL)
    for _ in range(rounds):
        nat.append(_ms(lambda: ls(os.path.join(native, "d"))))
        d = Daemon(binary, backing, mnt, opts)
        try:
            d.start()
            rss_before = d.rss_mib()
            hp.append(_ms(lambda: ls(os.path.join(mnt, "d"))))
            rss_after = d.rss_mib()
            warm = _ms(lambda: ls(os.path.join(mnt, "d")))
        finally:
            d.stop()
    add(f"ls -l of {n} files, first after mount (ms; {_spread(hp)})", statistics.median(hp), "ms")
    add(f"ls -l of {n} files, native (ms; {_spread(nat)})", statistics.median(nat), "ms")
    add(f"ls -l of {n} files: hpfs / native", statistics.median(hp) / statistics.median(nat), "x", "<= 3")
    add(f"ls -l of {n} files, again right after (hpfs, last round)", warm, "ms")
    add(f"ls -l of {n} files: daemon RSS growth per file it now knows (last round)",
        (rss_after - rss_before) * (1 << 20) / n, "bytes")

    # Every file opened and read once, then idle.
    d = Daemon(binary, backing, mnt, opts)
    try:
        d.start()
        failures = 0
        start = time.perf_counter()
        for i in range(n):
            try:
                with open(os.path.join(mnt, "d", f"f{i:06d}"), "rb") as f:
                    if f.read() != b"line %06d\n" % i:
                        failures += 1
            except OSError:
                failures += 1
        took = time.perf_counter() - start
        time.sleep(1)
        add(f"{n} files opened and read once: per file", took * 1e6 / n, "us")
        add(f"{n} files read once: reads that failed or read wrong", failures, "files", "0")
        add(f"{n} files read once, then idle: daemon open fds (max_open_files={MAX_OPEN_FILES})", d.fds(), "fds",
            f"<= {MAX_OPEN_FILES} + 16")
        add(f"{n} files read once, then idle: daemon RSS", d.rss_mib(), "MiB", "< 64")
    finally:
        d.stop()
    shutil.rmtree(backing)
    shutil.rmtree(native)

    # tar x of many small files: into the mount and into the backing
    # filesystem, a new directory each round; no fsync on either side.
    src = os.path.join(work, "tar-src")
    os.makedirs(os.path.join(src, "logs"))
    for i in range(tar_n):
        with open(os.path.join(src, "logs", f"app{i:05d}.log"), "wb") as out:
            out.write(b"%06d a small log line\n" % i * 4)
    archive = os.path.join(work, "logs.tar")
    with tarfile.open(archive, "w") as t:
        t.add(os.path.join(src, "logs"), arcname="logs")
    shutil.rmtree(src)
    backing, mnt, native = os.path.join(work, "tar-backing"), os.path.join(work, "tar-mnt"), os.path.join(work, "tar-native")
    for p in (backing, mnt, native):
        os.makedirs(p)
    tar = lambda into: subprocess.run(["tar", "xf", archive, "-C", into], check=True)
    hp, nat = [], []
    d = Daemon(binary, backing, mnt, opts)
    try:
        d.start()
        for r in range(rounds):
            for side, into, out in (("native", native, nat), ("hpfs", mnt, hp)):
                target = os.path.join(into, f"r{r}")
                os.mkdir(target)
                out.append(_ms(lambda: tar(target)))
    finally:
        d.stop()
    add(f"tar x of {tar_n} small files into hpfs (ms; {_spread(hp)})", statistics.median(hp), "ms")
    add(f"tar x of {tar_n} small files, native (ms; {_spread(nat)})", statistics.median(nat), "ms")
    add(f"tar x of {tar_n} small files: hpfs / native", statistics.median(hp) / statistics.median(nat), "x", "<= 3")
    for p in (backing, mnt, native):
        shutil.rmtree(p, ignore_errors=True)
    os.unlink(archive)


if __name__ == "__main__":
    # These rows alone, at sizes of one's choosing (scripts/bench runs them
    # within the scale section): fs_scale_files.py HPFS_BIN WORK FILES TAR_FILES [ROUNDS]
    import sys

    import fs_scale

    if len(sys.argv) not in (5, 6):
        print("usage: fs_scale_files.py HPFS_BIN EMPTY_WORK_DIR FILES TAR_FILES [ROUNDS]", file=sys.stderr)
        sys.exit(2)
    sizes = dict(scale_many_files=int(sys.argv[3]), scale_tar_files=int(sys.argv[4]),
                 rounds=int(sys.argv[5]) if len(sys.argv) == 6 else 3)
    table = []
    rows(sys.argv[1], sys.argv[2], sizes, fs_scale.Daemon, lambda *row: table.append(row + ("-",) * (4 - len(row))))
    for name, value, unit, target in table:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"| {name} | {shown} | {unit} | {target} |", flush=True)
