"""Drift per batch and per cluster, and new groups among the outliers.

**Per cluster.** A run's share of rows in cluster j is compared with its training share p_j by a
two-sided z-test on the binomial count: ``z = (n_j - n p_j) / sqrt(n p_j (1 - p_j))``. A cluster has
*moved* when ``|z|`` exceeds the Bonferroni bound for a family error of ``FAMILY_ALPHA`` (0.001) over
the k clusters — about 3.9 for k = 10 — and its share changed by more than the drift threshold
(relative, default 0.25), so a million rows do not flag a change nobody would act on.

**New groups.** Outlier rows (kept in the reduced space, at most ``MAX_OUTLIER_ROWS`` of them) are
linked when closer than the model's median cluster spread (mean distance to the centroid); a
connected group of at least ``MIN_GROUP_ROWS`` rows is a *new group* when it is

* tighter than the clusters around it: its spread (mean distance to its centre) is below ``TIGHTER``
  (0.75) times the spread of the model's cluster nearest its centre, and
* apart from them: its rows lie beyond their nearest cluster's 0.99 training quantile by more than the
  group's own spread (median over its rows).

Such a group is worth a cluster of its own (``fit --warm-start`` gives it one). The tails every
cluster has fail the second test: they hug the quantile boundary, thinning out beyond it; scattered
outliers are farther apart than a cluster's spread and are not linked at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ..options import QUANTILES
from .align import label_positions
from .model import Model, normalize_rows
from .stats import sq_distances

FAMILY_ALPHA = 0.001
MIN_GROUP_ROWS = 50
TIGHTER = 0.75
MAX_OUTLIER_ROWS = 4000


def moved_clusters(model: Model, counts: np.ndarray, *, threshold: float) -> list[dict]:
    """The clusters whose share of this run's rows moved beyond sampling noise (see the module doc)."""
    n = int(counts.sum())
    if n == 0:
        return []
    train = model.cluster_sizes.astype(np.float64) / max(float(model.cluster_sizes.sum()), 1.0)
    p = np.clip(train, 1e-9, 1 - 1e-9)
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    bound = NormalDist().inv_cdf(1.0 - FAMILY_ALPHA / (2 * model.k))  # (the stdlib's: scipy.stats costs a second to import)
    share = counts / n
    moved = (np.abs(z) > bound) & (np.abs(share - train) > threshold * np.maximum(train, 1.0 / n))
    return [{"cluster": int(model.classes_[j]), "train_share": round(float(train[j]), 6),
             "share": round(float(share[j]), 6), "z": round(float(z[j]), 2)} for j in np.flatnonzero(moved)]


def _distances(model: Model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = sq_distances(a.astype(np.float32), b.astype(np.float32))
    return sq / 2.0 if model.metric == "cosine" else np.sqrt(np.maximum(sq, 0))


def _center(model: Model, rows: np.ndarray) -> np.ndarray:
    mean = rows.mean(axis=0, keepdims=True)
    return normalize_rows(mean) if model.metric == "cosine" else mean


def new_groups(model: Model, outlier_rows: np.ndarray, *, scale_rows: float = 1.0) -> list[dict]:
    """Dense groups among outlier rows (reduced space): ``{"rows", "spread", "nearest_cluster",
    "nearest_spread", "centroid"}`` each, largest first. ``scale_rows`` turns counts among the kept
    rows into counts among all the run's outliers."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    if len(outlier_rows) < MIN_GROUP_ROWS:
        return []
    radius = float(np.median(model.cluster_mean_distance))
    linked = _distances(model, outlier_rows, outlier_rows) < radius
    _, component = connected_components(csr_matrix(linked), directed=False)
    groups = []
    for c in np.flatnonzero(np.bincount(component) >= MIN_GROUP_ROWS):
        members = outlier_rows[component == c]
        center = _center(model, members)
        spread = float(_distances(model, members, center).mean())
        nearest = int(model.distances(center.astype(np.float32)).argmin())
        if spread < TIGHTER * float(model.cluster_mean_distance[nearest]) and _beyond_boundary(model, members) > spread:
            groups.append({"rows": int(round(len(members) * scale_rows)), "spread": spread,
                           "nearest_cluster": int(model.classes_[nearest]),
                           "nearest_spread": float(model.cluster_mean_distance[nearest]), "centroid": center[0]})
    return sorted(groups, key=lambda g: -g["rows"])


def _beyond_boundary(model: Model, rows: np.ndarray) -> float:
    """Median over ``rows`` of how far each lies beyond its nearest cluster's 0.99 training quantile."""
    distances = model.distances(rows)
    nearest = distances.argmin(axis=1)
    boundary = model.quantiles[nearest, QUANTILES.index(0.99)]
    return float(np.median(distances[np.arange(len(rows)), nearest] - boundary))


@dataclass
class OutlierRows:
    """At most ``MAX_OUTLIER_ROWS`` outlier rows (reduced), spread over the whole run: past the cap,
    every other kept row is dropped and later blocks are thinned the same way."""

    parts: list[np.ndarray] = field(default_factory=list)
    seen: int = 0
    stride: int = 1

    def add(self, rows: np.ndarray) -> None:
        self.seen += len(rows)
        self.parts.append(rows[:: self.stride])
        if sum(len(r) for r in self.parts) > MAX_OUTLIER_ROWS:
            self.parts, self.stride = [np.concatenate(self.parts)[::2]], self.stride * 2

    def kept(self, dim: int) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros((0, dim), np.float32)


@dataclass
class RunStats:
    """What one classify run saw, per batch and per cluster, summed block by block."""

    model: Model
    batch_ids: list[str]
    batch_starts: np.ndarray
    rows: np.ndarray = None
    outliers: np.ndarray = None
    distance: np.ndarray = None
    counts: np.ndarray = None  # batches x k
    outlier_rows: OutlierRows = field(default_factory=OutlierRows)

    def __post_init__(self):
        b, k = len(self.batch_ids), self.model.k
        self.rows, self.outliers, self.distance = np.zeros(b, np.int64), np.zeros(b, np.int64), np.zeros(b)
        self.counts = np.zeros((b, k), np.int64)

    def add(self, start: int, result: dict, outlier_rows: np.ndarray) -> None:
        n = len(result["labels"])
        batch = np.searchsorted(self.batch_starts, np.arange(start, start + n), side="right") - 1
        b, k = len(self.batch_ids), self.model.k
        self.rows += np.bincount(batch, minlength=b)
        self.outliers += np.bincount(batch, weights=result["outlier"], minlength=b).astype(np.int64)
        self.distance += np.bincount(batch, weights=result["distance"].astype(np.float64), minlength=b)
        cell = batch * k + label_positions(self.model, result["labels"])
        self.counts += np.bincount(cell, minlength=b * k).reshape(b, k)
        self.outlier_rows.add(outlier_rows)

    def batches(self) -> list[dict]:
        out = []
        for i in np.flatnonzero(self.rows):
            n = int(self.rows[i])
            out.append({"batch": self.batch_ids[i], "rows": n, "outlier_rate": round(float(self.outliers[i] / n), 6),
                        "mean_distance": float(self.distance[i] / n),
                        "shares": [round(float(c / n), 6) for c in self.counts[i]]})
        return out

    def groups(self) -> list[dict]:
        kept = self.outlier_rows.kept(self.model.n_components)
        found = new_groups(self.model, kept, scale_rows=self.outlier_rows.seen / max(len(kept), 1))
        return [{key: value for key, value in g.items() if key != "centroid"} for g in found]

