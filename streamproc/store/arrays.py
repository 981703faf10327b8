"""Arrays a pipeline writes or reads beside the committed columns, through one small API (this layer is
the only zarr user): staged float32 row arrays that Dask tasks fill chunk by chunk (a model's reduced
rows), and small whole arrays (a model's parameters, a map's sample).

They live under a model's staging folder or generation, so they become visible only by the commit that
lists them (see :mod:`streamproc.store.store`).
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import zarr

from .integrity import WHOLE_CHUNKS, chunk_path
from .integrity import read_rows as _read_checked
from .store import write_rows


def exists(path: str | os.PathLike) -> bool:
    return (Path(path) / "zarr.json").exists()


def create_rows(path: str | os.PathLike, rows: int, width: int, chunk_rows: int) -> None:
    """An uncompressed float32 rows x width array, chunked by ``chunk_rows`` (each task writes its own chunks)."""
    zarr.create_array(Path(path), shape=(rows, width), dtype="float32", chunks=(chunk_rows, width), compressors=None,
                      attributes={WHOLE_CHUNKS: True}, overwrite=True)


def whole_chunks(path: str | os.PathLike) -> bool:
    """Was the array made by :func:`create_rows`, whose every chunk is written (so a missing chunk
    file is damage, not fill values)?"""
    return exists(path) and bool(zarr.open_array(Path(path), mode="r").attrs.get(WHOLE_CHUNKS))


def write_block(path: str | os.PathLike, start: int, values: np.ndarray) -> None:
    """``array[start:start + len(values)] = values`` (whole chunks straight to their files)."""
    path = str(path)
    write_rows(Path(path), _open(path, _version(path), "r+"), start, values)


def chunk_rows(path: str | os.PathLike) -> int:
    return zarr.open_array(Path(path), mode="r").chunks[0]


def _version(path: str | os.PathLike) -> bytes:
    """The array's metadata, as its cache key: it changes when the shape grows or the array is made
    anew (a modification time can stay the same within a clock tick, and a freed inode is reused)."""
    return (Path(path) / "zarr.json").read_bytes()


@lru_cache(maxsize=32)
def _open(path: str, version: bytes, mode: str = "r") -> zarr.Array:
    """An array opened once per process and version of its metadata (its shape grows with commits):
    opening it for every block of a pass cost 0.3-0.5 s of each thread in a 1M-row fit."""
    return zarr.open_array(path, mode=mode)


def read_block(path: str | os.PathLike, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)``; a missing or damaged chunk raises :class:`StoreError`, never zeros."""
    path = str(path)
    arr = _open(path, _version(path))
    if arr.shape[0] < stop:
        arr = zarr.open_array(path, mode="r")
    return _read_checked(Path(path), arr, start, stop)


def prefetch(path: str | os.PathLike, start: int, stop: int) -> None:
    """Ask the kernel to start reading rows ``[start, stop)``'s chunk files into the page cache and
    return at once (``posix_fadvise WILLNEED``): a pass that prefetches its next block while it
    computes on this one reads the disk and computes at the same time. A chunk that is not there
    is skipped here; reading it raises."""
    path = Path(path)
    arr = _open(str(path), _version(path))
    chunk = arr.chunks[0]
    for index in range(start // chunk, (max(stop, start + 1) - 1) // chunk + 1):
        try:
            fd = os.open(chunk_path(path, arr, index), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def save_small(path: str | os.PathLike, value) -> None:
    """A small array, written whole as one chunk."""
    value = np.asarray(value)
    zarr.create_array(Path(path), data=value, chunks=value.shape or (1,), overwrite=True)


def load_small(path: str | os.PathLike) -> np.ndarray:
    return zarr.open_array(Path(path), mode="r")[...]


def link_chunks(old: Path, new: Path, rows: int, block: int) -> int:
    """Hard-link (or copy) the whole chunks of ``old``'s first ``rows`` rows into ``new`` (same chunking):
    a warm refit keeps the reduced rows it already has. Returns the first row still to write; 0 when
    the chunkings differ."""
    if chunk_rows(old) != block:
        return 0
    whole = rows // block
    for i in range(whole):
        source, target = old / "c" / str(i) / "0", new / "c" / str(i) / "0"
        if not source.exists():
            return i * block
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return whole * block
