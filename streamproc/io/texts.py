"""Text readers for ``streamproc embed``: CSV, JSON Lines and Parquet, in slices of rows.

Rows are numbered from 0 in file order, a CSV header not counted. A text is valid when it is a
string with something besides white space; ``bad_rows`` says which are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .readers import csv_header

TEXT_FORMATS = (".csv", ".jsonl", ".parquet")
SLICE_TEXTS = 2048


@dataclass
class TextSlice:
    """Rows ``[row, row + len(texts))`` of one file: raw text values (maybe not strings) and ids."""

    row: int
    texts: list
    ids: np.ndarray | None = None


def bad_rows(texts: list) -> np.ndarray:
    """Positions of values that are not a non-blank string."""
    return np.array([i for i, t in enumerate(texts) if not (isinstance(t, str) and t.strip())], dtype=np.int64)


def read_texts(path: Path, text_column: str, id_column: str | None = None,
               rows: int = SLICE_TEXTS) -> Iterator[TextSlice]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path, text_column, id_column, rows)
    elif suffix == ".jsonl":
        yield from _read_jsonl(path, text_column, id_column, rows)
    elif suffix == ".parquet":
        yield from _read_parquet(path, text_column, id_column, rows)
    else:
        raise InputError(f"{path}: unknown extension {path.suffix!r}; expected one of {', '.join(TEXT_FORMATS)}")


def _missing(path: Path, names: list[str], text_column: str, id_column: str | None) -> None:
    for option, name in (("--text-column", text_column), ("--id-column", id_column)):
        if name and name not in names:
            raise InputError(f"{path}: no column {name!r} for {option}; columns: {', '.join(map(str, names))}")


def _ids(values, path: Path, row: int, name: str) -> np.ndarray:
    ids = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "":
            raise InputError(f"{path}: row {row + i}, column {name!r}: empty id")
        ids.append(str(v))
    return np.array(ids, dtype=str)


def _read_csv(path: Path, text_column: str, id_column: str | None, rows: int) -> Iterator[TextSlice]:
    import pandas as pd

    _missing(path, csv_header(path), text_column, id_column)
    columns = [c for c in (text_column, id_column) if c]
    row = 0
    try:
        for frame in pd.read_csv(path, usecols=columns, dtype=str, chunksize=rows, encoding="utf-8",
                                 keep_default_na=False, na_values=[""]):
            texts = [None if isinstance(t, float) else t for t in frame[text_column].tolist()]
            ids = _ids(frame[id_column].tolist(), path, row, id_column) if id_column else None
            yield TextSlice(row, texts, ids)
            row += len(frame)
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed CSV near data row {row} ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 near data row {row} ({exc.reason})") from None


def _read_jsonl(path: Path, text_column: str, id_column: str | None, rows: int) -> Iterator[TextSlice]:
    texts, ids, row, first = [], [], 0, 0
    try:
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {line_number}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise InputError(f"{path}: line {line_number}: expected a JSON object, got {type(record).__name__}")
                if row == 0:  # the first record names the keys; later ones may lack the text (a bad row)
                    _missing(path, list(record), text_column, id_column)
                texts.append(record.get(text_column))
                if id_column:
                    ids.append(record.get(id_column))
                row += 1
                if len(texts) == rows:
                    yield TextSlice(first, texts, _ids(ids, path, first, id_column) if id_column else None)
                    texts, ids, first = [], [], row
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 near row {row} ({exc.reason})") from None
    if texts:
        yield TextSlice(first, texts, _ids(ids, path, first, id_column) if id_column else None)


def _read_parquet(path: Path, text_column: str, id_column: str | None, rows: int) -> Iterator[TextSlice]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable .parquet ({exc})") from None
    _missing(path, pf.schema_arrow.names, text_column, id_column)
    kind = pf.schema_arrow.field(text_column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{path}: column {text_column!r} holds {kind}, expected strings")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=rows, columns=[c for c in (text_column, id_column) if c]):
            texts = batch.column(text_column).to_pylist()
            ids = _ids(batch.column(id_column).to_pylist(), path, row, id_column) if id_column else None
            yield TextSlice(row, texts, ids)
            row += batch.num_rows
    except pa.ArrowException as exc:
        raise InputError(f"{path}: unreadable .parquet near row {row} ({exc})") from None
