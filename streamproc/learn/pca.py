"""PCA from streamed moments, in numpy: the exact solver's eigendecomposition and the one-read
fit's subspace checks. Each chunk adds its count, sum and cross-product (XᵀX,
``stats.moments_chunk``); the moments merge in any order, so the same code runs across Dask workers.
The estimator with scikit-learn's contract (and its ``incremental`` solver) is
:class:`.streaming_pca.StreamingPCA`: a fit does not import scikit-learn (1.0-1.3 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import stats


def components_for_variance(ratios: np.ndarray, variance: float) -> int:
    """The fewest leading components whose explained variance ratios add up to ``variance``."""
    return int(min(np.searchsorted(np.cumsum(ratios), variance - 1e-12) + 1, len(ratios)))


@dataclass(eq=False)
class PCAFit:
    """A fitted PCA: ``components`` (q x d, leading first) of rows with mean ``mean``; ``spectrum``
    holds every eigenvalue (for the report's explained-variance curve) and ``total_variance`` their
    sum. From moments (:func:`pca_from_moments`) it also keeps the unbiased ``covariance``, the
    ``shift`` the moments were summed around and the ``moments`` themselves (the incremental
    solver's has a ``shift``, its first block's mean, and neither of the others)."""
    mean: np.ndarray
    components: np.ndarray
    spectrum: np.ndarray
    total_variance: float
    covariance: np.ndarray | None = None
    shift: np.ndarray | None = None
    moments: dict | None = None

    @property
    def n_components(self) -> int:
        return len(self.components)

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        total = self.total_variance
        return self.spectrum[:self.n_components] / total if total > 0 else np.zeros(self.n_components)


def pca_from_moments(moments: dict, shift: np.ndarray, variance: float, n_components: int | None) -> PCAFit:
    """Exact PCA of the rows summed into ``moments`` around ``shift``: the eigendecomposition of
    their unbiased covariance (as scikit-learn's PCA reports it), keeping ``n_components`` or the
    fewest components that explain ``variance``."""
    mean, covariance = stats.moments_finalize(moments, shift)
    n = moments["n"]
    covariance = covariance * (n / (n - 1)) if n > 1 else covariance
    variances, vectors = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    spectrum = np.maximum(variances[order], 0.0)
    total = float(np.trace(covariance))
    return PCAFit(mean, keep_components(_fix_signs(vectors[:, order].T), spectrum, total, variance, n_components),
                  spectrum, total, covariance, shift, moments)


def keep_components(components: np.ndarray, spectrum: np.ndarray, total_variance: float, variance: float,
                    n_components: int | None) -> np.ndarray:
    """The leading ``n_components`` of ``components``, or the fewest that explain ``variance``."""
    ratios = spectrum / total_variance if total_variance > 0 else np.zeros_like(spectrum)
    return components[:int(min(n_components or components_for_variance(ratios, variance), len(spectrum)))]


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
