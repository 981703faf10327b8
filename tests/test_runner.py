"""The Dask runner on a real store: a pass holds a few block results at a time, not a whole group's.

At 2560-d each block's PCA moments carry a 2560 x 2560 float64 cross-product (52 MB); a pass that kept
a group of 16 of them alive before combining peaked at 1.55 GiB (bench_methods at 100k x 2560).
"""

import threading
import time
import weakref

import numpy as np

from streamproc.learn.stats import combine
from streamproc.pipeline.runner import GROUP_BLOCKS, Runner
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
    arrays.create_rows(path, 640, 4, 10)
    arrays.write_block(str(path), 0, np.ones((640, 4), np.float32))
    ranges = block_ranges(640, 10)  # 64 blocks: four groups of 16
    alive = most_alive = 0
    with Runner(threads=2) as runner:
        total = runner.reduce_blocks(path, ranges, _big_result)
    assert total["n"] == 640 and np.all(total["cross"] == 640.0)
    assert combine(total)["n"] == 640
    # a flat group keeps all of its GROUP_BLOCKS results until the group's combine: 16 here
    assert most_alive <= 6 < GROUP_BLOCKS, f"{most_alive} block results were alive at once"
