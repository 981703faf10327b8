"""Integrity of stored arrays: crc32c checksums on every chunk, reads that refuse a missing or
damaged chunk of committed rows (never fill values), and paths that stay inside the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ..errors import StoreError

zarr.config.set({"array.write_empty_chunks": True})  # every chunk of committed rows exists on disk


def checksummed(compress: bool = True) -> list:
    """Bytes-to-bytes codecs of a store array: (zstd and) a crc32c checksum of every chunk."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=0), Crc32cCodec()] if compress else [Crc32cCodec()]


def has_checksums(arr: zarr.Array) -> bool:
    """Written by a streamproc that checksums (and stores) every chunk?"""
    from zarr.codecs import Crc32cCodec

    return any(isinstance(codec, Crc32cCodec) for codec in arr.metadata.codecs)


WHOLE_CHUNKS = "streamproc_whole_chunks"  # attribute of arrays whose every chunk is written (``arrays.create_rows``)


def every_chunk_written(arr: zarr.Array) -> bool:
    """Is a missing chunk file damage (checksummed arrays, and the fit's whole-chunk arrays) rather
    than fill values (arrays written before checksums existed)?"""
    return has_checksums(arr) or bool(arr.attrs.get(WHOLE_CHUNKS, False))


def resolve_inside(root: Path, name: str) -> Path:
    """``root / name``, refused unless it resolves (symlinks followed) inside ``root``."""
    path = Path(root) / name
    real, real_root = path.resolve(), Path(root).resolve()
    if real != real_root and real_root not in real.parents:
        raise StoreError(f"{path}: resolves outside the store (to {real}); refusing to use it")
    return path


def read_rows(folder: Path, arr: zarr.Array, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a stored array. A chunk file missing there, or one whose checksum or
    size is wrong, raises :class:`StoreError` naming the array and rows: never fill values.

    The same holds for the fit's reduced rows (``arrays.create_rows``: every chunk written, no
    checksum). (Arrays written before checksums existed may lack chunks of fill values: those read
    as before.)"""
    chunk = arr.chunks[0]
    first, last = start // chunk, (stop - 1) // chunk if stop > start else -1
    for index in range(first, last + 1) if every_chunk_written(arr) else ():
        if not chunk_path(folder, arr, index).exists():
            raise StoreError(f"{folder}: rows [{index * chunk}, {(index + 1) * chunk}) are missing (chunk file "
                             f"{chunk_path(folder, arr, index).name} deleted?); the store is damaged")
    try:
        block = arr[start:stop]
    except (ValueError, TypeError, RuntimeError) as exc:
        a, b = _first_bad_chunk(arr, start, stop)
        raise StoreError(f"{folder}: rows [{a}, {b}) are damaged ({str(exc).splitlines()[0][:120]})") from None
    if len(block) != stop - start:
        raise StoreError(f"{folder}: rows [{start}, {stop}) are not all stored; the store is damaged")
    return block


def _first_bad_chunk(arr: zarr.Array, start: int, stop: int) -> tuple[int, int]:
    """The rows of the first chunk in ``[start, stop)`` that does not decode (to name it in the error)."""
    chunk = arr.chunks[0]
    for a in range(start - start % chunk, stop, chunk):
        try:
            arr[a:min(a + chunk, arr.shape[0])]
        except (ValueError, TypeError, RuntimeError):
            return a, a + chunk
    return start, stop


def chunk_path(folder: Path, arr: zarr.Array, index: int) -> Path:
    return Path(folder) / arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))
