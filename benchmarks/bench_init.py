"""How k-means initialisation decides which k the sweep picks: fit 1M x 768 (20-cluster mixture,
k in {8, 12, 16, 20, 24, 32}) with several seeds, under the old default (3 k-means++ restarts on a
20k sample) and the current one (10 restarts on 10k), each fit in its own subprocess.

    python benchmarks/bench_init.py [--rows 1000000] [--seeds 5]
"""

from __future__ import annotations

import argparse

from _common import commit, gib, run, store_path
from bench_fit import KS, STREAMPROC_ARI

FIT = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
restarts, sample, seed = map(int, sys.argv[2:5])
r = fit(sys.argv[1], FitOptions(ks=%r, restarts=restarts, sample=sample, seed=seed))
db = {s["k"]: s["davies_bouldin"] for s in r.model.scores}
print(json.dumps({"model": r.model.id, "k": r.model.k, "db": db, "fit_seconds": r.seconds}))
""" % (KS,)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    store = store_path(args.rows, 768)
    labels = store.parent / f"mix-{args.rows}x768-k20-s0.labels.npy"
    env = {"PYTHONPATH": str(store.parents[2])}
    print(f"bench_init: {args.rows:,} x 768 float32, 20-cluster mixture, k in {KS}; commit {commit()}")
    print(f"command: python benchmarks/bench_init.py --rows {args.rows} --seeds {args.seeds}")
    print(f"{'init':24} {'seed':>4} {'fit s':>6} {'peak RSS':>9} {'k':>3} {'DB k=16':>8} {'DB k=20':>8} "
          f"{'DB k=24':>8} {'ARI':>6}")
    for name, restarts, sample in [("3 restarts, 20k sample", 3, 20_000), ("10 restarts, 10k sample", 10, 10_000)]:
        for seed in range(args.seeds):
            r = run(FIT, store, restarts, sample, seed, env=env)
            if "error" in r:
                print(f"{name:24} {seed:4d} failed: {r['error'][:80]}", flush=True)
                continue
            ari = run(STREAMPROC_ARI, store, r["model"], labels, env=env)["ari"]
            db = r["db"]
            print(f"{name:24} {seed:4d} {r['fit_seconds']:6.1f} {gib(r['peak_rss']):>9} {r['k']:3d} "
                  f"{db['16']:8.3f} {db['20']:8.3f} {db['24']:8.3f} {ari:6.3f}", flush=True)


if __name__ == "__main__":
    main()
