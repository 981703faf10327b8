"""Low-dimensional embeddings of a sample (numpy in, numpy out): UMAP (umap-learn, pynndescent
neighbours) and t-SNE (openTSNE). The map of every row places the other rows from the sample's
embedding (:mod:`streamproc.learn.neighbours`); HDBSCAN clusters a UMAP of the sample.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

EXACT_KNN_MAX_ROWS = 50_000  # up to here the neighbours are found exactly with numpy (BLAS) distances


def exact_neighbours(sample: np.ndarray, n_neighbors: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each row's ``n_neighbors`` nearest rows (itself first), exactly, in
    blocks of rows (at most about 64 MB of distances at a time)."""
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    with config_context(working_memory=64):
        search = NearestNeighbors(n_neighbors=n_neighbors, metric=metric, algorithm="brute").fit(sample)
        distances, indices = search.kneighbors(sample)
    return indices, distances.astype(np.float32)


def umap_embedding(sample: np.ndarray, *, metric: str, seed: int, components: int = 2, min_dist: float = 0.1,
                   tqdm_kwds: dict | None = None) -> np.ndarray:
    """UMAP (15 neighbours) of the sample rows to ``components`` dimensions.

    Up to ``EXACT_KNN_MAX_ROWS`` rows the 15 nearest neighbours are computed exactly here and handed
    to umap-learn: pynndescent's approximate search costs ~30 s of numba compilation in every new
    process, more than the whole fit on 20k rows (43 s against 12 s; benchmarks/README.md, "Map sample")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's and umap's notes about threads and n_jobs
        import umap

        n_neighbors = min(15, len(sample) - 1)
        knn = {}
        if 4096 < len(sample) <= EXACT_KNN_MAX_ROWS:  # (umap-learn itself is exact below 4096 rows)
            knn["precomputed_knn"] = exact_neighbours(sample, n_neighbors, metric)
        reducer = umap.UMAP(n_components=components, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                            metric=metric, tqdm_kwds=tqdm_kwds or {"disable": True}, **knn)
        return np.asarray(reducer.fit_transform(sample))


def tsne_embedding(sample: np.ndarray, *, metric: str, seed: int) -> np.ndarray:
    """openTSNE (perplexity 30, or less on tiny samples) of the sample rows to 2 dimensions."""
    from openTSNE import TSNE

    perplexity = min(30.0, (len(sample) - 1) / 3.0)
    # below 10k rows openTSNE uses Barnes-Hut, whose threads spin-wait: on a busy 2-core machine
    # 2 jobs took 54 s for 800 rows against 6 s for 1; the FFT method above 10k rows uses them well
    jobs = 1 if len(sample) < 10_000 else os.cpu_count() or 1
    return np.asarray(TSNE(perplexity=perplexity, metric=metric, n_jobs=jobs, random_state=seed).fit(sample))
