"""K-means in memory, in numpy: scikit-learn's greedy k-means++ (with its random draws, so a seed
gives the starts it gave) and Lloyd's algorithm with its stopping rule, for the sample a streamed fit
starts from (:func:`kmeans.init_centroids`).

Why not scikit-learn's ``KMeans``: importing scikit-learn costs a fit 1.0-1.3 s (it pulls in
scipy.stats and pandas), as much as the whole seeding. This runs as fast as its compiled loop on the
sample (10k x 153, k = 8..32, same starts: the same iterations, inertia within 4e-6, 0.9-1.1x its
time; benchmarks/README.md, "Seeding in numpy"): an iteration is one BLAS product for the distances,
and only the rows that changed cluster are summed again. Unlike ``KMeans`` the rows are not centred
first: the reduced rows a fit passes are centred already.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import nearest_in_sets, sq_distances

# rows whose n x k distances and k x n memberships are held at once: a fit's 10k-row sample in one
# piece; a large --sample with a large k stays at CHUNK_ROWS x k per thread (k = 500: about 65 MB)
CHUNK_ROWS = 16_384


@dataclass
class KMeansResult:
    centers: np.ndarray  # k x d, in the rows' dtype
    labels: np.ndarray  # each row's nearest center
    inertia: float  # sum of squared distances of the rows to their centers (float64)
    n_iter: int  # center updates made (scikit-learn also counts the pass that finds no change)


def kmeans(x: np.ndarray, k: int, rng: np.random.RandomState, *, max_iter: int = 100,
           tol: float = 1e-4) -> KMeansResult:
    """k-means++ on float64 copies of the rows, then Lloyd's algorithm on the rows."""
    return lloyd(x, kmeans_plusplus(x, k, rng), max_iter=max_iter, tol=tol)


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """``k`` rows of ``x`` as starting centers, by greedy k-means++ (scikit-learn's): each center is
    the best, by the potential it leaves, of ``2 + log k`` rows drawn with probability proportional
    to their squared distance from the centers chosen so far. Computed in float64."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means++ needs 1 <= k <= the number of rows ({n}); got k = {k}")
    norms = _squared_norms(x)
    trials = 2 + int(np.log(k))
    picked = [int(rng.choice(n, p=np.full(n, 1.0 / n)))]  # a uniform draw, as scikit-learn draws it
    closest = sq_distances(x[picked], x, norms)[0]
    potential = closest.sum()
    for _ in range(1, k):
        draws = rng.uniform(size=trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        left = np.minimum(closest, sq_distances(x[candidates], x, norms))  # each candidate's new closest
        potentials = left.sum(axis=1)
        best = int(np.argmin(potentials))
        picked.append(int(candidates[best]))
        closest, potential = left[best], potentials[best]
    return x[picked].copy()


def lloyd(x: np.ndarray, centers: np.ndarray, *, max_iter: int = 100, tol: float = 1e-4) -> KMeansResult:
    """Lloyd's algorithm from ``centers``, stopped as scikit-learn's ``KMeans`` stops: when no row
    changes cluster, or when the centers' total squared move is at most ``tol`` x the rows' mean
    per-feature variance, or after ``max_iter`` updates. An empty cluster takes the row farthest
    from its center, as in scikit-learn. Rows that are not floats are taken as float64."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    centers = np.array(centers, dtype=x.dtype)
    k = len(centers)
    limit = tol * float(np.mean(np.var(x, axis=0)))
    norms = _squared_norms(x)
    labels, distances = _nearest(x, norms, centers)
    counts, sums = _cluster_sums(x, labels, k)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        labels, counts, sums = _fill_empty(x, labels, distances, counts, sums)
        new = (sums / np.maximum(counts, 1)[:, None]).astype(x.dtype)
        shift = float(((new - centers).astype(np.float64) ** 2).sum())
        centers = new
        relabelled, distances = _nearest(x, norms, centers)
        changed = np.flatnonzero(relabelled != labels)
        if len(changed) == 0:
            break
        if len(changed) > len(x) // 8:
            counts, sums = _cluster_sums(x, relabelled, k)
        else:  # move the changed rows' sums from their old clusters to their new ones
            gained, lost = _cluster_sums(x[changed], relabelled[changed], k), _cluster_sums(x[changed], labels[changed], k)
            counts, sums = counts + gained[0] - lost[0], sums + gained[1] - lost[1]
        labels = relabelled
        if shift <= limit:
            break
    residuals = x - centers[labels]
    inertia = float(np.einsum("ij,ij->i", residuals, residuals).sum(dtype=np.float64))
    return KMeansResult(centers, labels, inertia, n_iter)


def _squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _nearest(x: np.ndarray, norms: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest center and squared distance to it (``norms``: the rows' squared norms),
    ``CHUNK_ROWS`` rows at a time."""
    labels, distances = np.empty(len(x), np.intp), np.empty(len(x), x.dtype)
    for a in range(0, len(x), CHUNK_ROWS):
        [(labels[a:a + CHUNK_ROWS], distances[a:a + CHUNK_ROWS])] = nearest_in_sets(
            x[a:a + CHUNK_ROWS], [centers], norms[a:a + CHUNK_ROWS])
    return labels, distances


def _cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's row count and row sum (summed in the rows' dtype, as scikit-learn sums them):
    a BLAS product with the clusters' 0/1 membership, 2x faster than sorting the rows by cluster;
    ``CHUNK_ROWS`` rows at a time."""
    sums = np.zeros((k, x.shape[1]))
    for a in range(0, len(x), CHUNK_ROWS):
        members = (labels[a:a + CHUNK_ROWS] == np.arange(k)[:, None]).astype(x.dtype)
        sums += members @ x[a:a + CHUNK_ROWS]
    return np.bincount(labels, minlength=k), sums


def _fill_empty(x: np.ndarray, labels: np.ndarray, distances: np.ndarray, counts: np.ndarray,
                sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give each empty cluster one of the rows farthest from their centers (``distances``, squared),
    taken from its cluster. Returns new labels, counts and sums."""
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return labels, counts, sums
    labels, counts, sums = labels.copy(), counts.copy(), sums.copy()
    for cluster, row in zip(empty, np.argsort(distances)[::-1][:len(empty)]):
        counts[labels[row]] -= 1
        sums[labels[row]] -= x[row]
        counts[cluster], sums[cluster] = 1, x[row]
        labels[row] = cluster
    return labels, counts, sums
