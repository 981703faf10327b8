"""How exact is exact PCA, and how close is the one-read PCA to it? On the 1M x 768 mixture store
(the one bench_fit uses), from exact moments summed in 10k-row pieces:

* the largest principal angle between the kept components of exact PCA of half the rows
  (alternate pieces) and of all rows, at 250k, 500k and 1M rows: how far exact PCA itself moves;
* the one-read PCA (exact PCA of the rows projected onto a subspace 1.5x as wide as the components,
  estimated from 40k-320k rows of random pieces) against exact PCA of all rows: largest angle and
  explained variance lost.

The fit uses one read when its angle is within 0.1 degree or within how far exact PCA itself moves
(whichever is larger) and it loses at most 0.001 of the variance (streamproc/pipeline/fit.py).

    python benchmarks/bench_one_read.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import ROOT, commit, store_path

sys.path.insert(0, str(ROOT))
from streamproc.learn import stats  # noqa: E402
from streamproc.learn.pca import components_for_variance, pca_in_basis, subspace_angle  # noqa: E402
from streamproc.store.store import Store  # noqa: E402

PIECE = 10_000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    store = Store.open(store_path(args.rows, 768))
    print(f"bench_one_read: {store.rows:,} x {store.dim}, pieces of {PIECE:,} rows; commit {commit()}")
    shift = store.read("vectors", 0, 4096).astype(np.float64).mean(axis=0)
    pieces = [stats.moments_chunk(store.read("vectors", a, min(a + PIECE, store.rows)), shift)
              for a in range(0, store.rows, PIECE)]

    def covariance(parts):
        return stats.moments_finalize(stats.combine(*parts), shift)[1]

    def leading(cov, q):
        return np.linalg.eigh(cov)[1][:, ::-1][:, :q]

    cov = covariance(pieces)
    spectrum = np.linalg.eigvalsh(cov)[::-1]
    q = components_for_variance(spectrum / spectrum.sum(), 0.95)
    exact = leading(cov, q)
    print(f"{q} components keep 95 % of the variance\n")
    print("| rows | exact PCA of half the rows against all rows |\n|---|---|")
    for n in (len(pieces) // 4, len(pieces) // 2, len(pieces)):
        part = pieces[:n]
        angle = subspace_angle(leading(covariance(part[0::2]), q), leading(covariance(part), q))
        print(f"| {n * PIECE:,} | {angle:.2f}° |")
    print("\n| rows for the subspace | largest angle | explained variance lost |\n|---|---|---|")
    rng = np.random.default_rng(0)
    for count in (4, 8, 16, 32):
        picked = rng.permutation(len(pieces))[:count]
        basis = leading(covariance([pieces[i] for i in picked]), int(np.ceil(q * 1.5)))
        components, values = pca_in_basis(cov, basis, 0.95, q)
        lost = (spectrum[:q].sum() - values[:q].sum()) / spectrum.sum()
        print(f"| {count * PIECE:,} | {subspace_angle(components.T, exact):.2f}° | {lost:.5f} |")


if __name__ == "__main__":
    main()
