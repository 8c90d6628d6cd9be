#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Filesystem workloads on a native directory and on an hpfs mount over the
same filesystem, interleaved round by round (native, hpfs, native, hpfs...).

scripts/bench mounts hpfs and runs this; it can also be pointed at any two
directories. Throughput comes from fio where fio fits; the rest (O_APPEND
loops, follow latency, head prune, cat/dd) is timed here. Each cell is the
median over rounds with the min-max spread; the ratio is hpfs/native within the
same round, so a neighbour's burst hits both sides of one ratio rather than one
side of all.

With --scale it measures the daemon itself instead (no native side): it mounts
and remounts hpfs over backing stores with many files and many segments and
reports mount time, first-read latency, resident memory and open descriptors.
"""

import argparse
import array
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
GiB = 1 << 30

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch_head(fd, length):
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def sizes(mode):
    # prune_large: (total, written) -- a file of `total` bytes whose last
    # `written` bytes are data and the rest allocated without writing it
    # (native: fallocate; hpfs: sparse segments from a growing ftruncate).
    if mode == "tiny":
        return dict(rounds=1, prune_rounds=1, bulk=8 * MiB, small_appends=2000, log_lines=2000, read=16 * MiB, rand=8 * MiB,
                    rand_seconds=0.3, prune=[16 * MiB], prune_cached=16 * MiB,
                    prune_large=(64 * MiB, 16 * MiB), follow=50,
                    scale_files=200, scale_segments=1024, scale_many_files=500, scale_tar_files=200)
    if mode == "quick":
        return dict(rounds=3, prune_rounds=2, bulk=128 * MiB, small_appends=20000, log_lines=20000, read=256 * MiB, rand=128 * MiB,
                    rand_seconds=1, prune=[256 * MiB], prune_cached=256 * MiB,
                    prune_large=(16 * GiB, 512 * MiB), follow=500,
                    scale_files=2000, scale_segments=10000, scale_many_files=10000, scale_tar_files=2000)
    # Prunes write their file anew each round (seconds of setup for a
    # measurement of milliseconds): fewer rounds keep the run short.
    return dict(rounds=5, prune_rounds=3, bulk=1 * GiB, small_appends=100000, log_lines=100000, read=2 * GiB, rand=1 * GiB,
                rand_seconds=3, prune=[1 * GiB, 4 * GiB], prune_cached=1 * GiB,
                prune_large=(16 * GiB, 1 * GiB), follow=2000,
                scale_files=10000, scale_segments=100000, scale_many_files=100000, scale_tar_files=10000)


def human(n):
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def fio(args):
    out = subprocess.run(["fio", "--output-format=json", *args], check=True,
                         capture_output=True, text=True).stdout
    # fio may print notes before the JSON document.
    return json.loads(out[out.index("{"):])


def fio_bw(job, kind):
    """Bytes per second over the job's runtime, which includes an end_fsync."""
    data = job[kind]
    runtime_ms = job.get("job_runtime") or data["runtime"]
    return data["io_bytes"] / (runtime_ms / 1000.0)


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


def make_file(path, size, fsync=False, unwritten=0):
    """Writes `size` bytes of random data to a new file (a write-only handle,
    as a logger's). With `unwritten`, the file first gets that many bytes
    allocated but never written, and the data follows them."""
    remove(path)
    block = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if unwritten:
            # On hpfs this grows the file with sparse segments (fallocate
            # beyond the end appends zeros, as a growing ftruncate).
            os.posix_fallocate(fd, 0, unwritten)
            os.lseek(fd, 0, os.SEEK_END)
        left = size
        while left > 0:
            left -= os.write(fd, block[:min(left, MiB)])
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_all(path, bs=MiB):
    fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        while True:
            n = len(os.read(fd, bs))
            if n == 0:
                return total
            total += n
    finally:
        os.close(fd)


# ---- workloads: each takes the directory, the sizes and whether it is the hpfs
# side, and returns (value, unit); higher is better except for LOWER_IS_BETTER.

LOWER_IS_BETTER = {"ms", "us"}


def bulk_append(bs, fsync):
    def run(d, s, _hpfs):
        path = os.path.join(d, "bulk")
        remove(path)
        args = ["--name=bulk", f"--filename={path}", "--rw=write", f"--bs={bs}",
                f"--size={s['bulk']}", "--file_append=1", "--fallocate=none",
                "--ioengine=psync"]
        if fsync:
            args.append("--end_fsync=1")
        job = fio(args)["jobs"][0]
        remove(path)
        return fio_bw(job, "write") / MiB, "MiB/s"
    return run


def small_appends(d, s, _hpfs):
    path = os.path.join(d, "small")
    remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = b"x" * 127 + b"\n"
    write = os.write
    try:
        n = s["small_appends"]
        start = time.perf_counter()
        for _ in range(n):
            write(fd, line)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    remove(path)
    return n / elapsed, "writes/s"


# Far above what a run takes: a mount that wedges (write-back mode once did,
# docs/FILESYSTEM.md "Held writes") must still let the benchmark end.
APPEND_LOOP_SECONDS = 300


def compiled_appends(binary, size):
    """The same appends from tests/bench/append_loop (C++), open to close."""
    def run(d, s, _hpfs):
        path = os.path.join(d, "small-c")
        remove(path)
        n = s["small_appends"] * 4
        proc = subprocess.Popen([binary, path, str(n), str(size)], stdout=subprocess.PIPE, text=True)
        try:
            out, _ = proc.communicate(timeout=APPEND_LOOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()  # no wait: a process stuck in the kernel cannot be reaped
            raise RuntimeError(f"append_loop did not finish within {APPEND_LOOP_SECONDS} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"append_loop failed with status {proc.returncode}")
        remove(path)
        return n / float(out), "writes/s"
    return run


def logger_lines(d, s, _hpfs):
    """A real logger: Python's logging.FileHandler (an O_APPEND stream that
    flushes every record, so one write(2) of about 70 B per line)."""
    path = os.path.join(d, "app.log")
    remove(path)
    logger = logging.Logger("bench")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    n = s["log_lines"]
    try:
        start = time.perf_counter()
        for i in range(n):
            logger.info("request %d served in %d us", i, 1234)
        handler.close()
        elapsed = time.perf_counter() - start
    finally:
        handler.close()
    remove(path)
    return n / elapsed, "lines/s"


def bulk_append_wronly(bs, fsync):
    """The log writer's way: a write-only O_APPEND handle (what `>>` opens).
    fio opens its files read-write, so it does not show this path."""
    def run(d, s, _hpfs):
        path = os.path.join(d, "bulk-wronly")
        remove(path)
        block = os.urandom(bs)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            start = time.perf_counter()
            for _ in range(s["bulk"] // bs):
                os.write(fd, block)
            if fsync:
                os.fsync(fd)
            elapsed = time.perf_counter() - start
        finally:
            os.close(fd)
        remove(path)
        return s["bulk"] / elapsed / MiB, "MiB/s"
    return run


FOLLOW_RECORD = 32
FOLLOW_POLL_SECONDS = 0.0001
FOLLOW_PACE_SECONDS = 0.001


def follow_reader(path, n, ready_fd, out_fd):
    """Child process: a tail -f style loop on its own read-only descriptor,
    polling every 0.1 ms; sends back when each record became readable."""
    fd = os.open(path, os.O_RDONLY)
    seen = array.array("q")
    pending = 0
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    deadline = time.monotonic() + 120
    while len(seen) < n and time.monotonic() < deadline:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            time.sleep(FOLLOW_POLL_SECONDS)
            continue
        now = time.monotonic_ns()
        pending += len(chunk)
        seen.extend([now] * (pending // FOLLOW_RECORD))
        pending %= FOLLOW_RECORD
    data = seen.tobytes()
    while data:
        data = data[os.write(out_fd, data):]
    os.close(out_fd)


def follow_latency(d, s, _hpfs):
    """Time from an append's return to a reader polling the same file through
    another descriptor seeing it. Records are paced 1 ms apart, as log lines."""
    path = os.path.join(d, "follow")
    remove(path)
    n = s["follow"]
    wfd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    ready_r, ready_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(out_r)
            follow_reader(path, n, ready_w, out_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(out_w)
    returned = []
    try:
        os.read(ready_r, 1)
        for i in range(n):
            record = f"{i:015d} {time.monotonic_ns():015d}\n".encode()
            assert len(record) == FOLLOW_RECORD
            os.write(wfd, record)
            returned.append(time.monotonic_ns())
            time.sleep(FOLLOW_PACE_SECONDS)
        data = bytearray()
        while chunk := os.read(out_r, 1 << 16):
            data += chunk
    finally:
        os.close(ready_r)
        os.close(out_r)
        os.close(wfd)
        os.waitpid(pid, 0)
        remove(path)
    seen = array.array("q")
    seen.frombytes(bytes(data))
    if len(seen) < n:
        raise RuntimeError(f"follow: the reader saw {len(seen)} of {n} records")
    # A reader may see the bytes before the writer's call has returned: 0.
    lat = sorted(max(0, t - r) / 1000.0 for t, r in zip(seen, returned))
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return [(" p50", pick(0.5), "us"), (" p99", pick(0.99), "us"), (" max", lat[-1], "us")]


def seq_read(cold):
    def run(d, s, _hpfs):
        path = os.path.join(d, "seq")
        if cold:
            drop_caches()
        else:
            read_all(path)
        job = fio(["--name=seqread", f"--filename={path}", "--rw=read", "--bs=1M",
                   f"--size={s['read']}", "--ioengine=psync", "--invalidate=0"])["jobs"][0]
        return fio_bw(job, "read") / MiB, "MiB/s"
    return run


def timed_command(argv_of):
    def run(d, s, _hpfs):
        path = os.path.join(d, "seq")
        read_all(path)  # warm
        start = time.perf_counter()
        subprocess.run(argv_of(path), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        return s["read"] / elapsed / MiB, "MiB/s"
    return run


def cat_cmd(path):
    return ["sh", "-c", 'exec cat "$1" >/dev/null', "sh", path]


def dd_cmd(path):
    return ["dd", f"if={path}", "of=/dev/null", "bs=1M"]


def rand_read(jobs):
    def run(d, s, _hpfs):
        path = os.path.join(d, "rand")
        read_all(path)  # warm
        job = fio(["--name=randread", f"--filename={path}", "--rw=randread", "--bs=4k",
                   f"--size={s['rand']}", "--ioengine=psync", "--invalidate=0",
                   "--time_based", f"--runtime={int(s['rand_seconds'] * 1000)}ms", f"--numjobs={jobs}",
                   "--group_reporting", "--norandommap", "--randrepeat=0"])["jobs"][0]
        return job["read"]["iops"] / 1000.0, "kIOPS"
    return run


def prune(size, unwritten=0, cached=False):
    """hpfs: drop the oldest 90% with one punch (whole segments are deleted).
    Native: the logrotate way, copy the newest 10% to a new file and rename it
    over the old one. Both timed in ms; the file is written first, untimed
    (see make_file for `unwritten`). With `cached`, the file is read once
    first, so its pages are in the page cache (hpfs: the FUSE file's too)."""
    def run(d, s, hpfs):
        path = os.path.join(d, f"prune-{size}")
        make_file(path, size - unwritten, unwritten=unwritten)
        os.sync()
        if cached:
            read_all(path)
        drop = size * 9 // 10
        if hpfs:
            fd = os.open(path, os.O_WRONLY)
            try:
                start = time.perf_counter()
                punch_head(fd, drop)
                elapsed = time.perf_counter() - start
            finally:
                os.close(fd)
        else:
            tmp = path + ".new"
            start = time.perf_counter()
            src = os.open(path, os.O_RDONLY)
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.lseek(src, drop, os.SEEK_SET)
                while True:
                    buf = os.read(src, MiB)
                    if not buf:
                        break
                    os.write(dst, buf)
            finally:
                os.close(src)
                os.close(dst)
            os.rename(tmp, path)
            elapsed = time.perf_counter() - start
        remove(path)
        return elapsed * 1000.0, "ms"
    return run


def write_report(opts, md, payload):
    """Prints the markdown table and writes it and the JSON where asked."""
    md.append("")
    text = "\n".join(md)
    print()
    print(text)
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write(text)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")


# The hpfs sides, as the table and the JSON name them. The write-back mount
# is optional (plain directories in the smoke test, older callers).
MODES = (("hpfs", "write-through"), ("writeback", "write-back"))


def ratio_key(side, what):
    return what if side == "hpfs" else f"{side}_{what}"


def spread(row, side, form):
    return form.format(f"{row[ratio_key(side, 'ratio_min')]:.3g}", f"{row[ratio_key(side, 'ratio_max')]:.3g}")


def summarize(name, target, unit, vals):
    """One table row: medians per side, and for each hpfs side its ratios to
    the native side of the same round. Keys without a prefix are the
    write-through mount's (as before there were two modes)."""
    # A zero (a latency below the clock's reach) would divide by zero.
    eps = 1e-9
    row = {"workload": name, "unit": unit, "target": target, "native": vals["native"],
           "native_median": statistics.median(vals["native"])}
    for side, _ in MODES:
        if not vals.get(side):
            continue
        if unit in LOWER_IS_BETTER:
            ratios = [(n + eps) / (h + eps) for n, h in zip(vals["native"], vals[side])]
        else:
            ratios = [(h + eps) / (n + eps) for n, h in zip(vals["native"], vals[side])]
        row[side] = vals[side]
        row[side + "_median"] = statistics.median(vals[side])
        row[ratio_key(side, "ratios")] = ratios
        row[ratio_key(side, "ratio_median")] = statistics.median(ratios)
        row[ratio_key(side, "ratio_min")] = min(ratios)
        row[ratio_key(side, "ratio_max")] = max(ratios)
    return row


def run_rounds(fn, sides, s, rounds, values, units):
    for _ in range(rounds):
        for side, d in sides.items():
            result = fn(d, s, side != "native")
            if isinstance(result, tuple):
                result = [("", *result)]
            for suffix, v, unit in result:
                values.setdefault(suffix, {side: [] for side in sides})[side].append(v)
                units[suffix] = unit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--native", help="directory on the backing filesystem")
    ap.add_argument("--hpfs", help="directory inside the hpfs mount (write-through, the default mode)")
    ap.add_argument("--hpfs-writeback", help="directory inside an hpfs mount with -o writeback")
    ap.add_argument("--append-loop", help="tests/bench/append_loop, for small appends without an interpreter")
    ap.add_argument("--chart", help="draw the ratios into this SVG (needs gnuplot)")
    ap.add_argument("--scale", action="store_true", help="measure the daemon at scale instead")
    ap.add_argument("--hpfs-bin", help="--scale: the hpfs executable")
    ap.add_argument("--work", help="--scale: an empty scratch directory on the filesystem to use")
    ap.add_argument("--mode", choices=["tiny", "quick", "full"], default="full")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table here")
    ap.add_argument("--only", help="run only workloads whose name contains one of these (comma-separated)")
    opts = ap.parse_args()
    s = sizes(opts.mode)
    if opts.scale:
        import fs_scale  # it imports this module's helpers
        return fs_scale.scale_main(opts, s)
    if not opts.native or not opts.hpfs:
        ap.error("--native and --hpfs are needed")
    if shutil.which("fio") is None:
        print("fs_bench: fio is not installed", file=sys.stderr)
        return 77  # meson's "skipped"
    sides = {"native": opts.native, "hpfs": opts.hpfs}
    if opts.hpfs_writeback:
        sides["writeback"] = opts.hpfs_writeback
    for d in sides.values():
        os.makedirs(d, exist_ok=True)
    # Tiny runs are smoke tests: they leave the machine's page cache alone.
    can_drop = (opts.mode != "tiny" and os.geteuid() == 0 and
                os.access("/proc/sys/vm/drop_caches", os.W_OK))

    workloads = [
        ("bulk append 1 MiB", bulk_append("1M", False), ">= 0.6"),
        ("bulk append 1 MiB + fsync", bulk_append("1M", True), ">= 0.8"),
        ("bulk append 128 KiB", bulk_append("128k", False), "-"),
        ("bulk append 128 KiB + fsync", bulk_append("128k", True), "-"),
        ("bulk append 1 MiB, write-only handle", bulk_append_wronly(MiB, False), ">= 0.6"),
        ("bulk append 1 MiB + fsync, write-only handle", bulk_append_wronly(MiB, True), ">= 0.8"),
        ("small appends 128 B, O_APPEND, Python loop", small_appends, ">= 0.1; write-back >= 0.7"),
    ]
    if opts.append_loop:
        workloads.append(("small appends 128 B, O_APPEND, C loop", compiled_appends(opts.append_loop, 128),
                          "write-back >= 0.7 (stretch 0.9)"))
    workloads += [
        ("logging.FileHandler lines", logger_lines, "write-back >= 0.7"),
        ("follow latency", follow_latency, {" p99": "< 10 ms"}),
        ("sequential read 1 MiB, warm", seq_read(False), ">= 0.95"),
    ]
    if can_drop:
        workloads.append(("sequential read 1 MiB, cold", seq_read(True), ">= 0.9"))
    workloads += [
        ("cat, warm", timed_command(cat_cmd), ">= 0.95"),
        ("dd bs=1M, warm", timed_command(dd_cmd), ">= 0.95"),
        ("random read 4 KiB, 1 job, warm", rand_read(1), ">= 0.9"),
        ("random read 4 KiB, 4 jobs, warm", rand_read(4), ">= 0.9"),
    ]
    prunes = [(f"head prune 90% of {human(size)} (native: copy tail + rename)", prune(size),
               ">= 100x faster") for size in s["prune"]]
    prunes.append((f"head prune 90% of {human(s['prune_cached'])}, read once before",
                   prune(s["prune_cached"], cached=True), ">= 100x faster"))
    total, written = s["prune_large"]
    prunes.append((f"head prune 90% of {human(total)} ({human(total - written)} allocated unwritten)",
                   prune(total, unwritten=total - written), "< 50 ms, >= 100x faster"))
    workloads += [(*w, s["prune_rounds"]) for w in prunes]
    if opts.only:
        wanted = [part for part in opts.only.split(",") if part]
        workloads = [w for w in workloads if any(part in w[0] for part in wanted)]

    # Read files are written once per side and reused by every read workload.
    if any(w[0].startswith(("sequential read", "random read", "cat", "dd")) for w in workloads):
        for d in sides.values():
            make_file(os.path.join(d, "seq"), s["read"], fsync=True)
            make_file(os.path.join(d, "rand"), s["rand"], fsync=True)

    rows = []
    failed = []
    for name, fn, target, *rounds in workloads:
        # A workload measures one figure, or several (suffix, value, unit).
        values = {}
        units = {}
        try:
            run_rounds(fn, sides, s, rounds[0] if rounds else s["rounds"], values, units)
        except RuntimeError as e:
            print(f"{name}: failed: {e}", flush=True)
            failed.append(f"{name}: {e}")
            continue

        for suffix, vals in values.items():
            row = summarize(name + suffix, target.get(suffix, "-") if isinstance(target, dict) else target,
                            units[suffix], vals)
            rows.append(row)
            line = f"{row['workload']:58} {row['unit']:9} native {row['native_median']:10.4g}"
            for side, label in MODES:
                if side in row:
                    line += (f"  {label} {row[side + '_median']:10.4g} ratio "
                             f"{row[ratio_key(side, 'ratio_median')]:.3g} {spread(row, side, '[{}-{}]')}")
            print(line, flush=True)

    for d in sides.values():
        for f in ("seq", "rand"):
            remove(os.path.join(d, f))

    modes = [label for side, label in MODES if side in sides]
    notes = [
        f"Mode {opts.mode}, {s['rounds']} rounds ({s['prune_rounds']} for head prunes), native and "
        f"hpfs ({', '.join(modes)}) interleaved within each round.",
        "Cells: median over rounds. Ratio: hpfs/native throughput in the same round "
        "(for times in ms: native/hpfs, so above 1 means hpfs is faster); spread is min-max of the ratios.",
        f"Sizes: bulk appends {human(s['bulk'])} per run, {s['small_appends']} small appends from Python "
        f"({s['small_appends'] * 4} from C, timed open to close), {s['log_lines']} logger lines, "
        f"sequential reads of a {human(s['read'])} file, random reads in a {human(s['rand'])} file "
        f"for {s['rand_seconds']} s, hpfs segments 64 MiB (bench mount default).",
        f"Follow latency: {s['follow']} records of {FOLLOW_RECORD} B appended 1 ms apart; a reader on "
        "its own descriptor polls every 0.1 ms; time from write() returning to the reader having the record.",
        "Write-only rows: a Python loop of write(2) on an O_WRONLY|O_APPEND descriptor (fio opens its "
        "files read-write, so in write-back mode fio's rows go through direct handles).",
    ]
    if not can_drop:
        notes.append("Cold reads skipped: tiny mode, or dropping the page cache needs root.")
    notes += [f"Failed, no row: {f}" for f in failed]
    header = "| workload | unit | native |"
    rule = "| --- | --- | --- |"
    for label in modes:
        header += f" {label} | ratio | spread |"
        rule += " --- | --- | --- |"
    md = ["## fs: hpfs mount vs the native filesystem", "", *notes, "", header + " target |", rule + " --- |"]
    for r in rows:
        line = f"| {r['workload']} | {r['unit']} | {r['native_median']:.4g} |"
        for side, _ in MODES:
            if side in sides:
                line += (f" {r[side + '_median']:.4g} | {r[ratio_key(side, 'ratio_median')]:.3g} | "
                         f"{spread(r, side, '{}-{}')} |")
        md.append(line + f" {r['target']} |")
    write_report(opts, md, {"mode": opts.mode, "rounds": s["rounds"], "prune_rounds": s["prune_rounds"],
                            "sizes": s, "modes": modes, "workloads": rows, "failed": failed})
    if opts.chart:
        import fs_chart
        fs_chart.draw(rows, opts.chart, f"hpfs / native, {opts.mode} run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
