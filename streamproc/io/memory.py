"""In-memory data given to ``streamproc.ingest`` from Python: a numpy array, a pandas DataFrame or a
pyarrow Table becomes one batch, read with the same rules and checks as a file.

A table is read exactly as a Parquet file is (the same column rules: ``vector_column`` or every
numeric column; ids and texts from named columns), by writing it to Parquet in memory first.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from .readers import ReadOptions, Slice, read_parquet_stream, rows_per_slice


@dataclass
class MemoryBatch:
    """One batch of in-memory rows: a name for messages, its slices, and its identity."""

    name: str
    slices: list[Slice]
    sha256: str
    nbytes: int


def is_table(data) -> bool:
    return type(data).__module__.split(".")[0] in ("pandas", "pyarrow") and hasattr(data, "columns")


def is_array(data) -> bool:
    return isinstance(data, np.ndarray) or (hasattr(data, "__array__") and not is_table(data))


def memory_batch(data, *, ids=None, texts=None, options: ReadOptions = ReadOptions()) -> MemoryBatch:
    """``data`` (array, DataFrame or Table) with optional ``ids`` / ``texts``: a sequence of one value
    per row, or for a table the name of a column."""
    if is_table(data):
        return _table_batch(data, ids=ids, texts=texts, options=options)
    vectors = np.asarray(data)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    where = f"numpy array {'x'.join(map(str, vectors.shape))}"
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise InputError(f"{where}: expected a 2-D array of rows x dim, got shape {vectors.shape}")
    if vectors.dtype.kind not in "fiu":
        raise InputError(f"{where}: expected numeric vectors, got dtype {vectors.dtype}")
    side = {name: _side_values(values, len(vectors), where, name) for name, values in (("ids", ids), ("texts", texts))}
    step = rows_per_slice(vectors.shape[1] * vectors.dtype.itemsize)
    slices = [Slice(a, vectors[a:a + step], *(None if side[n] is None else side[n][a:a + step] for n in ("ids", "texts")))
              for a in range(0, len(vectors), step)]
    return MemoryBatch(where, slices, _digest(slices), int(vectors.nbytes))


def _table_batch(data, *, ids, texts, options: ReadOptions) -> MemoryBatch:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(data, preserve_index=False) if not isinstance(data, pa.Table) else data
    where = f"{type(data).__name__} {table.num_rows} rows"
    columns = {}
    for name, value in (("ids", ids), ("texts", texts)):
        if isinstance(value, str):
            columns[name] = value
        elif value is not None:  # values given beside the table: stored as a column of their own
            column = f"__streamproc_{name}"
            table = table.append_column(column, pa.array(_side_values(value, table.num_rows, where, name)))
            columns[name] = column
    options = replace(options, id_column=columns.get("ids", options.id_column),
                      text_column=columns.get("texts", options.text_column))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    slices = list(read_parquet_stream(buffer, options, where=Path(where)))
    return MemoryBatch(where, slices, _digest(slices), int(table.nbytes))


def _side_values(values, n: int, where: str, name: str) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise UsageError(f"{name}={values!r}: a column name only applies to a DataFrame or Table; "
                         f"give one {name[:-1]} per row")
    out = np.asarray(values).astype(str)
    if out.shape != (n,):
        raise InputError(f"{where}: {name} has shape {out.shape}, expected one value per row ({n})")
    return out


def _digest(slices: list[Slice]) -> str:
    """SHA-256 of the rows' values, dtype and shape (and ids and texts): the batch's identity."""
    digest = hashlib.sha256()
    for piece in slices:
        vectors = np.ascontiguousarray(piece.vectors)
        digest.update(f"{vectors.dtype.str}{vectors.shape}".encode())
        digest.update(memoryview(vectors).cast("B"))
        for values in (piece.ids, piece.texts):
            digest.update(b"\0" if values is None else "\x1f".join(values.tolist()).encode())
    return digest.hexdigest()
