# SPDX-License-Identifier: Apache-2.0
"""Draws fs_bench.py's ratios as a bar chart (SVG) with gnuplot: one group per
workload, one bar per hpfs mode, on a log scale with native at 1 (above 1:
hpfs faster). Without gnuplot it says so and draws nothing; scripts/bench
installs it (HPFS_BENCH_DEPS in scripts/deps.sh)."""

import os
import shutil
import subprocess
import sys

# (row key of the median ratio, legend, colour) per hpfs mode.
BARS = (("ratio_median", "write-through (default)", "#4878a8"),
        ("writeback_ratio_median", "-o writeback", "#e0803c"))

SCRIPT = """\
set terminal svg size {width},640 dynamic noenhanced font "sans,11" background "white"
set output {output}
set title {title}
set datafile separator "\\t"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.01:*]
set ylabel "hpfs / native (log scale; above 1: hpfs faster)"
set grid ytics
set xtics rotate by -40 left font ",9" nomirror
set key top left
set bmargin 16
set rmargin 24
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "#202020" dt 2
plot {plots}
"""


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draw(rows, svg_path, title):
    if shutil.which("gnuplot") is None:
        print("fs_chart: gnuplot is not installed, no chart drawn", file=sys.stderr)
        return False
    bars = [bar for bar in BARS if any(bar[0] in row for row in rows)]
    data_path = os.path.splitext(svg_path)[0] + ".tsv"
    with open(data_path, "w") as f:
        f.write("# workload\t" + "\t".join(legend for _, legend, _ in bars) + "\n")
        for row in rows:
            cells = [f"{row[key]:.6g}" if key in row else "NaN" for key, _, _ in bars]
            f.write(row["workload"].replace("\t", " ") + "\t" + "\t".join(cells) + "\n")
    plots = ", ".join(
        f"{quote(data_path)} using {i + 2}:xtic(1) title {quote(legend)} lc rgb {quote(colour)}"
        for i, (_, legend, colour) in enumerate(bars))
    script = SCRIPT.format(width=max(900, 60 * len(rows) + 200), output=quote(svg_path), title=quote(title),
                           plots=plots)
    done = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if done.returncode != 0:
        print(f"fs_chart: gnuplot failed: {done.stderr.strip()}", file=sys.stderr)
        return False
    return True
