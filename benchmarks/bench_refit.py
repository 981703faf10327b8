"""Warm vs cold refit after 10 % new rows: wall, peak RSS, and the share of rows that keep their id.

A store gets 90 % of the rows, a first model (k = 20) is fitted, the other 10 % arrive, then the same
store is refitted twice, each in its own subprocess: ``fit --warm-start`` (from the current model) and
a cold ``fit --k 20`` (another seed; its clusters aligned to the current model's ids). "ids kept" is
the share of a 100k-row sample (evenly spaced over the store) whose cluster id is the same under the
refitted model as under the first one.

    python benchmarks/bench_refit.py [--rows 1000000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import numpy as np
from _common import DATA, ROOT, commit, gib, run

FIT = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
warm = sys.argv[2] == "warm"
options = FitOptions(ks=[] if warm else [20], warm_start=warm, seed=int(sys.argv[3]))
r = fit(sys.argv[1], options)
print(json.dumps({"model": r.model.id, "k": r.model.k}))
"""


def build_store(rows: int, dim: int):
    """A store with the first 90 % of the rows, and an inbox with the other 10 % (generator batches)."""
    sys.path.insert(0, str(ROOT))
    from streamproc.io.synth import Mixture
    from streamproc.pipeline.ingest import ingest

    store, inbox = DATA / f"bench-refit-{rows}x{dim}", DATA / f"bench-refit-{rows}x{dim}-new"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    mix, step, old = Mixture(dim=dim, clusters=20, seed=0), 50_000, rows * 9 // 10
    first = DATA / f"bench-refit-{rows}x{dim}-old"
    first.mkdir(exist_ok=True)
    for i, start in enumerate(range(0, rows, step)):
        folder = first if start < old else inbox
        np.save(folder / f"b{i:04d}.npy", mix.batch(i, min(step, rows - start))[0])
    ingest(store, [first])
    shutil.rmtree(first)
    return store, inbox


def ids_kept(store, before: str, after: str) -> float:
    from streamproc.store.catalog import load_model
    from streamproc.store.store import Store

    s = Store.open(store)
    rows = np.linspace(0, s.rows - 1, min(100_000, s.rows)).astype(np.int64)
    x = s.array("vectors").get_orthogonal_selection((rows, slice(None)))
    return float((load_model(s, before).predict(x) == load_model(s, after).predict(x)).mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    from streamproc.pipeline.ingest import ingest

    store, inbox = build_store(args.rows, args.dim)
    first = run(FIT, store, "cold", 0)
    ingest(store, [inbox])
    warm = run(FIT, store, "warm", 0)
    cold = run(FIT, store, "cold", 1)
    print(f"bench_refit: {args.rows:,} x {args.dim} float32, first fit on 90 %, refit after the other 10 %; "
          f"commit {commit()}")
    print(f"command: python benchmarks/bench_refit.py --rows {args.rows} --dim {args.dim}")
    print(f"{'':34} {'wall s':>7} {'peak RSS':>10} {'k':>3} {'ids kept':>9}")
    print(f"{'first fit (90 % of rows, k = 20)':34} {first['wall']:7.1f} {gib(first['peak_rss']):>10} {first['k']:>3}")
    for name, r in (("warm refit (--warm-start)", warm), ("cold refit (--k 20, aligned)", cold)):
        kept = ids_kept(store, first["model"], r["model"])
        print(f"{name:34} {r['wall']:7.1f} {gib(r['peak_rss']):>10} {r['k']:>3} {kept:9.2%}")
    print(f"warm / cold wall: {warm['wall'] / cold['wall']:.2f}")
    print(json.dumps({"warm": warm, "cold": cold, "first": first}))


if __name__ == "__main__":
    main()
