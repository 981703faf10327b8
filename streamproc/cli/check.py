"""The command that verifies a store: ``check``."""

from __future__ import annotations

import click

from .common import Report, reporting


@click.command(name="check")
@click.argument("store", type=click.Path(file_okay=False))
@reporting
def check_command(store):
    """Verify STORE: its manifest, every committed chunk of every array (present, checksum), every
    model (finite arrays, shapes, scale > 0) and the watermarks. Never takes the lock or writes.

    Exit code 0 when the store is sound, 1 with every problem named (array, rows, what is wrong).

    \b
    Example:
      streamproc check store --json
    """
    from ..store.check import check_store, format_check

    report = check_store(store)
    return Report(report.to_dict(), format_check(report), exit_code=0 if not report.problems else 1)


COMMANDS = [check_command]
