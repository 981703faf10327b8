"""Clusters that keep their ids across refits.

A new model's clusters are matched one-to-one to the reference model's (the store's current model)
with the least total centroid distance (:func:`cheapest_matching`: the Hungarian algorithm's
answer). Each new centroid is mapped back to the original vector space (``centroid / scale @
pca_components + pca_mean``) and reduced again by the *reference* model, so both centroids are
compared in one space and in the reference model's own metric (euclidean, or cosine distance
``1 - cos``).

**Same cluster**: a matched pair counts as the same cluster when the new centroid lies within the
reference cluster's typical radius: closer than ``SAME_CLUSTER`` (1.0) times its spread, the mean
distance of its training rows to its centroid (same space, same metric). Measured on the 20-cluster
1M x 768 benchmark mixture, a refit with another seed put 12 matched centroids within 0.003 spreads
of their old place, 2 at 0.07, 4 at 0.39-0.70 (each the main successor of a cluster that a merge or
split changed: 60-100 % of its rows went there) and 2 at 2.7 (other clusters: no rows in common).
A matched-but-too-far pair and every unmatched new cluster take fresh ids from the store's registry
(``manifest.next_cluster_id``), so a retired id is never given to another cluster.
"""

from __future__ import annotations

import numpy as np

from .model import Model

SAME_CLUSTER = 1.0  # matched centroids closer than this times the reference cluster's spread keep its id


def original_space_centroids(model: Model) -> np.ndarray:
    """The model's centroids as points of the original vector space (k x dim).

    Euclidean: the exact preimage ``centroid / scale @ pca_components + pca_mean`` (within the PCA
    subspace). Cosine: a centroid is a direction in the reduced space, so it is mapped back at the
    typical length of a reduced row (the root of the reduced variance), which keeps ``pca_mean`` the
    small offset it is for the other model.
    """
    directions = (model.centroids / model.scale[None, :]) @ model.pca_components
    if model.metric == "cosine":
        typical = float(np.sqrt((model.spectrum[: model.n_components] * model.scale**2).sum()))
        directions = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12) * typical
    return directions + model.pca_mean[None, :]


def centroid_distances(reference: Model, model: Model) -> np.ndarray:
    """Distance of each reference centroid to each of ``model``'s (k_ref x k), in the reference's space."""
    return reference.distances(reference.transform(original_space_centroids(model))).T


def match_clusters(reference: Model, model: Model) -> dict[int, int]:
    """``{position in model: position in reference}`` for the pairs that are the same cluster."""
    cost = centroid_distances(reference, model)
    ref_rows, new_cols = cheapest_matching(cost)
    spread = np.asarray(reference.cluster_mean_distance, dtype=np.float64)
    return {int(j): int(i) for i, j in zip(ref_rows, new_cols) if cost[i, j] < SAME_CLUSTER * spread[i]}


def cheapest_matching(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A one-to-one matching of rows to columns with the least total cost, as
    ``scipy.optimize.linear_sum_assignment`` finds (where several cost the same, possibly another
    of them). When every row of the shorter side has its
    cheapest partner in a different place, taking those is optimal (no matching costs less than the
    sum of the row minima): the usual refit, which then does not import scipy.optimize (0.25 s)."""
    short = cost if cost.shape[0] <= cost.shape[1] else cost.T
    cheapest = short.argmin(axis=1)
    if len(np.unique(cheapest)) == len(cheapest):
        rows = np.arange(len(cheapest))
        return (rows, cheapest) if short is cost else (cheapest[np.argsort(cheapest)], rows[np.argsort(cheapest)])
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


def assign_ids(model: Model, reference: Model | None, next_id: int) -> tuple[np.ndarray, int]:
    """Ids for ``model``'s clusters: a matched cluster keeps the reference's id, the others take
    ``next_id``, ``next_id + 1``, ... Returns ``(ids, the registry's next free id)``."""
    ids = np.full(model.k, -1, dtype=np.int64)
    if reference is not None:
        for new, old in match_clusters(reference, model).items():
            ids[new] = reference.classes_[old]
    fresh = np.flatnonzero(ids < 0)
    ids[fresh] = np.arange(next_id, next_id + len(fresh))
    return ids, next_id + len(fresh)


def next_free_id(registry: int, models: dict) -> int:
    """The registry's next id; stores written before the registry existed used ids 0 .. k-1 per model."""
    legacy = max((entry.k for entry in models.values() if not entry.cluster_ids), default=0)
    listed = max((max(entry.cluster_ids) + 1 for entry in models.values() if entry.cluster_ids), default=0)
    return max(registry, legacy, listed)


def label_positions(model: Model, labels: np.ndarray) -> np.ndarray:
    """The centroid position (0 .. k-1) of each stored label (a cluster id); -1 for an unknown id."""
    ids = model.classes_
    order = np.argsort(ids)
    labels = np.asarray(labels)
    found = np.clip(np.searchsorted(ids[order], labels), 0, len(ids) - 1)
    return np.where(ids[order][found] == labels, order[found], -1)
