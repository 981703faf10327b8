"""One full read pass of the 1M x 768 float32 vectors with a warm page cache: zarr-python's plain
sequential reads against streamproc's read paths, each in its own subprocess, GB/s and peak RSS.

    python benchmarks/bench_read.py [--rows 1000000]

Every contender touches every value (a sum per block), so no read can be skipped or left lazy.
"""

from __future__ import annotations

import argparse
import subprocess

from _common import commit, gib, run, store_path

PLAIN_CHUNKS = """
import json, sys, time, zarr
a = zarr.open_array(sys.argv[1] + "/vectors", mode="r")
t = time.perf_counter(); total = 0.0
for s in range(0, a.shape[0], a.chunks[0]):
    total += float(a[s:s + a.chunks[0]].sum(dtype="float64"))
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": a.nbytes}))
"""

PLAIN_BLOCKS = """
import json, sys, time, zarr
a = zarr.open_array(sys.argv[1] + "/vectors", mode="r")
step = a.chunks[0] * max(1, (16 << 20) // (a.chunks[0] * a.shape[1] * a.dtype.itemsize))
t = time.perf_counter(); total = 0.0
for s in range(0, a.shape[0], step):
    total += float(a[s:s + step].sum(dtype="float64"))
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": a.nbytes}))
"""

ITER_BLOCKS = """
import json, sys, time
from streamproc.store.store import Store
s = Store.open(sys.argv[1])
t = time.perf_counter(); total = 0.0
for _, block in s.iter_blocks("vectors"):
    total += float(block.sum(dtype="float64"))
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": s.rows * s.dim * 4}))
"""

RUNNER = """
import json, sys, time
import numpy as np
from streamproc.pipeline.runner import Runner
from streamproc.store.store import Store, block_ranges, rows_per_block
s = Store.open(sys.argv[1])
ranges = block_ranges(s.rows, rows_per_block(s.manifest.chunk_rows, s.dim * 4))
def block_sum(block, start):
    return {"sum": np.array([block.sum(dtype="float64")])}
t = time.perf_counter()
with Runner() as r:
    r.reduce_blocks(s.path / "vectors", ranges, block_sum)
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": s.rows * s.dim * 4}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    store = store_path(args.rows, args.dim)
    subprocess.run(f"cat {store}/vectors/c/*/* > /dev/null", shell=True, check=True)  # warm the page cache
    print(f"bench_read: one pass over {args.rows:,} x {args.dim} float32, warm page cache; commit {commit()}")
    print(f"command: python benchmarks/bench_read.py --rows {args.rows}")
    contenders = (("zarr, one chunk per read (sequential)", PLAIN_CHUNKS),
                  ("zarr, 16 MB reads (sequential)", PLAIN_BLOCKS),
                  ("streamproc Store.iter_blocks (read-ahead)", ITER_BLOCKS),
                  ("streamproc Runner pass (fit/classify/project)", RUNNER))
    results = [(name, run(code, store)) for name, code in contenders]
    base = results[0][1]
    print(f"{'':46} {'seconds':>8} {'GB/s':>6} {'vs zarr':>8} {'peak RSS':>10}")
    for name, r in results:
        if "error" in r:
            print(f"{name:46} failed: {r['error']}")
            continue
        print(f"{name:46} {r['seconds']:8.2f} {r['bytes'] / r['seconds'] / 1e9:6.2f} "
              f"{base['seconds'] / r['seconds']:7.2f}x {gib(r['peak_rss']):>10}")


if __name__ == "__main__":
    main()
