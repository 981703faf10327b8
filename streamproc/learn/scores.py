"""Silhouette and the elbow rule: the two scores of a k sweep that DB/CH do not give.

* :func:`silhouette_scores` is scikit-learn's ``silhouette_score`` for several labellings of the same
  rows at once, in blocks of rows: each block's distances to every row are computed once and
  summed per cluster for every labelling with one matrix product, so memory is ``block x n`` and
  never ``n x n``. Silhouette is O(n^2), so ``fit`` runs it on a seeded uniform sample.
* :func:`elbow_index` picks the knee of inertia against k: both axes scaled to [0, 1], the knee is
  the k farthest below the straight line (chord) from the first to the last point (the "maximum
  distance to the chord" form of Kneedle, Satopaa et al. 2011, for a decreasing convex curve).
"""

from __future__ import annotations

import numpy as np

from .stats import sq_distances

BLOCK_ENTRIES = 2**20  # distances held at once (8 MiB of float64): fit's memory must not depend on the sample


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Euclidean distances, or cosine distances ``1 - cos`` (rows need not be normalised)."""
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        d = an @ bn.T
        np.subtract(1.0, d, out=d)
        return np.maximum(d, 0.0, out=d)
    d = sq_distances(a, b)
    return np.sqrt(d, out=d)


def silhouette_scores(z: np.ndarray, label_sets: list[np.ndarray], *, metric: str = "euclidean",
                      block_rows: int | None = None) -> list[float | None]:
    """The mean silhouette coefficient of each labelling of ``z`` (None where it is undefined:
    fewer than 2 or as many clusters as rows). Equals ``sklearn.metrics.silhouette_score``."""
    z = np.asarray(z, dtype=np.float64)
    block_rows = block_rows or max(1, BLOCK_ENTRIES // max(len(z), 1))
    onehots, counts, offsets = [], [], [0]
    for labels in label_sets:
        _, inverse = np.unique(labels, return_inverse=True)
        onehot = np.zeros((len(z), inverse.max() + 1))
        onehot[np.arange(len(z)), inverse] = 1.0
        onehots.append(onehot)
        counts.append(onehot.sum(axis=0))
        offsets.append(offsets[-1] + onehot.shape[1])
    stacked = np.hstack(onehots)  # every labelling's per-cluster sums from one product per block
    totals = [np.zeros(len(z)) for _ in label_sets]
    for start in range(0, len(z), block_rows):
        sums = pairwise_distances(z[start:start + block_rows], z, metric) @ stacked
        for i, (total, onehot, count) in enumerate(zip(totals, onehots, counts)):
            total[start:start + len(sums)] = _silhouette_block(sums[:, offsets[i]:offsets[i + 1]],
                                                               onehot[start:start + len(sums)], count)
    out = []
    for total, count in zip(totals, counts):
        defined = 1 < len(count) < len(z)
        out.append(float(total.mean()) if defined else None)
    return out


def _silhouette_block(cluster_sums: np.ndarray, own: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Silhouette of each row from its summed distances to every cluster (a row alone in its cluster: 0)."""
    own_size = own @ counts
    a = (cluster_sums * own).sum(axis=1) / np.maximum(own_size - 1, 1)
    mean_other = np.where(own > 0, np.inf, cluster_sums / counts)
    b = mean_other.min(axis=1)  # inf when there is one cluster only: the score is then undefined
    with np.errstate(invalid="ignore"):
        s = (b - a) / np.maximum(np.maximum(a, b), 1e-300)
    return np.where(own_size > 1, np.nan_to_num(s), 0.0)


def elbow_index(ks: list[int], inertia: list[float]) -> int:
    """Index of the knee of a decreasing inertia curve (see the module docstring); the first k when
    there are fewer than 3 points or the curve is a straight line."""
    if len(ks) < 3:
        return 0
    x = np.asarray(ks, dtype=float)
    y = np.asarray(inertia, dtype=float)
    x = (x - x[0]) / max(x[-1] - x[0], 1e-300)
    y = (y - y.min()) / max(y.max() - y.min(), 1e-300)
    chord = y[0] + (y[-1] - y[0]) * x
    below = chord - y
    return int(np.argmax(below)) if below.max() > 1e-9 else 0
