"""Streaming statistics as chunk -> combine -> finalize triples of pure numpy functions.

Each ``*_chunk`` sees one block of rows and returns a small dict; ``combine`` adds dicts up (it is
associative, so blocks can be combined in any tree); each ``*_finalize`` turns the total into the
answer. The same functions run in a plain loop and as Dask tasks on a cluster.
"""

from __future__ import annotations

import numpy as np


def combine(*parts: dict) -> dict:
    """Add up statistics dicts key by key (arrays and numbers add; 'max' keys take the maximum;
    'sample' keys keep the rows with the smallest keys)."""
    out = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if key not in out:
                out[key] = value
            elif key.startswith("max"):
                out[key] = np.maximum(out[key], value)
            elif key == "sample":
                out[key] = _merge_samples(out[key], value)
            elif key == "workers":
                out[key] = out[key] | value
            else:
                out[key] = out[key] + value
    return out


# ---- moments: mean and covariance (exact PCA) ------------------------------------------------
def centred(block: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``block - shift`` (the shift keeps the sums well conditioned): float32 for float32 data (fast
    sgemm; the sums are taken in float64), else float64."""
    dtype = np.float64 if block.dtype == np.float64 else np.float32
    return block.astype(dtype, copy=False) - shift.astype(dtype)


def moments_chunk(block: np.ndarray, shift: np.ndarray) -> dict:
    """Count, sum and cross-product of ``block - shift``."""
    return _moments(centred(block, shift))


def _moments(rows: np.ndarray) -> dict:
    return {"n": len(rows), "sum": rows.sum(axis=0, dtype=np.float64), "cross": (rows.T @ rows).astype(np.float64)}


def moments_by_parity(rows: np.ndarray, start: int, run_rows: int) -> list[dict]:
    """The moments (as :func:`moments_chunk`) of the even and of the odd runs of already centred rows
    that start at row ``start``: run ``i`` holds rows ``[i * run_rows, (i + 1) * run_rows)``."""
    even = (np.arange(start, start + len(rows)) // run_rows) % 2 == 0
    return [_moments(rows[even]), _moments(rows[~even])]


def moments_finalize(stats: dict, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the (population) covariance matrix."""
    n = stats["n"]
    d = stats["sum"] / n
    cov = stats["cross"] / n - np.outer(d, d)
    return shift.astype(np.float64) + d, (cov + cov.T) / 2


# ---- a uniform random sample, invariant to how rows are split into blocks --------------------
def row_keys(start: int, n: int, seed: int) -> np.ndarray:
    """A pseudo-random uint64 per global row index (splitmix64), the same however rows are chunked."""
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_chunk(block: np.ndarray, start: int, *, size: int, total_rows: int, seed: int) -> dict:
    """Rows whose key falls under the threshold that keeps about ``1.1 * size`` of ``total_rows``."""
    keys = row_keys(start, len(block), seed)
    fraction = min(1.0, 1.1 * size / max(total_rows, 1))
    keep = keys <= np.uint64(min(fraction * 2.0**64, 2.0**64 - 1)) if fraction < 1 else np.ones(len(block), bool)
    return {"sample": ([keys[keep]], [block[keep].copy()], size)}


def _merge_samples(a, b):
    """The parts of both samples, as lists: rows are copied only when the parts hold more than twice
    ``size`` rows (then the ``size`` with the smallest keys are kept) and once at the end
    (merging by concatenation at every combine copied the growing sample again each time: 0.33 s
    of a 1M x 768 fit)."""
    keys, rows, size = a[0] + b[0], a[1] + b[1], a[2]
    if sum(len(k) for k in keys) > 2 * size:
        keys, rows = _smallest_keys(keys, rows, size)
    return keys, rows, size


def _smallest_keys(key_parts: list, row_parts: list, size: int) -> tuple[list, list]:
    keys, rows = np.concatenate(key_parts), np.concatenate(row_parts)
    if len(keys) > size:
        keep = np.argpartition(keys, size - 1)[:size]
        keys, rows = keys[keep], rows[keep]
    return [keys], [rows]


def sample_finalize(stats: dict) -> np.ndarray:
    [keys], [rows] = _smallest_keys(*stats["sample"])
    order = np.argsort(keys, kind="stable")
    return rows[order]


# ---- k-means: one Lloyd step for every k of a sweep from the same block -----------------------
def sq_distances(z: np.ndarray, centroids: np.ndarray, centroid_norms: np.ndarray | None = None) -> np.ndarray:
    """Squared euclidean distances, rows x centroids, clipped at 0 (in place in the one rows x
    centroids array: the silhouette's 5000-row blocks took 1.6x as long with a temporary per term).
    ``centroid_norms``: the centroids' squared norms, when the caller keeps them."""
    d = z @ centroids.T
    d *= -2.0
    d += (z * z).sum(axis=1)[:, None]
    d += ((centroids * centroids).sum(axis=1) if centroid_norms is None else centroid_norms)[None, :]
    return np.maximum(d, 0.0, out=d)


STACK_COLUMNS = 512  # centroids in one matrix product: bounds the rows x centroids temporaries


def _stacks(sizes: list[int]) -> list[list[int]]:
    """Consecutive groups of set indices holding at most STACK_COLUMNS centroids (or one larger set)."""
    groups, total = [], 0
    for i, k in enumerate(sizes):
        if not groups or total + k > STACK_COLUMNS:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += k
    return groups


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _stacked_products(z: np.ndarray, point_sets: list[np.ndarray]):
    """Per stack of sets: ``(set indices, stacked points, z @ stacked.T, offsets of each set)``."""
    for group in _stacks([len(p) for p in point_sets]):
        stacked = np.concatenate([point_sets[i] for i in group]).astype(z.dtype, copy=False)
        yield group, stacked, z @ stacked.T, _offsets([len(point_sets[i]) for i in group])


def nearest_in_sets(z: np.ndarray, centroid_sets: list[np.ndarray],
                    norms: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each set of centroids: every row's nearest centroid and its squared distance to it.

    The sets are stacked into one matrix product (a k = 8..32 product alone is too skinny to keep
    BLAS busy), and the rows' own norms, which do not change which centroid is nearest, are added
    only to the chosen distances (``norms``: the rows' squared norms, when the caller keeps them)."""
    norms = np.einsum("ij,ij->i", z, z) if norms is None else norms
    rows = np.arange(len(z))
    out = []
    for group, stacked, partial, offsets in _stacked_products(z, centroid_sets):
        partial *= -2.0
        partial += (stacked * stacked).sum(axis=1)
        for i in range(len(group)):
            part = partial[:, offsets[i]:offsets[i + 1]]
            labels = part.argmin(axis=1)
            out.append((labels, np.maximum(part[rows, labels] + norms, 0.0)))
    return out


def _labelled_sq_distances(z: np.ndarray, label_sets: list[np.ndarray], point_sets: list[np.ndarray]) -> list:
    """For each set: the squared distance of every row to the point its label names."""
    norms = np.einsum("ij,ij->i", z, z)
    rows = np.arange(len(z))
    out = []
    for group, stacked, partial, offsets in _stacked_products(z, point_sets):
        point_norms = (stacked * stacked).sum(axis=1)  # once per point, not once per row
        for i, j in enumerate(group):
            own = offsets[i] + label_sets[j]
            sq = norms - 2.0 * partial[rows, own] + point_norms[own]
            out.append(np.maximum(sq.astype(np.float64), 0.0))
    return out


def _label_sums(z: np.ndarray, label_sets: list[np.ndarray], sizes: list[int]) -> list[np.ndarray]:
    """For each set: per-label sums of the rows of ``z``, as one dense one-hot matrix product per
    stack of sets (faster than ``np.add.at`` or a sparse product), in z's precision within a block;
    blocks add up in float64."""
    out = []
    for group in _stacks(sizes):
        offsets = _offsets([sizes[i] for i in group])
        onehot = np.zeros((offsets[-1], len(z)), z.dtype)
        for i, j in enumerate(group):
            onehot[offsets[i] + label_sets[j], np.arange(len(z))] = 1
        sums = (onehot @ z).astype(np.float64)
        out.extend(sums[offsets[i]:offsets[i + 1]] for i in range(len(group)))
    return out


def lloyd_chunk(z: np.ndarray, centroid_sets: list[np.ndarray]) -> dict:
    """For each k (key ``str(i)``): per-cluster counts and sums of the rows nearest each centroid,
    and the inertia."""
    nearest = nearest_in_sets(z, centroid_sets)
    sizes = [len(c) for c in centroid_sets]
    sums = _label_sums(z, [labels for labels, _ in nearest], sizes)
    out = {}
    for i, ((labels, sq), k) in enumerate(zip(nearest, sizes)):
        out[f"count{i}"] = np.bincount(labels, minlength=k)
        out[f"sum{i}"] = sums[i]
        out[f"inertia{i}"] = float(sq.sum(dtype=np.float64))
        out[f"max{i}"] = label_max(np.sqrt(sq), labels, k)  # bounds the histograms of the next pass
    return out


# ---- Davies-Bouldin and Calinski-Harabasz, exactly as scikit-learn computes them -------------
def scores_chunk(z: np.ndarray, centroid_sets: list[np.ndarray], mean_sets: list[np.ndarray], *,
                 uppers: list[np.ndarray] | None = None, metric: str = "euclidean") -> dict:
    """For each k (key ``str(i)``), with labels = nearest of its centroids: the statistics of
    :func:`labelled_scores_chunk` and each cluster's largest distance to its centroid; with
    ``uppers`` (each k's per-cluster :func:`histogram_upper`), also each cluster's histogram and sum
    of distances to its centroid in ``metric`` (:func:`histogram_chunk`: keys ``hist{i}``, ``distsum{i}``)."""
    nearest = nearest_in_sets(z, centroid_sets)
    out = labelled_scores_chunk(z, [labels for labels, _ in nearest], mean_sets)
    for i, (labels, sq) in enumerate(nearest):
        out[f"max{i}"] = label_max(np.sqrt(sq), labels, len(mean_sets[i]))
        if uppers is not None:
            part = histogram_chunk(metric_distances(sq, metric), labels, uppers[i])
            out[f"hist{i}"], out[f"distsum{i}"] = part["hist"], part["distsum"]
    return out


def labelled_scores_chunk(z: np.ndarray, label_sets: list[np.ndarray], mean_sets: list[np.ndarray]) -> dict:
    """For each labelling (key ``str(i)``): per-cluster count, sum of rows, and sums of distances
    and squared distances to the cluster ``means`` (the means of those labels over all rows)."""
    sizes = [len(m) for m in mean_sets]
    sq_sets = _labelled_sq_distances(z, label_sets, mean_sets)
    sums = _label_sums(z, label_sets, sizes)
    out = {}
    for i, (labels, sq, k) in enumerate(zip(label_sets, sq_sets, sizes)):
        out[f"count{i}"] = np.bincount(labels, minlength=k)
        out[f"dist{i}"] = np.bincount(labels, weights=np.sqrt(sq), minlength=k)
        out[f"sqdist{i}"] = np.bincount(labels, weights=sq, minlength=k)
        out[f"sum{i}"] = sums[i]
    return out


def label_max(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-label maximum of ``values`` (0 for a label with no rows)."""
    out = np.zeros(k)
    np.maximum.at(out, labels, values.astype(np.float64, copy=False))  # (10 us for 5k rows, 10x faster than
    return out  # a sort by label; float32 values would take ufunc.at's slow casting path: 30x slower)


def davies_bouldin_finalize(stats: dict, means: np.ndarray, key: str = "") -> float:
    """scikit-learn's ``davies_bouldin_score`` from streamed per-cluster statistics."""
    counts = stats[f"count{key}"]
    used = counts > 0
    intra = stats[f"dist{key}"][used] / counts[used]
    centres = means[used]
    if used.sum() < 2:
        return float("nan")
    between = np.sqrt(sq_distances(centres, centres))
    np.fill_diagonal(between, 0.0)
    if np.allclose(intra, 0) or np.allclose(between, 0):
        return 0.0
    between[between == 0] = np.inf
    return float(np.mean(np.max((intra[:, None] + intra[None, :]) / between, axis=1)))


def calinski_harabasz_finalize(stats: dict, means: np.ndarray, key: str = "") -> float:
    """scikit-learn's ``calinski_harabasz_score`` from streamed per-cluster statistics."""
    counts = stats[f"count{key}"]
    used = counts > 0
    n, k = counts.sum(), int(used.sum())
    if k < 2:
        return float("nan")
    overall = stats[f"sum{key}"].sum(axis=0) / n
    extra = float((counts[used] * ((means[used] - overall) ** 2).sum(axis=1)).sum())
    intra = float(stats[f"sqdist{key}"].sum())
    return 1.0 if intra == 0.0 else extra * (n - k) / (intra * (k - 1))


def label_means(stats: dict, key: str = "") -> np.ndarray:
    """Per-cluster means from counts and sums (an empty cluster's mean is 0; it is never used)."""
    counts = stats[f"count{key}"]
    return stats[f"sum{key}"] / np.maximum(counts, 1)[:, None]


# ---- per-cluster distance quantiles ----------------------------------------------------------
HISTOGRAM_BINS = 4096


def metric_distances(sq: np.ndarray, metric: str) -> np.ndarray:
    """Distances in the model's metric from squared euclidean distances (cosine: rows and centroids
    on the unit sphere, so ``1 - cos = |z - c|^2 / 2``)."""
    return sq / 2.0 if metric == "cosine" else np.sqrt(sq)


def histogram_upper(max_distance: np.ndarray, metric: str) -> np.ndarray:
    """Per-cluster upper ends of the histograms from each cluster's largest euclidean distance to
    its centroid, a little above it (so that the largest lands in the last bin)."""
    upper = max_distance ** 2 / 2.0 if metric == "cosine" else max_distance
    return upper * (1 + 1e-6) + 1e-12


def histogram_chunk(distances: np.ndarray, labels: np.ndarray, upper: np.ndarray) -> dict:
    """Per-cluster histograms of distances on ``[0, upper[cluster]]`` (HISTOGRAM_BINS bins)."""
    k = len(upper)
    width = np.maximum(upper, 1e-12) / HISTOGRAM_BINS
    bins = np.minimum((distances / width[labels]).astype(np.int64), HISTOGRAM_BINS - 1)
    flat = np.bincount(labels * HISTOGRAM_BINS + bins, minlength=k * HISTOGRAM_BINS)
    return {"hist": flat.reshape(k, HISTOGRAM_BINS), "distsum": np.bincount(labels, weights=distances, minlength=k)}


def quantiles_finalize(stats: dict, upper: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Quantiles (clusters x qs), read off the histograms at the upper edge of the bin reached."""
    hist = stats["hist"]
    cum = np.cumsum(hist, axis=1)
    out = np.zeros((len(hist), len(qs)))
    width = np.maximum(upper, 1e-12) / HISTOGRAM_BINS
    for i, q in enumerate(qs):
        target = np.ceil(q * cum[:, -1])
        idx = (cum < target[:, None]).sum(axis=1)
        out[:, i] = np.minimum(idx + 1, HISTOGRAM_BINS) * width
    return out
