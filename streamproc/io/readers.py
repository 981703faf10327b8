"""Input readers: each turns one file into row slices of (vectors, ids, texts), in bounded memory.

Every reader validates as it goes and raises :class:`InputError` naming the file and, where it
applies, the row (0-based) or CSV line (1-based, header = line 1) and the field.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError

FORMATS = (".npy", ".npz", ".parquet", ".csv")
SLICE_BYTES = 16 * 2**20


@dataclass
class Slice:
    """Rows ``[row, row + len(vectors))`` of one input file."""

    row: int
    vectors: np.ndarray
    ids: np.ndarray | None = None
    texts: np.ndarray | None = None


@dataclass(frozen=True)
class ReadOptions:
    """The options that decide which rows a file yields (they are part of a batch's identity)."""

    array: str | None = None
    vector_column: str | None = None
    id_column: str | None = None
    text_column: str | None = None

    def key(self) -> str:
        return ";".join(f"{k}={v}" for k, v in sorted(vars(self).items()) if v is not None)


def rows_per_slice(row_bytes: int) -> int:
    return max(1, SLICE_BYTES // max(row_bytes, 1))


def read_slices(path: Path, options: ReadOptions) -> Iterator[Slice]:
    """Dispatch on the file's extension."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if options.id_column or options.text_column:
            raise UsageError("--id-column/--text-column do not apply to .npy files (use .npz, .parquet or .csv)")
        return _read_npy(path)
    if suffix == ".npz":
        return _read_npz(path, options)
    if suffix == ".parquet":
        return _read_parquet(path, options)
    if suffix == ".csv":
        return _read_csv(path, options)
    raise InputError(f"{path}: unknown format {suffix!r}; expected one of {', '.join(FORMATS)}")


# ---- .npy / .npz ------------------------------------------------------------------------------
def _npy_header(stream, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        return np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise InputError(f"{where}: not a readable .npy array ({exc})") from None


def _check_vectors_dtype(dtype: np.dtype, shape: tuple, where: str) -> None:
    if dtype.hasobject or dtype.kind not in "fiu":
        raise InputError(f"{where}: expected a numeric array, got dtype {dtype} (object arrays are never unpickled)")
    if len(shape) != 2:
        raise InputError(f"{where}: expected a 2-D array (rows x dim), got shape {shape}")
    if shape[0] == 0:
        raise InputError(f"{where}: empty array (0 rows)")
    if shape[1] == 0:
        raise InputError(f"{where}: vectors of dimension 0 (shape {shape}); expected rows x dim, dim >= 1")


def _read_npy(path: Path) -> Iterator[Slice]:
    with open(path, "rb") as f:
        shape, fortran, dtype = _npy_header(f, str(path))
        offset = f.tell()
    _check_vectors_dtype(dtype, shape, str(path))
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(f"{path}: truncated: expected {expected} bytes for shape {shape}, found {actual}")
    step = rows_per_slice(shape[1] * dtype.itemsize)
    if fortran:  # rare: rows are strided, so read through a memory map
        data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")
        for row in range(0, shape[0], step):
            yield Slice(row, np.ascontiguousarray(data[row : row + step]))
        return
    with open(path, "rb") as f:  # plain reads: the file's pages do not stay mapped into this process
        f.seek(offset)
        for row in range(0, shape[0], step):
            n = min(step, shape[0] - row)
            block = np.empty((n, shape[1]), dtype=dtype)
            f.readinto(memoryview(block).cast("B"))
            yield Slice(row, block)


class _NpzMember:
    """One array inside an .npz, read sequentially from the zip stream (stored or deflated)."""

    def __init__(self, zf: zipfile.ZipFile, name: str, where: str):
        self.where = f"{where}[{name}]"
        self.stream = zf.open(name + ".npy")
        self.shape, self.fortran, self.dtype = _npy_header(self.stream, self.where)
        if self.dtype.hasobject:
            raise InputError(f"{self.where}: object arrays are refused (never unpickled)")
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        self.whole = np.lib.format.read_array(self.stream, allow_pickle=False) if self.fortran else None

    def read(self, row: int, n: int) -> np.ndarray:
        if self.whole is not None:
            return np.ascontiguousarray(self.whole[row : row + n])
        n = min(n, self.shape[0] - row)
        nbytes = n * self.row_items * self.dtype.itemsize
        raw = self.stream.read(nbytes)
        if len(raw) != nbytes:
            raise InputError(f"{self.where}: truncated at row {row + len(raw) // max(self.row_items * self.dtype.itemsize, 1)}")
        return np.frombuffer(raw, dtype=self.dtype).reshape((n, *self.shape[1:]))


def _read_npz(path: Path, options: ReadOptions) -> Iterator[Slice]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable .npz ({exc})") from None
    with zf:
        names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        side = {options.id_column, options.text_column} - {None}
        for name in side | ({options.array} - {None}):
            if name not in names:
                raise InputError(f"{path}: no array {name!r}; it has {', '.join(names) or 'none'}")
        if options.array is None:
            candidates = [n for n in names if n not in side]
            if len(candidates) != 1:
                raise InputError(f"{path}: holds arrays {', '.join(names) or 'none'}; choose one with --array NAME")
            options = ReadOptions(candidates[0], None, options.id_column, options.text_column)
        try:
            vectors = _NpzMember(zf, options.array, str(path))
            _check_vectors_dtype(vectors.dtype, vectors.shape, vectors.where)
            extra = {}
            for field, name in (("ids", options.id_column), ("texts", options.text_column)):
                if name:
                    member = _NpzMember(zf, name, str(path))
                    if member.shape[:1] != vectors.shape[:1] or len(member.shape) != 1:
                        raise InputError(f"{member.where}: expected {vectors.shape[0]} rows (1-D), got shape {member.shape}")
                    extra[field] = member
            step = rows_per_slice(vectors.row_items * vectors.dtype.itemsize)
            for row in range(0, vectors.shape[0], step):
                side_values = {f: m.read(row, step).astype(str) for f, m in extra.items()}
                yield Slice(row, vectors.read(row, step), **side_values)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise InputError(f"{path}: unreadable or truncated .npz ({exc})") from None


# ---- .parquet ---------------------------------------------------------------------------------
def _read_parquet(path: Path, options: ReadOptions) -> Iterator[Slice]:
    return read_parquet_stream(path, options, where=path)


def read_parquet_stream(source, options: ReadOptions, *, where: Path) -> Iterator[Slice]:
    """Slices of a Parquet file or stream (``where`` names it in messages)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{where}: not a readable .parquet ({exc})") from None
    schema = pf.schema_arrow
    for option, name in (("--id-column", options.id_column), ("--text-column", options.text_column),
                         ("--vector-column", options.vector_column)):
        if name and name not in schema.names:
            raise InputError(f"{where}: no column {name!r} for {option}; columns: {_some(schema.names)}")
    side = {options.id_column, options.text_column}
    if not options.vector_column:
        numeric = [f.name for f in schema if f.name not in side and _is_numeric(f.type)]
        lists = [f.name for f in schema if f.name not in side and _is_list(f.type)]
        if not numeric and len(lists) == 1:
            options = ReadOptions(options.array, lists[0], options.id_column, options.text_column)
    if options.vector_column:
        vector_columns = [options.vector_column]
        kind = schema.field(options.vector_column).type
        if not _is_list(kind):
            raise InputError(f"{where}: column {options.vector_column!r} is {kind}, expected a list of numbers")
    else:
        vector_columns = [f.name for f in schema if f.name not in side and _is_numeric(f.type)]
        if not vector_columns:
            raise InputError(f"{where}: no numeric columns to use as vectors (or name a list column with --vector-column)")
    if pf.metadata.num_rows == 0:
        raise InputError(f"{where}: empty file (0 rows)")
    wanted = vector_columns + [c for c in (options.id_column, options.text_column) if c]
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=rows_per_slice(len(vector_columns) * 4 * 64), columns=wanted):
            if options.vector_column:
                vectors = _list_column(batch.column(options.vector_column), where, row)
            else:
                vectors = _numeric_columns(batch, vector_columns, where, row)
            yield Slice(row, vectors, **_side_columns(batch, options, where, row))
            row += batch.num_rows
    except pa.ArrowException as exc:
        raise InputError(f"{where}: unreadable .parquet near row {row} ({exc})") from None


def _is_list(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)


def _is_numeric(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(kind) or pa.types.is_integer(kind)


def _list_column(column, path: Path, row: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        bad = row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{path}: row {bad}: vector is null")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) > 1:
        bad = row + int(np.flatnonzero(lengths != lengths[0])[0])
        raise InputError(f"{path}: row {bad}: vector has {lengths[bad - row]} values, expected {lengths[0]}")
    values = pc.list_flatten(column)
    if not _is_numeric(values.type):
        raise InputError(f"{path}: vector column holds {values.type}, expected numbers")
    flat = values.to_numpy(zero_copy_only=False)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return flat.reshape(len(column), int(lengths[0]) if len(lengths) else 0)


def _numeric_columns(batch, names: list[str], path: Path, row: int) -> np.ndarray:
    out = np.empty((batch.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = batch.column(name)
        if col.null_count:
            bad = row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{path}: row {bad}, column {name!r}: empty value, expected a number")
        out[:, j] = col.to_numpy(zero_copy_only=False)
    return out


def _side_columns(table, options: ReadOptions, path: Path, row: int) -> dict:
    out = {}
    for field, name in (("ids", options.id_column), ("texts", options.text_column)):
        if not name:
            continue
        col = table.column(name)
        if field == "ids" and col.null_count:
            bad = row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(f"{path}: row {bad}, column {name!r}: empty id")
        values = col.cast("string").fill_null("").to_numpy(zero_copy_only=False)
        out[field] = values.astype(str)
    return out


# ---- .csv -------------------------------------------------------------------------------------
def csv_header(path: Path) -> list[str]:
    """The column names of a UTF-8 CSV (its first line)."""
    import pandas as pd

    try:
        return pd.read_csv(path, nrows=0, encoding="utf-8").columns.tolist()
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file; expected a header row and data rows") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not readable as UTF-8 CSV ({exc})") from None


def _read_csv(path: Path, options: ReadOptions) -> Iterator[Slice]:
    import pandas as pd

    side = [c for c in (options.id_column, options.text_column) if c]
    header = csv_header(path)
    if all(_looks_numeric(h) for h in header):
        raise InputError(f"{path}: line 1 looks like data; a header row naming the columns is required")
    for option, name in (("--id-column", options.id_column), ("--text-column", options.text_column),
                         ("--vector-column", options.vector_column)):
        if name and name not in header:
            raise InputError(f"{path}: no column {name!r} for {option}; columns: {_some(header)}")
    dtypes = {c: str for c in side}
    if options.vector_column:
        dtypes[options.vector_column] = str
    reader = pd.read_csv(path, chunksize=rows_per_slice(len(header) * 8 * 4), dtype=dtypes, encoding="utf-8",
                         keep_default_na=False, na_values=[""])
    row = 0
    vector_columns = None
    try:
        for frame in reader:
            if vector_columns is None:
                vector_columns = [options.vector_column] if options.vector_column else [c for c in header if c not in side]
                if not vector_columns:
                    raise InputError(f"{path}: no columns left for vectors after the id/text columns")
            if options.vector_column:
                vectors = _parse_vector_strings(frame[options.vector_column], path, row)
            else:
                vectors = _csv_numbers(frame, vector_columns, path, row)
            extra = {}
            for field, name in (("ids", options.id_column), ("texts", options.text_column)):
                if name:
                    values = frame[name]
                    if field == "ids" and values.isna().any():
                        raise InputError(f"{path}: line {row + int(np.flatnonzero(values.isna())[0]) + 2}, column {name!r}: empty id")
                    extra[field] = values.fillna("").to_numpy().astype(str)
            yield Slice(row, vectors, **extra)
            row += len(frame)
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: ragged or malformed CSV ({_first_line(exc)})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 near data row {row} ({exc.reason})") from None
    if row == 0:
        raise InputError(f"{path}: no data rows after the header")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _csv_numbers(frame, columns: list[str], path: Path, row: int) -> np.ndarray:
    import pandas as pd

    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        col = frame[name]
        if col.dtype.kind not in "fiu" or col.isna().any():
            numbers = pd.to_numeric(col, errors="coerce")
            spelled_nan = col.astype(str).str.strip().str.lower().isin(NAN_SPELLINGS)  # a number: non-finite
            bad_mask = (numbers.isna() & ~spelled_nan).to_numpy()
            if bad_mask.any():
                bad = int(np.flatnonzero(bad_mask)[0])
                value = col.iloc[bad]
                what = "empty value" if pd.isna(value) else f"{_shown(value)} is not a number"
                raise InputError(f"{path}: line {row + bad + 2}, column {name!r}: {what}")
            col = numbers
        out[:, j] = col.to_numpy(dtype=np.float64)
    return out


NAN_SPELLINGS = ("nan", "+nan", "-nan")
SHOWN_CHARS = 80


def _shown(value) -> str:
    """A bad value as an error message quotes it: repr, at most ``SHOWN_CHARS`` characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def _parse_vector_strings(col, path: Path, row: int) -> np.ndarray:
    vectors = []
    for i, text in enumerate(col.fillna("").tolist()):
        try:
            values = np.array(text.strip().strip("[]").replace(",", " ").split(), dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: line {row + i + 2}, column {col.name!r}: expected numbers like '[0.1, 0.2]'") from None
        if vectors and len(values) != len(vectors[0]):
            raise InputError(f"{path}: line {row + i + 2}, column {col.name!r}: {len(values)} values, expected {len(vectors[0])}")
        vectors.append(values)
    return np.vstack(vectors)


def _some(names, shown: int = 8) -> str:
    """The first column names and how many more (a 768-d CSV has 770 columns: one error line, not 8 KB)."""
    names = list(names)
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
