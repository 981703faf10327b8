"""``streamproc embed``: texts -> vectors with a local sentence encoder, committed exactly as ``ingest``
commits (each file one batch, idempotent, crash-safe); the texts and ids are stored beside the vectors.

Each file is read twice: once to check every text (cheap, so a bad row fails the file before any
encoding), then in slices that are encoded while the previous slice is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, StoreError, UsageError
from ..io import encoders
from ..io.readers import Slice
from ..io.texts import TEXT_FORMATS, bad_rows, read_texts
from ..store.store import StoreWriter
from .ingest import IngestReport, ingest_files

SHOWN_BAD_ROWS = 10


@dataclass
class EmbedReport:
    ingest: IngestReport
    encoder: dict
    texts: int
    encode_seconds: float
    seconds: float

    def to_dict(self) -> dict:
        return {**self.ingest.to_dict(), "encoder": self.encoder, "texts": self.texts,
                "texts_per_s": round(self.texts / self.seconds, 1) if self.texts else 0.0,
                "encode_seconds": round(self.encode_seconds, 3), "seconds": round(self.seconds, 3)}


def embed(
    store_path: str | os.PathLike,
    paths: list[str | os.PathLike],
    *,
    text_column: str,
    id_column: str | None = None,
    encoder: str | None = None,
    batch_size: int = 64,
    skip_bad_rows: bool = False,
    dtype: str = "float32",
    chunk_rows: int | None = None,
    min_age: float = 0.0,
    wait: float = 0.0,
) -> EmbedReport:
    """Embed the texts of every file of ``paths`` and commit each file as one batch of ``store_path``."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    began = time.perf_counter()
    name, model_dir, recorded = encoders.locate(encoder)
    sha = encoders.verified_weights(name, model_dir, recorded)
    identity = f"encoder={sha[:16]}"
    options_key = ";".join(["embed", identity, f"text_column={text_column}",
                            *([f"id_column={id_column}"] if id_column else []),
                            *(["skip_bad_rows"] if skip_bad_rows else [])])
    loaded: list[encoders.Encoder] = []
    counts = {"texts": 0, "encode_seconds": 0.0}
    skipped: dict[str, int] = {}

    def the_encoder() -> encoders.Encoder:  # loaded once, and only if some file needs encoding
        if not loaded:
            loaded.append(encoders.load_encoder(encoder))
        return loaded[0]

    def check(writer: StoreWriter) -> None:
        for batch in writer.manifest.batches if writer.manifest else []:
            theirs = next((part for part in batch.options.split(";") if part.startswith("encoder=")), None)
            if theirs and theirs != identity:
                raise StoreError(f"{writer.path}: its texts were embedded by another encoder (weights "
                                 f"{theirs[8:]}…, batch {batch.id}); --encoder {name} has weights {sha[:16]}…: "
                                 "use a new store for another encoder")

    def read(path: Path):
        total, bad, shown = _check_file(path, text_column, id_column)
        if bad and not skip_bad_rows:
            rows = ", ".join(map(str, shown)) + (", …" if bad > len(shown) else "")
            raise InputError(f"{path}: {bad} row(s) with empty or non-string text in column {text_column!r}: "
                             f"row {rows} (rows counted from 0; --skip-bad-rows leaves them out)")
        if total - bad == 0:
            raise InputError(f"{path}: no texts to embed" + (f" ({bad} bad rows left out)" if bad else " (0 rows)"))
        skipped[str(path)] = bad
        model = the_encoder()
        for part in read_texts(path, text_column, id_column):
            keep = np.ones(len(part.texts), dtype=bool)
            keep[bad_rows(part.texts)] = False
            texts = [t for t, k in zip(part.texts, keep) if k]
            if not texts:
                continue
            t0 = time.perf_counter()
            vectors = model.encode(texts, batch_size=batch_size)
            counts["encode_seconds"] += time.perf_counter() - t0
            counts["texts"] += len(texts)
            yield Slice(part.row, vectors, None if part.ids is None else part.ids[keep], np.array(texts, dtype=str))

    report = ingest_files(store_path, paths, read, options_key, formats=TEXT_FORMATS, dtype=dtype,
                          chunk_rows=chunk_rows, min_age=min_age, wait=wait, check=check)
    for result in report.batches:
        if result.status == "committed":
            result.dropped += skipped.get(result.source, 0)
    info = loaded[0].describe() if loaded else {"name": name, "path": str(model_dir), "sha256": sha, "dim": None}
    return EmbedReport(report, info, counts["texts"], counts["encode_seconds"], time.perf_counter() - began)


def _check_file(path: Path, text_column: str, id_column: str | None) -> tuple[int, int, list[int]]:
    """``(rows, bad rows, the first few bad row numbers)`` of one file, reading texts only."""
    total = bad = 0
    shown: list[int] = []
    for part in read_texts(path, text_column, id_column):
        wrong = bad_rows(part.texts)
        bad += len(wrong)
        shown.extend((part.row + wrong[: SHOWN_BAD_ROWS - len(shown)]).tolist())
        total += len(part.texts)
    return total, bad, shown
