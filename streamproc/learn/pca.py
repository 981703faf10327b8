"""Streaming PCA with scikit-learn's estimator contract and two solvers.

* ``covariance`` (default): exact. Each chunk adds its count, sum and cross-product (XᵀX); the
  eigendecomposition of the merged covariance gives every component and the whole spectrum. The
  chunk statistics merge in any order, so the same code runs across Dask workers.
* ``incremental``: scikit-learn's ``IncrementalPCA.partial_fit`` (an SVD per chunk; sequential).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import IncrementalPCA
from sklearn.utils.validation import check_is_fitted, validate_data

from ..options import PCA_SOLVERS as SOLVERS
from . import stats


def components_for_variance(ratios: np.ndarray, variance: float) -> int:
    """The fewest leading components whose explained variance ratios add up to ``variance``."""
    return int(min(np.searchsorted(np.cumsum(ratios), variance - 1e-12) + 1, len(ratios)))


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
            mean, components, variances = ipca.mean_, ipca.components_, ipca.explained_variance_
            total_variance, cov = float(ipca.var_.sum()), None
        else:
            mean, cov = stats.moments_finalize(self._stats, self.shift_)
            n = self._stats["n"]
            cov = cov * (n / (n - 1)) if n > 1 else cov  # unbiased, as scikit-learn's PCA reports it
            variances, vectors = np.linalg.eigh(cov)
            order = np.argsort(variances)[::-1]
            variances = np.maximum(variances[order], 0.0)
            components = _fix_signs(vectors[:, order].T)
            total_variance = float(np.trace(cov))
        ratios = variances / total_variance if total_variance > 0 else np.zeros_like(variances)
        keep = self.n_components or components_for_variance(ratios, self.variance)
        keep = int(min(keep, len(variances)))
        self.mean_ = mean
        self.covariance_ = cov if self._ipca is None else None
        self.spectrum_ = variances  # every eigenvalue, for the report's explained-variance curve
        self.total_variance_ = total_variance
        self.components_ = components[:keep]
        self.explained_variance_ = variances[:keep]
        self.explained_variance_ratio_ = ratios[:keep]
        self.n_components_ = keep

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (X - self.mean_) @ self.components_.T


def basis_from_moments(moments: dict, shift: np.ndarray, variance: float, n_components: int | None,
                       margin: float) -> np.ndarray:
    """Orthonormal columns (d x m) spanning the leading principal subspace of rows summed into
    ``moments`` (``stats.moments_chunk``, combined chunk by chunk, so the rows need not be held): the
    components ``variance`` (or ``n_components``) needs, plus ``margin`` times as many more."""
    variances, vectors = np.linalg.eigh(stats.moments_finalize(moments, shift)[1])
    variances, vectors = variances[::-1], vectors[:, ::-1]
    keep = n_components or components_for_variance(variances / max(variances.sum(), 1e-300), variance)
    return vectors[:, :min(len(variances), int(np.ceil(keep * (1 + margin))))]


def pca_in_basis(covariance: np.ndarray, basis: np.ndarray, variance: float,
                 n_components: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA of the rows projected onto ``basis`` (d x m, orthonormal columns), from the exact
    ``covariance`` of the rows: the components (q x d, leading first; q the fewest whose variance
    reaches ``variance`` of the rows' whole variance, or ``n_components``, at most m) and the m
    eigenvalues. The one-read fit's model: it reduces rows exactly as the fit reduced them."""
    inner = basis.T @ covariance @ basis
    values, vectors = np.linalg.eigh((inner + inner.T) / 2)
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    keep = n_components or components_for_variance(values / max(float(np.trace(covariance)), 1e-300), variance)
    return _fix_signs((basis @ vectors[:, :min(keep, len(values))]).T), values


def subspace_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The largest principal angle, in degrees, between the spans of two sets of orthonormal
    columns (d x q each)."""
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)
    return float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Make each component's largest coefficient positive, so results do not flip between runs."""
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1
    return components * signs[:, None]
