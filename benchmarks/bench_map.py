"""How large a sample does the map's UMAP fit need? Neighbourhood preservation against time, on the
demo's data (100k x 384, 20 clusters, reduced by PCA to 95 % of the variance as fit does).

For each sample size: umap-learn is fitted on a uniform sample (as ``project`` does), then 3,000
held-out rows are placed by streamproc's IVF placement. Preservation = the mean fraction of each
evaluation row's 15 nearest neighbours (among the evaluation rows) in the reduced space that are
also among its 15 nearest on the map. The reference: the same measure for umap-learn's own
embedding of 3,000 rows of its sample.

    python benchmarks/bench_map.py [--rows 100000] [--sizes 5000,10000,20000,50000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamproc.io.synth import Mixture  # noqa: E402
from streamproc.learn.neighbours import IVFIndex, place  # noqa: E402

K = 15
EVAL = 3000


def knn(x: np.ndarray) -> np.ndarray:
    return NearestNeighbors(n_neighbors=K + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]


def overlap(high: np.ndarray, low: np.ndarray) -> float:
    a, b = knn(high), knn(low)
    return float(np.mean([len(np.intersect1d(a[i], b[i])) / K for i in range(len(a))]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sizes", default="5000,10000,20000,50000")
    parser.add_argument("--epochs", default="", help="n_epochs values to try too (default: umap-learn's)")
    parser.add_argument("--parallel", action="store_true",
                        help="also fit without random_state (umap-learn then uses every core, not reproducibly)")
    args = parser.parse_args()
    import umap

    x, _ = Mixture(dim=384, clusters=20, seed=0).batch(0, args.rows)
    z = PCA(0.95, random_state=0).fit_transform(x).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(z))
    held_out, pool = z[order[:EVAL]], z[order[EVAL:]]
    umap.UMAP(n_neighbors=K, random_state=0).fit(pool[:2000])  # numba compiles here, not in a timed run
    print(f"bench_map: {args.rows:,} x 384 -> {z.shape[1]} components; kNN overlap at k={K} on {EVAL:,} rows")
    print(f"{'sample':>7} {'n_epochs':>8} {'threads':>7} {'fit s':>6} {'place s':>7} {'placed rows':>11} "
          f"{'umap-learn own':>14}")
    epochs = [None] + [int(e) for e in args.epochs.split(",") if e]
    seeds = [0, None] if args.parallel else [0]
    for size, n_epochs, seed in itertools.product(map(int, args.sizes.split(",")), epochs, seeds):
        sample = pool[:size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            began = time.perf_counter()
            reducer = umap.UMAP(n_neighbors=K, min_dist=0.1, random_state=seed, n_epochs=n_epochs).fit(sample)
            fit_s = time.perf_counter() - began
        xy = reducer.embedding_.astype(np.float32)
        began = time.perf_counter()
        placed = place(IVFIndex.build(sample, seed=0), xy, held_out)
        place_s = time.perf_counter() - began
        own = overlap(sample[:EVAL], xy[:EVAL])
        print(f"{size:7d} {n_epochs or 'default':>8} {'1' if seed is not None else 'all':>7} {fit_s:6.1f} "
              f"{place_s:7.2f} {overlap(held_out, placed):11.3f} {own:14.3f}", flush=True)

if __name__ == "__main__":
    main()
