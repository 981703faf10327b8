"""What a person waiting sees, on stderr: every step that runs longer than ``DELAY`` seconds shows a
tqdm bar on a terminal, and one start line and one end line off a terminal (a log file, cron);
nothing at all under ``--quiet`` or ``--json``.

``DELAY`` is 2 s, or ``STREAMPROC_PROGRESS_AFTER`` seconds when that is set (0 shows every step).
This module is the one place that decides what is shown; the steps only say what they are doing
(:func:`bar`, :func:`step`, :func:`message`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

DELAY = float(os.environ.get("STREAMPROC_PROGRESS_AFTER", "2"))
TICK = 0.5  # seconds between redraws of a bar that has no counts to update it
NUMBA_FIRST_RUN = "about 30 s on 2 cores"  # umap's functions, measured on a fresh venv (README)

_enabled = True


def configure(*, quiet: bool) -> None:
    """Turn progress off for this process (``--quiet``, ``--json``)."""
    global _enabled
    _enabled = not quiet


def enabled() -> bool:
    """True when progress bars are drawn: on a terminal, not quiet."""
    return _enabled and sys.stderr.isatty()


@contextmanager
def bar(total: int | None, desc: str, unit: str = "rows"):
    """A step with an ``update(n)`` counter: a bar on a terminal, start/end lines off it."""
    if not _enabled:
        yield _Silent()
    elif sys.stderr.isatty():
        with _TerminalBar(total, desc, unit) as shown:
            yield shown
    else:
        with _LogLines(desc, unit) as shown:
            yield shown


def step(desc: str):
    """A step without counts (a library call): an elapsed-time bar on a terminal, start/end lines off it."""
    return bar(None, desc, unit="")


def message(text: str) -> None:
    """One line for the person waiting (stderr); silent under --quiet or --json."""
    if _enabled:
        print(text, file=sys.stderr, flush=True)


def warn(text: str) -> None:
    """A warning on stderr (silent only under --quiet / --json)."""
    if _enabled:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def umap_progress(desc: str = "UMAP epochs") -> dict:
    """``tqdm_kwds`` for ``umap.UMAP``: its epoch loop draws our kind of bar on a terminal. umap-learn
    draws it when ``tqdm_kwds["disable"]`` is False even with ``verbose=False`` (layouts.py), so its
    verbose prints stay off stdout."""
    return {"disable": not enabled(), "desc": desc, "file": sys.stderr, "leave": False, "delay": DELAY}


def numba_cache_is_cold(package: str = "pynndescent") -> bool:
    """True when numba has no cached machine code for ``package`` yet (its first use on this machine
    compiles it). numba caches beside the module (``__pycache__/*.nbi``), in ``NUMBA_CACHE_DIR`` when
    that is set, or in the user's cache folder when the package folder is read-only."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return False
    if os.environ.get("NUMBA_CACHE_DIR"):
        places = [Path(os.environ["NUMBA_CACHE_DIR"])]
    else:
        places = [Path(spec.origin).parent / "__pycache__", Path.home() / ".cache" / "numba"]
    return not any(package in str(p) or place.name == "__pycache__"
                   for place in places if place.is_dir() for p in place.rglob("*.nbi"))


def announce_numba_compilation(package: str = "pynndescent") -> None:
    """Say so before a first run that compiles numba code, and how long it takes."""
    if numba_cache_is_cold(package):
        message(f"first run on this machine: numba compiles umap-learn's functions once "
                f"({NUMBA_FIRST_RUN}); later runs reuse the compiled code")


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


class _TerminalBar(_Silent):
    """tqdm, drawn once the step has run ``DELAY`` seconds, redrawn every ``TICK`` even without updates
    (so a long library call still shows its elapsed time)."""

    def __init__(self, total, desc, unit):
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, desc=desc, unit=unit or "it", unit_scale=bool(unit), file=sys.stderr,
                         leave=False, delay=DELAY, bar_format=None if unit else "{desc}: {elapsed}")
        self.done = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)

    def _tick(self):
        began = time.monotonic()
        while not self.done.wait(TICK):
            if time.monotonic() - began >= DELAY:
                self.tqdm.refresh()

    def __enter__(self):
        self.ticker.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.ticker.join()
        self.tqdm.close()

    def update(self, n: int = 1) -> None:
        self.tqdm.update(n)
        if self.tqdm.disable:  # TQDM_DISABLE in the environment: tqdm keeps no clock then
            return
        shown = time.time() >= self.tqdm.start_t + self.tqdm.delay  # as tqdm decides to draw (its clock)
        if shown and self.tqdm.total is not None and self.tqdm.n >= self.tqdm.total:
            self.tqdm.refresh()  # the full bar, even when the last update came within tqdm's redraw interval

    def set_postfix_str(self, s: str) -> None:
        self.tqdm.set_postfix_str(s)


class _LogLines(_Silent):
    """``desc ...`` once the step has run ``DELAY`` seconds, and ``desc: done ... in N s`` when it ends."""

    def __init__(self, desc, unit):
        self.desc, self.unit, self.count = desc, unit, 0
        self.began = time.monotonic()
        self.started = threading.Event()
        self.timer = threading.Timer(DELAY, self._start)
        self.timer.daemon = True

    def _start(self):
        self.started.set()
        message(f"{self.desc} ...")

    def __enter__(self):
        if DELAY <= 0:
            self._start()
        else:
            self.timer.start()
        return self

    def __exit__(self, exc_type, *exc):
        self.timer.cancel()
        if self.started.is_set():
            seconds = time.monotonic() - self.began
            what = f"{self.count:,} {self.unit} " if self.unit and self.count else ""
            message(f"{self.desc}: {'stopped' if exc_type else 'done'}, {what}in {seconds:.1f} s")

    def update(self, n: int = 1) -> None:
        self.count += n
