"""The 10M fit on the disk #17 was measured on: reads from the store's disk throttled to 300 MB/s
(cgroup v1 blkio), the page cache dropped before each step. One cold read of the vectors through the
fit's read path, then the fit, each in its own subprocess; prints #17's ratio "fit / (one cold read
+ the k-means passes)" against its 1.3x.

Needs root and the cgroup v1 blkio controller (/sys/fs/cgroup/blkio), and the store bench_scale
keeps with ``--keep``:

    python benchmarks/bench_scale.py --rows 10000000 --keep      # once (~25 min; leaves a 37 GB store)
    python benchmarks/bench_slow_disk.py [--rows 10000000] [--read-mb-per-s 300]

On this machine's own disk (0.8 GB/s) pass 1 is arithmetic-bound (the exact XᵀX and the projection
on 2 cores take about twice the read); at 0.3 GB/s the read is what costs, as it did when #17 was
filed (a cold read took 100 s then).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from _common import DATA, commit, gib, run

BLKIO = Path("/sys/fs/cgroup/blkio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--read-mb-per-s", type=int, default=300)
    args = parser.parse_args()
    import bench_scale  # the step snippets, so both benchmarks measure the same code

    store = DATA / f"scale-{args.rows}-float32"
    if not (store / "manifest.json").exists():
        raise SystemExit(f"{store}: no store; run bench_scale.py --rows {args.rows} --keep first")
    if os.geteuid() != 0 or not BLKIO.is_dir():
        raise SystemExit("needs root and the cgroup v1 blkio controller to throttle reads")
    group = BLKIO / "streamproc-slow-disk"
    group.mkdir(exist_ok=True)
    device = os.stat(store).st_dev
    (group / "blkio.throttle.read_bps_device").write_text(
        f"{os.major(device)}:{os.minor(device)} {args.read_mb_per_s * 10**6}\n")
    join = f"open({str(group / 'tasks')!r}, 'w').write(str(__import__('os').getpid()))\n"
    print(f"bench_slow_disk: {args.rows:,} x 768 float32, reads of device {os.major(device)}:{os.minor(device)} "
          f"throttled to {args.read_mb_per_s} MB/s; commit {commit()}")
    print(f"command: python benchmarks/bench_slow_disk.py --rows {args.rows} --read-mb-per-s {args.read_mb_per_s}",
          flush=True)
    _drop_caches()
    read = run(join + bench_scale.READ, store)
    print(f"  one cold read of the vectors: {read['wall']:.1f} s ({read['read_bytes'] / read['wall'] / 1e9:.2f} GB/s "
          f"from disk), peak RSS {gib(read['peak_rss'])}", flush=True)
    _drop_caches()
    log = DATA / f"slow-disk-{args.rows}-fit.log"
    fit = run(join + bench_scale.FIT, store, bench_scale.KS, log,
              env={"STREAMPROC_PROGRESS_AFTER": "0"})
    if "error" in fit:
        raise SystemExit(f"fit failed: {fit['error']}")
    passes = {}
    for line in log.read_text().splitlines():
        if ": done" in line:
            print(f"    {line}")
            found = re.search(r"in ([0-9.]+) s$", line)
            passes[line.split(":")[0]] = float(found.group(1)) if found else 0.0
    kmeans = sum(s for name, s in passes.items() if name.startswith("pass ") and not name.startswith("pass 1/"))
    print(f"  fit: {fit['wall']:.1f} s, k = {fit['k']}, one read used: {fit['one_read']['used']}, "
          f"{fit['read_bytes'] / 1e9:.1f} GB from disk, peak RSS {gib(fit['peak_rss'])}")
    print(f"  #17: fit / (one cold read + the k-means passes) = {fit['wall']:.1f} / ({read['wall']:.1f} + {kmeans:.1f}) "
          f"= {fit['wall'] / (read['wall'] + kmeans):.2f}x (target <= 1.3x)")
    group.rmdir()  # (its processes have ended)


def _drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


if __name__ == "__main__":
    main()
