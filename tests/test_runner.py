"""The Dask runner on a real store: a pass holds a few block results at a time, not a whole group's.

At 2560-d each block's PCA moments carry a 2560 x 2560 float64 cross-product (52 MB); a pass that kept
a group of 16 of them alive before combining peaked at 1.55 GiB (bench_methods at 100k x 2560).
"""

import threading
import time
import weakref

import numpy as np

from streamproc.learn.stats import combine
from streamproc.pipeline.runner import REDUCE_GROUP_BLOCKS, Runner
from streamproc.store import arrays
from streamproc.store.store import block_ranges

alive = 0
most_alive = 0
lock = threading.Lock()


def _released() -> None:
    global alive
    with lock:
        alive -= 1


def _big_result(block, start):
    """A block statistic whose array is counted while it lives (as a 52 MB cross-product would be)."""
    global alive, most_alive
    time.sleep(0.01)  # blocks finish faster than nothing: lets results pile up if the runner lets them
    cross = np.full(8, float(len(block)))
    with lock:
        alive += 1
        most_alive = max(most_alive, alive)
    weakref.finalize(cross, _released)
    return {"n": len(block), "cross": cross}


def test_reduce_blocks_holds_few_block_results_at_once(tmp_path):
    global alive, most_alive
    path = tmp_path / "rows"
    rows = 4 * REDUCE_GROUP_BLOCKS * 10
    arrays.create_rows(path, rows, 4, 10)
    arrays.write_block(str(path), 0, np.ones((rows, 4), np.float32))
    ranges = block_ranges(rows, 10)  # four groups
    alive = most_alive = 0
    with Runner(threads=2) as runner:
        total = runner.reduce_blocks(path, ranges, _big_result)
    assert total["n"] == rows and np.all(total["cross"] == float(rows))
    assert combine(total)["n"] == rows
    # a flat group keeps all of its REDUCE_GROUP_BLOCKS results until the group's combine
    assert most_alive <= 6 < REDUCE_GROUP_BLOCKS, f"{most_alive} block results were alive at once"


# ---- read-ahead: a pass reads the disk while it computes -------------------------------------------
def _disk_reads() -> int:
    return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["read_bytes"])


def _evict(folder) -> None:
    """Drop the page cache of every file under ``folder`` (clean pages: written and fsynced)."""
    import os
    from pathlib import Path

    for path in Path(folder).rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _timed_read(path, start, stop) -> int:
    before = _disk_reads()
    arrays.read_block(path, start, stop)
    return _disk_reads() - before


def test_prefetch_reads_the_rows_into_the_page_cache_before_they_are_read(tmp_path):
    import pytest

    path = tmp_path / "a"
    arrays.create_rows(path, 4096, 256, 512)
    arrays.write_block(path, 0, np.random.default_rng(0).standard_normal((4096, 256)).astype(np.float32))
    _evict(path)
    cold = _timed_read(path, 0, 2048)
    if cold < 2048 * 256 * 4 // 2:
        pytest.skip(f"this filesystem does not show disk reads in /proc/self/io ({cold} bytes for 2 MB)")
    _evict(path)
    arrays.prefetch(path, 2048, 4096)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _timed_read(path, 4095, 4096) > 0:  # until the last chunk is in
        time.sleep(0.05)
    assert _timed_read(path, 2048, 4096) < 2048 * 256 * 4 // 10  # read from the page cache, not the disk


def test_prefetch_skips_a_missing_chunk_and_the_read_still_names_it(tmp_path):
    import pytest

    from streamproc.errors import StoreError
    from streamproc.pipeline.ingest import ingest

    np.save(tmp_path / "a.npy", np.ones((1024, 8), np.float32))
    ingest(tmp_path / "s", [tmp_path / "a.npy"], chunk_rows=256)
    path = tmp_path / "s" / "vectors"
    next(p for p in (path / "c").rglob("*") if p.is_file() and p.parent.name == "1").unlink()
    arrays.prefetch(path, 0, 1024)  # no error here
    with pytest.raises(StoreError, match=r"rows \[256, 512\) are missing"):
        arrays.read_block(path, 0, 1024)


def test_a_pass_prefetches_the_blocks_after_its_own(tmp_path, monkeypatch):
    """Together a pass's tasks ask for every block after the first exactly once (asking for the whole
    window again at every task was 4x the calls, 0.5 s of thread time in a cached 1M fit); each task
    asks for rows after its own first block, at most 2 blocks a thread ahead of it."""
    from streamproc.pipeline.runner import _rows_ahead

    path = tmp_path / "a"
    arrays.create_rows(path, 4000, 4, 100)
    arrays.write_block(path, 0, np.ones((4000, 4), np.float32))
    asked = []
    monkeypatch.setattr(arrays, "prefetch", lambda p, a, b: asked.append((a, b)))
    ranges = block_ranges(4000, 100)
    for run in ("map_blocks", "reduce_blocks"):
        asked.clear()
        with Runner(threads=2) as runner:
            result = getattr(runner, run)(path, ranges, lambda block, start: {"n": len(block)})
            if run == "map_blocks":
                list(result)
        rows = np.zeros(4000, int)
        for a, b in asked:
            rows[a:b] += 1
        assert np.all(rows[100:] == 1) and np.all(rows[:100] == 0), (run, asked)
    for firsts, blocks in ((list(range(40)), 4), (list(range(0, 40, 4)), 7)):  # one block a task; runs of 4
        for shared_cache in (True, False):
            rows = np.zeros(4000, int)
            for first, ahead in zip(firsts, _rows_ahead(ranges, firsts, blocks, shared_cache)):
                if ahead is not None:
                    assert ranges[first][1] <= ahead[0] < ahead[1] <= ranges[min(first + blocks, 39)][1]
                    rows[ahead[0]:ahead[1]] += 1
                if not shared_cache and first + 1 < 40:  # on a cluster every task asks for its own window
                    assert ahead is not None and ahead[0] == ranges[first + 1][0]
            assert np.all(rows[100:] >= 1) and np.all(rows[:100] == 0)
            if shared_cache:
                assert np.all(rows[100:] == 1)
