"""``streamproc export``: a model's labelled rows to Parquet, CSV or JSON Lines, streamed, renamed into place."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np

from ..errors import StreamprocError, UsageError
from ..fs import check_writable
from ..store.catalog import resolve_model_id
from ..store.manifest import check_name
from ..store.store import LABEL_ARRAYS, Store, pid_alive

COLUMNS = ("model", "id", "row", "batch", "label", "distance", "confidence", "outlier")
FORMATS = (".parquet", ".csv", ".jsonl")
BLOCK_ROWS = 262_144


def export_labels(store_path: str | os.PathLike, output: str | os.PathLike, *, model_id: str | None = None,
                  since_batch: str | None = None, with_texts: bool = False) -> dict:
    """Write the model's labelled rows (``COLUMNS``, plus ``text`` with ``with_texts``) to ``output``."""
    import pyarrow as pa

    output = Path(output)
    fmt = output.suffix.lower()
    if fmt not in FORMATS:
        raise UsageError(f"-o {output}: expected a .parquet, .csv or .jsonl file name")
    check_writable(output)
    store = Store.open(store_path)
    if with_texts and not store.has_column("texts"):
        raise UsageError(f"--with-texts: {store.path} holds no texts (ingest with --text-column, or embed)")
    model_id = resolve_model_id(store, model_id)
    watermark = store.manifest.models[model_id].watermark
    start = 0
    if since_batch is not None:
        check_name(since_batch, "batch id")
        batch = next((b for b in store.manifest.batches if b.id == since_batch), None)
        if batch is None:
            raise UsageError(f"--since-batch: no batch {since_batch!r} in {store.path}")
        start = batch.stop
    remove_dead_temp_files(output)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    schema = pa.schema([("model", pa.string()), ("id", pa.string()), ("row", pa.int64()), ("batch", pa.string()),
                        ("label", pa.int32()), ("distance", pa.float32()), ("confidence", pa.float32()),
                        ("outlier", pa.bool_())] + ([("text", pa.string())] if with_texts else []))
    batch_starts = np.array([b.start for b in store.manifest.batches])
    batch_ids = np.array([b.id for b in store.manifest.batches])
    ids_missing = np.array(["ids" in b.missing for b in store.manifest.batches])
    written = 0
    try:
        writer = _open_writer(tmp, schema, fmt)
        try:
            prefix = f"models/{model_id}/"
            columns = ([prefix + name for name in LABEL_ARRAYS] + (["ids"] if store.has_column("ids") else [])
                       + (["texts"] if with_texts else []))
            for a, b, got in store.iter_rows(columns, start, watermark, BLOCK_ROWS):
                rows = np.arange(a, b)
                batch_of_row = np.searchsorted(batch_starts, rows, side="right") - 1
                ids = got["ids"].tolist() if "ids" in got else [""] * (b - a)
                table = pa.table({
                    "model": pa.array(np.full(b - a, model_id)),
                    "id": pa.array(ids, pa.string(), mask=ids_missing[batch_of_row]),  # null: batch had no ids
                    "row": pa.array(rows),
                    "batch": pa.array(batch_ids[batch_of_row]),
                    "label": pa.array(got[prefix + "labels"]),
                    "distance": pa.array(got[prefix + "distance"]),
                    "confidence": pa.array(got[prefix + "confidence"]),
                    "outlier": pa.array(got[prefix + "outlier"]),
                    **({"text": pa.array(got["texts"].tolist(), pa.string())} if with_texts else {}),
                }, schema=schema)
                writer.write_table(table)
                written += b - a
        finally:
            writer.close()
        os.replace(tmp, output)
    except OSError as exc:
        raise StreamprocError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"model": model_id, "rows": written, "output": str(output), "start": start, "stop": max(watermark, start),
            "columns": schema.names}


def remove_dead_temp_files(output: Path) -> None:
    """Remove ``.NAME.PID.tmp`` files an export killed midway left beside ``output`` (its pid gone)."""
    prefix = f".{output.name}."
    for tmp in output.parent.glob(f".{glob.escape(output.name)}.*.tmp"):
        pid = tmp.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and not pid_alive(pid):
            tmp.unlink(missing_ok=True)


def _open_writer(path: Path, schema, fmt: str):
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    if fmt == ".jsonl":
        return _JsonLinesWriter(path)
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, schema)


class _JsonLinesWriter:
    """One JSON object per row, with pyarrow's writers' ``write_table`` / ``close``."""

    def __init__(self, path: Path):
        self.file = open(path, "w", encoding="utf-8")

    def write_table(self, table) -> None:
        for row in table.to_pylist():
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.file.close()
