"""``streamproc export``: a model's labelled rows to Parquet or CSV, streamed, renamed into place."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from .errors import StreamprocError, UsageError
from .manifest import check_name
from .models import resolve_model_id
from .store import LABEL_ARRAYS, Store, pid_alive

COLUMNS = ("model", "id", "row", "batch", "label", "distance", "confidence", "outlier")
BLOCK_ROWS = 262_144


def export_labels(store_path: str | os.PathLike, output: str | os.PathLike, *, model_id: str | None = None,
                  since_batch: str | None = None) -> dict:
    import pyarrow as pa

    output = Path(output)
    fmt = output.suffix.lower()
    if fmt not in (".parquet", ".csv"):
        raise UsageError(f"-o {output}: expected a .parquet or .csv file name")
    store = Store.open(store_path)
    model_id = resolve_model_id(store, model_id)
    watermark = int(store.manifest.models[model_id].get("watermark", 0))
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
                        ("outlier", pa.bool_())])
    batch_starts = np.array([b.start for b in store.manifest.batches])
    batch_ids = np.array([b.id for b in store.manifest.batches])
    ids_missing = np.array(["ids" in b.missing for b in store.manifest.batches])
    written = 0
    try:
        writer = _open_writer(tmp, schema, fmt)
        try:
            prefix = f"models/{model_id}/"
            columns = [prefix + name for name in LABEL_ARRAYS] + (["ids"] if store.has_column("ids") else [])
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
    return {"model": model_id, "rows": written, "output": str(output), "start": start, "stop": max(watermark, start)}


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
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, schema)
