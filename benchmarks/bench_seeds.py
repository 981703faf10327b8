"""Is the default fit robust to k-means local optima? The README's data (``streamproc synth --dim 768``,
20 clusters; 50k rows here) for several data seeds, each ingested into a store and fitted with the
default options: chosen k, ARI against the true labels and fit time per seed.

    python benchmarks/bench_seeds.py [--rows 50000] [--seeds 0,1,2,3,4] [--fit-seeds 0] [--restarts N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamproc.io.synth import Mixture  # noqa: E402
from streamproc.pipeline.fit import FitOptions, fit  # noqa: E402
from streamproc.pipeline.ingest import ingest  # noqa: E402


def one_store(tmp: Path, rows: int, dim: int, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    x, y = Mixture(dim=dim, clusters=20, seed=seed).batch(0, rows)
    folder = Path(tempfile.mkdtemp(dir=tmp))
    np.save(folder / "x.npy", x)
    ingest(folder / "store", [folder / "x.npy"])
    return folder / "store", x, y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--fit-seeds", default="0")
    parser.add_argument("--restarts", type=int, default=FitOptions.restarts)
    args = parser.parse_args()
    print(f"bench_seeds: {args.rows:,} x {args.dim}, 20 true clusters, default fit options, restarts {args.restarts}")
    print(f"{'data seed':>9} {'fit seed':>8} {'k':>3} {'ARI':>6} {'fit s':>6} {'reads':>5} {'epochs':>6} {'angle':>7}")
    aris, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in map(int, args.seeds.split(",")):
            store, x, y = one_store(Path(tmp), args.rows, args.dim, seed)
            for fit_seed in map(int, args.fit_seeds.split(",")):
                began = time.perf_counter()
                result = fit(store, FitOptions(seed=fit_seed, restarts=args.restarts), activate=True)
                model, passes = result.model, result.passes
                wall = time.perf_counter() - began
                ari = adjusted_rand_score(y, model.predict(x))
                aris.append(ari)
                walls.append(wall)
                angle = passes["one_read"].get("max_angle_degrees", float("nan"))
                print(f"{seed:9d} {fit_seed:8d} {model.k:3d} {ari:6.3f} {wall:6.1f} {passes['vector_reads']:5d} "
                      f"{passes['epochs']:6d} {angle:7.3f}", flush=True)
    print(f"min ARI {min(aris):.3f}, mean {np.mean(aris):.3f}; mean fit {np.mean(walls):.1f} s")


if __name__ == "__main__":
    main()
