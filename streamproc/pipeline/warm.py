"""``fit --warm-start``: refit from the current model instead of from scratch.

The current model's reduction (PCA, scaling) is kept, so the reduced rows it already wrote for its
training rows are the same numbers: their chunk files are hard-linked into the new model (copied
where links are impossible), and only the rows added since are read and reduced — one pass over the
new vectors instead of two over all of them. k-means starts from the current centroids (no
k-means++), so the Lloyd epochs begin converged and stop at ``--tol`` after few passes.

Clusters are added where the new data needs them: dense groups among the new rows' outliers
(:func:`streamproc.learn.drift.new_groups`) seed one new centroid each; without ``--k`` the refit has
exactly ``current k + number of groups`` clusters. With ``--k``, every k above the current one is
tried (extra seeds beyond the groups: the worst-fit new rows, farthest first) and chosen by
``--select`` as in a cold fit. Ids follow from alignment at commit (align.py): every cluster that is
still there keeps its id, the new ones take fresh ids.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..learn import stats
from ..learn.drift import OutlierRows, new_groups
from ..learn.model import QUANTILES, Model
from ..store import arrays
from ..store.catalog import load_model
from ..store.store import Store, block_ranges, rows_per_block
from .runner import Runner

OUTLIER_QUANTILE = 0.99  # a sampled new row beyond this training quantile of its cluster may seed a cluster


def _reduce_new_block(block, start, model, reduced_path, sample_size, total_rows, first_row, seed):
    """Reduce one block of new vectors with the current model, write it, sample it, and return its
    outliers (beyond the ``OUTLIER_QUANTILE`` training quantile of their nearest cluster)."""
    z = model.transform(block)
    arrays.write_block(reduced_path, start, z)
    out = stats.sample_chunk(z, start - first_row, size=sample_size, total_rows=total_rows, seed=seed)
    distances = model.distances(z)
    nearest = distances.argmin(axis=1)
    outlier = distances[np.arange(len(z)), nearest] > model.quantiles[nearest, QUANTILES.index(OUTLIER_QUANTILE)]
    return out, z[outlier]


def fit_warm(store: Store, options, runner: Runner, staging: Path, model_id: str) -> tuple[Model, dict]:
    """The refit, and what its passes did (as ``fit --json`` reports them)."""
    from .fit import _params, cluster_reduced

    current = load_model(store)
    options = replace(options, metric=current.metric, scaling=current.scaling)  # the current reduction is kept
    rows = store.rows
    old_reduced = store.path / "models" / current.id / "reduced"
    if not arrays.exists(old_reduced):
        raise ModelError(f"model {current.id} has no reduced rows to start from; run a fit without --warm-start")
    itemsize = np.dtype(store.manifest.dtype).itemsize
    block = rows_per_block(store.manifest.chunk_rows, store.dim * itemsize, options.block_bytes)
    reduced_path = staging / "reduced"
    arrays.create_rows(reduced_path, rows, current.n_components, block)
    first_new = arrays.link_chunks(old_reduced, reduced_path, min(current.fit_rows[1], rows), block)

    new_rows = rows - first_new
    sample_z = np.zeros((0, current.n_components), np.float32)
    outliers = OutlierRows()
    if new_rows:
        total = None
        for _, (part, outlier_rows) in runner.map_blocks(
                store.path / "vectors", block_ranges(rows, block, start=first_new), _reduce_new_block, current,
                str(reduced_path), min(options.sample, new_rows), new_rows, first_new, options.seed,
                desc="warm: reduce new rows"):
            total = part if total is None else stats.combine(total, part)
            outliers.add(outlier_rows)
        sample_z = stats.sample_finalize(total).astype(np.float32)
    centroid_sets = _centroid_sets(current, outliers.kept(current.n_components), sample_z, options.ks)
    draft = replace(current, id=model_id, params=_params(options), fit_rows=(0, rows), cluster_ids=None,
                    logistic_coef=None, logistic_intercept=None, scores=[])
    if len(sample_z) == 0:
        sample_z = current.transform(current.pca_mean)  # the logistic classifier needs a few reduced rows
    model, epochs = cluster_reduced(draft, replace(options, ks=[len(c) for c in centroid_sets]), runner,
                                    reduced_path, centroid_sets, None, sample_z)
    return model, {"vector_reads": 1 if new_rows else 0, "epochs": epochs}


def _centroid_sets(current: Model, outliers: np.ndarray, sample_z: np.ndarray, ks: list[int]) -> list[np.ndarray]:
    """The current centroids, plus one seed per new group among the new rows' outliers, plus (for
    each requested k above that) the worst-fit rows, farthest first."""
    groups = [g["centroid"] for g in new_groups(current, outliers)]
    base = np.vstack([current.centroids, *groups]) if groups else current.centroids
    wanted = sorted({k for k in ks if k > len(base)} | {len(base)}) if ks else [len(base)]
    return [_add_farthest(base, outliers if len(outliers) else sample_z, k - len(base)) for k in wanted]


def _add_farthest(centroids: np.ndarray, candidates: np.ndarray, extra: int) -> np.ndarray:
    """``centroids`` plus ``extra`` candidate rows, each the one farthest from every centroid so far."""
    out = centroids.astype(np.float32)
    for _ in range(min(extra, len(candidates))):
        far = stats.sq_distances(candidates, out).min(axis=1).argmax()
        out = np.vstack([out, candidates[far]])
    return out
