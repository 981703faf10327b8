"""A fitted model: how to reduce a vector (PCA, scale, normalisation) and where the clusters are.

Saved under ``STORE/models/<id>/`` as Zarr arrays plus ``model.json`` (validated against
``schemas/model.schema.json``). Nothing is pickled; loading never executes stored code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .. import __version__
from ..errors import InputError, ModelError, UsageError
from ..options import QUANTILES
from .stats import sq_distances

ARRAYS = ("pca_mean", "pca_components", "spectrum", "scale", "centroids", "quantiles", "cluster_sizes",
          "cluster_mean_distance", "logistic_coef", "logistic_intercept", "cluster_ids")


@dataclass
class Model:
    """Everything ``classify``, ``project`` and ``report`` need, as plain arrays and numbers."""

    id: str
    dim: int
    metric: str  # "euclidean" | "cosine"
    scaling: str  # "whiten" | "global" | "none"
    pca_mean: np.ndarray
    pca_components: np.ndarray  # n_components x dim
    spectrum: np.ndarray  # every eigenvalue (explained variance), leading first
    total_variance: float
    scale: np.ndarray  # per reduced component
    centroids: np.ndarray  # k x n_components, in the reduced (scaled, normalised) space
    quantiles: np.ndarray  # k x len(QUANTILES): distance-to-centroid quantiles of the training rows
    cluster_sizes: np.ndarray
    cluster_mean_distance: np.ndarray
    noise_variance: float  # mean squared distance to the centroid per reduced dimension (confidence)
    scores: list[dict]  # one {"k", "davies_bouldin", "calinski_harabasz", "inertia"} per k of the sweep
    params: dict
    fit_rows: tuple[int, int]
    logistic_coef: np.ndarray | None = None
    logistic_intercept: np.ndarray | None = None
    cluster_ids: np.ndarray | None = None  # the id of each centroid's cluster (default 0 .. k-1)
    created_at: str = ""
    version: str = __version__
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def n_components(self) -> int:
        return len(self.pca_components)

    @property
    def explained_variance(self) -> float:
        return float(self.spectrum[: self.n_components].sum() / self.total_variance)

    @property
    def classes_(self) -> np.ndarray:
        """The cluster id of each centroid, in the order of the columns of :meth:`predict_proba`."""
        return np.arange(self.k) if self.cluster_ids is None else np.asarray(self.cluster_ids)

    # ---- the scikit-learn contract, on numpy arrays ------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Vectors (rows x dim, or one vector) to the reduced space the centroids live in (float32)."""
        x = np.asarray(X)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"model {self.id} expects vectors of dim {self.dim}, got shape {np.shape(X)}")
        if x.dtype.kind not in "fiu":
            raise InputError(f"model {self.id} expects numeric vectors, got dtype {x.dtype}")
        a, b = self.affine()
        z = x.astype(np.float32, copy=False) @ a
        z += b
        return normalize_rows(z) if self.metric == "cosine" else z

    def decision_function(self, X) -> np.ndarray:
        """Distance of each vector to each centroid (rows x k): euclidean, or cosine distance 1 - cos."""
        return self.distances(self.transform(X))

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each cluster for each vector (rows x k; rows sum to 1; argmax = :meth:`predict`)."""
        return self._assess(self.transform(X))[1]

    def predict(self, X) -> np.ndarray:
        """The cluster id of each vector."""
        return self.classes_[self._assess(self.transform(X))[0]]

    def label(self, X, *, outlier_quantile: float = 0.99) -> dict[str, np.ndarray]:
        """What ``classify`` stores for each vector: label (cluster id), distance to its centroid,
        confidence (its probability) and outlier flag (distance beyond the cluster's training quantile)."""
        return self.label_reduced(self.transform(X), outlier_quantile=outlier_quantile)

    def label_reduced(self, z: np.ndarray, *, outlier_quantile: float = 0.99) -> dict[str, np.ndarray]:
        """:meth:`label` of rows already reduced (see :meth:`transform`), such as the fit's stored rows."""
        if outlier_quantile not in QUANTILES:
            raise UsageError(f"outlier_quantile must be one of {', '.join(map(str, QUANTILES))}, got {outlier_quantile}")
        z = np.asarray(z, dtype=np.float32)
        index, proba, distances = self._assess(z)
        rows = np.arange(len(z))
        distance = distances[rows, index]
        return {"labels": self.classes_[index].astype(np.int32), "distance": distance.astype(np.float32),
                "confidence": proba[rows, index].astype(np.float32),
                "outlier": distance > self.quantiles[index, QUANTILES.index(outlier_quantile)]}

    def _assess(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one labelling path: (index of the chosen centroid, probabilities, distances) per reduced row.

        softmax: the nearest centroid, probabilities a softmax of -d^2 / (2 variance);
        logistic: the argmax of the logistic regression learned on the distance vector at fit time.
        """
        sq = sq_distances(z, self.centroids.astype(np.float32))
        distances = sq / 2.0 if self.metric == "cosine" else np.sqrt(sq)
        if self.logistic_coef is not None:
            proba = logistic_proba(distances, self.logistic_coef, self.logistic_intercept)
            return proba.argmax(axis=1), proba, distances
        return sq.argmin(axis=1), gaussian_posterior(sq, self.noise_variance), distances

    # ---- the maths a row goes through --------------------------------------------------------
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``reduce(x) = x @ A + b`` before normalisation: PCA and scaling fused into one product."""
        a = (self.pca_components.T * self.scale[None, :]).astype(np.float32)
        b = (-(self.pca_mean @ a)).astype(np.float32)
        return a, b

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Distance of each *reduced* row (see :meth:`transform`) to each centroid."""
        sq = sq_distances(z, self.centroids.astype(np.float32))
        return sq / 2.0 if self.metric == "cosine" else np.sqrt(sq)

    # ---- persistence -----------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = {k: v for k, v in asdict(self).items() if k not in ARRAYS}
        meta.update(k=self.k, n_components=self.n_components, explained_variance=self.explained_variance,
                    fit_rows=list(self.fit_rows), quantile_levels=list(QUANTILES))
        return _plain(meta)

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict, where) -> Model:
        """The model described by its metadata (``model.json``) and arrays, checked: shapes, finite
        values, positive scale (a damaged model raises :class:`ModelError` naming ``where``)."""
        if not isinstance(meta, dict):
            raise ModelError(f"{where}: damaged model metadata (expected a JSON object)")
        fields = {k: v for k, v in meta.items() if k in cls.__dataclass_fields__}
        try:
            fields["fit_rows"] = tuple(fields["fit_rows"])
            model = cls(**fields, **arrays)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{where}: damaged model metadata ({exc})") from None
        model._check_shapes(where)
        model._check_values(where)
        return model

    def _check_values(self, where) -> None:
        """Refuse arrays and numbers no fit produces: NaN or Inf, a scale <= 0, negative row counts."""
        for name in ARRAYS:
            value = getattr(self, name)
            if value is not None and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ModelError(f"{where}: damaged model, {name} holds NaN or Inf")
        if (self.scale <= 0).any():
            raise ModelError(f"{where}: damaged model, scale must be > 0 (got {float(self.scale.min())})")
        if (self.cluster_sizes < 0).any():
            raise ModelError(f"{where}: damaged model, cluster_sizes must be >= 0")
        numbers = {"total_variance": self.total_variance, "noise_variance": self.noise_variance}
        for name, value in numbers.items():
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ModelError(f"{where}: damaged model, {name} must be a finite number >= 0, got {value!r}")
        if len(self.fit_rows) != 2 or not 0 <= self.fit_rows[0] <= self.fit_rows[1]:
            raise ModelError(f"{where}: damaged model, fit_rows {list(self.fit_rows)} is not a row range")

    def __repr__(self) -> str:
        return (f"<Model {self.id}: k={self.k}, {self.dim}-d -> {self.n_components} components, "
                f"metric {self.metric}>")

    def _check_shapes(self, where) -> None:
        for name in ("pca_mean", "pca_components", "scale", "centroids", "quantiles", "cluster_sizes", "spectrum"):
            if getattr(self, name) is None:
                raise ModelError(f"{where}: damaged model, array {name} is missing")
        c, d, k = self.n_components, self.dim, self.k
        expected = {"pca_mean": (d,), "pca_components": (c, d), "scale": (c,), "centroids": (k, c),
                    "quantiles": (k, len(QUANTILES)), "cluster_sizes": (k,)}
        if self.cluster_ids is not None:
            expected["cluster_ids"] = (k,)
        if self.logistic_coef is not None:
            expected.update(logistic_coef=(k, k), logistic_intercept=(k,))
        for name, shape in expected.items():
            if getattr(self, name) is None or getattr(self, name).shape != shape:
                raise ModelError(f"{where}: damaged model, {name} has shape {np.shape(getattr(self, name))}, expected {shape}")


def normalize_rows(z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-12)


def gaussian_posterior(sq: np.ndarray, variance: float) -> np.ndarray:
    """Class probabilities from squared distances: a softmax of ``-sq / (2 variance)`` (equal priors, so the
    most probable class is always the nearest centroid)."""
    logits = -np.asarray(sq, dtype=np.float64) / (2.0 * max(variance, 1e-12))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def logistic_proba(distances: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Softmax of the multinomial logistic regression learned on the distance vector at fit time."""
    logits = distances @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _plain(value):
    """JSON-ready copy: numpy scalars and arrays to Python numbers and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
