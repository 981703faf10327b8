"""``streamproc fit``: PCA -> scaling -> k-means for every k -> Davies-Bouldin/Calinski-Harabasz ->
the chosen model, committed into the store. Reads a manifest snapshot without the lock; locks only
to commit, so cron ingests go on during a long fit.

Passes over the data (each a Dask job over blocks):
  1. vectors: PCA moments + a uniform sample                         (exact PCA: one read)
  2. vectors: reduced = scale(pca(x)), written once (about 10x smaller than the vectors), and the
     first Lloyd epoch for every k (k-means++ on the reduced sample comes before)
  3. reduced: the other Lloyd epochs, every k updated from the same read of each block
  4. reduced: DB/CH statistics for every k
  5. reduced: distance histograms of the chosen k -> outlier quantiles
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
import zarr

from . import kmeans, progress, stats
from .choices import DEFAULT_K, METRICS, SCALINGS
from .errors import StoreError, UsageError
from .manifest import utc_now
from .model import QUANTILES, Model, normalize_rows
from .pca import SOLVERS, StreamingPCA  # noqa: F401
from .runner import Runner
from .store import Store, block_ranges, open_writer, rows_per_block, write_rows


@dataclass
class FitOptions:
    variance: float = 0.95
    n_components: int | None = None
    solver: str = "covariance"
    scaling: str = "none"
    metric: str = "euclidean"
    ks: list[int] = field(default_factory=lambda: kmeans.parse_k_range(DEFAULT_K))
    select: str = "db"
    epochs: int = 5
    tol: float = 1e-4
    seed: int = 0
    sample: int = 10_000
    restarts: int = 10
    classifier: str = "softmax"
    block_bytes: int = 16 * 2**20  # rows read per task: whole chunks adding up to about this

    def check(self) -> None:
        if self.solver not in SOLVERS:
            raise UsageError(f"--pca-solver must be one of {', '.join(SOLVERS)}")
        if self.scaling not in SCALINGS:
            raise UsageError(f"--scale must be one of {', '.join(SCALINGS)}")
        if self.metric not in METRICS:
            raise UsageError(f"--metric must be one of {', '.join(METRICS)}")
        if not 0 < self.variance <= 1:
            raise UsageError(f"--variance must be in (0, 1], got {self.variance}")
        if self.select not in ("db", "ch"):
            raise UsageError("--select must be db or ch")
        if self.epochs < 1 or self.sample < 2 or self.restarts < 1:
            raise UsageError("--epochs and --restarts must be >= 1 and --sample >= 2")
        if self.sample < max(self.ks):
            raise UsageError(f"--sample {self.sample} is smaller than the largest --k ({max(self.ks)}): "
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
                "seconds": round(self.seconds, 3), "workers": self.workers}


def new_model_id() -> str:
    return datetime.now(UTC).strftime("m%Y%m%d-%H%M%S-") + secrets.token_hex(2)


# ---- block functions (module level: they travel to Dask workers) -------------------------------
def _pass1_block(block, start, shift, sample_size, total_rows, seed):
    out = stats.moments_chunk(block, shift)
    out.update(stats.sample_chunk(block, start, size=sample_size, total_rows=total_rows, seed=seed))
    return out


def _reduce_block(block, start, a, b, metric, reduced_path, centroid_sets):
    """Reduce one block of vectors, write it into the staged reduced array (whole chunks: each task
    owns its rows), and return the first Lloyd epoch's sums for it, from the same read."""
    z = block.astype(np.float32, copy=False) @ a
    z += b
    if metric == "cosine":
        z = normalize_rows(z)
    write_rows(Path(reduced_path), zarr.open_array(reduced_path, mode="r+"), start, z)
    return kmeans.lloyd_block(z, start, centroid_sets)


def _scores_block(z, start, centroid_sets, mean_sets):
    return stats.scores_chunk(z.astype(np.float32, copy=False), [c.astype(np.float32) for c in centroid_sets],
                              mean_sets)


def _histogram_block(z, start, centroids, upper, metric):
    [(labels, best)] = stats.nearest_in_sets(z.astype(np.float32, copy=False), [centroids.astype(np.float32)])
    distances = best / 2.0 if metric == "cosine" else np.sqrt(best)
    return stats.histogram_chunk(distances, labels, upper)


# ---- the pipeline ---------------------------------------------------------------------------
def fit(store_path: str | os.PathLike, options: FitOptions = None, *, scheduler: str | None = None,
        activate: bool = False, wait: float = 0.0) -> FitResult:
    """Fit a model on every row committed when the fit starts, and commit it into the store.

    The store's first model becomes its current one; a later model does so only with
    ``activate=True`` (or later, :func:`streamproc.activate_model`). ``result.current`` and the
    result's repr say which happened."""
    options = options or FitOptions()
    options.check()
    began = time.perf_counter()
    store = Store.open(store_path)
    rows = store.rows
    if rows == 0:
        raise StoreError(f"{store.path}: the store is empty; ingest some vectors first")
    if rows < max(options.ks):
        raise UsageError(f"{store.path}: {rows} rows cannot make {max(options.ks)} clusters (largest --k)")
    model_id = new_model_id()
    staging = store.path / "models" / f".staging-{model_id}-{os.getpid()}"
    try:
        with Runner(scheduler) as runner:
            model = _fit_model(store, options, runner, staging, model_id)
            workers = sorted(runner.workers_seen)
        model.save(staging)
        current = _commit_model(store.path, staging, model, activate=activate, wait=wait)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FitResult(model, current, rows, time.perf_counter() - began, workers, str(store_path))


def _fit_model(store: Store, options: FitOptions, runner: Runner, staging: Path, model_id: str) -> Model:
    rows, dim = store.rows, store.dim
    vectors_path = store.path / "vectors"
    itemsize = np.dtype(store.manifest.dtype).itemsize
    vector_ranges = block_ranges(rows, rows_per_block(store.manifest.chunk_rows, dim * itemsize, options.block_bytes))
    sample_size = min(options.sample, rows)

    # pass 1: PCA statistics and a uniform sample
    pca = StreamingPCA(options.variance, options.n_components, options.solver)
    if options.solver == "covariance":
        shift = store.read("vectors", 0, min(rows, 4096)).astype(np.float64).mean(axis=0)
        total = runner.reduce_blocks(vectors_path, vector_ranges, _pass1_block, shift, sample_size, rows,
                                     options.seed, desc="pass 1/5 PCA")
        pca.set_moments(total, shift)
    else:  # IncrementalPCA is sequential: one read in this process, the sample drawn from the same blocks
        total = None
        with progress.bar(rows, "pass 1/5 IncrementalPCA") as bar:
            for start, block in store.iter_blocks("vectors", block_rows=max(vector_ranges[0][1], dim)):
                pca.partial_fit(block.astype(np.float32))
                part = stats.sample_chunk(block, start, size=sample_size, total_rows=rows, seed=options.seed)
                total = part if total is None else stats.combine(total, part)
                bar.update(len(block))
    sample = stats.sample_finalize(total).astype(np.float32)

    # scaling of the reduced components, in closed form from the PCA spectrum
    variances = pca.explained_variance_
    scale = {"none": np.ones_like(variances),
             "global": np.full_like(variances, 1.0 / np.sqrt(max(variances.mean(), 1e-30))),
             "whiten": 1.0 / np.sqrt(np.maximum(variances, 1e-30))}[options.scaling]
    draft = Model(id=model_id, dim=dim, metric=options.metric, scaling=options.scaling, pca_mean=pca.mean_,
                  pca_components=pca.components_, spectrum=pca.spectrum_, total_variance=pca.total_variance_,
                  scale=scale, centroids=np.zeros((1, pca.n_components_)), quantiles=np.zeros((1, 4)),
                  cluster_sizes=np.zeros(1), cluster_mean_distance=np.zeros(1), noise_variance=0.0, scores=[],
                  params=_params(options), fit_rows=(0, rows))

    # k-means++ on the reduced sample, for every k
    sample_z = draft.transform(sample)
    with progress.step(f"k-means++ seeding: {len(options.ks)} values of k on {len(sample_z):,} sample rows"):
        centroid_sets = kmeans.init_centroid_sets(sample_z, options.ks, seed=options.seed, metric=options.metric,
                                                  restarts=options.restarts)

    # pass 2: write the reduced rows once; the first k-means epoch is summed from the same read
    a, b = draft.affine()
    reduced_path = staging / "reduced"
    reduced = zarr.create_array(reduced_path, shape=(rows, draft.n_components), dtype="float32",
                                chunks=(vector_ranges[0][1] - vector_ranges[0][0], draft.n_components),
                                compressors=None, overwrite=True)
    total = runner.reduce_blocks(vectors_path, vector_ranges, _reduce_block, a, b, options.metric,
                                 str(reduced_path), centroid_sets, desc="pass 2/5 reduce + k-means epoch 1")

    # pass 3: the other k-means epochs, every k updated from the same read of each block
    reduced_ranges = block_ranges(rows, rows_per_block(reduced.chunks[0], draft.n_components * 4,
                                                       options.block_bytes // 4))
    feature_variance = (1.0 / draft.n_components if options.metric == "cosine"
                        else float((pca.explained_variance_ * scale**2).mean()))
    for epoch in range(options.epochs):
        if epoch > 0:
            total = runner.reduce_blocks(reduced_path, reduced_ranges, kmeans.lloyd_block, centroid_sets,
                                         desc=f"pass 3/5 k-means epoch {epoch + 1}")
        new_sets, shift = kmeans.lloyd_update(total, centroid_sets, options.metric, feature_variance)
        if shift <= options.tol or epoch == options.epochs - 1:
            break  # keep centroid_sets: the labels these epoch sums describe
        centroid_sets = new_sets
    mean_sets = [stats.label_means(total, str(i)) for i in range(len(options.ks))]

    # pass 4: Davies-Bouldin and Calinski-Harabasz for every k
    total = runner.reduce_blocks(reduced_path, reduced_ranges, _scores_block, centroid_sets, mean_sets,
                                 desc="pass 4/5 scores")
    scores = []
    for i, k in enumerate(options.ks):
        key = str(i)
        inertia = float(total[f"sqdist{key}"].sum())
        scores.append({"k": k, "davies_bouldin": _finite(stats.davies_bouldin_finalize(total, mean_sets[i], key)),
                       "calinski_harabasz": _finite(stats.calinski_harabasz_finalize(total, mean_sets[i], key)),
                       "inertia": inertia})
    best = _select(scores, options.select)
    key = str(best)
    centroids = centroid_sets[best]
    counts = total[f"count{key}"]
    upper = total[f"max{key}"]
    if options.metric == "cosine":
        upper = upper ** 2 / 2.0
    upper = upper * (1 + 1e-6) + 1e-12

    # pass 5: distance quantiles of the chosen k
    hist = runner.reduce_blocks(reduced_path, reduced_ranges, _histogram_block, centroids, upper, options.metric,
                                desc="pass 5/5 quantiles")
    mean_distance = hist["distsum"] / np.maximum(counts, 1)  # to the centroid, in the model's metric
    model = replace(draft, centroids=centroids, quantiles=stats.quantiles_finalize(hist, upper, QUANTILES),
                    cluster_sizes=counts, cluster_mean_distance=mean_distance,
                    noise_variance=float(total[f"sqdist{key}"].sum() / max(rows * draft.n_components, 1)),
                    scores=scores, created_at=utc_now())
    if options.classifier == "logistic":
        model = _with_logistic(model, sample_z, options.seed)
    return model


def _with_logistic(model: Model, sample_z: np.ndarray, seed: int) -> Model:
    """Multinomial logistic regression on the distances to every centroid (trained on the sample)."""
    from sklearn.linear_model import LogisticRegression

    d = model.distances(sample_z)
    labels = d.argmin(axis=1)
    if len(np.unique(labels)) < 2:
        return model
    clf = LogisticRegression(max_iter=500, random_state=seed).fit(d, labels)
    coef = np.zeros((model.k, model.k))
    intercept = np.full(model.k, -1e9)
    coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_])
    intercept[clf.classes_] = clf.intercept_ if len(clf.classes_) > 2 else np.array([-clf.intercept_[0], clf.intercept_[0]])
    return replace(model, logistic_coef=coef, logistic_intercept=intercept)


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _select(scores: list[dict], by: str) -> int:
    if by == "db":
        values = [s["davies_bouldin"] if s["davies_bouldin"] is not None else np.inf for s in scores]
        return int(np.argmin(values))
    values = [s["calinski_harabasz"] if s["calinski_harabasz"] is not None else -np.inf for s in scores]
    return int(np.argmax(values))


def _params(options: FitOptions) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()}


def _commit_model(store_path: Path, staging: Path, model: Model, *, activate: bool, wait: float) -> bool:
    """Under the lock: move the staged model into place and list it in the manifest."""
    with open_writer(store_path, wait=wait) as writer:
        final = writer.path / "models" / model.id
        writer.fsync_tree(staging)
        os.replace(staging, final)
        manifest = writer.manifest
        current = activate or manifest.current_model is None
        models = {**manifest.models, model.id: {"created_at": model.created_at, "k": model.k, "watermark": 0,
                                                "fit_rows": list(model.fit_rows), "dim": model.dim}}
        writer.commit(replace(manifest, models=models, current_model=model.id if current else manifest.current_model))
    return current
