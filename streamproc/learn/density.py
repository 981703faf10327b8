"""HDBSCAN on a uniform sample of the reduced rows, summarised as centroids.

scikit-learn's ``HDBSCAN`` needs all its rows in memory and a low-dimensional space: on a 768-d
mixture reduced by PCA to 76 components it calls every row noise (design notes, section 11),
while after UMAP to 5 dimensions it finds the clusters. So the sample is first embedded by UMAP
(``umap_components``, 0 = cluster the reduced rows themselves), HDBSCAN clusters it, and each
cluster becomes the mean of its sample rows in the reduced space: the model then labels every row
by its nearest centroid, as for k-means. The outlier thresholds are the distance quantiles of the
rows HDBSCAN kept in each cluster, so the rows it calls noise are the ones flagged.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..options import QUANTILES
from .embedding import umap_embedding
from .model import normalize_rows
from .scores import pairwise_distances


def cluster_sample(sample_z: np.ndarray, *, min_cluster_size: int, min_samples: int | None, metric: str,
                   umap_components: int, seed: int) -> np.ndarray:
    """HDBSCAN labels of the sample rows (-1 = noise)."""
    from sklearn.cluster import HDBSCAN

    space = embed(sample_z, umap_components, metric, seed) if umap_components else sample_z
    return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True).fit_predict(space)


def embed(sample_z: np.ndarray, components: int, metric: str, seed: int) -> np.ndarray:
    """UMAP of the sample to a few dimensions (min_dist 0: dense clumps, as density clustering wants)."""
    return umap_embedding(sample_z, metric=metric, seed=seed, components=components, min_dist=0.0)


def summarise(sample_z: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (means of each cluster's sample rows; unit length for cosine) and the quantiles of
    the members' distances to their centroid (clusters x QUANTILES)."""
    found = np.unique(labels[labels >= 0])
    if len(found) < 2:
        raise UsageError(f"HDBSCAN found {len(found)} cluster(s) in the {len(sample_z):,}-row sample "
                         "(the rest is noise): try a smaller --min-cluster-size or a larger --sample")
    centroids = np.stack([sample_z[labels == c].mean(axis=0) for c in found])
    if metric == "cosine":
        centroids = normalize_rows(centroids)
    quantiles = np.zeros((len(found), len(QUANTILES)))
    for i, c in enumerate(found):
        members = sample_z[labels == c]
        d = pairwise_distances(members, centroids[i:i + 1], metric)[:, 0]
        quantiles[i] = np.quantile(d, QUANTILES)
    return centroids, quantiles


def remap(labels: np.ndarray) -> np.ndarray:
    """HDBSCAN labels renumbered 0..k-1 in the order of :func:`summarise`'s centroids (noise stays -1)."""
    found = np.unique(labels[labels >= 0])
    out = np.full(len(labels), -1)
    out[labels >= 0] = np.searchsorted(found, labels[labels >= 0])
    return out
