"""A fitted model: how to reduce a vector (PCA, scale, normalisation) and where the clusters are.

Saved under ``STORE/models/<id>/`` as Zarr arrays plus ``model.json`` (validated against
``schemas/model.schema.json``). Nothing is pickled; loading never executes stored code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jsonschema
import numpy as np
import zarr

from . import __version__
from .choices import QUANTILES
from .errors import ModelError
from .stats import sq_distances

ARRAYS = ("pca_mean", "pca_components", "spectrum", "scale", "centroids", "quantiles", "cluster_sizes",
          "cluster_mean_distance", "logistic_coef", "logistic_intercept")
SCHEMA_PATH = Path(__file__).parent / "schemas" / "model.schema.json"


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

    # ---- the maths a row goes through --------------------------------------------------------
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``reduce(x) = x @ A + b`` before normalisation: PCA and scaling fused into one product."""
        a = (self.pca_components.T * self.scale[None, :]).astype(np.float32)
        b = (-(self.pca_mean @ a)).astype(np.float32)
        return a, b

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """Vectors (rows x dim) to the space the centroids live in."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ModelError(f"model {self.id} expects vectors of dim {self.dim}, got shape {x.shape}")
        a, b = self.affine()
        z = x.astype(np.float32, copy=False) @ a
        z += b
        return normalize_rows(z) if self.metric == "cosine" else z

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Distance of each reduced row to each centroid: euclidean, or cosine distance 1 - cos."""
        sq = sq_distances(z, self.centroids.astype(np.float32))
        return sq / 2.0 if self.metric == "cosine" else np.sqrt(sq)

    # ---- persistence -----------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = {k: v for k, v in asdict(self).items() if k not in ARRAYS}
        meta.update(k=self.k, n_components=self.n_components, explained_variance=self.explained_variance,
                    fit_rows=list(self.fit_rows), quantile_levels=list(QUANTILES))
        return _plain(meta)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                zarr.create_array(directory / name, data=value, chunks=value.shape or (1,), overwrite=True)
        meta = self.metadata()
        jsonschema.validate(meta, load_schema())
        (directory / "model.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Model:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "model.json").read_text())
            jsonschema.validate(meta, load_schema())
            arrays = {}
            for name in ARRAYS:
                if (directory / name / "zarr.json").exists():
                    arrays[name] = zarr.open_array(directory / name, mode="r")[...]
                    if arrays[name].dtype.hasobject:
                        raise ModelError(f"{directory}: array {name} has an object dtype")
                else:
                    arrays[name] = None
        except FileNotFoundError as exc:
            raise ModelError(f"{directory}: damaged model, {Path(exc.filename or '').name or 'a file'} is missing") from None
        except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
            raise ModelError(f"{directory}: damaged model metadata ({str(exc).splitlines()[0]})") from None
        fields = {k: v for k, v in meta.items() if k in cls.__dataclass_fields__}
        fields["fit_rows"] = tuple(fields["fit_rows"])
        model = cls(**fields, **arrays)
        model._check_shapes(directory)
        return model

    def _check_shapes(self, where) -> None:
        c, d, k = self.n_components, self.dim, self.k
        expected = {"pca_mean": (d,), "pca_components": (c, d), "scale": (c,), "centroids": (k, c),
                    "quantiles": (k, len(QUANTILES)), "cluster_sizes": (k,)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ModelError(f"{where}: damaged model, {name} has shape {getattr(self, name).shape}, expected {shape}")


def normalize_rows(z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-12)


def gaussian_posterior(sq: np.ndarray, counts: np.ndarray, variance: float) -> np.ndarray:
    """Posterior class probabilities from squared distances (shared isotropic variance, class priors)."""
    log_prior = np.log(np.maximum(np.asarray(counts, dtype=np.float64), 1e-12))
    logits = log_prior[None, :] - sq / (2.0 * max(variance, 1e-12))
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def logistic_proba(distances: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Softmax of the multinomial logistic regression learned on the distance vector at fit time."""
    logits = distances @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


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
