"""Run a function over every block of a stored array, on Dask: in-process threads by default, or
an existing dask.distributed cluster (``--scheduler tcp://HOST:PORT``).

Each task opens the array itself and reads its own rows, so raw vectors never travel between
processes and are never persisted; only the small statistics each task returns do. Blocks are
submitted in groups, so memory stays bounded by a group's results whatever the number of rows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import dask.threaded
import numpy as np

from .. import progress
from ..errors import StreamprocError
from ..learn.stats import combine
from ..store import arrays

GROUP_BLOCKS = 16  # map_blocks: blocks a compute runs, whose results are held until the group ends
# reduce_blocks: tasks a compute runs (a task is one block here, CLUSTER_BLOCKS_PER_TASK on a
# cluster); their statistics are combined up a tree as they arrive, so a group holds a few results,
# not 64. Between computes the threads drain: the group's last block runs while the other thread
# waits. 16 a group cost the 1M fit 0.3-0.6 s over its four passes (3 alternated rounds: 11.5-13.7 s
# against 11.0-11.2 s), about the figure of a drain per group.
REDUCE_GROUP_BLOCKS = 64
# Each task, once its own block is read, asks the kernel to read the rows of the next few blocks
# (``arrays.prefetch``): while the threads compute, the disk reads what they take next. A pass
# over 10M x 768 from disk (pass 1 of fit: the read alone 48 s, the products ~50 s on 2 cores) took
# 104 s without it.
PREFETCH_BLOCKS_PER_THREAD = 2
CLUSTER_BLOCKS_PER_TASK = 4  # reduce_blocks on a cluster: blocks a task reads (one at a time)


def _read(path: str, start: int, stop: int) -> np.ndarray:
    return arrays.read_block(path, start, stop)  # a missing or damaged chunk raises, never zeros


def _worker_name() -> str:
    if "distributed" not in sys.modules:  # not on a cluster: do not pay for importing distributed
        return "local"
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "local"


def _run_block(path: str, start: int, stop: int, fn: Callable, args: tuple, kwargs: dict, ahead=None):
    _hold_hook()
    block = _read(path, start, stop)
    if ahead is not None:
        arrays.prefetch(path, *ahead)
    return fn(block, start, *args, **kwargs), _worker_name()


def _run_block_range(path: str, ranges: list[tuple[int, int]], fn: Callable, args: tuple, kwargs: dict, ahead=None):
    """Several consecutive blocks in one task, read one at a time and their statistics combined:
    on a cluster a task costs milliseconds of scheduling and transfer, so each carries a few blocks
    while memory stays at one block."""
    _hold_hook()
    total = None
    for i, (start, stop) in enumerate(ranges):
        block = _read(path, start, stop)
        if i == 0 and ahead is not None:
            arrays.prefetch(path, *ahead)
        value = fn(block, start, *args, **kwargs)
        total = value if total is None else combine(total, value)
    return total, _worker_name()


def _rows_ahead(ranges: list[tuple[int, int]], firsts: list[int], blocks: int,
                shared_cache: bool = True) -> list[tuple[int, int] | None]:
    """For tasks starting at the block indices ``firsts`` (in order; a task runs from its first block
    to the next task's): the rows each asks the kernel to read ahead, the ``blocks`` ranges after the
    task's own first block. Where the tasks share one page cache (threads of this process) each asks
    only for the part of its window the task before did not ask for (asking for the whole window
    again cost 4x the calls, 0.5 s of thread time in a 1M fit whose rows were all in the page cache);
    on a cluster each asks for its whole window, as the task before may run on another host. None:
    nothing to ask for."""
    out, asked_until = [], firsts[0] if firsts else 0
    for first in firsts:
        lo = max(first + 1, asked_until + 1) if shared_cache else first + 1
        hi = min(first + blocks, len(ranges) - 1)
        out.append((ranges[lo][0], ranges[hi][1]) if lo <= hi else None)
        asked_until = max(asked_until, hi)
    return out


def _hold_hook() -> None:
    """Test-only: with STREAMPROC_TEST_HOLD_TASKS=FOLDER (set on the workers), each task announces
    itself as FOLDER/started-<pid>-<n> and waits until FOLDER/go exists, so a test can kill a worker
    while a pass is open."""
    folder = os.environ.get("STREAMPROC_TEST_HOLD_TASKS")
    if not folder or Path(folder, "go").exists():
        return
    import tempfile
    import time

    tempfile.NamedTemporaryFile(dir=folder, prefix=f"started-{os.getpid()}-", delete=False).close()
    deadline = time.monotonic() + 120
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _combine_results(*results):
    """Combine ``(statistics, worker or set of workers)`` pairs into one such pair."""
    workers = set()
    for _, seen in results:
        workers |= {seen} if isinstance(seen, str) else seen
    return combine(*[value for value, _ in results]), workers


def _tree(combine_task, leaves: list) -> object:
    """Combine ``leaves`` two at a time up a binary tree: the scheduler combines each pair as soon as
    both are done, so a pass holds a few block results at once, not a whole group's (at 2560-d one
    result's XᵀX is 52 MB: a flat group of 16 held 0.8 GB)."""
    while len(leaves) > 2:
        leaves = [combine_task(*leaves[i:i + 2]) if i + 1 < len(leaves) else leaves[i]
                  for i in range(0, len(leaves), 2)]
    return combine_task(*leaves)  # (always a combined pair, even for one leaf)


class Runner:
    """Where passes run. ``scheduler`` is None (threads in this process) or a distributed address."""

    def __init__(self, scheduler: str | None = None, *, threads: int | None = None):
        self.scheduler = scheduler
        self.threads = threads or os.cpu_count() or 1
        self.workers_seen: set[str] = set()
        self._client = None
        if scheduler:
            try:
                from distributed import Client

                self._client = Client(scheduler, timeout="10s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise StreamprocError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _compute(self, tasks: list):
        if self._client is not None:
            from distributed import KilledWorker

            try:
                return self._client.gather(self._client.compute(tasks))
            except KilledWorker as exc:
                raise StreamprocError(f"a Dask worker died while running a task ({exc.args[0] if exc.args else exc}) "
                                      "and the scheduler gave up on it; nothing of this run was committed: run it again"
                                      ) from None
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # Dask threads x BLAS threads <= cores
            # the scheduler function, not its name: given a name, dask imports distributed (0.28 s) to
            # look for a client
            return dask.compute(tasks, scheduler=dask.threaded.get, num_workers=self.threads)[0]

    def map_blocks(self, path: Path, ranges: list[tuple[int, int]], fn: Callable, *args,
                   desc: str = "", **kwargs) -> Iterator[tuple[int, object]]:
        """Yield ``(start, fn(block, start, *args, **kwargs))`` for each row range, in order."""
        task = dask.delayed(_run_block, pure=False)
        path = str(Path(path).absolute())  # workers may run in another directory
        with progress.bar(ranges[-1][1] - ranges[0][0] if ranges else 0, desc) as bar:
            ahead = _rows_ahead(ranges, list(range(len(ranges))), PREFETCH_BLOCKS_PER_THREAD * self.threads,
                                self._client is None)
            for g in range(0, len(ranges), GROUP_BLOCKS):
                group = ranges[g:g + GROUP_BLOCKS]
                results = self._compute([task(path, a, b, fn, args, kwargs, ahead[g + i])
                                         for i, (a, b) in enumerate(group)])
                for (a, b), (value, worker) in zip(group, results):
                    self.workers_seen.add(worker)
                    bar.update(b - a)
                    yield a, value

    def reduce_blocks(self, path: Path, ranges: list[tuple[int, int]], fn: Callable, *args,
                      desc: str = "", **kwargs) -> dict:
        """``combine`` of ``fn(block, start, ...)`` over all ranges (fn returns a statistics dict).

        Each group of blocks is combined where it was computed (a tree on the cluster), so one small
        result per group comes back.
        """
        per_task = 1 if self._client is None else CLUSTER_BLOCKS_PER_TASK
        runs = [ranges[i:i + per_task] for i in range(0, len(ranges), per_task)]
        ahead = _rows_ahead(ranges, list(range(0, len(ranges), per_task)),  # a run's own later blocks and
                            per_task - 1 + PREFETCH_BLOCKS_PER_THREAD * self.threads,  # the next few
                            self._client is None)
        task = dask.delayed(_run_block_range, pure=False)
        group_total = dask.delayed(_combine_results, pure=True)
        path = str(Path(path).absolute())  # workers may run in another directory
        total = None
        with progress.bar(ranges[-1][1] - ranges[0][0] if ranges else 0, desc) as bar:
            for g in range(0, len(runs), REDUCE_GROUP_BLOCKS):
                group = runs[g:g + REDUCE_GROUP_BLOCKS]
                value, workers = self._compute([_tree(group_total, [task(path, run, fn, args, kwargs, ahead[g + i])
                                                                    for i, run in enumerate(group)])])[0]
                self.workers_seen |= workers
                total = value if total is None else combine(total, value)
                bar.update(group[-1][-1][1] - group[0][0][0])
        return total

