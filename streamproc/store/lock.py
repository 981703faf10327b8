"""The store's exclusive write lock: ``fcntl.flock`` on one file, released by the kernel on ``kill -9``."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import LockBusy

LOCK_NAME = ".lock"


class StoreLock:
    """Exclusive, non-reentrant lock on ``<store>/.lock``. The file is never deleted or replaced.

    ``wait`` is how many seconds to keep trying before giving up with :class:`LockBusy`.
    """

    def __init__(self, store_path: Path, *, wait: float = 0.0):
        self.path = Path(store_path) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + max(self.wait, 0.0)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"store {self.path.parent} is locked by another streamproc process; "
                        f"try again later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
                continue
            if self._is_current(fd):
                break
            os.close(fd)  # we locked a .lock that was since removed or replaced: lock the one there now
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _is_current(self, fd: int) -> bool:
        """Is the file we locked still the one at ``self.path``? (Two writers could otherwise each hold
        a lock on a different file.) streamproc never removes ``.lock``; this guards against anyone else."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

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
