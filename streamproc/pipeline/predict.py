"""Label vectors or texts that are in no store, without writing anything: ``streamproc predict`` and
``POST /api/predict`` share this module.

Labels, distances, confidences, outlier flags and probabilities come from the model's one labelling
path (:meth:`Model.label` and :meth:`Model.predict_proba`), so they equal what ``classify`` stores
for the same vector. A query is placed on the map as ``project`` places rows (``Projection.place``); its neighbours are the
stored rows nearest that map position (the server asks its spatial index, the command line scans
the stored positions block by block).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..io import encoders
from ..learn.model import Model
from ..store.store import Store
from .project import Projection, load_projection, projection_path

NEIGHBOURS = 5
SCAN_BLOCK_ROWS = 1_000_000

# (x, y, n) -> (rows, distances): the n stored rows nearest a map position
NearFn = Callable[[float, float, int], tuple[np.ndarray, np.ndarray]]


def check_vectors(vectors, dim: int, where: str = "vectors") -> np.ndarray:
    """A non-empty rows x dim float32 array of finite numbers, or an InputError saying what is wrong."""
    expected = f"expected a non-empty list of vectors, each a list of {dim} numbers"
    if not isinstance(vectors, list | np.ndarray) or len(vectors) == 0:
        raise InputError(f"{where}: {expected}")
    try:
        array = np.asarray(vectors)
    except ValueError:  # ragged lists
        raise InputError(f"{where}: {expected} (the vectors differ in length)") from None
    if array.dtype.kind not in "fiu" or array.ndim != 2:
        raise InputError(f"{where}: {expected}, got {array.dtype.name} values of shape {array.shape}")
    if array.shape[1] != dim:
        raise InputError(f"{where}: expected vectors of dim {dim}, got dim {array.shape[1]}")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise InputError(f"{where}: vector {bad[0]} holds NaN or infinity ({len(bad)} such vector{'s' * (len(bad) > 1)})")
    return array.astype(np.float32)


def predict_vectors(store: Store, model: Model, vectors: np.ndarray, *, near: NearFn | None = None,
                    projection: Projection | None = None, neighbours: int = NEIGHBOURS,
                    outlier_quantile: float = 0.99) -> dict:
    """The ``/api/predict`` answer for checked vectors (see :func:`check_vectors`). ``projection``: the
    model's map, when the caller keeps it loaded (its placement index is built on first use)."""
    labelled = model.label(vectors, outlier_quantile=outlier_quantile)
    proba = model.predict_proba(vectors)
    projection = projection or load_projection(store, model.id)
    xy = None if projection is None else projection.place(model.transform(vectors))
    if xy is not None and near is None and neighbours:
        near = scan_near(store, model)
    predictions = []
    for i in range(len(vectors)):
        item = {"label": int(labelled["labels"][i]), "distance": float(labelled["distance"][i]),
                "confidence": float(labelled["confidence"][i]), "outlier": bool(labelled["outlier"][i]),
                "probabilities": [float(p) for p in proba[i]], "x": None, "y": None, "neighbours": []}
        if xy is not None:
            item["x"], item["y"] = float(xy[i, 0]), float(xy[i, 1])
            if neighbours:
                item["neighbours"] = [int(r) for r in near(item["x"], item["y"], neighbours)[0]]
        predictions.append(item)
    return {"model": model.id, "classes": [int(c) for c in model.classes_], "predictions": predictions}


def scan_near(store: Store, model: Model) -> NearFn:
    """Nearest stored rows by a block-by-block scan of the positions (bounded memory, no index)."""
    path = projection_path(store, model.id)
    shown = store.manifest.models[model.id].projection_watermark

    def near(x: float, y: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        best_rows, best_d = np.zeros(0, np.int64), np.zeros(0)
        for a, b, got in store.iter_rows([path], 0, shown, SCAN_BLOCK_ROWS):
            xy = got[path]
            d = np.concatenate([best_d, np.hypot(xy[:, 0] - x, xy[:, 1] - y)])
            rows = np.concatenate([best_rows, np.arange(a, b)])
            keep = np.argsort(d, kind="stable")[:n]
            best_rows, best_d = rows[keep], d[keep]
        return best_rows, best_d

    return near


# ---- texts -------------------------------------------------------------------------------------
def recorded_encoder(store: Store) -> str | None:
    """The first 16 hex digits of the weights that embedded the store's texts, or None (vectors only)."""
    for batch in store.manifest.batches:
        for part in batch.options.split(";"):
            if part.startswith("encoder="):
                return part[len("encoder="):]
    return None


def check_texts(texts, where: str = "texts") -> list[str]:
    if not isinstance(texts, list) or not texts:
        raise InputError(f"{where}: expected a non-empty list of texts")
    bad = [i for i, t in enumerate(texts) if not (isinstance(t, str) and t.strip())]
    if bad:
        raise InputError(f"{where}: text {bad[0]} is empty or not a string")
    return texts


def load_store_encoder(store: Store, spec: str | None) -> encoders.Encoder:
    """The local encoder whose weights embedded the store's texts (``spec`` as ``embed --encoder``)."""
    recorded = recorded_encoder(store)
    if recorded is None:
        raise UsageError(f"{store.path}: its vectors were not embedded from texts by streamproc embed, so a text "
                         "cannot be placed among them; send vectors instead")
    encoder = encoders.load_encoder(spec)
    if encoder.sha256[:16] != recorded:
        raise UsageError(f"{store.path}: its texts were embedded by weights {recorded}…, encoder {encoder.name} has "
                         f"{encoder.sha256[:16]}…: pass the store's encoder with --encoder")
    return encoder


# ---- the command line's inputs -------------------------------------------------------------------
def read_vector_file(path: Path, dim: int, *, vector_column: str | None = None,
                     id_column: str | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Every vector of a .npy, .parquet or .csv file (as ``ingest`` reads them, with the same
    ``--vector-column`` and ``--id-column``), checked, and the rows' ids when an id column is given."""
    from ..io.readers import ReadOptions, read_slices

    if path.suffix.lower() not in (".npy", ".parquet", ".csv"):
        raise InputError(f"{path}: expected a .npy, .parquet or .csv file of vectors")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    parts = list(read_slices(path, ReadOptions(vector_column=vector_column, id_column=id_column)))
    if not parts or sum(len(p.vectors) for p in parts) == 0:
        raise InputError(f"{path}: no vectors")
    ids = [str(i) for part in parts for i in part.ids] if id_column else None
    return check_vectors(np.concatenate([p.vectors for p in parts]), dim, where=str(path)), ids


def read_text_file(path: Path, text_column: str) -> list[str]:
    from ..io.texts import read_texts

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    texts = [t for part in read_texts(path, text_column) for t in part.texts]
    return check_texts(texts, where=str(path))

