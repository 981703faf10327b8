"""Fit on 1M x 768 float32 (20-cluster mixture), k in {8, 12, 16, 20, 24, 32}: streamproc against the
in-memory scikit-learn pipeline (with and without whitening), streaming scikit-learn and dask-ml,
each in its own subprocess, in one run. Each contender's wall time and peak RSS cover its whole
pipeline from files on disk to the chosen k (streamproc: the `fit` alone; its ARI is computed
afterwards in another process, outside the measurement).

Warm: before each run, the contender's input (the store's vectors, or the .npy) is read once, so
that every contender starts from the page cache (on this machine the cache loses pages between runs:
a cold start cost the fit 5-9 s). With ``--repeat N`` the contenders run N rounds in turn and each
figure is the median of its N runs (walls here vary by +-10 % from run to run).

    python benchmarks/bench_fit.py [--rows 1000000] [--only streamproc] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import commit, gib, npy_path, run, store_path

KS = [8, 12, 16, 20, 24, 32]

STREAMPROC = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
r = fit(sys.argv[1], FitOptions(ks=%r))
print(json.dumps({"model": r.model.id, "k": r.model.k, "components": r.model.n_components, "fit_seconds": r.seconds}))
""" % (KS,)

# ARI of a fitted model, in a process of its own after the fit: the contender's time and memory are
# the fit alone (labelling every row back and holding all labels is not part of fitting)
STREAMPROC_ARI = """
import json, sys, numpy as np
from sklearn.metrics import adjusted_rand_score
from streamproc.store.catalog import load_model
from streamproc.store.store import Store
store = Store.open(sys.argv[1]); model = load_model(store, sys.argv[2]); truth = np.load(sys.argv[3])
pred = np.concatenate([model.predict(b) for _, b in store.iter_blocks("vectors")])
print(json.dumps({"ari": adjusted_rand_score(truth, pred)}))
"""

SKLEARN_MEMORY = """
import json, sys, numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import davies_bouldin_score, adjusted_rand_score
x = np.load(sys.argv[1]); truth = np.load(sys.argv[2]); whiten = sys.argv[3] == "1"
z = PCA(0.95, random_state=0).fit_transform(x)
if whiten:
    z = StandardScaler().fit_transform(z)
best = None
for k in %r:
    lab = MiniBatchKMeans(k, random_state=0, n_init=3, batch_size=4096).fit_predict(z)
    db = davies_bouldin_score(z, lab)
    if best is None or db < best[0]:
        best = (db, k, lab)
print(json.dumps({"ari": adjusted_rand_score(truth, best[2]), "k": best[1], "components": z.shape[1]}))
""" % (KS,)

SKLEARN_STREAMING = """
import json, sys, numpy as np
from sklearn.decomposition import IncrementalPCA
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score
x = np.load(sys.argv[1], mmap_mode="r"); truth = np.load(sys.argv[2]); step = 50_000
ipca = IncrementalPCA(n_components=128)
for a in range(0, len(x), step):
    ipca.partial_fit(x[a:a + step])
c = int(np.searchsorted(np.cumsum(ipca.explained_variance_ratio_), 0.95) + 1)
kms = {k: MiniBatchKMeans(k, random_state=0, batch_size=4096) for k in %r}
for a in range(0, len(x), step):
    z = ipca.transform(x[a:a + step])[:, :c]
    for km in kms.values():
        km.partial_fit(z)
# DB per k needs the labels of all rows: one more streamed pass, keeping only the labels
from sklearn.metrics import davies_bouldin_score
best = None
zs = np.concatenate([ipca.transform(x[a:a + step])[:, :c].astype(np.float32) for a in range(0, len(x), step)])
for k, km in kms.items():
    lab = km.predict(zs.astype(km.cluster_centers_.dtype))
    db = davies_bouldin_score(zs, lab)
    if best is None or db < best[0]:
        best = (db, k, lab)
print(json.dumps({"ari": adjusted_rand_score(truth, best[2]), "k": best[1], "components": c}))
""" % (KS,)

DASK_ML = """
import json, sys, numpy as np, dask.array as da
from dask_ml.decomposition import PCA
from dask_ml.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score
x = da.from_array(np.load(sys.argv[1], mmap_mode="r"), chunks=(50_000, -1)); truth = np.load(sys.argv[2])
pca = PCA(n_components=128, svd_solver="tsqr").fit(x)
c = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.95) + 1)
z = pca.transform(x)[:, :c].persist()
best = None
for k in (20,):  # dask-ml's k-means|| costs ~140 s a k here; one k shows its quality and speed
    km = KMeans(n_clusters=k, random_state=0, init_max_iter=2, oversampling_factor=2).fit(z)
    lab = np.asarray(km.labels_)
    best = (k, lab)
print(json.dumps({"ari": adjusted_rand_score(truth, best[1]), "k": best[0], "components": c, "note": "k=20 only"}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--only", help="comma-separated contenders to run")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each figure is the median of its runs")
    args = parser.parse_args()
    data = npy_path(args.rows, args.dim)
    labels = data.with_suffix(".labels.npy")
    store = store_path(args.rows, args.dim)
    contenders = {
        "streamproc (default options)": (STREAMPROC, [store, labels]),
        "sklearn in-memory, whitened": (SKLEARN_MEMORY, [data, labels, "1"]),
        "sklearn in-memory, not whitened": (SKLEARN_MEMORY, [data, labels, "0"]),
        "sklearn streaming (IPCA + MBKMeans)": (SKLEARN_STREAMING, [data, labels]),
        "dask-ml (PCA tsqr + KMeans||, k=20)": (DASK_ML, [data, labels]),
    }
    if args.only:
        wanted = args.only.split(",")
        contenders = {k: v for k, v in contenders.items() if any(w in k for w in wanted)}
    print(f"bench_fit: {args.rows:,} x {args.dim} float32, 20-cluster mixture, k in {KS}; commit {commit()}")
    print(f"command: python benchmarks/bench_fit.py --rows {args.rows}" + (f" --only {args.only}" if args.only else "")
          + (f" --repeat {args.repeat}" if args.repeat > 1 else ""))
    runs = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, (code, cargs) in contenders.items():
            _warm(store / "vectors" if code is STREAMPROC else data)
            r = run(code, *cargs, env={"PYTHONPATH": str(store.parents[2])})
            if code is STREAMPROC and "model" in r:
                r["ari"] = run(STREAMPROC_ARI, store, r["model"], labels, env={"PYTHONPATH": str(store.parents[2])})["ari"]
            runs[name].append(r)
            print(f"  ran {name}: {r}", file=sys.stderr, flush=True)
    results = {name: _median(rs) for name, rs in runs.items()}
    if args.repeat > 1:
        for name, rs in runs.items():
            walls = ", ".join(f"{r['wall']:.1f}" for r in rs)
            print(f"  {name}: walls {walls} s")
    ref = results.get("sklearn in-memory, not whitened", {}).get("wall")
    print(f"{'contender':40} {'wall s':>8} {'vs in-mem':>9} {'peak RSS':>10} {'ARI':>6} {'k':>3} {'comps':>5}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:40} {r['wall']:8.1f} {'':>9} {gib(r['peak_rss']):>10}  failed: {r['error'][:60]}")
            continue
        ratio = f"{r['wall'] / ref:.2f}x" if ref else "-"
        print(f"{name:40} {r['wall']:8.1f} {ratio:>9} {gib(r['peak_rss']):>10} {r['ari']:6.3f} {r['k']:3d} {r['components']:5d}")


def _warm(path: Path) -> None:
    """Read every file under ``path`` (or the file) once, into the page cache."""
    for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def _median(rs: list[dict]) -> dict:
    """The run with the median wall (its other figures with it); a failed run if any failed."""
    failed = [r for r in rs if "error" in r]
    if failed:
        return failed[0]
    return sorted(rs, key=lambda r: r["wall"])[(len(rs) - 1) // 2] | {"peak_rss": max(r["peak_rss"] for r in rs)}


if __name__ == "__main__":
    main()
