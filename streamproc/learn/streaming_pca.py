"""Streaming PCA with scikit-learn's estimator contract and two solvers.

* ``covariance`` (default): exact. Each chunk adds its count, sum and cross-product (XᵀX); the
  eigendecomposition of the merged covariance gives every component and the whole spectrum
  (:func:`.pca.pca_from_moments`, which ``fit`` uses without this class).
* ``incremental``: scikit-learn's ``IncrementalPCA.partial_fit`` (an SVD per chunk; sequential).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import IncrementalPCA
from sklearn.utils.validation import check_is_fitted, validate_data

from ..options import PCA_SOLVERS as SOLVERS
from . import stats
from .pca import PCAFit, keep_components, pca_from_moments


class StreamingPCA(TransformerMixin, BaseEstimator):
    """PCA fitted chunk by chunk.

    Parameters
    ----------
    variance : float
        Keep the fewest components explaining at least this fraction of the variance.
    n_components : int or None
        Keep exactly this many components instead (overrides ``variance``).
    solver : {"covariance", "incremental"}
    """

    def __init__(self, variance: float = 0.95, n_components: int | None = None, solver: str = "covariance"):
        self.variance = variance
        self.n_components = n_components
        self.solver = solver

    def partial_fit(self, X, y=None):
        first = not hasattr(self, "n_samples_seen_")
        X = validate_data(self, X, reset=first, dtype=[np.float64, np.float32])
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if first:
            self.n_samples_seen_ = 0
            self.shift_ = X.mean(axis=0)
            self._stats = None
            self._ipca = IncrementalPCA() if self.solver == "incremental" else None
        if self.solver == "incremental":
            self._ipca.partial_fit(X)
        else:
            chunk = stats.moments_chunk(X, self.shift_)
            self._stats = chunk if self._stats is None else stats.combine(self._stats, chunk)
        self.n_samples_seen_ += len(X)
        self._finalize()
        return self

    def fit(self, X, y=None, *, chunk_rows: int = 10_000):
        for attr in ("n_samples_seen_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        X = validate_data(self, X, dtype=[np.float64, np.float32])  # refuses empty, sparse, NaN input
        for start in range(0, len(X), chunk_rows):
            self.partial_fit(X[start:start + chunk_rows])
        return self

    def set_moments(self, total: dict, shift: np.ndarray):
        """Finish from moments combined elsewhere (e.g. across Dask workers)."""
        self.shift_, self._stats, self._ipca = shift, total, None
        self.n_samples_seen_ = int(total["n"])
        self.n_features_in_ = len(shift)
        self._finalize()
        return self

    def _finalize(self) -> None:
        if self._ipca is not None:
            ipca = self._ipca
            total = float(ipca.var_.sum())
            fitted = PCAFit(ipca.mean_, keep_components(ipca.components_, ipca.explained_variance_, total,
                                                        self.variance, self.n_components),
                            ipca.explained_variance_, total, shift=self.shift_)
        else:
            fitted = pca_from_moments(self._stats, self.shift_, self.variance, self.n_components)
        self.result_ = fitted  # what `fit` works with
        self.mean_ = fitted.mean
        self.covariance_ = fitted.covariance
        self.spectrum_ = fitted.spectrum  # every eigenvalue, for the report's explained-variance curve
        self.total_variance_ = fitted.total_variance
        self.components_ = fitted.components
        self.n_components_ = fitted.n_components
        self.explained_variance_ = fitted.spectrum[:fitted.n_components]
        self.explained_variance_ratio_ = fitted.explained_variance_ratio

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (X - self.mean_) @ self.components_.T
