"""``streamproc fit``: PCA -> scaling -> k-means for every k -> Davies-Bouldin/Calinski-Harabasz ->
the chosen model, committed into the store. Reads a manifest snapshot without the lock; locks only
to commit, so cron ingests go on during a long fit.

Passes over the data (each a Dask job over blocks):
  0. (one read, when the vectors are larger than half the memory) a few whole chunks drawn at random
     (4x --sample rows or 1 % of the rows): the subspace to project onto
  1. vectors: exact PCA moments + a uniform sample, and every row projected onto that subspace
     (about 1.5x the components needed), written once            (the only read of the vectors)
  2. projection: reduced = scale(pca(x)), the PCA being the exact PCA of the projected rows (from
     pass 1's exact covariance), written once (about 5x smaller than the vectors), and the first
     Lloyd epoch for every k (k-means++ on the reduced sample comes before). The projection is used
     only when it is measured to be as close to exact PCA as exact PCA is to itself: components
     within 0.1 degree, or within the angle between exact PCA of half the rows and of all rows when
     that is larger, and explained variance within 0.001; else pass 2 reads the vectors again and
     the fit says so (``--two-reads`` always does)
  3. reduced: more Lloyd epochs, every k updated from the same read of each block, until they stop paying
  4. reduced: the method's partition for every k (:mod:`streamproc.pipeline.methods`) and its DB/CH statistics;
     silhouette on the sample. k-means also histograms every k's distances to its centroids here
     (bounded by the last epoch's largest distances): the chosen k's outlier quantiles
  5. reduced (agglomerative, hdbscan, a sweep too wide for 4's histograms): distance histograms of
     the chosen k -> outlier quantiles
The model is committed under the lock, its clusters matched to the current model's ids (align.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import StoreError, UsageError
from ..fs import flushing, fsync_tree
from ..learn import kmeans, stats
from ..learn.model import QUANTILES, Model, normalize_rows
from ..learn.pca import PCAFit, basis_from_moments, pca_from_moments, pca_in_basis, subspace_angle
from ..options import CLASSIFIERS, DEFAULT_K, FIT_COMMIT_WAIT, LINKAGES, METRICS, SCALINGS, SELECTIONS
from ..options import PCA_SOLVERS as SOLVERS
from ..store import arrays
from ..store.manifest import ModelEntry, utc_now
from ..store.store import Store, block_ranges, make_staging_dir, open_writer, rows_per_block
from . import methods
from .runner import Runner


@dataclass
class FitOptions:
    variance: float = 0.95
    n_components: int | None = None
    solver: str = "covariance"
    scaling: str = "none"
    metric: str = "euclidean"
    ks: list[int] = field(default_factory=lambda: kmeans.parse_k_range(DEFAULT_K))
    select: str = "db"
    epochs: int = 10  # at most: epochs stop when they stop paying (--tol, --inertia-tol)
    tol: float = 1e-4
    inertia_tol: float = 1e-3
    one_read: bool | None = None  # reduce the rows from pass 1's projection (when measured close enough to
    # exact PCA); None: only when the vectors are larger than half this machine's memory (ONE_READ_WHEN)
    seed: int = 0
    sample: int = 10_000
    restarts: int = 3
    classifier: str = "softmax"
    align: bool = True  # match the clusters to the current model's and keep their ids (align.py)
    warm_start: bool = False  # start from the current model's reduction and centroids (warm.py)
    method: str = "kmeans"  # kmeans | agglomerative | hdbscan (streamproc.pipeline.methods)
    linkage: str = "ward"
    micro_clusters: int = 1000
    min_cluster_size: int = 25
    min_samples: int | None = None
    umap_components: int = 5
    silhouette_sample: int = 5000
    block_bytes: int = 16 * 2**20  # rows read per task: whole chunks adding up to about this

    def __post_init__(self) -> None:
        """Options are checked where they are built, so the library and the CLI refuse the same things."""
        if isinstance(self.ks, int | str):
            self.ks = kmeans.parse_k_range(str(self.ks))
        self.ks = sorted({int(k) for k in self.ks})
        if not self.ks and not self.warm_start:
            raise UsageError("ks (--k) is empty: give at least one k >= 2")
        if self.ks and self.ks[0] < 2:
            raise UsageError(f"ks (--k) needs every k >= 2, got {self.ks[0]}")
        for name, value, choices in (("solver (--pca-solver)", self.solver, SOLVERS),
                                     ("scaling (--scale)", self.scaling, SCALINGS),
                                     ("metric (--metric)", self.metric, METRICS),
                                     ("select (--select)", self.select, SELECTIONS),
                                     ("method (--method)", self.method, methods.METHODS),
                                     ("linkage (--linkage)", self.linkage, LINKAGES),
                                     ("classifier (--classifier)", self.classifier, CLASSIFIERS)):
            if value not in choices:
                raise UsageError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if not 0 < self.variance <= 1:
            raise UsageError(f"variance (--variance) must be in (0, 1], got {self.variance}")
        if self.n_components is not None and self.n_components < 1:
            raise UsageError(f"n_components (--components) must be >= 1, got {self.n_components}")
        if self.inertia_tol < 0 or self.tol < 0:
            raise UsageError("tol and inertia_tol (--tol, --inertia-tol) must be >= 0")
        if self.epochs < 1 or self.sample < 2 or self.restarts < 1:
            raise UsageError("epochs and restarts (--epochs, --restarts) must be >= 1 and sample (--sample) >= 2")
        if self.method == "agglomerative" and not max(self.ks) <= self.micro_clusters <= self.sample:
            raise UsageError(f"micro_clusters (--micro-clusters) {self.micro_clusters} must be at least the largest "
                             f"k ({max(self.ks)}) and at most sample (--sample, {self.sample})")
        if self.ks and self.sample < max(self.ks):
            raise UsageError(f"sample (--sample) {self.sample} is smaller than the largest k ({max(self.ks)}): "
                             "k-means++ starts from the sample, so it needs at least k rows")


@dataclass
class FitResult:
    """What ``fit`` made. Its repr is a one-line summary that says whether the model became the
    store's current one (what classify, render and report use) and, if not, how to make it so."""

    model: Model
    current: bool
    rows: int
    seconds: float
    workers: list[str]
    aligned_to: str | None = None  # the model whose ids were kept, if any
    passes: dict = field(default_factory=dict)  # what the passes did: vector reads, one-read check, epochs
    store: str = ""

    def summary(self) -> str:
        m = self.model
        if self.current:
            state = "the store's current model"
        else:
            state = (f"NOT the current model: classify, render and report keep using the current one; "
                     f"make it current with streamproc.activate_model({self.store!r}, {m.id!r}) "
                     f"(or fit with activate=True)")
        return (f"model {m.id}: k={m.k}, {m.n_components} components ({m.explained_variance:.1%} of the "
                f"variance), {self.rows:,} rows in {self.seconds:.1f} s; {state}")

    def __repr__(self) -> str:
        return f"<FitResult {self.summary()}>"

    def to_dict(self) -> dict:
        m = self.model
        return {"model": m.id, "current": self.current, "k": m.k, "n_components": m.n_components,
                "explained_variance": round(m.explained_variance, 6), "scores": m.scores, "rows": self.rows,
                "seconds": round(self.seconds, 3), "workers": self.workers,
                "cluster_ids": [int(i) for i in m.classes_], "aligned_to": self.aligned_to,
                "warm_start": bool(m.params.get("warm_start", False)),
                "method": m.params.get("method", "kmeans"), **m.extra, **self.passes}


def new_model_id() -> str:
    return datetime.now(UTC).strftime("m%Y%m%d-%H%M%S-") + secrets.token_hex(2)


# ---- block functions (module level: they travel to Dask workers) -------------------------------
def _pass1_block(block, start, shift, sample_size, total_rows, seed, basis=None, projected_path=None,
                 chunk_rows=None):
    """PCA moments and the uniform sample of one block; with a ``basis``, also the block's rows
    projected onto it (``(x - shift) @ basis``), written into the staged projected array, and the
    moments of the rows of every other chunk (``chunk_rows``) again as ``half_*``: the exact PCA of
    half the rows, to measure how far exact PCA itself moves (summed as two halves: no more products;
    float32: it only measures an angle)."""
    if basis is None:
        out = stats.moments_chunk(block, shift)
    else:  # one centred copy of the block serves the moments of both halves and the projection
        rows = stats.centred(block, shift)
        half, other = stats.moments_by_parity(rows, start, chunk_rows)
        out = stats.combine(half, other)
        out.update(half_n=half["n"], half_sum=half["sum"], half_cross=half["cross"].astype(np.float32))
        arrays.write_block(projected_path, start, rows.astype(np.float32, copy=False) @ basis)
    out.update(stats.sample_chunk(block, start, size=sample_size, total_rows=total_rows, seed=seed))
    return out


def _reduce_block(block, start, a, b, metric, reduced_path, centroid_sets):
    """Reduce one block (of vectors, or of their one-read projection), write it into the staged
    reduced array (whole chunks: each task owns its rows), and return the first Lloyd epoch's sums
    for it, from the same read."""
    z = block.astype(np.float32, copy=False) @ a
    z += b
    if metric == "cosine":
        z = normalize_rows(z)
    arrays.write_block(reduced_path, start, z)
    return kmeans.lloyd_block(z, start, centroid_sets)


def _histogram_block(z, start, centroids, upper, metric):
    [(labels, best)] = stats.nearest_in_sets(z.astype(np.float32, copy=False), [centroids.astype(np.float32)])
    return stats.histogram_chunk(stats.metric_distances(best, metric), labels, upper)


# ---- the pipeline ---------------------------------------------------------------------------
def fit(store_path: str | os.PathLike, options: FitOptions | None = None, *, k=None, scheduler: str | None = None,
        activate: bool = False, wait: float = FIT_COMMIT_WAIT, **option_values) -> FitResult:
    """Fit a model on every row committed when the fit starts, and commit it into the store.

    Options as keywords (any :class:`FitOptions` field; ``k`` is an int, a list, or ``"8:32:4"``)::

        fit("store", k=[8, 12, 16], metric="cosine", activate=True)

    or as a ready :class:`FitOptions`. The model becomes the store's current one with ``activate``, or
    when it is the first. ``wait``: seconds to wait for the store's lock at commit.
    """
    if k is not None:
        option_values["ks"] = k
    options = FitOptions(**option_values) if options is None else replace(options, **option_values)
    began = time.perf_counter()
    store = Store.open(store_path)
    rows = store.rows
    if rows == 0:
        raise StoreError(f"{store.path}: the store is empty; ingest some vectors first")
    if options.ks and rows < max(options.ks):
        raise UsageError(f"{store.path}: {rows} rows cannot make {max(options.ks)} clusters (largest --k)")
    model_id = new_model_id()
    staging = make_staging_dir(store.path, model_id)
    try:
        with Runner(scheduler) as runner:
            if options.warm_start:
                from .warm import fit_warm

                model, passes = fit_warm(store, options, runner, staging, model_id)
            else:
                model, passes = _fit_model(store, options, runner, staging, model_id)
            workers = sorted(runner.workers_seen)
        model, current, aligned_to = _commit_model(store.path, staging, model, activate=activate, wait=wait,
                                                   align=options.align)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FitResult(model, current, rows, time.perf_counter() - began, workers, aligned_to, passes, str(store_path))


def _fit_model(store: Store, options: FitOptions, runner: Runner, staging: Path,
               model_id: str) -> tuple[Model, dict]:
    """The passes, in order; returns the model and what the passes did (``FitResult.passes``)."""
    vector_ranges = block_ranges(store.rows, rows_per_block(store.manifest.chunk_rows,
                                                            store.dim * np.dtype(store.manifest.dtype).itemsize,
                                                            options.block_bytes))
    basis, decided = _projection_basis(store, options)
    pca, sample, projected_path = _pca_pass(store, options, runner, vector_ranges, basis, staging)
    one_read, in_basis = _one_read_check(pca, basis, decided, options)
    draft = _draft_model(pca, options, model_id, store, in_basis)
    sample_z = draft.transform(sample)
    if options.method == "agglomerative" and options.micro_clusters > len(sample_z):
        progress.message(f"fit: {options.micro_clusters} micro-clusters asked for, but the store's sample has "
                         f"{len(sample_z):,} rows: using {len(sample_z):,}")
        options = replace(options, micro_clusters=len(sample_z))
    seeded = options.micro_clusters if options.method == "agglomerative" else len(options.ks)
    with progress.step(f"k-means++ seeding: {seeded} values of k on {len(sample_z):,} sample rows"):
        centroid_sets = methods.init_centroid_sets(options, sample_z)
    source = projected_path if one_read["used"] else store.path / "vectors"
    reduced_path, total = _reduce_pass(draft, options, runner, source, basis if one_read["used"] else None,
                                       pca, vector_ranges, centroid_sets, staging)
    if projected_path is not None:
        shutil.rmtree(projected_path, ignore_errors=True)
    model, epochs = cluster_reduced(draft, options, runner, reduced_path, centroid_sets, total, sample_z)
    return model, {"vector_reads": 1 if one_read["used"] else 2, "one_read": one_read, "epochs": epochs}


# pass 1 -------------------------------------------------------------------------------------
# The one-read model's components must be within this many degrees (largest principal angle) of exact
# PCA's, or within the angle between exact PCA of half the rows and of all rows when that is larger:
# where the spectrum is nearly flat at the cut, exact PCA's own components move by degrees between
# halves of the same data (11-15 degrees on the 1M x 768 mixture), and a limit below that asks the
# projection to reproduce noise (benchmarks/README.md, "One read of the vectors").
ONE_READ_MAX_ANGLE = 0.1
ONE_READ_MAX_VARIANCE_GAP = 0.001  # explained variance ratio the projection may lose against exact PCA
ONE_READ_MARGIN = 0.5  # the projection keeps this many times more components than the sample says are needed
ONE_READ_GUESS_ROWS = 4  # x --sample rows (or 1 % of the rows, if more), in whole chunks, estimate the subspace
# A second read of vectors that stay in the page cache costs less than projecting every row in pass 1
# (1M x 768 in the cache: one read 2.3 s slower); from disk the second read is what costs (about 85 s
# of 219 at 10M x 768). So by default one read is tried when the vectors are larger than this
# fraction of the machine's memory.
ONE_READ_WHEN = 0.5
ONE_READ_PREDICT = 4  # skip the projection when halves of those rows predict this x the variance limit


def _projection_basis(store: Store, options: FitOptions) -> tuple[np.ndarray | None, dict]:
    """The subspace pass 1 projects every row onto, estimated from whole chunks drawn at random
    (``ONE_READ_GUESS_ROWS x --sample`` rows or 1 % of the rows), and what was decided. No basis (two
    reads) when asked for (``--two-reads``), by default when the vectors fit in the page cache
    (``ONE_READ_WHEN``), with the incremental solver, when the basis would be too wide to save much
    over the vectors, or when the chunks predict it will miss the variance limit: a basis from one half
    of them loses more than ``ONE_READ_PREDICT x`` the limit of the other half's variance (then
    writing the projection would be wasted)."""
    if options.one_read is False or options.solver != "covariance":
        return None, {"used": False, "reason": "two reads asked for"}
    if options.one_read is None and not _larger_than_memory(store):
        return None, {"used": False, "reason": f"the vectors fit in {ONE_READ_WHEN:.0%} of this machine's memory: "
                                               "a second read from the page cache costs less (--one-read forces one)"}
    chunk = store.manifest.chunk_rows
    chunks = -(-store.rows // chunk)
    wanted = min(chunks, -(-max(ONE_READ_GUESS_ROWS * options.sample, store.rows // 100) // chunk))
    picked = np.random.default_rng(options.seed).permutation(chunks)[:wanted]
    # each half's moments, summed chunk by chunk: d x d numbers held, not the rows (at 2560-d, 40k rows
    # held in float64 peaked at 2.2 GiB)
    halves, sampled, shift = [None, None], 0, None
    for j, i in enumerate(picked):
        block = store.read("vectors", i * chunk, min(store.rows, (i + 1) * chunk))
        shift = block.astype(np.float64).mean(axis=0) if shift is None else shift
        sampled += len(block)
        half, part = int(j >= len(picked) // 2), stats.moments_chunk(block, shift)
        halves[half] = part if halves[half] is None else stats.combine(halves[half], part)
    moments = stats.combine(*[m for m in halves if m is not None])
    basis = basis_from_moments(moments, shift, options.variance, options.n_components, ONE_READ_MARGIN)
    if basis.shape[1] > 0.75 * store.dim:
        return None, {"used": False, "reason": f"a basis of {basis.shape[1]} of {store.dim} dimensions saves little"}
    if wanted < chunks and halves[0] is not None and halves[1] is not None:
        # (the whole store was read: the basis is exact up to rounding)
        one = basis_from_moments(halves[0], shift, options.variance, options.n_components, ONE_READ_MARGIN)
        other = stats.moments_finalize(halves[1], shift)[1]
        exact = np.linalg.eigvalsh(other)[::-1]
        components, kept = pca_in_basis(other, one, options.variance, options.n_components)
        q = len(components)
        predicted = float(exact[:q].sum() - kept[:q].sum()) / max(exact.sum(), 1e-300)
        if predicted > ONE_READ_PREDICT * ONE_READ_MAX_VARIANCE_GAP:
            reason = (f"the sampled subspace misses variance (a basis from one half of the {sampled:,} sampled rows "
                      f"loses {predicted:.2g} of the other half's variance; limit {ONE_READ_MAX_VARIANCE_GAP})")
            progress.message(f"fit: the vectors are read twice, as the exact PCA needs on this data (one read would "
                             f"lose {predicted:.2g} of the variance, limit {ONE_READ_MAX_VARIANCE_GAP}; see "
                             "`fit --json`: one_read)")
            return None, {"used": False, "predicted_variance_gap": round(predicted, 7), "reason": reason}
    return basis.astype(np.float32), {"used": True}


def _larger_than_memory(store: Store) -> bool:
    vector_bytes = store.rows * store.dim * np.dtype(store.manifest.dtype).itemsize
    return vector_bytes > ONE_READ_WHEN * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _pca_pass(store: Store, options: FitOptions, runner: Runner, vector_ranges, basis,
              staging: Path) -> tuple[PCAFit, np.ndarray, Path | None]:
    """Pass 1 over the vectors: exact PCA moments and a uniform sample; with a basis, every row's
    projection onto it is written too (the reduced rows are then made from it, not from a second read)."""
    rows, sample_size = store.rows, min(options.sample, store.rows)
    projected_path = None
    if options.solver == "covariance":
        shift = store.read("vectors", 0, min(rows, 4096)).astype(np.float64).mean(axis=0)
        if basis is not None:
            projected_path = staging / "projected"
            _staged_array(projected_path, rows, basis.shape[1], vector_ranges)
        total = runner.reduce_blocks(store.path / "vectors", vector_ranges, _pass1_block, shift, sample_size, rows,
                                     options.seed, basis, str(projected_path) if basis is not None else None,
                                     store.manifest.chunk_rows,
                                     desc="pass 1/5 PCA" + (" + projection" if basis is not None else ""))
        pca = pca_from_moments(total, shift, options.variance, options.n_components)
    else:  # IncrementalPCA is sequential: one read in this process, the sample drawn from the same blocks
        from ..learn.streaming_pca import StreamingPCA

        estimator, total = StreamingPCA(options.variance, options.n_components, options.solver), None
        with progress.bar(rows, "pass 1/5 IncrementalPCA") as bar:
            for start, block in store.iter_blocks("vectors", block_rows=max(vector_ranges[0][1], store.dim)):
                estimator.partial_fit(block.astype(np.float32))
                part = stats.sample_chunk(block, start, size=sample_size, total_rows=rows, seed=options.seed)
                total = part if total is None else stats.combine(total, part)
                bar.update(len(block))
        pca = estimator.result_
    return pca, stats.sample_finalize(total).astype(np.float32), projected_path


def _one_read_check(pca: PCAFit, basis: np.ndarray | None, decided: dict,
                    options: FitOptions) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """Is the exact PCA of the projected rows close enough to exact PCA to reduce the rows from the
    projection? Measured against pass 1's exact covariance: its leading components against the exact
    ones (largest principal angle; the limit is ``ONE_READ_MAX_ANGLE`` or, when larger, the angle
    between exact PCA of half the rows and of all rows), and the explained variance it loses. Returns
    what was measured and, when used, the model's components and spectrum (``pca_in_basis``); when
    not, the fit says so and reads the vectors again."""
    if basis is None:
        return decided, None
    components, spectrum = pca_in_basis(pca.covariance, basis.astype(np.float64), options.variance,
                                        options.n_components)
    q, total = pca.n_components, pca.total_variance
    angle = subspace_angle(components[:q].T, pca.components.T)
    gap = float(pca.spectrum[:q].sum() - spectrum[:q].sum()) / total
    kept = float(spectrum[:len(components)].sum()) / total
    itself = _half_rows_angle(pca)
    limit = max(ONE_READ_MAX_ANGLE, itself)
    enough = options.n_components is not None or kept >= options.variance - 1e-9
    used = angle <= limit and gap <= ONE_READ_MAX_VARIANCE_GAP and enough
    check = {"used": used, "basis": int(basis.shape[1]), "max_angle_degrees": round(angle, 5),
             "angle_limit_degrees": round(limit, 5), "half_rows_angle_degrees": round(itself, 5),
             "variance_gap": round(gap, 7)}
    if not used:
        check["reason"] = (f"the projection onto {basis.shape[1]} sampled components keeps {kept:.4g} of the variance "
                           if not enough else
                           f"the PCA of the projection is {angle:.3g} degrees (limit {limit:.3g}) and {gap:.2g} of the "
                           f"variance (limit {ONE_READ_MAX_VARIANCE_GAP}) from exact PCA")
        progress.message(f"fit: {check['reason']}: reading the vectors a second time")
        return check, None
    return check, (components, spectrum)


def _half_rows_angle(pca: PCAFit) -> float:
    """How far exact PCA itself moves: the largest principal angle between the kept components of
    the rows of every other chunk (pass 1's ``half_*`` moments) and of all rows; 0 without halves."""
    moments = pca.moments
    if not moments.get("half_n") or moments["half_n"] >= moments["n"]:
        return 0.0
    half = {"n": moments["half_n"], "sum": moments["half_sum"], "cross": moments["half_cross"].astype(np.float64)}
    vectors = np.linalg.eigh(stats.moments_finalize(half, pca.shift)[1])[1][:, ::-1]
    return subspace_angle(vectors[:, :pca.n_components], pca.components.T)


def _draft_model(pca: PCAFit, options: FitOptions, model_id: str, store: Store,
                 in_basis: tuple[np.ndarray, np.ndarray] | None = None) -> Model:
    """The model without its clusters: PCA (exact, or with ``in_basis`` the exact PCA of the one-read
    projection: components and spectrum), and the scaling of the components in closed form from the spectrum."""
    components, spectrum = in_basis if in_basis is not None else (pca.components, pca.spectrum)
    variances = spectrum[:len(components)]
    scale = {"none": np.ones_like(variances),
             "global": np.full_like(variances, 1.0 / np.sqrt(max(variances.mean(), 1e-30))),
             "whiten": 1.0 / np.sqrt(np.maximum(variances, 1e-30))}[options.scaling]
    return Model(id=model_id, dim=store.dim, metric=options.metric, scaling=options.scaling, pca_mean=pca.mean,
                 pca_components=components, spectrum=spectrum, total_variance=pca.total_variance,
                 scale=scale, centroids=np.zeros((1, len(components))), quantiles=np.zeros((1, 4)),
                 cluster_sizes=np.zeros(1), cluster_mean_distance=np.zeros(1), noise_variance=0.0, scores=[],
                 params=_params(options), fit_rows=(0, store.rows))


# pass 2 -------------------------------------------------------------------------------------
def _staged_array(path: Path, rows: int, width: int, ranges) -> None:
    """An uncompressed float32 array whose chunks are the blocks of ``ranges`` (each task writes its own)."""
    arrays.create_rows(path, rows, width, ranges[0][1] - ranges[0][0])


def _reduce_pass(draft: Model, options: FitOptions, runner: Runner, source: Path, basis, pca, ranges,
                 centroid_sets, staging: Path) -> tuple[Path, dict]:
    """Pass 2: write the reduced rows once, from the vectors or (with a basis) from their projection
    (``(x - shift) @ basis @ basisᵀ @ a + b``, the basis folded into the affine map); the first
    k-means epoch is summed from the same read."""
    a, b = draft.affine()
    if basis is not None:
        a, b = basis.T @ a, (pca.shift.astype(np.float32) @ a + b).astype(np.float32)
    reduced_path = staging / "reduced"
    _staged_array(reduced_path, draft.fit_rows[1], draft.n_components, ranges)
    what = "projection" if basis is not None else "vectors"
    total = runner.reduce_blocks(source, ranges, _reduce_block, a, b, options.metric, str(reduced_path),
                                 centroid_sets, desc=f"pass 2/5 reduce ({what}) + k-means epoch 1")
    return reduced_path, total


# pass 3 -------------------------------------------------------------------------------------
# agglomerative's micro-clusters summarise the rows for the merge tree; they are not the partition
# that is chosen, and with a thousand centroids inertia keeps falling by more than --inertia-tol for
# many epochs (10 at 416k x 2560: 2x the k-means fit). Three epochs from k-means++ seeds: ward's ARI
# on digits and on the generator unchanged (benchmarks/README.md, "Methods").
MICRO_CLUSTER_EPOCHS = 3
def _lloyd_epochs(draft: Model, options: FitOptions, runner: Runner, reduced_path, ranges,
                  centroid_sets, total) -> tuple[list[np.ndarray], dict, int]:
    """Pass 3: Lloyd epochs over the reduced rows, every k updated from the same read of each block,
    until they stop paying: an epoch stops the loop when no centroid moved more than ``--tol``
    (scikit-learn's measure), or when for every k the inertia fell by less than ``--inertia-tol``
    (relative) since the epoch before or the next epoch is expected to lower it by less
    (:func:`kmeans.expected_gain`, from this epoch's sums); at most ``--epochs``
    (``MICRO_CLUSTER_EPOCHS`` for micro-clusters). Returns the
    centroids the last epoch's sums describe (so that the sums' label means are those of the returned
    centroids), those sums, and the epochs run.
    ``total`` holds the first epoch's sums when pass 2 summed them, else None."""
    feature_variance = (1.0 / draft.n_components if options.metric == "cosine"
                        else float((draft.spectrum[: draft.n_components] * draft.scale**2).mean()))
    previous = None
    epochs = options.epochs if options.method != "agglomerative" else min(options.epochs, MICRO_CLUSTER_EPOCHS)
    for epoch in range(1, epochs + 1):
        if epoch > 1 or total is None:  # (a warm start has no first epoch from pass 2)
            total = runner.reduce_blocks(reduced_path, ranges, kmeans.lloyd_block, centroid_sets,
                                         desc=f"pass 3/5 k-means epoch {epoch}")
        inertia = np.array([total[f"inertia{i}"] for i in range(len(centroid_sets))])
        new_sets, shift = kmeans.lloyd_update(total, centroid_sets, options.metric, feature_variance)
        expected = kmeans.expected_gain(total, centroid_sets, new_sets)
        if shift <= options.tol or epoch == epochs or kmeans.stopped_paying(previous, inertia, options.inertia_tol,
                                                                            expected):
            return centroid_sets, total, epoch
        centroid_sets, previous = new_sets, inertia


# passes 4 and 5 -----------------------------------------------------------------------------
def cluster_reduced(draft: Model, options: FitOptions, runner: Runner, reduced_path: Path,
                    centroid_sets: list[np.ndarray], total: dict | None, sample_z: np.ndarray) -> tuple[Model, int]:
    """Passes 3-5 on the reduced rows (also a warm start's): Lloyd epochs from ``centroid_sets``, the
    method's partition for every k scored four ways, quantiles of the chosen k. Returns the model and
    the Lloyd epochs run."""
    ranges = block_ranges(draft.fit_rows[1], rows_per_block(arrays.chunk_rows(reduced_path), draft.n_components * 4,
                                                            options.block_bytes // 4))
    with flushing(reduced_path):  # the reduced rows reach the disk while these passes read them
        centroid_sets, total, epochs = _lloyd_epochs(draft, options, runner, reduced_path, ranges, centroid_sets, total)
        # pass 4: the method's partitions (one per k) and their DB/CH statistics; every k scored four ways
        sweep = methods.run(options, runner, reduced_path, ranges, sample_z, centroid_sets, total)
        scores = _scores(sweep, sample_z[:options.silhouette_sample], options.metric)
        best = _select(scores, options.select)
        model = _quantiles_pass(draft, options, runner, reduced_path, ranges, sweep, best, scores, sample_z)
    if options.classifier == "logistic":
        model = _with_logistic(model, sample_z, sweep.sample_labels[best], options.seed)
    return model, epochs


def _quantiles_pass(draft: Model, options: FitOptions, runner: Runner, reduced_path, ranges, sweep: methods.Sweep,
                    best: int, scores: list[dict], sample_z: np.ndarray) -> Model:
    """Pass 5: distance quantiles of the chosen k (unless the method set its own thresholds, or the
    scores pass histogrammed every k); the finished model."""
    key, total, centroids = str(best), sweep.totals, sweep.centroid_sets[best]
    counts = total[f"count{key}"]
    if sweep.uppers is not None:
        upper, hist = sweep.uppers[best], {"hist": total[f"hist{key}"], "distsum": total[f"distsum{key}"]}
    else:
        upper = stats.histogram_upper(total[f"max{key}"], options.metric)
        hist = runner.reduce_blocks(reduced_path, ranges, _histogram_block, centroids, upper, options.metric,
                                    desc="pass 5/5 quantiles")
    mean_distance = hist["distsum"] / np.maximum(counts, 1)  # to the centroid, in the model's metric
    quantiles = stats.quantiles_finalize(hist, upper, QUANTILES) if sweep.quantiles is None else sweep.quantiles
    extra = {"silhouette_sample": int(min(options.silhouette_sample, len(sample_z))), **(sweep.extra or {})}
    rows = draft.fit_rows[1]
    return replace(draft, centroids=centroids, quantiles=quantiles, extra=extra, cluster_sizes=counts,
                   cluster_mean_distance=mean_distance,
                   noise_variance=float(total[f"sqdist{key}"].sum() / max(rows * draft.n_components, 1)),
                   scores=scores, created_at=utc_now())


def _with_logistic(model: Model, sample_z: np.ndarray, labels: np.ndarray, seed: int) -> Model:
    """Calibrated multinomial logistic regression on the distances to every centroid, trained on
    the sample's labels in the method's own partition (:mod:`streamproc.learn.logistic`)."""
    from ..learn.logistic import fit_calibrated

    fitted = fit_calibrated(model.distances(sample_z), labels, model.k, seed=seed)
    if fitted is None:
        return model
    coef, intercept, report = fitted
    return replace(model, logistic_coef=coef, logistic_intercept=intercept, extra={**model.extra, "classifier": report})


def _scores(sweep: methods.Sweep, silhouette_z: np.ndarray, metric: str) -> list[dict]:
    """Davies-Bouldin, Calinski-Harabasz and inertia of every k over all rows (streamed, exact), and
    the silhouette on the first rows of the uniform sample (noise rows left out)."""
    from ..learn.scores import silhouette_scores

    n = len(silhouette_z)
    keep = np.all([labels[:n] >= 0 for labels in sweep.sample_labels], axis=0)
    silhouettes = silhouette_scores(silhouette_z[keep], [labels[:n][keep] for labels in sweep.sample_labels],
                                    metric=metric)
    scores = []
    for i, k in enumerate(sweep.ks):
        key = str(i)
        means = sweep.mean_sets[i]
        scores.append({"k": k, "davies_bouldin": _finite(stats.davies_bouldin_finalize(sweep.totals, means, key)),
                       "calinski_harabasz": _finite(stats.calinski_harabasz_finalize(sweep.totals, means, key)),
                       "silhouette": _finite(silhouettes[i]), "inertia": float(sweep.totals[f"sqdist{key}"].sum())})
    return scores


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _select(scores: list[dict], by: str) -> int:
    """The index of the chosen k: lowest DB, highest CH or silhouette, or the elbow of inertia."""
    if by == "elbow":
        from ..learn.scores import elbow_index

        return elbow_index([s["k"] for s in scores], [s["inertia"] for s in scores])
    if by == "silhouette":
        return int(np.argmax([s["silhouette"] if s["silhouette"] is not None else -np.inf for s in scores]))
    if by == "db":
        values = [s["davies_bouldin"] if s["davies_bouldin"] is not None else np.inf for s in scores]
        return int(np.argmin(values))
    values = [s["calinski_harabasz"] if s["calinski_harabasz"] is not None else -np.inf for s in scores]
    return int(np.argmax(values))


def _params(options: FitOptions) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()}


def _commit_model(store_path: Path, staging: Path, model: Model, *, activate: bool, wait: float,
                  align: bool = True) -> tuple[Model, bool, str | None]:
    """Under the lock: give the clusters their ids (matched to the current model's unless ``align`` is
    off; new ones from the store's registry), save the model, move it into place and list it in the
    manifest. Returns the model with its ids, whether it is current, and the model it was aligned to."""
    from ..learn.align import assign_ids, next_free_id
    from ..store.catalog import load_model, save_model

    with open_writer(store_path, wait=wait) as writer:
        manifest = writer.manifest
        reference = load_model(writer) if align and manifest.current_model is not None else None
        if reference is not None and (reference.dim != model.dim):
            reference = None
        ids, next_id = assign_ids(model, reference, next_free_id(manifest.next_cluster_id, manifest.models))
        model = replace(model, cluster_ids=ids)
        save_model(model, staging)
        final = writer.path / "models" / model.id
        fsync_tree(staging)
        os.replace(staging, final)
        current = activate or manifest.current_model is None
        entry = ModelEntry(created_at=model.created_at, k=model.k, dim=model.dim, fit_rows=tuple(model.fit_rows),
                           cluster_ids=tuple(int(i) for i in ids))
        models = {**manifest.models, model.id: entry}
        writer.commit(replace(manifest, models=models, next_cluster_id=next_id,
                              current_model=model.id if current else manifest.current_model))
    return model, current, reference.id if reference is not None else None
