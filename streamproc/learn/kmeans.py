"""K-means for every k of a sweep, streamed: initialised on a uniform sample, refined by full
Lloyd epochs over all rows in which every k is updated from the same read of each block.

Why Lloyd epochs rather than per-chunk mini-batch updates: a mini-batch update depends on the
order chunks arrive in, so it cannot be split across Dask workers and gives different answers for
different chunkings. One Lloyd step is a sum over chunks (counts and sums per cluster): a tree
reduction that gives the same centroids locally and on a cluster, for any chunking. Started from
k-means++ fitted on the sample, it converges in a few epochs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import lloyd, stats
from .model import normalize_rows


def parse_k_range(text: str) -> list[int]:
    """``"8:32:4"`` (start:stop:step, stop inclusive) or ``"8,12,16"`` to a sorted list of k >= 2."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (*parts, 1) if len(parts) == 2 else parts
            if step < 1 or stop < start:
                raise ValueError
            ks = list(range(start, stop + 1, step))
        else:
            ks = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise ValueError(f"--k expects START:STOP[:STEP] (stop inclusive) or a list like 8,12,16; got {text!r}") from None
    if not ks or ks[0] < 2:
        raise ValueError(f"--k needs every k >= 2; got {text!r}")
    return ks


def init_centroids(sample: np.ndarray, k: int, *, seed: int, metric: str, restarts: int = 10) -> np.ndarray:
    """The best (lowest inertia) of ``restarts`` k-means++ runs on the sample, in memory.

    Restarts matter more than sample size: on the benchmark mixture, 3 restarts on 20k rows often
    ended in a local optimum that merges two clusters and splits another (Davies-Bouldin 1.41 at
    k = 20), which then made the sweep pick a wrong k; 10 restarts on 10k rows found the better
    optimum every time (benchmarks/README.md, "Initialisation"). k-means++ runs on float64 rows,
    Lloyd on the sample's (:mod:`.lloyd`)."""
    rng = np.random.RandomState(seed)
    best = None
    for _ in range(restarts):
        fitted = lloyd.kmeans(sample, k, rng)
        if best is None or fitted.inertia < best.inertia:
            best = fitted
    centroids = split_merge(sample, best.centers, best.inertia, rng)
    return normalize_rows(centroids) if metric == "cosine" else centroids


def split_merge(sample: np.ndarray, centroids: np.ndarray, inertia: float, rng: np.random.RandomState, *,
                candidates: int = 2, rounds: int = 5, gain: float = 1e-3) -> np.ndarray:
    """Escape the local optimum that splits one true cluster and merges two others: merge a pair of
    clusters whose merge costs little inertia, split a cluster spread widely along one direction
    (2-means), rerun k-means on the sample from there, and keep the result if its inertia is lower
    by at least ``gain`` (relative); repeat while a move pays. The ``candidates`` cheapest merges x
    the ``candidates`` widest clusters are tried.

    Restarts alone do not escape it: on ``synth --dim 768`` (50k rows) 10 k-means++ restarts ended
    there for 2 data seeds of 5 (ARI 0.83-0.85 at k = 20); one accepted move gave ARI 1.000
    (benchmarks/README.md, "Local optima")."""
    k = len(centroids)
    for _ in range(rounds if k > 2 else 0):
        labels = stats.nearest_in_sets(sample, [centroids.astype(sample.dtype)])[0][0]
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        moves = [(i, j, s, halves) for s, halves in _splits(sample, labels, _widest(sample, labels, k, candidates), rng)
                 for i, j in _cheapest_merges(centroids, counts, candidates) if s not in (i, j)]
        for i, j, s, halves in moves:
            merged = (counts[i] * centroids[i] + counts[j] * centroids[j]) / max(counts[i] + counts[j], 1.0)
            start = np.vstack([np.delete(centroids, [i, j, s], axis=0), merged[None], halves]).astype(sample.dtype)
            fitted = lloyd.lloyd(sample, start)
            if fitted.inertia < inertia * (1 - gain):
                centroids, inertia = fitted.centers, fitted.inertia
                break
        else:
            break  # no move paid
    return centroids


def _cheapest_merges(centroids: np.ndarray, counts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """The ``n`` pairs whose merge raises the inertia least (Ward's cost: n_i n_j / (n_i + n_j) |c_i - c_j|²)."""
    cost = counts[:, None] * counts[None, :] / np.maximum(counts[:, None] + counts[None, :], 1.0)
    cost = cost * stats.sq_distances(centroids, centroids)
    i, j = np.triu_indices(len(centroids), 1)
    order = np.argsort(cost[i, j])[:n]
    return list(zip(i[order].tolist(), j[order].tolist()))


def _widest(sample: np.ndarray, labels: np.ndarray, k: int, n: int) -> list[int]:
    """The ``n`` clusters with the most inertia along their main axis (count x largest covariance
    eigenvalue): a cluster holding two true clusters is spread widest along the line joining them."""
    spread = np.zeros(k)
    for c in range(k):
        members = sample[labels == c].astype(np.float64)
        if len(members) >= 4:
            centred = members - members.mean(axis=0)
            spread[c] = np.linalg.eigvalsh(centred.T @ centred)[-1]
    return [int(c) for c in np.argsort(spread)[::-1][:n] if spread[c] > 0]


def _splits(sample: np.ndarray, labels: np.ndarray, clusters: list[int], rng) -> list[tuple[int, np.ndarray]]:
    """Each cluster's two halves (2-means centroids)."""
    return [(c, lloyd.kmeans(sample[labels == c], 2, rng, max_iter=50).centers) for c in clusters]


def init_centroid_sets(sample: np.ndarray, ks: list[int], *, seed: int, metric: str,
                       restarts: int = 10) -> list[np.ndarray]:
    """:func:`init_centroids` for every k, on a pool of threads, each k on one BLAS/OpenMP thread:
    1.7x faster on 2 cores than one k after the other on both, and the answer does not depend on
    how many threads the pool has. The largest k starts first (it costs the most: k = 32 alone took
    0.70 s of 1.9 s for k = 8..32): in order of k, the largest ran alone at the end while the other
    thread idled (1.6 s on 2 threads; largest first 1.0 s)."""
    from threadpoolctl import threadpool_limits

    def one(k):
        return init_centroids(sample, k, seed=seed, metric=metric, restarts=restarts)

    largest_first = sorted(range(len(ks)), key=lambda i: -ks[i])
    # the limit is process-wide: set once around the pool (one thread leaving its own limit would
    # give the threads still running all the cores again)
    with threadpool_limits(1), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        done = dict(zip(largest_first, pool.map(one, [ks[i] for i in largest_first])))
    return [done[i] for i in range(len(ks))]


def lloyd_block(z: np.ndarray, start: int, centroid_sets: list[np.ndarray]) -> dict:
    return stats.lloyd_chunk(z.astype(np.float32, copy=False), [c.astype(np.float32) for c in centroid_sets])


def lloyd_update(total: dict, centroid_sets: list[np.ndarray], metric: str,
                 feature_variance: float) -> tuple[list[np.ndarray], float]:
    """New centroids from one epoch's sums (an empty cluster keeps its centroid), and the largest
    (over the sweep) total squared centroid move relative to the data's mean per-feature variance:
    scikit-learn's KMeans convergence measure, compared with ``--tol`` the same way."""
    new_sets, shift = [], 0.0
    for i, old in enumerate(centroid_sets):
        counts = total[f"count{i}"]
        new = np.where(counts[:, None] > 0, total[f"sum{i}"] / np.maximum(counts, 1)[:, None], old)
        if metric == "cosine":
            new = normalize_rows(new)
        shift = max(shift, float(((new - old) ** 2).sum() / max(feature_variance, 1e-30)))
        new_sets.append(new)
    return new_sets, shift


def stopped_paying(previous: np.ndarray | None, inertia: np.ndarray, inertia_tol: float,
                   expected: np.ndarray | None = None) -> bool:
    """True when Lloyd epochs stop paying: the last epoch lowered no k's inertia by more than
    ``inertia_tol`` (relative to the epoch before; ``previous`` is None after the first), or the next
    epoch is ``expected`` (:func:`expected_gain`) to lower none by more. From a start fitted on the
    sample, the second epoch moved the inertia by about 0.1-0.3 % and the ones after by less
    together (benchmarks/README.md)."""
    if expected is not None and np.all(expected <= inertia_tol):
        return True
    if previous is None:
        return False
    return bool(np.all(previous - inertia <= inertia_tol * np.maximum(previous, 1e-300)))


# The next epoch's gain is this many times the part of it known without reading the rows (moving the
# centroids to the new ones); with relabelling, the whole gain was 1.0-1.8x that part (1M x 768, k = 24, 32).
NEXT_EPOCH_GAIN_FACTOR = 2.0


def expected_gain(total: dict, centroid_sets: list[np.ndarray], new_sets: list[np.ndarray]) -> np.ndarray:
    """For each k, the inertia the next epoch is expected to remove, relative to this epoch's.

    Moving a cluster's centroid from ``c`` to ``n`` with its rows kept lowers their summed squared
    distances by exactly ``count (|c|^2 - |n|^2) - 2 sum . (c - n)`` (for the mean, ``count |c - mean|^2``),
    from the epoch's counts and sums alone; relabelling the rows to the nearest new centroid lowers
    it further. So the epoch that would only confirm that the epochs stopped paying is not run."""
    out = []
    for i, (old, new) in enumerate(zip(centroid_sets, new_sets)):
        counts, sums = total[f"count{i}"], total[f"sum{i}"]
        moved = counts * ((old**2).sum(axis=1) - (new**2).sum(axis=1)) - 2.0 * (sums * (old - new)).sum(axis=1)
        out.append(NEXT_EPOCH_GAIN_FACTOR * max(float(moved.sum()), 0.0) / max(total[f"inertia{i}"], 1e-300))
    return np.array(out)
