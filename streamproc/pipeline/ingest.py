"""``streamproc ingest``: each input file becomes one batch, committed atomically and at most once."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import InputError, UsageError
from ..fs import file_sha256
from ..io.readers import FORMATS, ReadOptions, Slice, read_slices
from ..options import DTYPES
from ..store.manifest import Batch, utc_now
from ..store.store import StoreWriter, block_ranges, default_chunk_rows, open_writer

SIDE_COLUMNS = ("ids", "texts")
SIDE_OPTIONS = {"ids": "--id-column", "texts": "--text-column"}


@dataclass
class BatchResult:
    source: str
    status: str  # committed | duplicate | failed | skipped
    id: str | None = None
    rows: int = 0
    dropped: int = 0
    error: str | None = None
    moved_to: str | None = None


@dataclass
class IngestReport:
    rows: int
    batches: list[BatchResult]

    @property
    def failed(self) -> bool:
        return any(b.status == "failed" for b in self.batches)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "batches": [asdict(b) for b in self.batches]}


def expand_paths(paths: list[str | os.PathLike], formats: tuple[str, ...] = FORMATS) -> tuple[list[Path], list[Path]]:
    """Files to ingest (directories expanded, sorted, non-recursive) and files skipped for their extension."""
    files, skipped = [], []
    for p in map(Path, paths):
        if p.is_dir():
            for child in sorted(p.iterdir()):
                if child.is_file() and not child.name.startswith("."):
                    (files if child.suffix.lower() in formats else skipped).append(child)
        else:
            files.append(p)
    return files, skipped


def ingest(
    store_path: str | os.PathLike,
    data,
    *,
    ids=None,
    texts=None,
    read_options: ReadOptions = ReadOptions(),
    dtype: str = "float32",
    chunk_rows: int | None = None,
    drop_nonfinite: bool = False,
    min_age: float = 0.0,
    wait: float = 0.0,
    allow_missing: tuple[str, ...] = (),
    move_to: str | os.PathLike | None = None,
) -> IngestReport:
    """Add ``data`` to the store at ``store_path`` (created on first use).

    ``data`` is a path or a list of paths (each file one batch; a folder's known files), or a numpy
    array, a pandas DataFrame or a pyarrow Table (one batch). ``ids`` and ``texts``: for files and
    tables the name of a column, for arrays one value per row. Every batch is committed atomically and
    at most once: the same content again is reported as a duplicate.
    ``allow_missing`` ("ids", "texts"): columns a batch may lack although the store keeps them
    (``--no-ids``/``--no-texts``); its rows are then recorded as missing those values.
    With ``move_to``, each file whose batch committed (or that was already ingested) is then moved
    into that folder, so an inbox holds only files not yet ingested; a file that failed stays."""
    from ..io.memory import is_array, is_table

    if is_table(data) or is_array(data) and not isinstance(data, str | os.PathLike):
        return _ingest_memory(store_path, data, ids=ids, texts=texts, read_options=read_options, dtype=dtype,
                              chunk_rows=chunk_rows, drop_nonfinite=drop_nonfinite, wait=wait,
                              allow_missing=allow_missing)
    for name, value in (("ids", ids), ("texts", texts)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name}= with files names a column; one value per row only goes with an array")
    read_options = replace(read_options, id_column=ids or read_options.id_column,
                           text_column=texts or read_options.text_column)
    paths = [data] if isinstance(data, str | os.PathLike) else list(data)
    options_key = read_options.key() + (";drop_nonfinite" if drop_nonfinite else "")
    return ingest_files(store_path, paths, lambda path: read_slices(path, read_options), options_key,
                        formats=FORMATS, dtype=dtype, chunk_rows=chunk_rows, drop_nonfinite=drop_nonfinite,
                        min_age=min_age, wait=wait, allow_missing=allow_missing, move_to=move_to)


def _ingest_memory(store_path, data, *, ids, texts, read_options: ReadOptions, wait: float, **kw) -> IngestReport:
    """One in-memory batch, committed as a file's would be (identity: the SHA-256 of its values)."""
    from ..io.memory import memory_batch

    check_staging_options(kw["dtype"], kw["chunk_rows"])
    batch = memory_batch(data, ids=ids, texts=texts, options=read_options)
    options_key = "memory;" + read_options.key() + (";drop_nonfinite" if kw["drop_nonfinite"] else "")
    with open_writer(Path(store_path), wait=wait, create=True) as writer:
        duplicate = writer.manifest and _duplicate_of(writer.manifest, batch.sha256, options_key)
        if duplicate:
            result = BatchResult(batch.name, "duplicate", id=duplicate.id, rows=duplicate.rows)
        else:
            result = _stage_and_commit(writer, Path(batch.name), iter(batch.slices), source=batch.name,
                                       sha=lambda: batch.sha256, size=batch.nbytes, mtime_ns=0,
                                       options_key=options_key, **kw)
        rows = writer.manifest.rows if writer.manifest else 0
        if writer.manifest is None:
            _remove_uncommitted_arrays(writer)
    return IngestReport(rows=rows, batches=[result])


def check_staging_options(dtype: str, chunk_rows: int | None) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if chunk_rows is not None and chunk_rows < 1:
        raise UsageError(f"--chunk-rows must be at least 1, got {chunk_rows}")


def ingest_files(
    store_path: str | os.PathLike,
    paths: list[str | os.PathLike],
    read: Callable[[Path], Iterator[Slice]],
    options_key: str,
    *,
    formats: tuple[str, ...],
    dtype: str = "float32",
    chunk_rows: int | None = None,
    drop_nonfinite: bool = False,
    min_age: float = 0.0,
    wait: float = 0.0,
    check: Callable[[StoreWriter], None] | None = None,
    allow_missing: tuple[str, ...] = (),
    move_to: str | os.PathLike | None = None,
) -> IngestReport:
    """The commit loop shared by ``ingest`` and ``embed``: each file of ``paths`` becomes one batch,
    its rows read by ``read(path)``; ``options_key`` (the options that change the rows) is part of
    a batch's identity. ``check(writer)`` may refuse the store once it is locked."""
    check_staging_options(dtype, chunk_rows)
    files, skipped = expand_paths(paths, formats)
    for path in skipped:
        progress.warn(f"{path}: skipped, not one of {', '.join(formats)}")
    results = [BatchResult(str(p), "failed", error=f"{p}: not a regular file (a FIFO, device or socket is "
                                                   f"never read)") for p in files if _irregular(p)]
    files = [p for p in files if not _irregular(p)]
    store_path = Path(store_path)
    with open_writer(store_path, wait=wait, create=True) as writer:
        if check is not None:
            check(writer)
        for path in files:
            result = _ingest_file(writer, path, read, options_key, dtype=dtype, chunk_rows=chunk_rows,
                                  drop_nonfinite=drop_nonfinite, min_age=min_age, allow_missing=allow_missing)
            if move_to is not None:
                _move_after_commit(result, path, Path(move_to))
            results.append(result)
        rows = writer.manifest.rows if writer.manifest else 0
        if writer.manifest is None:
            _remove_uncommitted_arrays(writer)
    return IngestReport(rows=rows, batches=results)


def _irregular(path: Path) -> bool:
    """Exists but is no regular file (a FIFO would block the reader while it holds the lock)."""
    return path.exists() and not path.is_file()


def _remove_uncommitted_arrays(writer: StoreWriter) -> None:
    """A first ingest that committed nothing leaves the folder and its ``.lock`` (another process may
    be waiting on it), without the arrays it created."""
    for name in ("vectors", *SIDE_COLUMNS):
        shutil.rmtree(writer.path / name, ignore_errors=True)
    for name in ("zarr.json", ".writing"):
        (writer.path / name).unlink(missing_ok=True)


def _ingest_file(writer: StoreWriter, path: Path, read: Callable[[Path], Iterator[Slice]], options_key: str,
                 **kw) -> BatchResult:
    source = str(path.resolve()) if path.exists() else str(path)
    try:
        stat = path.stat()
    except OSError as exc:
        return BatchResult(str(path), "failed", error=f"{path}: cannot read ({exc.strerror})")
    manifest = writer.manifest
    if manifest is not None:
        for b in manifest.batches:
            if (b.source, b.size, b.mtime_ns, b.options) == (source, stat.st_size, stat.st_mtime_ns, options_key):
                return BatchResult(str(path), "duplicate", id=b.id, rows=b.rows)
    if kw["min_age"] and time.time() - stat.st_mtime < kw["min_age"]:
        return BatchResult(str(path), "skipped", error=None)
    with ThreadPoolExecutor(1) as hasher:  # hashing runs beside the staging (hashlib releases the GIL)
        sha_future = hasher.submit(file_sha256, path)
        if manifest is not None and any(b.options == options_key and b.size == stat.st_size for b in manifest.batches):
            sha = sha_future.result()  # a same-sized batch exists: check before writing anything
            duplicate = _duplicate_of(manifest, sha, options_key)
            if duplicate:
                return BatchResult(str(path), "duplicate", id=duplicate.id, rows=duplicate.rows)
        return _stage_and_commit(writer, path, read(path), source=source, sha=sha_future.result, size=stat.st_size,
                                 mtime_ns=stat.st_mtime_ns, options_key=options_key, dtype=kw["dtype"],
                                 chunk_rows=kw["chunk_rows"], drop_nonfinite=kw["drop_nonfinite"],
                                 allow_missing=kw["allow_missing"])


def _stage_and_commit(writer: StoreWriter, where: Path, pieces: Iterator[Slice], *, source: str,
                      sha: Callable[[], str], size: int, mtime_ns: int, options_key: str, **kw) -> BatchResult:
    """Stage one batch's rows past the committed end and commit it; on bad input nothing is committed."""
    before = writer.manifest
    try:
        rows, dropped, missing = _stage_file(writer, where, pieces, **kw)
    except InputError as exc:
        writer.abort()
        writer.manifest = before
        return BatchResult(str(where), "failed", error=str(exc))
    manifest = writer.manifest
    batch = Batch(id=manifest.next_batch_id(), source=source, sha256=sha(), start=manifest.rows,
                  stop=manifest.rows + rows, ingested_at=utc_now(), size=size, mtime_ns=mtime_ns,
                  options=options_key, missing=sorted(missing))
    earlier = [replace(b, missing=sorted(set(b.missing) | writer.new_columns)) for b in manifest.batches]
    writer.commit(replace(manifest, rows=batch.stop, batches=[*earlier, batch],
                          columns=sorted(set(manifest.columns) | writer.new_columns)))
    writer.new_columns = set()
    return BatchResult(str(where), "committed", id=batch.id, rows=rows, dropped=dropped)


def _move_after_commit(result: BatchResult, path: Path, folder: Path) -> None:
    """``--move-to``: move a committed (or duplicate) file into ``folder``, never over another file;
    a failed file stays where it is, and its error says so."""
    if result.status == "failed":
        result.error += f" (the file stays in {path.parent})"
        return
    if result.status not in ("committed", "duplicate"):
        return
    target = folder / path.name
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{path.stem}.{n}{path.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    except OSError as exc:
        progress.warn(f"{path}: committed as {result.id}, but could not be moved to {folder}: {exc.strerror or exc}")
        return
    result.moved_to = str(target)


def _duplicate_of(manifest, sha: str, options_key: str) -> Batch | None:
    return next((b for b in manifest.batches if (b.sha256, b.options) == (sha, options_key)), None)


def _stage_file(writer: StoreWriter, path: Path, pieces: Iterator[Slice], *, dtype, chunk_rows,
                drop_nonfinite, allow_missing=()) -> tuple[int, int, set[str]]:
    """Validate ``path`` slice by slice and stage its rows past the committed end.
    Returns (rows, dropped, the store's side columns this file has no values for)."""
    start = writer.manifest.rows if writer.manifest else 0
    written = dropped = 0
    seen_ids: set[str] = set()
    missing: set[str] = set()

    def checked_slices():
        nonlocal dropped, start
        for piece in pieces:
            piece, n_dropped = _validated(piece, path, writer, drop_nonfinite, seen_ids)
            missing.update(_missing_columns(piece, path, writer, allow_missing))
            dropped += n_dropped
            if writer.manifest is None:
                dim = piece.vectors.shape[1]
                writer.create(dim=dim, dtype=dtype,
                              chunk_rows=chunk_rows or default_chunk_rows(dim, np.dtype(dtype).itemsize))
                start = 0
            with np.errstate(over="ignore"):
                vectors = piece.vectors.astype(writer.manifest.dtype, copy=False)
            if vectors is not piece.vectors and not np.isfinite(vectors).all():  # e.g. beyond float16's range
                bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
                raise InputError(f"{path}: row {piece.row + bad}: value out of {writer.manifest.dtype} range")
            yield Slice(piece.row, vectors, piece.ids, piece.texts)

    with progress.bar(None, path.name) as bar, ThreadPoolExecutor(1) as io:
        pending = None  # one write in flight while the next slice is read and validated
        next_row = lambda: start + written  # noqa: E731, B023 (read late on purpose: rows written so far)
        for piece in _chunk_aligned(checked_slices(), next_row, lambda: writer.manifest.chunk_rows):
            if pending is not None:
                pending.result()
            pending = io.submit(_stage_slice, writer, start + written, piece)
            written += len(piece.vectors)
            bar.update(len(piece.vectors))
        if pending is not None:
            pending.result()
    if written == 0:
        raise InputError(f"{path}: no rows left to ingest ({dropped} dropped as non-finite)" if dropped
                         else f"{path}: empty file (0 rows)")
    return written, dropped, missing


def _missing_columns(piece: Slice, path: Path, writer: StoreWriter, allow_missing) -> set[str]:
    """The store's side columns this slice has no values for: refused unless the user allowed it."""
    if writer.manifest is None:
        return set()
    known = set(writer.manifest.columns) | writer.new_columns
    missing = {name for name in SIDE_COLUMNS if name in known and getattr(piece, name) is None}
    refused = sorted(missing - set(allow_missing))
    if refused:
        names = " and ".join(refused)
        raise InputError(f"{path}: has no {names}, but the store keeps {names} for its rows; name the column with "
                         f"{' / '.join(SIDE_OPTIONS[n] for n in refused)}, or pass "
                         f"{' '.join('--no-' + n for n in refused)} to store this batch without them")
    return missing


def _stage_slice(writer: StoreWriter, row: int, piece: Slice) -> None:
    writer.stage("vectors", row, piece.vectors)
    for name, values in (("ids", piece.ids), ("texts", piece.texts)):
        _stage_column(writer, name, row, values, len(piece.vectors))
    writer.fsync_staged()


def _chunk_aligned(pieces, next_row, chunk_rows):
    """Re-cut slices so that each ends on a chunk boundary (so no chunk is written twice); only the
    rows of one boundary chunk are ever copied. ``next_row()`` is the store row of the next output."""
    carry = None
    for piece in pieces:
        chunk = chunk_rows()
        if carry is not None:
            need = -(next_row() + len(carry.vectors)) % chunk
            if len(piece.vectors) < need:
                carry = _concat(carry, piece)
                continue
            yield _concat(carry, _take(piece, 0, need))
            piece, carry = _take(piece, need, None), None
        n = len(piece.vectors)
        cut = n - (next_row() + n) % chunk
        if cut > 0:
            yield _take(piece, 0, cut)
        if cut < n:
            carry = _take(piece, max(cut, 0), None)
            carry = Slice(carry.row, carry.vectors.copy(), carry.ids, carry.texts)
    if carry is not None and len(carry.vectors):
        yield carry


def _take(piece: Slice, a: int, b: int | None) -> Slice:
    cut = slice(a, b)
    return Slice(piece.row + a, piece.vectors[cut], None if piece.ids is None else piece.ids[cut],
                 None if piece.texts is None else piece.texts[cut])


def _concat(a: Slice, b: Slice) -> Slice:
    def join(x, y):
        return None if x is None and y is None else np.concatenate([x, y])

    return Slice(a.row, np.concatenate([a.vectors, b.vectors]), join(a.ids, b.ids), join(a.texts, b.texts))


def _stage_column(writer: StoreWriter, name: str, row: int, values, n: int) -> None:
    """Stage a side column's values; "" where the file has none (its batch records them as missing)."""
    known = name in writer.manifest.columns or name in writer.new_columns
    if values is None:
        if known:
            writer.stage(name, row, np.full(n, "", dtype=str))
        return
    if not known:  # the first file with this column: the earlier rows are recorded as missing it
        writer.create_column(name, length=writer.manifest.rows, chunk_rows=writer.manifest.chunk_rows)
        writer.new_columns.add(name)
        for a, b in block_ranges(writer.manifest.rows, 16 * writer.manifest.chunk_rows):
            writer.stage(name, a, np.full(b - a, "", dtype=str))
    writer.stage(name, row, np.asarray(values, dtype=str))


def _finite_rows(vectors: np.ndarray) -> np.ndarray:
    """True for rows without NaN or Inf. A row's float64 sum is non-finite if any element is, so the
    element-wise check runs only when some sum is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(vectors.sum(axis=1, dtype=np.float64))
    if not finite.all():
        finite = np.isfinite(vectors).all(axis=1)
    return finite


def _validated(piece: Slice, path: Path, writer: StoreWriter, drop_nonfinite: bool,
               seen_ids: set[str]) -> tuple[Slice, int]:
    vectors = piece.vectors
    if vectors.dtype.kind not in "fiu":
        raise InputError(f"{path}: expected numeric vectors, got dtype {vectors.dtype}")
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise InputError(f"{path}: vectors of shape {vectors.shape} have no values; expected rows x dim, dim >= 1")
    if writer.manifest is not None and vectors.shape[1] != writer.manifest.dim:
        raise InputError(f"{path}: row {piece.row}: expected dim {writer.manifest.dim} (the store's), got {vectors.shape[1]}")
    dropped = 0
    finite = _finite_rows(vectors) if vectors.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        if not drop_nonfinite:
            bad = int(np.flatnonzero(~finite)[0])
            col = int(np.flatnonzero(~np.isfinite(vectors[bad]))[0])
            raise InputError(f"{path}: row {piece.row + bad}, column {col}: NaN or Inf "
                             f"(pass --drop-nonfinite to skip such rows)")
        dropped = int((~finite).sum())
        piece = Slice(piece.row, vectors[finite],
                      None if piece.ids is None else piece.ids[finite],
                      None if piece.texts is None else piece.texts[finite])
    if piece.ids is not None:
        for i, value in enumerate(piece.ids.tolist()):
            if value in seen_ids:
                raise InputError(f"{path}: row {piece.row + i}: id {value!r} appears twice in this file")
            seen_ids.add(value)
    return piece, dropped
