#!/usr/bin/env python3
"""Filesystem workloads on a native directory and on an hpfs mount over the
same filesystem, interleaved round by round (native, hpfs, native, hpfs...).

scripts/bench mounts hpfs and runs this; it can also be pointed at any two
directories. Throughput comes from fio where fio fits; the rest (O_APPEND
loops, head prune, cat/dd) is timed here. Each cell is the median over rounds
with the min-max spread; the ratio is hpfs/native within the same round, so
a neighbour's burst hits both sides of one ratio rather than one side of all.
"""

import argparse
import ctypes
import ctypes.util
import json
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
    if mode == "tiny":
        return dict(rounds=1, bulk=8 * MiB, small_appends=2000, read=16 * MiB, rand=8 * MiB,
                    rand_seconds=0.3, prune=[16 * MiB])
    if mode == "quick":
        return dict(rounds=3, bulk=128 * MiB, small_appends=20000, read=256 * MiB, rand=128 * MiB,
                    rand_seconds=1, prune=[256 * MiB])
    return dict(rounds=5, bulk=1 * GiB, small_appends=100000, read=2 * GiB, rand=1 * GiB,
                rand_seconds=3, prune=[1 * GiB, 4 * GiB])


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


def make_file(path, size, fsync=False):
    remove(path)
    block = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
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

LOWER_IS_BETTER = {"ms"}


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


def prune(size):
    """hpfs: drop the oldest 90% with one punch (whole segments are deleted).
    Native: the logrotate way, copy the newest 10% to a new file and rename it
    over the old one. Both timed in ms; the file is written first, untimed."""
    def run(d, s, hpfs):
        path = os.path.join(d, f"prune-{size}")
        make_file(path, size)
        os.sync()
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--native", required=True, help="directory on the backing filesystem")
    ap.add_argument("--hpfs", required=True, help="directory inside the hpfs mount")
    ap.add_argument("--mode", choices=["tiny", "quick", "full"], default="full")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table here")
    ap.add_argument("--only", help="run only workloads whose name contains this")
    opts = ap.parse_args()
    s = sizes(opts.mode)
    if shutil.which("fio") is None:
        print("fs_bench: fio is not installed", file=sys.stderr)
        return 77  # meson's "skipped"
    for d in (opts.native, opts.hpfs):
        os.makedirs(d, exist_ok=True)
    # Tiny runs are smoke tests: they leave the machine's page cache alone.
    can_drop = (opts.mode != "tiny" and os.geteuid() == 0 and
                os.access("/proc/sys/vm/drop_caches", os.W_OK))

    workloads = [
        ("bulk append 1 MiB", bulk_append("1M", False), ">= 0.6"),
        ("bulk append 1 MiB + fsync", bulk_append("1M", True), ">= 0.8"),
        ("bulk append 128 KiB", bulk_append("128k", False), "-"),
        ("bulk append 128 KiB + fsync", bulk_append("128k", True), "-"),
        ("small appends 128 B, O_APPEND", small_appends, ">= 0.1"),
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
    for size in s["prune"]:
        workloads.append((f"head prune 90% of {human(size)} (native: copy tail + rename)",
                          prune(size), ">= 100x faster"))
    if opts.only:
        workloads = [w for w in workloads if opts.only in w[0]]

    sides = {"native": opts.native, "hpfs": opts.hpfs}
    # Read files are written once per side and reused by every read workload.
    if any("read" in w[0] or w[0].startswith(("cat", "dd")) for w in workloads):
        for d in sides.values():
            make_file(os.path.join(d, "seq"), s["read"], fsync=True)
            make_file(os.path.join(d, "rand"), s["rand"], fsync=True)

    rows = []
    for name, fn, target in workloads:
        values = {"native": [], "hpfs": []}
        unit = None
        for _ in range(s["rounds"]):
            for side, d in sides.items():
                v, unit = fn(d, s, side == "hpfs")
                values[side].append(v)
        if unit in LOWER_IS_BETTER:
            ratios = [n / h for n, h in zip(values["native"], values["hpfs"])]
        else:
            ratios = [h / n for n, h in zip(values["native"], values["hpfs"])]
        row = {
            "workload": name, "unit": unit, "target": target,
            "native": values["native"], "hpfs": values["hpfs"], "ratios": ratios,
            "native_median": statistics.median(values["native"]),
            "hpfs_median": statistics.median(values["hpfs"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
        }
        rows.append(row)
        print(f"{name:58} {unit:9} native {row['native_median']:10.4g}  hpfs "
              f"{row['hpfs_median']:10.4g}  ratio {row['ratio_median']:.3g} "
              f"[{row['ratio_min']:.3g}-{row['ratio_max']:.3g}]", flush=True)

    for d in sides.values():
        for f in ("seq", "rand"):
            remove(os.path.join(d, f))

    notes = [
        f"Mode {opts.mode}, {s['rounds']} rounds, native and hpfs interleaved within each round.",
        "Cells: median over rounds. Ratio: hpfs/native throughput in the same round "
        "(for times in ms: native/hpfs, so above 1 means hpfs is faster); spread is min-max of the ratios.",
        f"Sizes: bulk appends {human(s['bulk'])} per run, {s['small_appends']} small appends, "
        f"sequential reads of a {human(s['read'])} file, random reads in a {human(s['rand'])} file "
        f"for {s['rand_seconds']} s, hpfs segments 64 MiB (bench mount default).",
    ]
    if not can_drop:
        notes.append("Cold reads skipped: tiny mode, or dropping the page cache needs root.")
    md = ["## fs: hpfs mount vs the native filesystem", "", *notes, "",
          "| workload | unit | native | hpfs | ratio | spread | target |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append(f"| {r['workload']} | {r['unit']} | {r['native_median']:.4g} | "
                  f"{r['hpfs_median']:.4g} | {r['ratio_median']:.3g} | "
                  f"{r['ratio_min']:.3g}-{r['ratio_max']:.3g} | {r['target']} |")
    md.append("")
    text = "\n".join(md)
    print()
    print(text)
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write(text)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"mode": opts.mode, "rounds": s["rounds"], "sizes": s, "workloads": rows}, f,
                      indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
