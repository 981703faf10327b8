"""``streamproc project``: a 2-D map of every row, per model, kept up to date incrementally.

* ``umap``: umap-learn (pynndescent neighbours) is fitted on a uniform sample of the model's reduced
  rows; every row is then placed at the distance-weighted mean of the 2-D positions of its 15
  nearest sample points, found with a numpy IVF index (:mod:`streamproc.learn.neighbours`).
* ``tsne``: openTSNE (FFT-accelerated t-SNE, both cores) on the sample, every row then placed
  as for ``umap`` (scikit-learn's ``TSNE`` on all rows of the seed's 416k x 2560 ran for 6 hours).
* ``pca``: the first two reduced components; instant.

The sample's reduced vectors and 2-D positions are stored with the model, so later runs place new
rows without refitting. Positions are committed like labels: staged past the projection watermark,
then watermark and positions in one manifest commit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import progress
from ..errors import UsageError
from ..fs import fsync_tree
from ..learn import stats
from ..learn.embedding import tsne_embedding, umap_embedding
from ..learn.model import Model
from ..learn.neighbours import IVFIndex, place
from ..options import MAP_SAMPLE, PROJECTIONS
from ..store import arrays
from ..store.catalog import load_model
from ..store.manifest import ProjectionEntry
from ..store.store import StagingQueue, Store, block_ranges, open_writer, rows_per_block
from .runner import Runner
from .sources import model_row_sources

METHODS = PROJECTIONS


@dataclass
class ProjectResult:
    model: str
    method: str
    projected: int
    seconds: float
    fit_seconds: float
    watermark: int

    def to_dict(self) -> dict:
        rate = self.projected / max(self.seconds - self.fit_seconds, 1e-9) if self.projected else 0.0
        return {"model": self.model, "method": self.method, "projected": self.projected,
                "rows_per_s": round(rate, 1), "fit_seconds": round(self.fit_seconds, 3),
                "seconds": round(self.seconds, 3), "watermark": self.watermark}


@dataclass
class Projection:
    """How rows are placed: the method, and for umap and tsne the sample (reduced) and its 2-D positions."""

    method: str
    sample_z: np.ndarray | None = None
    sample_xy: np.ndarray | None = None
    seed: int = 0
    index: IVFIndex | None = None

    def place(self, z: np.ndarray) -> np.ndarray:
        if self.method == "pca":
            xy = z[:, :2] if z.shape[1] >= 2 else np.c_[z[:, 0], np.zeros(len(z))]
            return np.ascontiguousarray(xy, dtype=np.float32)
        if self.index is None:  # built on first use: a run with nothing to place skips it
            self.index = IVFIndex.build(self.sample_z, seed=self.seed)
        return place(self.index, self.sample_xy, z)


def project_block(block: np.ndarray, start: int, model: Model, projection: Projection) -> np.ndarray:
    return projection.place(model.transform(block))


def place_reduced_block(z: np.ndarray, start: int, projection: Projection) -> np.ndarray:
    return projection.place(z.astype(np.float32, copy=False))


def fit_projection(store: Store, model: Model, *, method: str, sample: int, seed: int,
                   runner: Runner) -> Projection:
    """Fit the map on a uniform sample of the model's reduced training rows (no lock needed)."""
    if method == "pca":
        return Projection("pca")
    reduced = store.path / "models" / model.id / "reduced"
    rows = model.fit_rows[1]
    chunk = arrays.chunk_rows(reduced)
    total = runner.reduce_blocks(reduced, block_ranges(rows, rows_per_block(chunk, model.n_components * 4)),
                                 stats.sample_chunk, size=min(sample, rows), total_rows=rows, seed=seed,
                                 desc="project: sample")
    sample_z = stats.sample_finalize(total).astype(np.float32)
    if len(sample_z) < 16:
        raise UsageError(f"--method {method} needs at least 16 rows to fit on, the model has {len(sample_z)}")
    if method == "umap":
        progress.announce_numba_compilation()
    fit_map = _fit_tsne if method == "tsne" else _fit_umap
    return Projection(method, sample_z, fit_map(sample_z, model.metric, seed).astype(np.float32), seed)


def _fit_umap(sample_z: np.ndarray, metric: str, seed: int) -> np.ndarray:
    with progress.step(f"project: UMAP on {len(sample_z):,} sample rows"):
        return umap_embedding(sample_z, metric=metric, seed=seed, tqdm_kwds=progress.umap_progress())


def _fit_tsne(sample_z: np.ndarray, metric: str, seed: int) -> np.ndarray:
    with progress.step(f"project: t-SNE on {len(sample_z):,} sample rows"):
        return tsne_embedding(sample_z, metric=metric, seed=seed)


def load_projection(store: Store, model_id: str) -> Projection | None:
    meta = store.manifest.models[model_id].projection
    if not meta:
        return None
    if meta.method == "pca":
        return Projection("pca")
    base = store.resolve(f"models/{model_id}/{meta.array}")
    sample_z = arrays.load_small(base.with_name(base.name + "-sample"))
    sample_xy = arrays.load_small(base.with_name(base.name + "-sample-xy"))
    return Projection(meta.method, sample_z, sample_xy, meta.seed)


def _remove_generation(path) -> None:
    import shutil

    for suffix in ("", "-sample", "-sample-xy"):
        shutil.rmtree(path.with_name(path.name + suffix), ignore_errors=True)


def projection_path(store: Store, model_id: str) -> str | None:
    """The committed projection array of a model (relative to the store), or None."""
    meta = store.manifest.models[model_id].projection
    return f"models/{model_id}/{meta.array}" if meta else None


def project(store_path: str | os.PathLike, model_id: str | None = None, *, method: str | None = None,
            sample: int = MAP_SAMPLE, seed: int = 0, scheduler: str | None = None, wait: float = 0.0,
            block_bytes: int = 16 * 2**20) -> ProjectResult:
    """Place every row not yet placed for the model (all rows when the method changes)."""
    began = time.perf_counter()
    store = Store.open(store_path)
    model = load_model(store, model_id)
    existing = store.manifest.models[model.id].projection
    method = method or (existing.method if existing else "umap")
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    fit_seconds = 0.0
    with Runner(scheduler) as runner:
        refit = existing is None or existing.method != method
        if refit:
            t = time.perf_counter()
            projection = fit_projection(store, model, method=method, sample=sample, seed=seed, runner=runner)
            fit_seconds = time.perf_counter() - t
        with open_writer(store_path, wait=wait) as writer:
            entry = writer.manifest.models[model.id]
            if not refit and entry.projection != existing:
                refit = True  # another run changed the method meanwhile: start over with ours
                projection = fit_projection(writer, model, method=method, sample=sample, seed=seed, runner=runner)
            if not refit:
                projection = load_projection(writer, model.id)
            start = 0 if refit else entry.projection_watermark
            stop = writer.rows
            if refit:  # a new generation of arrays: the committed projection stays intact until the commit
                array = f"projection-{method}-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
                meta = ProjectionEntry(method=method, array=array, seed=seed,
                                       sample=0 if projection.sample_z is None else len(projection.sample_z))
            else:
                meta = entry.projection
            path = f"models/{model.id}/{meta.array}"
            if refit:
                writer.create_column(path, length=0, chunk_rows=65_536, dtype="float32", width=2)
                if projection.sample_z is not None:
                    for suffix, value in (("-sample", projection.sample_z), ("-sample-xy", projection.sample_xy)):
                        arrays.save_small(writer.path / (path + suffix), value)
                        fsync_tree(writer.path / (path + suffix))
            models = {**writer.manifest.models,
                      model.id: replace(entry, projection=meta, projection_watermark=stop)}
            with StagingQueue(writer, f"models/{model.id}", 65_536) as queue:
                for source in model_row_sources(writer, model, start, stop, block_bytes):
                    place_fn, args = (place_reduced_block, ()) if source.reduced else (project_block, (model,))
                    for row, xy in runner.map_blocks(source.path, source.ranges, place_fn, *args, projection,
                                                     desc=f"project {model.id} ({source.path.name})"):
                        queue.put(row, {meta.array: xy})
                queue.commit(stop, lambda w: w.commit(replace(w.manifest, models=models)))
            if refit and existing:
                _remove_generation(writer.path / "models" / model.id / existing.array)
    return ProjectResult(model.id, method, stop - start, time.perf_counter() - began, fit_seconds, stop)
