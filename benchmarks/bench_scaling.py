"""Which scaling should `fit` use by default? ARI against known labels, on real data sets that ship
inside scikit-learn's wheel and on the generator, for streamproc (each --scale) and the in-memory
scikit-learn pipeline (PCA(0.95) [+ StandardScaler] + MiniBatchKMeans per k, k by Davies-Bouldin).

    python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamproc.io.synth import Mixture  # noqa: E402
from streamproc.pipeline.fit import FitOptions, fit  # noqa: E402
from streamproc.pipeline.ingest import ingest  # noqa: E402


def sklearn_pipeline(x, ks, whiten, seed=0):
    z = PCA(0.95, random_state=seed).fit_transform(x)
    if whiten:
        z = StandardScaler().fit_transform(z)
    best = None
    for k in ks:
        labels = MiniBatchKMeans(k, random_state=seed, n_init=3).fit_predict(z)
        db = davies_bouldin_score(z, labels)
        if best is None or db < best[0]:
            best = (db, k, labels)
    return best[2], best[1]


def streamproc_labels(x, ks, scaling, tmp, seed=0):
    folder = Path(tempfile.mkdtemp(dir=tmp))
    np.save(folder / "x.npy", x.astype(np.float32))
    store = folder / "store"
    ingest(store, [folder / "x.npy"], chunk_rows=256)
    result = fit(store, FitOptions(scaling=scaling, ks=ks, seed=seed))
    model = result.model
    labels = model.predict(x.astype(np.float32))
    return labels, model.k


def data_sets():
    yield "digits (64-d, 10 classes)", *datasets.load_digits(return_X_y=True)
    yield "wine (13-d, 3 classes)", *datasets.load_wine(return_X_y=True)
    yield "breast_cancer (30-d, 2)", *datasets.load_breast_cancer(return_X_y=True)
    yield "iris (4-d, 3 classes)", *datasets.load_iris(return_X_y=True)
    mix = Mixture(dim=384, clusters=20, seed=1)
    x, y = mix.batch(0, 20_000)
    yield "generator (384-d, 20)", x, y


def main():
    ks = list(range(2, 33, 2))
    print(f"k range {ks[0]}..{ks[-1]} step 2, k chosen by min Davies-Bouldin; ARI vs known labels (chosen k)")
    print(f"{'data':28} {'sp none':>12} {'sp whiten':>12} {'skl no-whiten':>14} {'skl whiten':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, y in data_sets():
            cells = []
            for scaling in ("none", "whiten"):
                labels, k = streamproc_labels(x, ks, scaling, tmp)
                cells.append(f"{adjusted_rand_score(y, labels):.3f} ({k})")
            for whiten in (False, True):
                labels, k = sklearn_pipeline(x, ks, whiten)
                cells.append(f"{adjusted_rand_score(y, labels):.3f} ({k})")
            print(f"{name:28} {cells[0]:>12} {cells[1]:>12} {cells[2]:>14} {cells[3]:>12}", flush=True)


if __name__ == "__main__":
    main()
