"""``streamproc classify``: label every committed row past a model's watermark, exactly once.

The rows the model was fitted on are labelled from the reduced rows its fit stored (one read of
about a fifth of the vectors' bytes, and no PCA product); rows ingested since, from the vectors
(:mod:`streamproc.pipeline.sources`).

The run holds the store's lock throughout (a second run exits 75). Labels are staged past the
watermark in ``models/<id>/{labels,distance,confidence,outlier}`` and committed together with the
new watermark by one manifest replacement; a run killed at any point leaves the watermark where the
last commit put it, and the next run labels from there.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from ..learn.drift import RunStats, moved_clusters
from ..learn.model import QUANTILES, Model
from ..store.catalog import load_model
from ..store.store import StagingQueue, StoreWriter, open_writer
from .runner import Runner
from .sources import model_row_sources

LABEL_COLUMNS = {"labels": "int32", "distance": "float32", "confidence": "float32", "outlier": "bool"}
LABEL_CHUNK_ROWS = 65_536
COMMIT_ROWS = 500_000  # commit at least this often, so a kill loses little work


@dataclass
class ClassifyResult:
    model: str
    labelled: int
    seconds: float
    outlier_rate: float | None
    mean_distance: float | None
    train_mean_distance: float
    drift: bool
    watermark: int
    workers: list[str]
    batches: list[dict] = field(default_factory=list)  # per batch: rows, outlier rate, mean distance, shares
    moved_clusters: list[dict] = field(default_factory=list)  # clusters whose share moved beyond noise
    new_groups: list[dict] = field(default_factory=list)  # dense groups among the outliers
    cluster_ids: list[int] = field(default_factory=list)  # the order of each batch's shares

    def to_dict(self) -> dict:
        rate = self.labelled / self.seconds if self.seconds > 0 and self.labelled else 0.0
        return {"model": self.model, "labelled": self.labelled, "rows_per_s": round(rate, 1),
                "outlier_rate": self.outlier_rate, "mean_distance": self.mean_distance,
                "train_mean_distance": self.train_mean_distance, "drift": self.drift,
                "watermark": self.watermark, "seconds": round(self.seconds, 3), "workers": self.workers,
                "cluster_ids": self.cluster_ids, "batches": self.batches, "moved_clusters": self.moved_clusters,
                "new_groups": self.new_groups}


def label_block(block: np.ndarray, start: int, model: Model, outlier_quantile: float) -> dict:
    """Label, distance, confidence and outlier flag of each row of a block of vectors (``Model.label``),
    and the outliers' reduced rows (``outlier_rows``, not stored: new groups are sought among them)."""
    return label_reduced_block(model.transform(block), start, model, outlier_quantile)


def label_reduced_block(z: np.ndarray, start: int, model: Model, outlier_quantile: float) -> dict:
    """:func:`label_block` of rows already reduced (the fit's stored rows)."""
    z = z.astype(np.float32, copy=False)
    result = model.label_reduced(z, outlier_quantile=outlier_quantile)
    result["outlier_rows"] = z[result["outlier"]]
    return result


def train_mean_distance(model: Model) -> float:
    sizes = model.cluster_sizes.astype(np.float64)
    return float((model.cluster_mean_distance * sizes).sum() / max(sizes.sum(), 1))


def is_drift(*, outlier_rate: float, mean_distance: float, train_mean: float, n: int, quantile: float,
             threshold: float) -> bool:
    """Drift: the mean distance departs from training by more than ``threshold`` (relative), or more
    rows are outliers than the quantile allows, beyond ``threshold`` and three binomial standard errors.
    (A run also drifts when a cluster's share moved: :func:`streamproc.learn.drift.moved_clusters`.)"""
    expected = 1.0 - quantile
    noise = 3.0 * math.sqrt(expected * quantile / max(n, 1))
    departs = abs(mean_distance / train_mean - 1.0) > threshold if train_mean > 0 else mean_distance > 0
    return bool(departs or outlier_rate > expected * (1.0 + threshold) + noise)


def classify(store_path: str | os.PathLike, model_id: str | None = None, *, outlier_quantile: float = 0.99,
             drift_threshold: float = 0.25, scheduler: str | None = None, wait: float = 0.0,
             block_bytes: int = 16 * 2**20) -> ClassifyResult:
    if outlier_quantile not in QUANTILES:
        raise UsageError(f"--outlier-quantile must be one of {', '.join(map(str, QUANTILES))}")
    began = time.perf_counter()
    with open_writer(store_path, wait=wait) as writer:
        model = load_model(writer, model_id)
        start = writer.manifest.models[model.id].watermark
        stop = writer.rows
        train_mean = train_mean_distance(model)
        if start >= stop:
            return ClassifyResult(model.id, 0, time.perf_counter() - began, None, None, train_mean, False, start, [])
        _ensure_label_arrays(writer, model.id, start)
        outliers, distance_sum = 0, 0.0
        run = RunStats(model, [b.id for b in writer.manifest.batches],
                       np.array([b.start for b in writer.manifest.batches], dtype=np.int64))
        with Runner(scheduler) as runner, StagingQueue(writer, f"models/{model.id}", LABEL_CHUNK_ROWS) as queue:
            for source in model_row_sources(writer, model, start, stop, block_bytes):
                fn = label_reduced_block if source.reduced else label_block
                for row, result in runner.map_blocks(source.path, source.ranges, fn, model, outlier_quantile,
                                                     desc=f"classify {model.id} ({source.path.name})"):
                    run.add(row, result, result.pop("outlier_rows"))
                    queue.put(row, result)
                    outliers += int(result["outlier"].sum())
                    distance_sum += float(result["distance"].astype(np.float64).sum())
                    end = row + len(result["labels"])
                    if end - queue.committed >= COMMIT_ROWS or end == stop:
                        queue.commit(end, lambda w, end=end: _commit_watermark(w, model.id, end))
            workers = sorted(runner.workers_seen)
    n = stop - start
    rate, mean = outliers / n, distance_sum / n
    moved = moved_clusters(model, run.counts.sum(axis=0), threshold=drift_threshold)
    drift = is_drift(outlier_rate=rate, mean_distance=mean, train_mean=train_mean, n=n, quantile=outlier_quantile,
                     threshold=drift_threshold) or bool(moved)
    return ClassifyResult(model.id, n, time.perf_counter() - began, rate, mean, train_mean, drift, stop, workers,
                          run.batches(), moved, run.groups(), [int(i) for i in model.classes_])


def _ensure_label_arrays(writer: StoreWriter, model_id: str, length: int) -> None:
    for name, dtype in LABEL_COLUMNS.items():
        path = f"models/{model_id}/{name}"
        if not (writer.path / path / "zarr.json").exists():
            writer.create_column(path, length=length, chunk_rows=LABEL_CHUNK_ROWS, dtype=dtype)


def _commit_watermark(writer: StoreWriter, model_id: str, watermark: int) -> None:
    manifest = writer.manifest
    models = {**manifest.models, model_id: replace(manifest.models[model_id], watermark=watermark)}
    writer.commit(replace(manifest, models=models))
