# SPDX-License-Identifier: Apache-2.0
"""The hpfs daemon at scale (fs_bench.py --scale): mount time, first-read
latency, resident memory and open descriptors with many files and with a file
of many segments. No native side: these are the daemon's own costs."""

import os
import shutil
import signal
import subprocess
import sys
import time

import fs_scale_files
from fs_bench import human, make_file, punch_head, read_all, write_report


class Daemon:
    """An hpfs daemon in the foreground, mounted at `mnt` until stop(), which
    always leaves the mount point unmounted and the daemon gone."""

    def __init__(self, binary, backing, mnt, options=""):
        self.binary, self.backing, self.mnt = binary, backing, mnt
        self.options = "log_level=warn" + ("," + options if options else "")
        self.proc = None

    def start(self):
        """Returns the seconds from exec to the mount being usable."""
        start = time.perf_counter()
        self.log = open(os.path.join(os.path.dirname(self.mnt), "daemon.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "-f", "-o", self.options, self.backing, self.mnt],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = start + 30
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"hpfs did not mount {self.mnt} (see daemon.log)")
            time.sleep(0.0005)
        return time.perf_counter() - start

    def stop(self, exit_seconds=60):
        """Unmounts, then waits up to `exit_seconds` for the daemon to finish
        (it frees pruned segments after the unmount) before killing it."""
        if self.proc is None:
            return
        if os.path.ismount(self.mnt):
            if subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL).returncode:
                subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=exit_seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def read_first(path, offset=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, 4096, offset)
    finally:
        os.close(fd)


def scale(binary, work, s):
    """Rows of (workload, value, unit, target) for the daemon at scale."""
    rows = []
    add = lambda name, value, unit, target="-": rows.append((name, value, unit, target))
    nfiles, nsegs = s["scale_files"], s["scale_segments"]
    seg = 4096

    # Many files: a few created through the mount, the rest copies of one of them made
    # in the backing store while unmounted; then a fresh daemon over them.
    backing, mnt = os.path.join(work, "files-backing"), os.path.join(work, "files-mnt")
    os.makedirs(backing)
    os.makedirs(mnt)
    d = Daemon(binary, backing, mnt)
    created = min(nfiles, 100)
    try:
        d.start()
        line = b"x" * 99 + b"\n"
        def create_some():
            for i in range(created):
                fd = os.open(os.path.join(mnt, f"f{i:06d}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.write(fd, line)
                os.close(fd)
        add(f"create {created} files through the mount, one line each (per file)",
            timed(create_some) / created, "ms")
    finally:
        d.stop()
    for i in range(created, nfiles):
        shutil.copytree(os.path.join(backing, "f000000"), os.path.join(backing, f"f{i:06d}"))
    try:
        add(f"{nfiles} files: mount time", d.start() * 1000.0, "ms")
        add(f"{nfiles} files: first read (open + 4 KiB read) after mount",
            timed(lambda: read_first(os.path.join(mnt, f"f{nfiles // 2:06d}"))), "ms")
        add(f"{nfiles} files: daemon RSS after mount", d.rss_mib(), "MiB", "< 64")
        add(f"{nfiles} files: ls -l", timed(lambda: subprocess.run(
            ["ls", "-l", mnt], check=True, stdout=subprocess.DEVNULL)), "ms")
        failures = []
        def read_every():
            for i in range(nfiles):
                try:
                    read_first(os.path.join(mnt, f"f{i:06d}"))
                except OSError as e:
                    failures.append(e.errno)
        add(f"{nfiles} files: open and read every file", timed(read_every), "ms")
        # The daemon's descriptor limit is the usual way for this to fail.
        add(f"{nfiles} files: opens or reads that failed"
            + (f" ({', '.join(sorted({os.strerror(e) for e in failures}))})" if failures else ""),
            len(failures), "files", "0")
        add(f"{nfiles} files: daemon RSS after reading all", d.rss_mib(), "MiB", "< 64")
        add(f"{nfiles} files: daemon open fds after reading all", d.fds(), "fds", "bounded")
        # Holding them all open is the worst case for descriptors.
        held = []
        try:
            for i in range(nfiles):
                try:
                    held.append(os.open(os.path.join(mnt, f"f{i:06d}"), os.O_RDONLY))
                except OSError:
                    pass
            add(f"{nfiles} files: held open at once", len(held), "files", str(nfiles))
            add(f"{nfiles} files: daemon RSS with all open", d.rss_mib(), "MiB", "< 64")
            add(f"{nfiles} files: daemon open fds with all open", d.fds(), "fds", "bounded")
        finally:
            for fd in held:
                os.close(fd)
    finally:
        d.stop()
    shutil.rmtree(backing)

    # Many segments: one file written through a mount with tiny segments
    # (no fsync: that would be one fdatasync per segment).
    backing, mnt = os.path.join(work, "segs-backing"), os.path.join(work, "segs-mnt")
    os.makedirs(backing)
    os.makedirs(mnt)
    size = nsegs * seg
    path = os.path.join(mnt, "big")
    d = Daemon(binary, backing, mnt, f"segment_size={seg}")
    try:
        d.start()
        # Each 1 MiB write rolls through 256 segments.
        add(f"{nsegs} segments of 4 KiB: write the file ({human(size)}), per segment",
            timed(lambda: make_file(path, size)) / nsegs, "ms")
        # The unmount syncs every segment written; one sync of the whole
        # filesystem first makes those cheap.
        os.sync()
    finally:
        d.stop()
    try:
        add(f"{nsegs} segments: mount time", d.start() * 1000.0, "ms")
        add(f"{nsegs} segments: first read (open + 4 KiB read at the tail)",
            timed(lambda: read_first(path, size - seg)), "ms")
        add(f"{nsegs} segments: daemon RSS after first read", d.rss_mib(), "MiB", "< 64")
        add(f"{nsegs} segments: read the whole file", timed(lambda: read_all(path)), "ms")
        add(f"{nsegs} segments: daemon RSS after reading all", d.rss_mib(), "MiB", "< 64")
        add(f"{nsegs} segments: daemon open fds after reading all", d.fds(), "fds", "bounded")
        fd = os.open(path, os.O_WRONLY)
        try:
            add(f"{nsegs} segments: first fsync after the mount",
                timed(lambda: os.fsync(fd)), "ms", "not one fdatasync per segment")
            pruned = nsegs * 9 // 10
            add(f"{nsegs} segments: head prune of 90% ({pruned} segments), the fallocate",
                timed(lambda: punch_head(fd, size * 9 // 10)), "ms", "< 10")
            # The daemon's deleter frees the pruned segment files afterwards.
            # st_blocks counts those still waiting at a full slot each, so it
            # falls to the live segments' blocks once they are gone; listing
            # the backing directory instead would hold its lock against the
            # unlinks being measured.
            done_blocks = (nsegs - pruned + 2) * seg // 512
            start = time.monotonic()
            while os.stat(path).st_blocks > done_blocks and time.monotonic() - start < 300:
                time.sleep(0.05)
            add(f"{nsegs} segments: background deletion of the pruned segments",
                pruned / (time.monotonic() - start), "segments/s", ">= 20000")
        finally:
            os.close(fd)
        add(f"{nsegs} segments: daemon RSS after the prune", d.rss_mib(), "MiB", "< 64")
    finally:
        # Deleting the pruned segments takes the daemon a while after the
        # unmount; the backing store goes anyway, so it need not finish.
        d.stop(exit_seconds=5)
    shutil.rmtree(backing)

    fs_scale_files.rows(binary, work, s, Daemon, add)
    return rows


def scale_main(opts, s):
    if not opts.work or not opts.hpfs_bin:
        print("fs_bench: --scale needs --hpfs-bin and --work", file=sys.stderr)
        return 2
    # A TERM must still unmount: turn it into an exception that unwinds.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = scale(opts.hpfs_bin, opts.work, s)
    md = ["## scale: the hpfs daemon with many files and many segments", "",
          f"Mode {opts.mode}, one run. hpfs only: {s['scale_files']} files of one line each, and one "
          f"file of {s['scale_segments']} segments of 4 KiB (mounted with segment_size=4K). Mount time "
          "is from starting the daemon to the mount point answering.", "",
          "| workload | value | unit | target |", "| --- | --- | --- | --- |"]
    for name, value, unit, target in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{name:64} {shown:>10} {unit}", flush=True)
        md.append(f"| {name} | {shown} | {unit} | {target} |")
    write_report(opts, md, {"mode": opts.mode, "sizes": s, "rows": [
        {"workload": n, "value": v, "unit": u, "target": t} for n, v, u, t in rows]})
    return 0
