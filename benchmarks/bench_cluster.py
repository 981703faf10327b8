"""fit and classify on a local 2-worker dask.distributed cluster against the in-process default, on the
same store: wall time, peak RSS of every process, and whether the models and labels are identical.

    python benchmarks/bench_cluster.py [--rows 1000000]

The cluster is a real `dask scheduler` and two `dask worker --nthreads 1` processes on 127.0.0.1 (the
same two cores the in-process run uses as two threads).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from _common import DATA, ROOT, commit, gib, run, store_path, tree_memory

FIT = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
r = fit(sys.argv[1], FitOptions(ks=[8, 12, 16, 20, 24, 32]), scheduler=sys.argv[2] or None)
print(json.dumps({"model": r.model.id, "k": r.model.k, "workers": r.workers}))
"""

CLASSIFY = """
import json, sys
from streamproc.pipeline.classify import classify
r = classify(sys.argv[1], sys.argv[3], scheduler=sys.argv[2] or None)
print(json.dumps({"labelled": r.labelled, "workers": r.workers}))
"""


class PeakSampler:
    """Peak memory of each of some processes (with their children, see ``tree_memory``), sampled
    every 50 ms in a thread."""

    def __init__(self, procs: dict[str, int]):
        self.procs = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.peaks = dict.fromkeys(procs, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                self.peaks[name] = max(self.peaks[name], tree_memory(proc))
            time.sleep(0.05)

    def __enter__(self):
        self.peaks = dict.fromkeys(self.procs, 0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_cluster(logs: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {"scheduler": subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                            "--dashboard-address", ":0", "--no-show"], env=env, cwd=ROOT,
                                           stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)}
    for i in range(2):
        procs[f"worker {i}"] = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                                 "--memory-limit", "0", "--name", f"w{i}"], env=env, cwd=ROOT,
                                                stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT)
    from distributed import Client

    deadline = time.time() + 60
    while True:
        try:
            with Client(address, timeout="2s") as client:
                if len(client.scheduler_info()["workers"]) == 2:
                    return address, procs
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("the cluster did not start; see " + str(logs))
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    store = store_path(args.rows, args.dim)
    logs = DATA / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"bench_cluster: fit (k in 8..32) and classify {args.rows:,} x {args.dim}; commit {commit()}")
    print(f"command: python benchmarks/bench_cluster.py --rows {args.rows}")

    local_fit = run(FIT, store, "")
    local_classify = run(CLASSIFY, store, "", local_fit["model"])
    address, procs = start_cluster(logs)
    try:
        sampler = PeakSampler({name: p.pid for name, p in procs.items()})
        with sampler:
            cluster_fit = run(FIT, store, address)
        fit_peaks = dict(sampler.peaks)
        with sampler:
            cluster_classify = run(CLASSIFY, store, address, cluster_fit["model"])
        classify_peaks = dict(sampler.peaks)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=30)
    for r in (local_fit, local_classify, cluster_fit, cluster_classify):
        if "error" in r:
            raise SystemExit(f"failed: {r['error']}")

    from streamproc.store.catalog import load_model
    from streamproc.store.store import Store

    s = Store.open(store)
    a, b = load_model(s, local_fit["model"]), load_model(s, cluster_fit["model"])
    same_model = (a.k == b.k and a.n_components == b.n_components
                  and np.allclose(np.abs(a.pca_components), np.abs(b.pca_components), atol=1e-4)
                  and np.allclose(a.centroids, b.centroids, atol=1e-3))
    labels_a = s.read(f"models/{a.id}/labels", 0, s.rows)
    labels_b = s.read(f"models/{b.id}/labels", 0, s.rows)
    print(f"{'':10} {'where':12} {'wall s':>7} {'vs local':>9}  peak RSS")
    for step, local, remote, peaks in (("fit", local_fit, cluster_fit, fit_peaks),
                                       ("classify", local_classify, cluster_classify, classify_peaks)):
        print(f"{step:10} {'in-process':12} {local['wall']:7.1f} {1:8.2f}x  {gib(local['peak_rss'])}")
        others = ", ".join(f"{name} {gib(rss)}" for name, rss in peaks.items())
        print(f"{step:10} {'2 workers':12} {remote['wall']:7.1f} {remote['wall'] / local['wall']:8.2f}x  "
              f"client {gib(remote['peak_rss'])}, {others}")
    print(f"same model: {same_model} (k {a.k} vs {b.k}); identical labels: {bool(np.array_equal(labels_a, labels_b))}; "
          f"workers used: {', '.join(cluster_fit['workers'])}")


if __name__ == "__main__":
    main()
