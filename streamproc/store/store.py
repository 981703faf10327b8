"""A streamproc store: one Zarr v3 group on disk plus the manifest that says what is committed.

Layout::

    STORE/manifest.json         what is committed (rows, batches, models, watermarks)
    STORE/.lock                 flock target; held by the one writer
    STORE/vectors               rows x dim, chunked by rows
    STORE/ids, STORE/texts      optional, row-aligned UTF-8 strings
    STORE/models/<id>/...       a fitted model's arrays and labels (see model.py)

Writers stage rows past the committed end of an array (a plain Zarr reader never sees them: the
array's stored shape is only grown after the manifest commit), fsync them, replace the manifest
atomically, then resize the arrays to the committed lengths. Recovery after a crash resizes every
array back to what the manifest says.

Integrity: every array of committed rows carries a crc32c checksum per chunk (Zarr v3's ``crc32c``
codec) and every chunk is stored, even one of fill values, so a missing or damaged chunk of committed
rows is an error (:func:`read_rows`), never zeros. Every name read from the manifest resolves inside
the store (:meth:`Store.resolve`); only folders the store created (marked with ``CREATED_MARKER``)
are ever removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr
from zarr.core.array import AsyncArray

from ..errors import StoreError
from ..fs import fsync_dir
from .integrity import checksummed, chunk_path, raw_chunks, read_rows, resolve_inside
from .lock import StoreLock
from .manifest import MANIFEST_NAME, Manifest, is_safe_name, read_manifest, write_manifest

WRITING_MARKER = ".writing"
CREATED_MARKER = ".streamproc-created"  # in every folder under models/ that streamproc made (and may remove)
STAGING_PREFIX = ".staging-"
STALE_STAGING_SECONDS = 7 * 24 * 3600  # a staging folder of another host is removed only when this old
TARGET_CHUNK_BYTES = 4 * 2**20
READ_THREADS = 4
WRITE_THREADS = 4


def default_chunk_rows(dim: int, itemsize: int) -> int:
    """Rows per chunk so that one chunk of vectors is about 4 MiB (a multiple of 64 rows)."""
    rows = TARGET_CHUNK_BYTES // max(dim * itemsize, 1)
    return int(max(64, rows - rows % 64))


def block_ranges(rows: int, block_rows: int, start: int = 0) -> list[tuple[int, int]]:
    return [(a, min(a + block_rows, rows)) for a in range(start, rows, block_rows)]


def rows_per_block(chunk_rows: int, row_bytes: int, target_bytes: int = 16 * 2**20) -> int:
    """Whole chunks adding up to about ``target_bytes`` (each chunk is decoded once)."""
    return chunk_rows * max(1, target_bytes // max(chunk_rows * row_bytes, 1))


def committed_lengths(manifest: Manifest) -> dict[str, int]:
    """Every array the manifest vouches for, with its committed row count."""
    lengths = {"vectors": manifest.rows}
    lengths.update({name: manifest.rows for name in manifest.columns})
    for model_id, info in manifest.models.items():
        for array in LABEL_ARRAYS:
            lengths[f"models/{model_id}/{array}"] = info.watermark
        if info.projection:
            lengths[f"models/{model_id}/{info.projection.array}"] = info.projection_watermark
    return lengths


LABEL_ARRAYS = ("labels", "distance", "confidence", "outlier")


class Store:
    """A read-only snapshot of a store: the manifest as it was when opened, and its arrays.

    Reading never takes the lock; rows committed later are simply not seen by this snapshot.
    """

    def __init__(self, path: Path, manifest: Manifest):
        self.path = Path(path)
        self.manifest = manifest
        self._arrays: dict[str, zarr.Array] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no such store (run `streamproc ingest {path} FILES` first)")
        manifest = read_manifest(path)
        if manifest is None:
            raise StoreError(f"{path}: not a streamproc store (no {MANIFEST_NAME})")
        return cls(path.absolute(), manifest)  # absolute: Dask workers may run in another directory

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def resolve(self, name: str) -> Path:
        """The path of ``name`` (e.g. ``models/<id>/labels``) in the store; refused if it leads outside."""
        if not all(is_safe_name(part) for part in name.split("/")):
            raise StoreError(f"{self.path}: invalid array name {name[:80]!r}")
        return resolve_inside(self.path, name)

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            try:
                self._arrays[name] = zarr.open_array(self.resolve(name), mode="r")
            except (FileNotFoundError, zarr.errors.NodeNotFoundError):
                raise StoreError(f"{self.path}: array {name!r} is missing") from None
            except (ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"{self.path}: array {name!r} has damaged metadata ({exc})") from None
        return self._arrays[name]

    def is_missing(self, column: str, row: int) -> bool:
        """True when the batch holding ``row`` was ingested without ``column`` (--no-texts / --no-ids)."""
        return any(b.start <= row < b.stop and column in b.missing for b in self.manifest.batches)

    def has_column(self, name: str) -> bool:
        return name in self.manifest.columns

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return read_rows(self.path / name, self.array(name), start, stop)

    def iter_blocks(
        self, name: str, start: int = 0, stop: int | None = None, *, block_rows: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row, block)`` over ``[start, stop)`` of an array, reading ahead on a few threads.

        Blocks are whole chunks, so every read decodes each chunk once; at most ``READ_THREADS + 1``
        blocks are in memory at a time.
        """
        stop = self.rows if stop is None else stop
        if block_rows is None:
            arr = self.array(name)
            block_rows = rows_per_block(arr.chunks[0], int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
        starts = range(start, stop, block_rows)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            pending = []
            for row in starts:
                pending.append((row, pool.submit(self.read, name, row, min(row + block_rows, stop))))
                if len(pending) > READ_THREADS:
                    first, future = pending.pop(0)
                    yield first, future.result()
            for first, future in pending:
                yield first, future.result()


    def iter_rows(self, names: list[str], start: int, stop: int, block_rows: int
                  ) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """Yield ``(a, b, {name: rows [a, b) of name})`` for row-aligned arrays, block by block, the
        next block's arrays read on threads while the caller works on this one."""
        with ThreadPoolExecutor(READ_THREADS) as pool:
            pending = []
            for a in range(start, stop, block_rows):
                b = min(a + block_rows, stop)
                pending.append((a, b, {name: pool.submit(self.read, name, a, b) for name in names}))
                if len(pending) > 1:
                    first, last, futures = pending.pop(0)
                    yield first, last, {name: f.result() for name, f in futures.items()}
            for first, last, futures in pending:
                yield first, last, {name: f.result() for name, f in futures.items()}


class StoreWriter(Store):
    """The one writer of a store, holding its lock. Stage rows, then :meth:`commit`."""

    def __init__(self, path: Path, manifest: Manifest | None, lock: StoreLock):
        super().__init__(path, manifest)  # type: ignore[arg-type]
        self.lock = lock
        self._staged: dict[str, set[int]] = {}  # array name -> chunk indices written since last commit
        self.new_columns: set[str] = set()  # row-aligned arrays created since the last commit
        self._writing = False

    # ---- creating arrays -------------------------------------------------------------------
    def create(self, *, dim: int, dtype: str, chunk_rows: int) -> None:
        """Create the group and the vectors array of a new store."""
        zarr.open_group(self.path, mode="a", zarr_format=3)
        zarr.create_array(
            self.path / "vectors", shape=(0, dim), chunks=(chunk_rows, dim), dtype=dtype,
            compressors=checksummed(compress=False), fill_value=0, overwrite=True,
        )
        self.manifest = Manifest(dim=dim, dtype=dtype, chunk_rows=chunk_rows)

    def create_column(self, name: str, *, length: int, chunk_rows: int, dtype="str", width: int = 0) -> None:
        """Create a row-aligned array (``ids``, ``texts``, labels ...) of ``length`` fill rows."""
        shape = (length, width) if width else (length,)
        chunks = (chunk_rows, width) if width else (chunk_rows,)
        zarr.create_array(self.resolve(name), shape=shape, chunks=chunks, dtype=dtype, overwrite=True,
                          compressors=checksummed())
        self._arrays.pop(name, None)

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = zarr.open_array(self.resolve(name), mode="r+")
        return self._arrays[name]

    # ---- staging and committing ------------------------------------------------------------
    def stage(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` at rows ``[start, start + len)``, possibly past the array's stored end.

        The array's stored shape is not changed, so nothing staged is visible until :meth:`commit`.
        """
        if not self._writing:
            (self.path / WRITING_MARKER).touch()
            self._writing = True
        fail_hook()
        arr = self.array(name)
        stop = start + len(values)
        chunk = arr.chunks[0]
        if raw_chunks(arr) and start % chunk == 0:
            whole = len(values) - len(values) % chunk
            self._write_raw_chunks(name, arr, start, values[:whole])
            if whole == len(values):
                return
            start, values = start + whole, values[whole:]
        if stop > arr.shape[0]:
            meta = arr.metadata.update_shape((stop, *arr.shape[1:]))
            arr = zarr.Array(AsyncArray(metadata=meta, store_path=arr.store_path, config=arr._async_array.config))
        arr[start:stop] = values
        self._staged.setdefault(name, set()).update(range(start // chunk, (stop - 1) // chunk + 1))

    def _write_raw_chunks(self, name: str, arr: zarr.Array, start: int, values: np.ndarray) -> None:
        with ThreadPoolExecutor(WRITE_THREADS) as pool:  # file writes release the GIL: several at once
            indices = write_raw_chunks(self.path / name, arr, start, values, pool.map)
        self._staged.setdefault(name, set()).update(indices)

    def fsync_staged(self) -> None:
        """Make the chunks staged so far durable now (ingest calls it per slice, overlapping the disk
        flush with reading the next slice); commit then only has the remainder left."""
        self._fsync_staged()
        self._staged.clear()

    def _fsync_staged(self) -> None:
        dirs = set()
        for name, chunk_indices in self._staged.items():
            arr = self.array(name)
            for index in chunk_indices:
                path = chunk_path(self.path / name, arr, index)
                if path.exists():
                    fd = os.open(path, os.O_RDONLY)
                    os.fsync(fd)
                    os.close(fd)
                    dirs.add(path.parent)
        for directory in dirs:
            fsync_dir(directory)

    def commit(self, manifest: Manifest) -> None:
        """Make everything staged durable, then commit ``manifest`` atomically."""
        pause_hook()
        self._fsync_staged()
        write_manifest(self.path, manifest)
        self.manifest = manifest
        self._staged.clear()
        self._resize_to_manifest()
        (self.path / WRITING_MARKER).unlink(missing_ok=True)
        self._writing = False

    def abort(self) -> None:
        """Forget staged rows: they lie past the committed end, where nobody reads."""
        self._staged.clear()
        self.new_columns = set()

    def _resize_to_manifest(self) -> None:
        for name, length in committed_lengths(self.manifest).items():
            if not (self.path / name / "zarr.json").exists():
                continue
            arr = self.array(name)
            if arr.shape[0] != length:
                arr.resize((length, *arr.shape[1:]))

    def recover(self) -> None:
        """Undo what a killed writer left behind: uncommitted shapes, temp files, staged models, old
        projection generations. Only what the store created is removed (see :func:`removable`)."""
        if self.manifest is None:
            return
        marker = self.path / WRITING_MARKER
        if marker.exists():
            self._resize_to_manifest()
            for partial in self.path.rglob("*.partial"):
                partial.unlink(missing_ok=True)
            marker.unlink()
        if not (self.path / "models").is_dir():
            return
        models = self.resolve("models")
        for child in models.iterdir():
            listed = self.manifest.models.get(child.name)
            if listed is None and removable(child):
                shutil.rmtree(child, ignore_errors=True)
            elif listed is not None and child.is_dir() and not child.is_symlink():
                _remove_old_generations(child, listed.projection.array if listed.projection else None)


class StagingQueue:
    """Stage per-row results of consecutive blocks on a writer thread, a whole chunk at a time.

    ``put(row, {name: values})`` buffers rows until ``chunk_rows`` have gathered, then stages them
    under ``prefix/name`` while the caller computes the next blocks; ``commit(end, fn)`` flushes
    everything up to ``end`` and then calls ``fn(writer)`` on the writer thread (in order).
    """

    def __init__(self, writer: StoreWriter, prefix: str, chunk_rows: int):
        self.writer, self.prefix, self.chunk_rows = writer, prefix, chunk_rows
        self.committed = None
        self._buffer: list[tuple[int, dict]] = []
        self._rows = 0
        self._pool = ThreadPoolExecutor(1)
        self._pending = []

    def __enter__(self) -> StagingQueue:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._wait(0)
        finally:
            self._pool.shutdown(wait=True)

    def put(self, row: int, values: dict) -> None:
        if self.committed is None:
            self.committed = row
        self._buffer.append((row, values))
        self._rows += len(next(iter(values.values())))
        if self._rows >= self.chunk_rows:
            self._flush()

    def commit(self, end: int, fn) -> None:
        """Stage what is buffered, wait until every staged write succeeded (one that failed raises
        here, so nothing is committed past it), then run ``fn(writer)`` on the writer thread."""
        self._flush()
        self._wait(0)
        self._submit(fn, self.writer)
        self._wait(0)
        self.committed = end

    def _flush(self) -> None:
        if not self._buffer:
            return
        row = self._buffer[0][0]
        merged = {name: np.concatenate([v[name] for _, v in self._buffer]) for name in self._buffer[0][1]}
        self._buffer, self._rows = [], 0
        self._submit(self._stage, row, merged)
        self._wait(2)  # bounded memory: at most two batches of rows waiting to be written

    def _stage(self, row: int, merged: dict) -> None:
        for name, values in merged.items():
            self.writer.stage(f"{self.prefix}/{name}", row, values)

    def _submit(self, fn, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def _wait(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()


def write_raw_chunks(folder: Path, arr: zarr.Array, start: int, values: np.ndarray, map_fn=map) -> list[int]:
    """Write whole chunks of an uncompressed array (``start`` and ``len(values)`` multiples of the
    chunk rows) straight to their files under ``folder``, temp + rename as zarr's LocalStore does:
    the bytes codec stores a chunk as its raw little-endian bytes. Returns the chunk indices."""
    import google_crc32c

    chunk = arr.chunks[0]
    data = np.ascontiguousarray(values, dtype=arr.dtype.newbyteorder("<"))
    with_crc = len(arr.metadata.codecs) == 2  # BytesCodec then Crc32cCodec (see raw_chunks)

    def write(offset: int) -> int:
        index = (start + offset) // chunk
        path = chunk_path(folder, arr, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        raw = memoryview(data[offset:offset + chunk]).cast("B")
        try:
            with open(tmp, "wb") as f:
                f.write(raw)
                if with_crc:  # the crc32c codec's trailer: the checksum of the bytes, uint32 little-endian
                    f.write(google_crc32c.value(data[offset:offset + chunk]).to_bytes(4, "little"))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return index

    return list(map_fn(write, range(0, len(data), chunk)))


def write_rows(folder: Path, arr: zarr.Array, start: int, values: np.ndarray) -> None:
    """``arr[start:start + len(values)] = values``, whole chunks of an uncompressed array written
    straight to their files (3x faster than zarr's write path from many threads), the rest by zarr."""
    chunk = arr.chunks[0]
    whole = 0
    if raw_chunks(arr) and start % chunk == 0:
        whole = len(values) - len(values) % chunk
        write_raw_chunks(folder, arr, start, values[:whole])
    if whole < len(values):
        arr[start + whole:start + len(values)] = values[whole:]


def make_staging_dir(store_path: Path, model_id: str) -> Path:
    """A new, marked folder ``models/.staging-<id>@<host>@<pid>`` for a model being fitted."""
    models = resolve_inside(store_path, "models")
    models.mkdir(exist_ok=True)
    staging = models / f"{STAGING_PREFIX}{model_id}@{socket.gethostname()}@{os.getpid()}"
    staging.mkdir()
    (staging / CREATED_MARKER).touch()
    return staging


def removable(child: Path) -> bool:
    """May recovery remove this folder under ``models/`` that the manifest does not list? Only when
    streamproc made it (its marker), it is not a symlink, and for a staging folder, when its process is
    provably dead (same host, no such pid) or it is older than ``STALE_STAGING_SECONDS``."""
    if child.is_symlink() or not (child / CREATED_MARKER).is_file():
        return False
    if not child.name.startswith(STAGING_PREFIX):
        return True  # a fitted model moved into place whose commit never happened
    _, host, pid = (child.name.split("@") + ["", ""])[:3]
    if host == socket.gethostname() and not pid_alive(pid):
        return True
    return time.time() - child.stat().st_mtime > STALE_STAGING_SECONDS


def _remove_old_generations(model_dir: Path, current: str | None) -> None:
    """Projection arrays of earlier generations (a kill after the commit of a new one left them)."""
    keep = {f"{current}{suffix}" for suffix in ("", "-sample", "-sample-xy")} if current else set()
    for child in model_dir.iterdir():
        if child.name.startswith("projection-") and child.name not in keep and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)


def pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


_staged_writes = 0


def fail_hook() -> None:
    """Test-only: with STREAMPROC_TEST_FAIL_STAGED_WRITE=N, the N-th staged write of this process
    fails as a full disk would (ENOSPC)."""
    global _staged_writes
    fail_at = os.environ.get("STREAMPROC_TEST_FAIL_STAGED_WRITE")
    if fail_at:
        _staged_writes += 1
        if _staged_writes == int(fail_at):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", "staged write")


def pause_hook(where: str = "BEFORE_COMMIT") -> None:
    """Test-only: with STREAMPROC_TEST_PAUSE_BEFORE_COMMIT=FLAGFILE (or ..._AFTER_LOCK), announce and
    sleep before commit (or just after taking the lock).

    The crash tests use it to kill a writer inside the window between staging rows and committing,
    the lock tests to hold the lock at a known moment.
    """
    flag = os.environ.get(f"STREAMPROC_TEST_PAUSE_{where}")
    if flag:
        Path(flag).write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("STREAMPROC_TEST_PAUSE_SECONDS", "30")))


@contextmanager
def open_writer(path: str | os.PathLike, *, wait: float = 0.0, create: bool = False) -> Iterator[StoreWriter]:
    """Take the store's lock, recover from any crash, and yield the writer.

    With ``create`` the directory may not exist yet; the writer's manifest is then None until
    :meth:`StoreWriter.create`.
    """
    path = Path(path)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not (path / MANIFEST_NAME).exists():
        Store.open(path)  # raises the right error
    lock = StoreLock(path, wait=wait)
    with lock:
        pause_hook("AFTER_LOCK")
        writer = StoreWriter(path, read_manifest(path), lock)
        writer.recover()
        yield writer
