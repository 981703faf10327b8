"""Ingest 1M x 768 float32 from one .npy into a new store: MB/s and peak RSS, side by side with a
plain zarr write of the same array (zarr's default codecs, and no compression as streamproc stores
vectors), each in its own subprocess.

    python benchmarks/bench_ingest.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import shutil

from _common import DATA, commit, gib, npy_path, run

STREAMPROC = """
import json, sys
from streamproc.pipeline.ingest import ingest
r = ingest(sys.argv[2], [sys.argv[1]])
print(json.dumps({"rows": r.rows}))
"""

PLAIN = """
import json, sys, numpy as np, zarr
x = np.load(sys.argv[1], mmap_mode="r")
kw = {} if sys.argv[3] == "default" else {"compressors": None}
a = zarr.create_array(sys.argv[2], shape=x.shape, chunks=(1344, x.shape[1]), dtype=x.dtype, overwrite=True, **kw)
a[:] = x
print(json.dumps({"rows": a.shape[0]}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    src = npy_path(args.rows, args.dim)
    mb = args.rows * args.dim * 4 / 1e6
    print(f"bench_ingest: {args.rows:,} x {args.dim} float32 from .npy ({mb:,.0f} MB); commit {commit()}")
    print(f"command: python benchmarks/bench_ingest.py --rows {args.rows}")
    results = {}
    for name, code, extra in (("streamproc ingest", STREAMPROC, []),
                              ("plain zarr write (default codecs)", PLAIN, ["default"]),
                              ("plain zarr write (no compression)", PLAIN, ["none"])):
        out = DATA / "bench-ingest-out"
        shutil.rmtree(out, ignore_errors=True)
        results[name] = run(code, src, out, *extra)
        shutil.rmtree(out, ignore_errors=True)
    ref = results["plain zarr write (default codecs)"]["wall"]
    print(f"{'':36} {'wall s':>7} {'MB/s':>7} {'vs plain':>8} {'peak RSS':>10}")
    for name, r in results.items():
        print(f"{name:36} {r['wall']:7.1f} {mb / r['wall']:7.0f} {ref / r['wall']:7.2f}x {gib(r['peak_rss']):>10}"
              + (f"  failed: {r['error']}" if "error" in r else ""))


if __name__ == "__main__":
    main()
