"""Render 10M points (2-D positions and labels in a store) to 1000x1000, and the projection's cost:
UMAP fit on a 50k sample, placement throughput for 1M rows, side by side with umap-learn's own
``transform`` on a 50k slice, with the kNN-overlap@15 of both on held-out rows.

    python benchmarks/bench_render.py [--points 10000000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil

from _common import DATA, commit, gib, run, store_path

MAKE_POINTS = """
import json, sys, numpy as np
from pathlib import Path
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.classify import classify
from streamproc.pipeline.project import project
n, folder = int(sys.argv[1]), Path(sys.argv[2])
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
centres = rng.uniform(-10, 10, (12, 2))
for i, start in enumerate(range(0, n, 2_000_000)):
    m = min(2_000_000, n - start)
    lab = rng.integers(0, 12, m)
    spread = rng.uniform(0.3, 1.5, 12)[lab, None]
    np.save(folder / f"p{i:03d}.npy", (centres[lab] + rng.standard_normal((m, 2)) * spread).astype(np.float32))
ingest(folder / "store", sorted(folder.glob("p*.npy")))
fit(folder / "store", FitOptions(ks=[12], n_components=2, sample=20000))
classify(folder / "store")
project(folder / "store", method="pca")
print(json.dumps({"rows": n}))
"""

RENDER = """
import json, sys
from streamproc.view.render import render
r = render(sys.argv[1], sys.argv[2], width=1000, height=1000)
print(json.dumps({"rows": r["rows"]}))
"""

PROJECT = """
import json, sys, time
from streamproc.pipeline.project import project
r = project(sys.argv[1], method="umap", sample=50_000)
print(json.dumps(r.to_dict()))
"""

UMAP_TRANSFORM = """
import json, sys, time, warnings, numpy as np, zarr
warnings.filterwarnings("ignore")
from sklearn.neighbors import NearestNeighbors
from streamproc.store.catalog import load_model
from streamproc.store.store import Store
import umap
store = Store.open(sys.argv[1]); model = load_model(store)
entry = store.manifest.models[model.id].projection
base = store.path / "models" / model.id / entry.array
sample_z = zarr.open_array(str(base) + "-sample", mode="r")[:]
reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit(sample_z)
rows = slice(store.rows - 50_000, store.rows)
z = model.transform(store.read("vectors", rows.start, rows.stop))
t = time.perf_counter(); theirs = reducer.transform(z); seconds = time.perf_counter() - t
ours = zarr.open_array(str(base), mode="r")[rows]
held = np.arange(0, 50_000, 10)  # 5,000 held-out rows (the sample was drawn from the fit rows)
def overlap(high, low, k=15):
    a = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high, return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(low).kneighbors(low, return_distance=False)[:, 1:]
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(a, b)]))
print(json.dumps({"umap_rows_per_s": 50_000 / seconds, "overlap_umap": overlap(z[held], theirs[held]),
                  "overlap_ours": overlap(z[held], ours[held])}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-render", action="store_true", help="only the projection part")
    args = parser.parse_args()
    print(f"bench_render: commit {commit()}; command: python benchmarks/bench_render.py --points {args.points} "
          f"--rows {args.rows}")
    folder = DATA / f"render-{args.points}"
    manifest = folder / "store" / "manifest.json"
    if not manifest.exists() or '"current_model": null' in manifest.read_text():
        shutil.rmtree(folder, ignore_errors=True)
        made = run(MAKE_POINTS, args.points, folder)
        assert "error" not in made, made
    r = None if args.skip_render else run(RENDER, folder / "store", DATA / "render.png")
    if r is not None:
        print(f"render {args.points:,} points to 1000x1000: wall {r['wall']:.1f} s, peak RSS {gib(r['peak_rss'])}"
          + (f"  failed: {r['error']}" if "error" in r else ""))

    classify_store = DATA / f"bench-classify-{args.rows}"
    source = classify_store if (classify_store / "manifest.json").exists() else store_path(args.rows, 768)
    manifest = json.loads((source / "manifest.json").read_text())
    for entry in manifest["models"].values():  # place every row again on every run of the benchmark
        entry.pop("projection", None)
        entry["projection_watermark"] = 0
    (source / "manifest.json").write_text(json.dumps(manifest))
    p = run(PROJECT, source)
    if "error" in p:
        print(f"project failed: {p['error']}")
        return
    u = run(UMAP_TRANSFORM, source)
    print(f"projection of {args.rows:,} x 768 rows (model's reduced space):")
    print(f"  UMAP fit on 50,000-row sample: {p['fit_seconds']:.1f} s; whole project run {p['wall']:.1f} s, "
          f"peak RSS {gib(p['peak_rss'])}")
    if "error" in u:
        print(f"  umap transform failed: {u['error']}")
        return
    print(f"  {'':34} {'rows/s':>10} {'kNN-overlap@15':>15}")
    print(f"  {'streamproc placement (IVF kNN)':34} {p['rows_per_s']:10,.0f} {u['overlap_ours']:15.3f}")
    print(f"  {'umap-learn transform (50k slice)':34} {u['umap_rows_per_s']:10,.0f} {u['overlap_umap']:15.3f}")
    print(f"  ratio: {p['rows_per_s'] / u['umap_rows_per_s']:.0f}x the rows/s, "
          f"{u['overlap_ours'] / u['overlap_umap']:.2f}x the overlap")


if __name__ == "__main__":
    main()
