"""The store's exclusive write lock: ``fcntl.flock`` on one file, released by the kernel on ``kill -9``."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import LockBusy

LOCK_NAME = ".lock"


class StoreLock:
    """Exclusive, non-reentrant lock on ``<store>/.lock``.

    ``wait`` is how many seconds to keep trying before giving up with :class:`LockBusy`.
    """

    def __init__(self, store_path: Path, *, wait: float = 0.0):
        self.path = Path(store_path) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(self.wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusy(
                        f"store {self.path.parent} is locked by another streamproc process; "
                        f"try again later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
