"""Agglomerative clustering out of core: a merge tree over weighted micro-clusters (BIRCH's idea).

``fit`` first summarises every row into a few hundred to a few thousand k-means micro-clusters
(counts and sums, from the streamed Lloyd passes that exist); :func:`merge_tree` then builds the
hierarchy over the micro-clusters, each weighted by its row count, and :func:`cuts` cuts it at
every k of the sweep. A row belongs to the group of its nearest micro-cluster.

scipy and scikit-learn take no weights, so the tree is built here with the nearest-neighbour
chain algorithm (O(m^2) time, one m x m matrix) and the Lance-Williams updates with the
micro-clusters' sizes as initial sizes:

* ward:     d2(k, i+j) = ((n_i+n_k) d2(k,i) + (n_j+n_k) d2(k,j) - n_k d2(i,j)) / (n_i+n_j+n_k),
            from d2(a, b) = 2 n_a n_b / (n_a+n_b) |c_a - c_b|^2 (exact for groups of rows);
* average:  d(k, i+j) = (n_i d(k,i) + n_j d(k,j)) / (n_i+n_j), from the centroids' distance;
* complete: d(k, i+j) = max(d(k,i), d(k,j)).

With every row its own micro-cluster (sizes 1) these are scikit-learn's AgglomerativeClustering
(tested for each linkage). All three linkages are reducible, so the chain finds the same tree
as merging the closest pair each time.
"""

from __future__ import annotations

import numpy as np

from ..options import LINKAGES
from .scores import pairwise_distances
from .stats import sq_distances


def merge_tree(centroids: np.ndarray, sizes: np.ndarray, *, linkage: str = "ward",
               metric: str = "euclidean") -> np.ndarray:
    """Merges of the weighted micro-clusters, lowest first: an (m-1) x 3 array of
    (a member of one side, a member of the other, height). Members are micro-cluster indices."""
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
    c = np.asarray(centroids, dtype=np.float64)
    n = np.asarray(sizes, dtype=np.float64).copy()
    m = len(c)
    if linkage == "ward":
        d = sq_distances(c, c) * (2.0 * np.outer(n, n) / (n[:, None] + n[None, :]))
    else:
        d = pairwise_distances(c, c, metric)
    np.fill_diagonal(d, np.inf)
    merges = np.zeros((max(m - 1, 0), 3))
    chain: list[int] = []
    alive = np.ones(m, bool)
    for step in range(m - 1):
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        while True:
            a = chain[-1]
            b = int(np.argmin(d[a]))
            if len(chain) > 1 and d[a, chain[-2]] <= d[a, b]:
                b = chain[-2]
                break
            chain.append(b)
        chain.pop()
        chain.pop()
        merges[step] = (a, b, np.sqrt(d[a, b]) if linkage == "ward" else d[a, b])
        _merge(d, n, a, b, linkage)
        alive[b] = False
    return merges[np.argsort(merges[:, 2], kind="stable")]


def _merge(d: np.ndarray, n: np.ndarray, a: int, b: int, linkage: str) -> None:
    """Lance-Williams: the merged cluster takes slot ``a``; slot ``b`` leaves the matrix."""
    if linkage == "ward":
        new = ((n[a] + n) * d[a] + (n[b] + n) * d[b] - n * d[a, b]) / (n[a] + n[b] + n)
    elif linkage == "average":
        new = (n[a] * d[a] + n[b] * d[b]) / (n[a] + n[b])
    else:
        new = np.maximum(d[a], d[b])
    n[a] += n[b]
    d[a], d[:, a] = new, new
    d[b], d[:, b] = np.inf, np.inf
    d[a, a] = np.inf


def cuts(merges: np.ndarray, m: int, ks: list[int]) -> list[np.ndarray]:
    """For each k: the group (0..k-1, numbered by first member) of each of the m micro-clusters."""
    parent = np.arange(m)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    wanted = {k: None for k in ks if 1 <= k <= m}
    groups = m
    if m in wanted:
        wanted[m] = np.arange(m)
    for a, b, _ in merges:
        ra, rb = root(int(a)), root(int(b))
        if ra == rb:
            continue
        parent[max(ra, rb)] = min(ra, rb)
        groups -= 1
        if groups in wanted:
            roots = np.array([root(i) for i in range(m)])
            wanted[groups] = np.unique(roots, return_inverse=True)[1]
    missing = [k for k in ks if wanted.get(k) is None]
    if missing:
        raise ValueError(f"cannot cut {m} micro-clusters into {missing} groups")
    return [wanted[k] for k in ks]


def group_means(groups: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row counts and exact means of each group of micro-clusters (from their counts and sums)."""
    k = int(groups.max()) + 1
    group_counts = np.bincount(groups, weights=counts, minlength=k)
    group_sums = np.zeros((k, sums.shape[1]))
    np.add.at(group_sums, groups, sums)
    return group_counts, group_sums / np.maximum(group_counts, 1)[:, None]
