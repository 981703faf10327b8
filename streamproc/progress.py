"""Progress bars on stderr, shown only on a terminal and never under --quiet or --json."""

from __future__ import annotations

import sys
from contextlib import contextmanager

_enabled = True


def configure(*, quiet: bool) -> None:
    """Turn bars off for this process (``--quiet``, ``--json``)."""
    global _enabled
    _enabled = not quiet


def enabled() -> bool:
    return _enabled and sys.stderr.isatty()


@contextmanager
def bar(total: int | None, desc: str, unit: str = "rows"):
    """A tqdm bar (or a silent stand-in) with ``update(n)``."""
    if not enabled():
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, leave=False) as b:
        yield b


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass


def message(text: str) -> None:
    """A progress line for the person at the terminal (stderr); silent under --quiet or off a terminal."""
    if enabled():
        print(text, file=sys.stderr)


def warn(text: str) -> None:
    """A warning on stderr (silent only under --quiet / --json)."""
    if _enabled:
        print(f"warning: {text}", file=sys.stderr)
