"""End to end on more rows than RAM: 10M x 768 (29 GB as float32) on a 24 GiB machine.

Generates the rows batch by batch, ingesting and deleting each generated file before the next (the
disk holds the store, not a second copy), then fit (k in {8, 12, 16, 20, 24, 32}) -> classify ->
project (UMAP on the default 20k sample, every row placed) -> render, then (not a step) one read of the
vectors through the fit's read path, the reference of the fit's target. Each step runs in its own subprocess;
the table gives its wall time and the peak RSS of its process tree. Runs for most of an hour at
10M rows: start it in the background, never in CI.

    python benchmarks/bench_scale.py [--rows 10000000] [--dtype float32|float16] [--batch-rows 500000]

Beside wall time and peak RSS, each step's bytes read (all read calls, and those from the disk) come
from the step's /proc/self/io.

Each step's result is also appended as a JSON line to ``benchmarks/.data/scale-<rows>-<dtype>.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
from _common import DATA, ROOT, commit, gib, run

KS = "8,12,16,20,24,32"

# every step reports the bytes its process read: all read() calls (rchar, page cache included) and
# those that reached the disk (read_bytes), from /proc/self/io at its end
IO = """
def io_read():
    fields = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    return {"rchar": int(fields["rchar"]), "read_bytes": int(fields["read_bytes"])}
"""

INGEST = IO + """
import json, sys
from pathlib import Path
from streamproc.pipeline.ingest import ingest
r = ingest(sys.argv[1], [Path(sys.argv[2])], dtype=sys.argv[3])
if r.failed:
    raise SystemExit(r.batches[0].error)
print(json.dumps({"rows": r.batches[0].rows, **io_read()}))
"""

FIT = IO + """
import json, sys
sys.stderr = open(sys.argv[3], "w", buffering=1)  # the passes' "done in N s" lines, printed after the step
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.learn.kmeans import parse_k_range
r = fit(sys.argv[1], FitOptions(ks=parse_k_range(sys.argv[2])), activate=True)
print(json.dumps({"model": r.model.id, "k": r.model.k, "components": r.model.n_components, "seconds": r.seconds,
                  "vector_reads": r.passes["vector_reads"], "one_read": r.passes["one_read"], "epochs": r.passes["epochs"],
                  **io_read()}))
"""

ARI = """
import json, sys, numpy as np
from sklearn.metrics import adjusted_rand_score
from streamproc.store.store import Store
store = Store.open(sys.argv[1])
labels = np.concatenate([b for _, b in store.iter_blocks(f"models/{store.manifest.current_model}/labels")])
print(json.dumps({"ari": adjusted_rand_score(np.load(sys.argv[2]), labels)}))
"""

CLASSIFY = IO + """
import json, sys
from streamproc.pipeline.classify import classify
r = classify(sys.argv[1])
print(json.dumps({"labelled": r.labelled, **io_read()}))
"""

PROJECT = IO + """
import json, sys
from streamproc.pipeline.project import project
r = project(sys.argv[1], method="umap")  # the default sample (20k rows)
print(json.dumps({**r.to_dict(), **io_read()}))
"""

# the reference for the fit's target: one pass over the vectors through the fit's own read path (the
# Runner's tasks, whole-chunk blocks), touching every value; run last, after render, so it reads the disk
READ = IO + """
import json, sys
from streamproc.pipeline.runner import Runner
from streamproc.store.store import Store, block_ranges, rows_per_block
store = Store.open(sys.argv[1])
ranges = block_ranges(store.rows, rows_per_block(store.manifest.chunk_rows, store.dim * 4))
with Runner() as runner:
    total = runner.reduce_blocks(store.path / "vectors", ranges, lambda b, start: {"n": len(b), "sum": b.sum(axis=0)})
print(json.dumps({"rows": int(total["n"]), **io_read()}))
"""

RENDER = IO + """
import json, sys
from streamproc.view.render import render
r = render(sys.argv[1], sys.argv[2], width=1200, height=1200)
print(json.dumps({"rows": r["rows"], **io_read()}))
"""


def generate(path, mixture, index: int, rows: int) -> np.ndarray:
    """One batch file of ``rows`` rows, written 50k rows at a time (the generator's own memory stays
    small); returns the rows' true clusters."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, mixture.dim))
    truth = []
    for j, start in enumerate(range(0, rows, 50_000)):
        x, labels = mixture.batch(index * 1000 + j, min(50_000, rows - start))
        out[start:start + len(x)] = x
        truth.append(labels.astype(np.int8))
    out.flush()
    del out
    return np.concatenate(truth)


def _gb(r: dict, key: str) -> str:
    return f"{r[key] / 1e9:.1f} GB" if key in r else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--batch-rows", type=int, default=500_000)
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards (it is deleted by default)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from streamproc.io.synth import Mixture

    name = f"scale-{args.rows}-{args.dtype}"
    store, inbox, log = DATA / name, DATA / f"{name}-inbox", DATA / f"{name}.jsonl"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    log.unlink(missing_ok=True)
    print(f"bench_scale: {args.rows:,} x {args.dim} {args.dtype} ({args.rows * args.dim * 4 / 1e9:.1f} GB as float32), "
          f"commit {commit()}")
    print(f"command: python benchmarks/bench_scale.py --rows {args.rows} --dtype {args.dtype} "
          f"--batch-rows {args.batch_rows}", flush=True)
    results = {}

    def record(step: str, r: dict) -> None:
        results[step] = r
        with open(log, "a") as f:
            f.write(json.dumps({"step": step, **r}) + "\n")
        status = f"failed: {r['error']}" if "error" in r else ""
        print(f"  {step:9} wall {r['wall']:8.1f} s  peak RSS {gib(r['peak_rss'])}  read {_gb(r, 'rchar')} "
              f"(disk {_gb(r, 'read_bytes')}) {status}", flush=True)
        if "error" in r:
            raise SystemExit(1)

    mixture = Mixture(dim=args.dim, clusters=20, seed=0)
    truth = []
    ingest_wall = generate_wall = 0.0
    ingest_peak = 0
    ingest_read = {"rchar": 0, "read_bytes": 0}
    for i, start in enumerate(range(0, args.rows, args.batch_rows)):
        path = inbox / f"batch-{i:05d}.npy"
        began = time.perf_counter()
        truth.append(generate(path, mixture, i, min(args.batch_rows, args.rows - start)))
        generate_wall += time.perf_counter() - began
        r = run(INGEST, store, path, args.dtype)
        path.unlink()
        if "error" in r:
            record("ingest", r)
        ingest_wall += r["wall"]
        ingest_peak = max(ingest_peak, r["peak_rss"])
        ingest_read = {key: ingest_read[key] + r[key] for key in ingest_read}
        print(f"    batch {i}: {start + r['rows']:,} rows stored, {r['wall']:.1f} s, "
              f"{shutil.disk_usage(DATA).free / 1e9:.0f} GB free", flush=True)
    print(f"  (generating the rows took {generate_wall:.0f} s, not counted)")
    record("ingest", {"wall": ingest_wall, "peak_rss": ingest_peak, "batches": i + 1, **ingest_read})
    fit_log = DATA / f"{name}-fit.log"
    record("fit", run(FIT, store, KS, fit_log, env={"STREAMPROC_PROGRESS_AFTER": "0"}))
    for line in fit_log.read_text().splitlines():
        if ": done" in line:
            print(f"    {line}", flush=True)
    record("classify", run(CLASSIFY, store))
    np.save(inbox / "truth.npy", np.concatenate(truth))
    ari = run(ARI, store, inbox / "truth.npy")
    print(f"  ARI of the stored labels against the generator's clusters: {ari.get('ari', ari)}", flush=True)
    record("project", run(PROJECT, store))
    record("render", run(RENDER, store, DATA / f"{name}.png"))
    reference = run(READ, store)
    print(f"  reference, not a step: one read of the vectors through the fit's read path, {reference['wall']:.1f} s "
          f"(disk {_gb(reference, 'read_bytes')})", flush=True)

    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"\nstore on disk: {size / 1e9:.1f} GB; model k={results['fit'].get('k')}, "
          f"{results['fit'].get('components')} components")
    print("| step | wall s | rows/s | peak RSS | read (all) | read from disk |\n|---|---|---|---|---|---|")
    for step, r in results.items():
        print(f"| {step} | {r['wall']:.1f} | {args.rows / r['wall']:,.0f} | {gib(r['peak_rss'])} | {_gb(r, 'rchar')} "
              f"| {_gb(r, 'read_bytes')} |")
    print(f"| total | {sum(r['wall'] for r in results.values()):.1f} | | | | |")
    print(f"| (reference: one read of the vectors) | {reference['wall']:.1f} | {args.rows / reference['wall']:,.0f} "
          f"| {gib(reference['peak_rss'])} | {_gb(reference, 'rchar')} | {_gb(reference, 'read_bytes')} |")
    shutil.rmtree(inbox, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
