"""A centroid-distance classifier with scikit-learn's estimator contract.

A row's label is its nearest centroid. ``predict_proba`` is the posterior of a Gaussian mixture
with the centroids as means, one shared isotropic variance (learned from the training rows) and
equal priors (so its argmax is always ``predict``); ``decision_function`` returns the distances themselves (smaller
is more likely). ``metric="cosine"`` compares L2-normalised rows with normalised centroids and
reports the cosine distance ``1 - cos``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .model import gaussian_posterior, normalize_rows
from .stats import sq_distances


class CentroidClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-centroid classifier, fitted in one pass or chunk by chunk.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}
    """

    def __init__(self, metric: str = "euclidean"):
        self.metric = metric

    @classmethod
    def from_centroids(cls, centroids, *, metric="euclidean", variance=1.0, classes=None, counts=None):
        """A classifier that is fitted already: the centroids of a streamproc model."""
        clf = cls(metric=metric)
        centroids = np.asarray(centroids, dtype=np.float64)
        clf.classes_ = np.arange(len(centroids)) if classes is None else np.asarray(classes)
        clf.centroids_ = normalize_rows(centroids) if metric == "cosine" else centroids
        clf.class_count_ = np.ones(len(centroids)) if counts is None else np.asarray(counts, dtype=np.float64)
        clf.variance_ = float(variance)
        clf.n_features_in_ = centroids.shape[1]
        return clf

    def fit(self, X, y):
        for attr in ("classes_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X, y, classes=unique_labels(y))

    def partial_fit(self, X, y, classes=None):
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, reset=first, dtype=[np.float64, np.float32])
        if self.metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {self.metric!r}")
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            self.classes_ = np.asarray(classes)
            k = len(self.classes_)
            self._sums = np.zeros((k, X.shape[1]))
            self.class_count_ = np.zeros(k)
            self._sq_total = 0.0
        index = np.searchsorted(self.classes_, y)
        if np.any(index >= len(self.classes_)) or np.any(self.classes_[np.minimum(index, len(self.classes_) - 1)] != y):
            raise ValueError("y holds labels not in classes")
        X = self._prepare(X)
        for j in np.unique(index):
            self._sums[j] += X[index == j].sum(axis=0)
        self.class_count_ += np.bincount(index, minlength=len(self.classes_))
        means = self._sums / np.maximum(self.class_count_, 1)[:, None]
        self.centroids_ = normalize_rows(means) if self.metric == "cosine" else means
        self._sq_total += float(((X - self.centroids_[index]) ** 2).sum())
        self.variance_ = max(self._sq_total / max(self.class_count_.sum() * X.shape[1], 1), 1e-12)
        return self

    def _prepare(self, X):
        X = np.asarray(X, dtype=np.float64)
        return normalize_rows(X) if self.metric == "cosine" else X

    def _squared(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return sq_distances(self._prepare(X), self.centroids_)

    def decision_function(self, X):
        """Distances to every centroid (rows x classes): euclidean, or cosine distance ``1 - cos``."""
        sq = self._squared(X)
        return sq / 2.0 if self.metric == "cosine" else np.sqrt(sq)

    def predict(self, X):
        nearest = self._squared(X).argmin(axis=1)
        return self.classes_[nearest]

    def predict_proba(self, X):
        return gaussian_posterior(self._squared(X), self.variance_)
