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
def moments_chunk(block: np.ndarray, shift: np.ndarray) -> dict:
    """Count, sum and cross-product of ``block - shift`` (the shift keeps the sums well conditioned)."""
    dtype = np.float64 if block.dtype == np.float64 else np.float32  # float32 data: fast sgemm, float64 sums
    centred = block.astype(dtype, copy=False) - shift.astype(dtype)
    return {"n": len(block), "sum": centred.sum(axis=0, dtype=np.float64),
            "cross": (centred.T @ centred).astype(np.float64)}


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
    return {"sample": (keys[keep], block[keep].copy(), size)}


def _merge_samples(a, b):
    keys = np.concatenate([a[0], b[0]])
    rows = np.concatenate([a[1], b[1]])
    size = a[2]
    if len(keys) > size:
        keep = np.argpartition(keys, size - 1)[:size]
        keys, rows = keys[keep], rows[keep]
    return keys, rows, size


def sample_finalize(stats: dict) -> np.ndarray:
    keys, rows, size = stats["sample"]
    order = np.argsort(keys, kind="stable")[:size]
    return rows[order]


# ---- k-means: one Lloyd step for every k of a sweep from the same block -----------------------
def sq_distances(z: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared euclidean distances, rows x centroids, clipped at 0."""
    d = (z * z).sum(axis=1)[:, None] - 2.0 * (z @ centroids.T) + (centroids * centroids).sum(axis=1)[None, :]
    return np.maximum(d, 0.0, out=d)


def lloyd_chunk(z: np.ndarray, centroid_sets: list[np.ndarray]) -> dict:
    """For each k: per-cluster counts and sums of the rows nearest each centroid, and the inertia."""
    out = {}
    for i, centroids in enumerate(centroid_sets):
        d = sq_distances(z, centroids)
        labels = d.argmin(axis=1)
        k = len(centroids)
        out[f"count{i}"] = np.bincount(labels, minlength=k)
        out[f"sum{i}"] = _label_sums(z, labels, k)
        out[f"inertia{i}"] = float(d[np.arange(len(z)), labels].sum())
    return out


# ---- Davies-Bouldin and Calinski-Harabasz, exactly as scikit-learn computes them -------------
def scores_chunk(z: np.ndarray, centroids: np.ndarray, means: np.ndarray, key: str = "") -> dict:
    """With labels = nearest of ``centroids``: per-cluster count, sum of distances and of squared
    distances to the cluster ``means`` (the means of those labels), and each cluster's largest
    distance to its centroid."""
    labels = sq_distances(z, centroids).argmin(axis=1)
    return labelled_scores_chunk(z, labels, means, key=key, centroids=centroids)


def labelled_scores_chunk(z: np.ndarray, labels: np.ndarray, means: np.ndarray, *, key: str = "",
                          centroids: np.ndarray | None = None) -> dict:
    k = len(means)
    diff = z - means.astype(z.dtype)[labels]  # float32 blocks stay float32; float64 input stays exact
    sq = np.einsum("ij,ij->i", diff, diff).astype(np.float64)
    out = {
        f"count{key}": np.bincount(labels, minlength=k),
        f"dist{key}": np.bincount(labels, weights=np.sqrt(sq), minlength=k),
        f"sqdist{key}": np.bincount(labels, weights=sq, minlength=k),
        f"sum{key}": _label_sums(z, labels, k),
    }
    if centroids is not None:
        to_centroid = np.sqrt(sq_distances(z, centroids)[np.arange(len(z)), labels])
        out[f"max{key}"] = _label_max(to_centroid, labels, k)
    return out


def _label_sums(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-label sums of the rows of ``z``: a sparse one-hot (k x n) times ``z``, accumulated in float64
    (far faster than ``np.add.at``, and no n x d temporaries)."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(labels), z.dtype), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    return np.asarray(onehot @ z, dtype=np.float64)  # one block in z's precision; blocks add up in float64


def _label_max(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-label maximum of ``values`` (0 for a label with no rows)."""
    out = np.zeros(k)
    if len(values):
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        out[present] = np.maximum.reduceat(values[order], starts)
    return out


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
