"""Reads of raw-chunk arrays (uncompressed, as the store's vectors and the fit's reduced rows are)
go straight to the chunk files (integrity.read_raw): the rows must be zarr's rows, for any range,
and any damage must still be an error naming the rows, never zeros."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from streamproc.errors import StoreError
from streamproc.store.arrays import create_rows
from streamproc.store.integrity import checksummed, read_raw, read_rows

ROWS, WIDTH, CHUNK = 1000, 7, 64  # the last chunk holds 40 of its 64 rows


def _arrays(tmp_path):
    values = np.random.default_rng(0).normal(size=(ROWS, WIDTH)).astype(np.float32)
    with_crc = zarr.create_array(tmp_path / "crc", shape=values.shape, chunks=(CHUNK, WIDTH), dtype="float32",
                                 compressors=checksummed(compress=False))
    with_crc[:] = values
    create_rows(tmp_path / "plain", ROWS, WIDTH, CHUNK)
    plain = zarr.open_array(tmp_path / "plain", mode="r+")
    plain[:] = values
    return values, {"crc": zarr.open_array(tmp_path / "crc", mode="r"), "plain": zarr.open_array(tmp_path / "plain", mode="r")}


@pytest.mark.parametrize("name", ["crc", "plain"])
def test_raw_reads_return_zarrs_rows_for_any_range(tmp_path, name):
    values, arrays = _arrays(tmp_path)
    arr = arrays[name]
    ranges = [(0, ROWS), (0, CHUNK), (3, 5), (CHUNK - 1, CHUNK + 1), (130, 700), (ROWS - 41, ROWS), (ROWS - 1, ROWS)]
    for start, stop in ranges:
        raw = read_raw(tmp_path / name, arr, start, stop)
        assert raw is not None, (start, stop)  # the fast path was taken
        assert raw.dtype == np.float32 and raw.shape == (stop - start, WIDTH)
        np.testing.assert_array_equal(raw, values[start:stop])
        np.testing.assert_array_equal(read_rows(tmp_path / name, arr, start, stop), arr[start:stop])


def test_compressed_arrays_are_read_by_zarr(tmp_path):
    arr = zarr.create_array(tmp_path / "z", shape=(100, 3), chunks=(10, 3), dtype="float32", compressors=checksummed())
    arr[:] = np.arange(300, dtype=np.float32).reshape(100, 3)
    assert read_raw(tmp_path / "z", arr, 0, 100) is None
    np.testing.assert_array_equal(read_rows(tmp_path / "z", arr, 5, 95), arr[5:95])


@pytest.mark.parametrize("rows", [(0, ROWS), (CHUNK + 3, CHUNK + 9)], ids=["whole chunk read", "part of a chunk read"])
@pytest.mark.parametrize("damage", ["flipped bit", "truncated", "grown"])
def test_damage_to_a_raw_chunk_is_an_error_naming_its_rows(tmp_path, rows, damage):
    values, arrays = _arrays(tmp_path)
    chunk = tmp_path / "crc" / "c" / "1" / "0"  # rows [64, 128)
    raw = bytearray(chunk.read_bytes())
    if damage == "flipped bit":
        raw[CHUNK * WIDTH * 4 // 2 + 4 * WIDTH * 5] ^= 0x10  # inside row 64 + 37: outside the part read
    elif damage == "truncated":
        raw = raw[:-9]
    else:
        raw += b"\0" * 8
    chunk.write_bytes(bytes(raw))
    assert read_raw(tmp_path / "crc", arrays["crc"], *rows) is None
    with pytest.raises(StoreError, match=r"rows \[64, 128\) are damaged"):
        read_rows(tmp_path / "crc", arrays["crc"], *rows)


def test_an_array_made_anew_at_the_same_path_is_not_served_from_the_open_cache(tmp_path):
    """arrays.write_block/read_block keep arrays open between blocks; a staged array made again at the
    same path (another fit's, in the same worker) with other chunks must be opened again."""
    from streamproc.store.arrays import read_block, write_block

    path = tmp_path / "reduced"
    create_rows(path, 100, 3, 10)
    write_block(path, 0, np.ones((100, 3), np.float32))
    np.testing.assert_array_equal(read_block(path, 0, 100), 1)
    meta = (path / "zarr.json").stat()
    # made again at once with metadata of the same size, and given the old one's modification time
    # (a clock tick can be that coarse): only the metadata's content tells the arrays apart
    create_rows(path, 200, 3, 20)
    os.utime(path / "zarr.json", ns=(meta.st_atime_ns, meta.st_mtime_ns))
    assert (path / "zarr.json").stat().st_size == meta.st_size
    write_block(path, 0, np.full((200, 3), 2, np.float32))
    np.testing.assert_array_equal(read_block(path, 0, 200), 2)
    assert sorted(int(p.name) for p in (path / "c").iterdir()) == list(range(10))  # 10 chunks of 20 rows
