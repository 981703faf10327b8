"""Shared benchmark helpers: run a contender in its own subprocess, measure wall time and the peak
memory of its process tree (sampled every 50 ms), and build the 1M x 768 data once.

The memory of a tree is the RSS of the contender's process plus the USS (private memory) of each
of its children. Summing the children's RSS instead counts pages a forked child shares with its
parent twice: a short-lived ``lscpu`` that joblib forks from a 1 GiB process made one run read
1.98 GiB for a process that never held more than 1.01 GiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAMPROC_BENCH_DATA", ROOT / "benchmarks" / ".data"))


def run(code: str, *args: str, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python -c code args`` and return its last stdout line parsed as JSON, plus wall and peak RSS
    (killed, with an error, after ``timeout`` seconds)."""
    began = time.perf_counter()
    proc = psutil.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc))
        if timeout is not None and time.perf_counter() - began > timeout:
            proc.kill()
            proc.communicate()
            return {"error": f"stopped after {timeout:.0f} s", "wall": time.perf_counter() - began, "peak_rss": peak}
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["failed"])[-1], "wall": wall, "peak_rss": peak}
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    return {**result, "wall": wall, "peak_rss": peak}


def tree_memory(proc: psutil.Process) -> int:
    """RSS of ``proc`` plus the private memory (USS) of its children, in bytes."""
    try:
        total = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0
    for child in children:
        try:
            total += child.memory_full_info().uss
        except psutil.Error:
            pass  # gone already
    return total


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def npy_path(rows: int, dim: int, clusters: int = 20, seed: int = 0) -> Path:
    """A .npy of the generator's rows (written batch by batch), with the true labels beside it."""
    path = DATA / f"mix-{rows}x{dim}-k{clusters}-s{seed}.npy"
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    from streamproc.io.synth import Mixture

    DATA.mkdir(parents=True, exist_ok=True)
    mix = Mixture(dim=dim, clusters=clusters, seed=seed)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, dim))
    labels = np.empty(rows, np.int32)
    step = 50_000
    for i, start in enumerate(range(0, rows, step)):
        x, y = mix.batch(i, min(step, rows - start))
        out[start:start + len(x)] = x
        labels[start:start + len(x)] = y
    out.flush()
    del out
    np.save(path.with_suffix(".labels.npy"), labels)
    os.replace(tmp, path)
    return path


def store_path(rows: int, dim: int, clusters: int = 20) -> Path:
    """A store holding :func:`npy_path`'s rows (ingested once, reused)."""
    store = DATA / f"store-{rows}x{dim}-k{clusters}"
    if not (store / "manifest.json").exists():
        sys.path.insert(0, str(ROOT))
        from streamproc.pipeline.ingest import ingest

        ingest(store, [npy_path(rows, dim, clusters)])
    return store


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"
