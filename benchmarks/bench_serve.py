"""``streamproc serve`` under load: tile latency (cold = first request of a tile, rendered; warm = asked
again), ``/api/predict`` latency for 1 and 1,000 vectors and requests/s, ``/api/near``, start-up time
(tile index build) and the server's peak RSS — on stores of N labelled, projected points (2-D vectors
whose PCA map is the points themselves: the same stores as bench_render), and predict on a 768-d model.

    python benchmarks/bench_serve.py [--points 1000000,10000000] [--predict-rows 50000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
from _common import DATA, ROOT, commit, gib, run
from bench_render import MAKE_POINTS

MAKE_VECTORS = """
import json, sys
from pathlib import Path
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.project import project
from streamproc.io.synth import Mixture, write_batches
rows, folder = int(sys.argv[1]), Path(sys.argv[2])
write_batches(folder / "in", mixture=Mixture(dim=768, clusters=20, seed=0), rows=rows, batch_rows=25_000)
ingest(folder / "store", [folder / "in"])
fit(folder / "store", FitOptions(ks=[20], sample=10_000))
classify(folder / "store")
project(folder / "store", method="pca")
print(json.dumps({"rows": rows}))
"""


def made(folder, code, n):
    manifest = folder / "store" / "manifest.json"
    if not manifest.exists() or '"projection_watermark"' not in manifest.read_text():
        shutil.rmtree(folder, ignore_errors=True)
        out = run(code, n, folder)
        assert "error" not in out, out
    return folder / "store"


class Server:
    """``streamproc serve`` in a subprocess, its RSS sampled every 50 ms."""

    def __init__(self, store):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        began = time.perf_counter()
        self.proc = psutil.Popen([sys.executable, "-m", "streamproc", "serve", str(store), "--port", str(self.port)],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.peak, self.running = 0, True
        threading.Thread(target=self._sample, daemon=True).start()
        while True:
            try:
                get(self.base + "/api/info")
                break
            except OSError:
                assert self.proc.poll() is None, "serve died"
                time.sleep(0.1)
        self.startup = time.perf_counter() - began

    def _sample(self):
        while self.running and self.proc.poll() is None:
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.proc.send_signal(2)
        self.proc.wait(timeout=30)


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        return r.read()


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def pct(ms):
    return f"p50 {np.percentile(ms, 50):7.1f} ms  p95 {np.percentile(ms, 95):7.1f} ms  (n={len(ms)})"


def tiles_with_points(store, info, zooms, per_zoom, seed=0):
    """Tiles that hold points, per zoom: the tiles of randomly chosen stored points."""
    import zarr

    from streamproc.pipeline.project import projection_path
    from streamproc.store.store import Store

    s = Store.open(store)
    xy = zarr.open_array(s.path / projection_path(s, info["model"]), mode="r")[: 200_000]
    e = info["extent"]
    u, v = (xy[:, 0] - e["x0"]) / e["span"], (e["y1"] - xy[:, 1]) / e["span"]
    rng = np.random.default_rng(seed)
    out = {}
    for z in zooms:
        tiles = {(int(u[i] * 2**z), int(v[i] * 2**z)) for i in rng.integers(0, len(xy), 20 * per_zoom)}
        out[z] = sorted(tiles)[:per_zoom]
    return out


def bench_tiles(store, n):
    server = Server(store)
    try:
        info = json.loads(get(server.base + "/api/info"))
        print(f"\n{n:,} points: start-up (index build + first tile) {server.startup:.1f} s")
        zooms = [0, 1, 2, 3, 4, 6, 8, 11, 14]
        chosen = tiles_with_points(store, info, zooms, per_zoom=12)
        cold, warm = [], []
        for z in zooms:
            zc = [timed(get, f"{server.base}/api/tiles/{z}/{x}/{y}.png?color={c}")
                  for x, y in chosen[z] for c in ("cluster", "batch")]
            zw = [timed(get, f"{server.base}/api/tiles/{z}/{x}/{y}.png?color={c}")
                  for _ in range(3) for x, y in chosen[z] for c in ("cluster", "batch")]
            cold += zc
            warm += zw
            print(f"  zoom {z:2d}: cold {pct(zc)}   warm {pct(zw)}")
        print(f"  all tiles: cold {pct(cold)}   warm {pct(warm)}")
        rng = np.random.default_rng(1)
        e = info["extent"]
        near = [timed(get, f"{server.base}/api/near?x={e['x0'] + rng.random() * e['span']}"
                           f"&y={e['y1'] - rng.random() * e['span']}&n=5") for _ in range(100)]
        print(f"  /api/near n=5: {pct(near)}")
        predict_figures(server, info["dim"])
    finally:
        server.stop()
    print(f"  server peak RSS {gib(server.peak)}")


def predict_figures(server, dim):
    rng = np.random.default_rng(2)
    first = timed(post, server.base + "/api/predict", {"vectors": rng.standard_normal((1, dim)).tolist()})
    print(f"  /api/predict dim {dim}, first request after start-up (loads the model, builds the map's index): "
          f"{first:.1f} ms")
    one = [timed(post, server.base + "/api/predict", {"vectors": rng.standard_normal((1, dim)).tolist()})
           for _ in range(200)]
    many = [timed(post, server.base + "/api/predict", {"vectors": rng.standard_normal((1000, dim)).tolist()})
            for _ in range(20)]
    print(f"  /api/predict dim {dim}, 1 vector:      {pct(one)}")
    bare = [timed(post, server.base + "/api/predict", {"vectors": rng.standard_normal((1000, dim)).tolist(),
                                                         "neighbours": 0}) for _ in range(20)]
    print(f"  /api/predict dim {dim}, 1,000 vectors: {pct(many)}")
    print(f"  /api/predict dim {dim}, 1,000 vectors, no neighbours: {pct(bare)}")
    body = {"vectors": rng.standard_normal((1, dim)).tolist()}
    for clients in (1, 4):
        began, count = time.perf_counter(), 400
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda _: post(server.base + "/api/predict", body), range(count)))
        print(f"  /api/predict 1 vector, {clients} client(s): {count / (time.perf_counter() - began):.0f} requests/s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", default="1000000,10000000")
    parser.add_argument("--predict-rows", type=int, default=50_000)
    args = parser.parse_args()
    print(f"bench_serve: commit {commit()}; command: python benchmarks/bench_serve.py --points {args.points} "
          f"--predict-rows {args.predict_rows}")
    for n in (int(p) for p in args.points.split(",") if p):
        bench_tiles(made(DATA / f"render-{n}", MAKE_POINTS, n), n)
    store = made(DATA / f"serve-768-{args.predict_rows}", MAKE_VECTORS, args.predict_rows)
    server = Server(store)
    try:
        print(f"\n{args.predict_rows:,} x 768 store (k = 20, PCA map): start-up {server.startup:.1f} s")
        predict_figures(server, 768)
    finally:
        server.stop()
    print(f"  server peak RSS {gib(server.peak)}")


if __name__ == "__main__":
    main()
