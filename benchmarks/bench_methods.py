"""fit --method kmeans|agglomerative|hdbscan and project --method tsne: quality on real data, and
time and memory at the seed's shape (416k x 2560 float32 CNN descriptors) beside scikit-learn in memory.

    python benchmarks/bench_methods.py quality
    python benchmarks/bench_methods.py scale [--rows 416000] [--dim 2560] [--sklearn-rows 20000,40000]

quality: ARI against the known labels and against the k-means default, for every method and linkage,
on data sets that ship in scikit-learn's wheel and on the generator (k by DB over 2..32); and the
logistic classifier (trained on the method's partition, temperature-calibrated) against
nearest-centroid, on the held-out fifth of the sample: accuracy against the partition and mean
confidence.

scale: the rows are generated batch by batch into one .npy (never all in memory) and ingested once;
each fit and the t-SNE map run in their own subprocess (wall time, peak RSS of the process tree);
scikit-learn's AgglomerativeClustering, DBSCAN and TSNE run in memory on growing subsets of the
PCA-reduced rows until one fails or passes its time limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, commit, gib, npy_path, run

sys.path.insert(0, str(ROOT))

KS = list(range(2, 33))
METHODS = [("kmeans", {}),
           ("ward", {"method": "agglomerative", "linkage": "ward"}),
           ("average", {"method": "agglomerative", "linkage": "average"}),
           ("complete", {"method": "agglomerative", "linkage": "complete"}),
           ("average cosine", {"method": "agglomerative", "linkage": "average", "metric": "cosine"}),
           ("hdbscan umap-5", {"method": "hdbscan", "umap_components": 5}),
           ("hdbscan reduced", {"method": "hdbscan", "umap_components": 0})]


def data_sets():
    from sklearn import datasets

    from streamproc.io.synth import Mixture

    yield "digits (64-d, 10)", *datasets.load_digits(return_X_y=True)
    yield "wine (13-d, 3)", *datasets.load_wine(return_X_y=True)
    yield "breast_cancer (30-d, 2)", *datasets.load_breast_cancer(return_X_y=True)
    yield "iris (4-d, 3)", *datasets.load_iris(return_X_y=True)
    yield "generator (384-d, 20)", *Mixture(dim=384, clusters=20, seed=1).batch(0, 20_000)


def quality() -> None:
    from sklearn.metrics import adjusted_rand_score as ari

    from streamproc.pipeline.fit import FitOptions, fit
    from streamproc.pipeline.ingest import ingest

    print(f"commit {commit()}; k by lowest DB over 2..32; ARI of the labels classify stores (--classifier "
          "logistic) against the truth and against k-means; on the held-out fifth of the sample: the candidate "
          "kept, accuracy against the method's partition of the regression, of nearest-centroid and of the "
          "kept one, and its mean confidence")
    print(f"{'data':24} {'method':16} {'k':>3} {'ARI true':>8} {'vs kmeans':>9} {'kept':>8} {'logistic':>8} "
          f"{'nearest':>8} {'acc':>6} {'conf':>6} {'noise':>6} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, y in data_sets():
            folder = Path(tempfile.mkdtemp(dir=tmp))
            np.save(folder / "x.npy", x.astype(np.float32))
            ingest(folder / "store", [folder / "x.npy"], chunk_rows=256)
            base = None
            for label, kw in METHODS:
                options = FitOptions(ks=KS, classifier="logistic", micro_clusters=min(1000, len(x) // 2),
                                     min_cluster_size=max(5, min(25, len(x) // 100)), **kw)
                began = time.perf_counter()
                try:
                    model = fit(folder / "store", options).model
                except Exception as exc:  # e.g. HDBSCAN finds one cluster only
                    print(f"{name:24} {label:16} failed: {exc}")
                    continue
                seconds = time.perf_counter() - began
                labels = model.predict(x.astype(np.float32))
                base = labels if base is None else base
                c = model.extra.get("classifier", {})
                noise = model.extra.get("noise_fraction")
                print(f"{name:24} {label:16} {model.k:>3} {ari(y, labels):8.3f} {ari(base, labels):9.3f} "
                      f"{c.get('used', '-')[:8]:>8} {c.get('logistic_accuracy', float('nan')):8.3f} "
                      f"{c.get('nearest_centroid_accuracy', float('nan')):8.3f} {c.get('accuracy', float('nan')):6.3f} "
                      f"{c.get('mean_confidence', float('nan')):6.3f} "
                      f"{'' if noise is None else f'{noise:.3f}':>6} {seconds:6.1f}", flush=True)


# ---- scale ---------------------------------------------------------------------------------------
INGEST = """
import json, sys
from pathlib import Path
from streamproc.pipeline.ingest import ingest
r = ingest(sys.argv[1], [Path(sys.argv[2])])
print(json.dumps({"rows": r.batches[0].rows}))
"""

FIT = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
kw = json.loads(sys.argv[2])
r = fit(sys.argv[1], FitOptions(ks=[8, 12, 16, 20, 24, 32], **kw), activate=True)
m = r.model
print(json.dumps({"model": m.id, "k": m.k, "components": m.n_components, "seconds": r.seconds, **m.extra}))
"""

PROJECT = """
import json, sys
from streamproc.pipeline.project import project
r = project(sys.argv[1], method="tsne")
print(json.dumps(r.to_dict()))
"""

SKLEARN = """
import json, sys, time
import numpy as np
from sklearn.decomposition import PCA
x = np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[3])].astype(np.float32)
z = PCA(0.95, random_state=0).fit_transform(x)
began = time.perf_counter()
if sys.argv[2] == "agglomerative":
    from sklearn.cluster import AgglomerativeClustering
    AgglomerativeClustering(20, linkage="ward").fit(z)
elif sys.argv[2] == "dbscan":
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import NearestNeighbors
    eps = float(np.median(NearestNeighbors(n_neighbors=10).fit(z[:2000]).kneighbors(z[:2000])[0][:, -1]))
    DBSCAN(eps=eps, min_samples=10).fit(z)
else:
    from sklearn.manifold import TSNE
    TSNE(random_state=0).fit_transform(z)
print(json.dumps({"seconds": time.perf_counter() - began, "components": z.shape[1]}))
"""


FITS = {"kmeans": {}, "ward": {"method": "agglomerative"},
        "average-cosine": {"method": "agglomerative", "linkage": "average", "metric": "cosine"},
        "hdbscan": {"method": "hdbscan", "min_cluster_size": 50}}


def scale(rows: int, dim: int, fits: list[str], sklearn_rows: list[int], limit: float, tsne: bool = True) -> None:
    npy = npy_path(rows, dim)
    store = npy.with_name(f"methods-store-{rows}x{dim}")
    if not (store / "manifest.json").exists():
        r = run(INGEST, store, npy)
        print(f"ingest {rows:,} x {dim}: {r['wall']:.1f} s, {gib(r['peak_rss'])}", flush=True)
    print(f"commit {commit()}; {rows:,} x {dim} float32; k in 8..32 (6 values); load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    import json

    for label in fits:
        r = run(FIT, store, json.dumps(FITS[label]))
        print(f"fit {label:30} {r['wall']:7.1f} s  {gib(r['peak_rss'])}  k={r.get('k')}  "
              f"{r.get('error', '')}", flush=True)
    if tsne:
        r = run(PROJECT, store)
        print(f"project --method tsne{'':17} {r['wall']:7.1f} s  {gib(r['peak_rss'])}  fit on the sample "
              f"{r.get('fit_seconds', float('nan')):.1f} s  {r.get('error', '')}", flush=True)
    for method in ("agglomerative", "dbscan", "tsne"):
        for n in sklearn_rows:
            r = run(SKLEARN, npy, method, n, timeout=limit)
            print(f"scikit-learn {method:14} {n:>8,} rows  {r['wall']:7.1f} s  {gib(r['peak_rss'])}  "
                  f"{r.get('seconds', float('nan')):.1f} s in the method  {r.get('error', '')}", flush=True)
            if "error" in r:
                break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["quality", "scale"])
    parser.add_argument("--rows", type=int, default=416_000)
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--fits", default=",".join(FITS), help="which fits to run, of " + ",".join(FITS))
    parser.add_argument("--sklearn-rows", default="10000,20000,40000,80000")
    parser.add_argument("--limit", type=float, default=900, help="seconds before a scikit-learn run is stopped")
    parser.add_argument("--no-tsne", action="store_true", help="skip project --method tsne")
    args = parser.parse_args()
    if args.what == "quality":
        quality()
    else:
        scale(args.rows, args.dim, args.fits.split(","), [int(n) for n in args.sklearn_rows.split(",") if n], args.limit,
              tsne=not args.no_tsne)


if __name__ == "__main__":
    main()
