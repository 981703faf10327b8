"""Label 1M x 768 rows with a fitted model: rows/s and peak RSS, side by side with a plain zarr read
of the same rows, each in its own subprocess. classify runs twice: on the rows the model was fitted
on (read from the reduced rows its fit stored) and as on rows ingested after the fit (from the
vectors).

    python benchmarks/bench_classify.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil

from _common import DATA, commit, gib, run, store_path

CLASSIFY = """
import json, sys
from streamproc.pipeline.classify import classify
r = classify(sys.argv[1])
print(json.dumps({"rows": r.labelled}))
"""

PLAIN_READ = """
import json, sys, zarr
a = zarr.open_array(sys.argv[1] + "/vectors", mode="r")
n, step, total = a.shape[0], a.chunks[0] * 4, 0.0
for s in range(0, n, step):
    total += float(a[s:s + step][:, 0].sum())
print(json.dumps({"rows": n}))
"""

FIT = """
import json, sys
from streamproc.pipeline.fit import FitOptions, fit
r = fit(sys.argv[1], FitOptions(ks=[20]), activate=True)
print(json.dumps({"model": r.model.id}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    source = store_path(args.rows, args.dim)
    store = DATA / f"bench-classify-{args.rows}"
    if not (store / "manifest.json").exists():
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(source, store)
        run(FIT, store)
    print(f"bench_classify: label {args.rows:,} x {args.dim} float32 (k=20); commit {commit()}")
    print(f"command: python benchmarks/bench_classify.py --rows {args.rows}")
    read = run(PLAIN_READ, store)
    _rewind(store)
    fitted = run(CLASSIFY, store)
    # rows ingested after the fit are read from the vectors: the same rows, with the model's stored
    # reduced rows moved aside for the run
    _rewind(store)
    model = json.loads((store / "manifest.json").read_text())["current_model"]
    reduced = store / "models" / model / "reduced"
    reduced.rename(reduced.with_name("reduced-aside"))
    try:
        vectors = run(CLASSIFY, store)
    finally:
        reduced.with_name("reduced-aside").rename(reduced)
    print(f"{'':48} {'wall s':>7} {'rows/s':>10} {'vs read':>8} {'peak RSS':>10}")
    for name, r in (("plain zarr read of the vectors", read),
                    ("classify, fitted rows (the fit's reduced rows)", fitted),
                    ("classify, new rows (the vectors)", vectors)):
        print(f"{name:48} {r['wall']:7.1f} {args.rows / r['wall']:10,.0f} {r['wall'] / read['wall']:7.2f}x "
              f"{gib(r['peak_rss']):>10}" + (f"  failed: {r['error']}" if "error" in r else ""))


def _rewind(store) -> None:
    """Every model's watermark back to 0: each run labels every row."""
    manifest = json.loads((store / "manifest.json").read_text())
    for entry in manifest["models"].values():
        entry["watermark"] = 0
    (store / "manifest.json").write_text(json.dumps(manifest))


if __name__ == "__main__":
    main()
