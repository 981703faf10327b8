"""What every command shares: the report, the error boundary, shared options.

The ``streamproc`` command line: each command parses, calls one library function, and reports.

Library errors become a one-line message and an exit code at one boundary (:func:`reporting`):
0 ok, 1 error, 2 usage, 3 drift (``classify --fail-on-drift``), 75 store locked by another process.
An ``OSError`` (disk full, read-only store, permission denied) is an error too: one line naming the
path, exit 1. Click's own usage errors honour ``--json`` as well (:class:`Main`).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass, field

import click

from .. import progress
from ..errors import StreamprocError


@dataclass
class Report:
    """What a command reports: the facts (for --json) and the same facts for a person."""

    data: dict
    text: str = ""
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what went wrong (also in text): shown even under --quiet


def reporting(fn):
    """Add --json and --quiet, and turn library errors into messages and exit codes."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout and nothing else.")
    @click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (on stderr).")
    @functools.wraps(fn)
    def wrapper(*args, as_json: bool, quiet: bool, **kwargs):
        progress.configure(quiet=quiet or as_json)
        try:
            report = fn(*args, **kwargs)
        except StreamprocError as exc:
            fail(str(exc), exc.exit_code, as_json)
        except OSError as exc:
            fail(os_error_message(exc), 1, as_json)
        if as_json:
            click.echo(json.dumps(report.data))
        elif quiet:
            for line in report.errors:
                click.echo(f"Error: {line}", err=True)
        elif report.text:
            click.echo(report.text)
        for warning in report.warnings:
            progress.warn(warning)
        sys.exit(report.exit_code)

    return wrapper


def fail(message: str, exit_code: int, as_json: bool):
    """Report an error as one line (or the JSON error object) and exit."""
    message = " ".join(message.split())
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": exit_code}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


def os_error_message(exc: OSError) -> str:
    """``PATH: what went wrong`` for a failed system call (ENOSPC, EROFS, EACCES ...)."""
    return f"{exc.filename or 'a file'}: {exc.strerror or exc}"


def check_seconds(ctx, param, value: float) -> float:
    """Click callback: a number of seconds must be finite and >= 0 (``--wait nan`` would wait forever)."""
    if value is not None and (math.isnan(value) or value < 0 or math.isinf(value)):
        raise click.BadParameter(f"expected a finite number of seconds >= 0, got {value}")
    return value


def wait_option(fn=None, *, default: float = 0.0):
    """``--wait SECONDS``: how long to keep trying for a lock another process holds."""
    def decorate(fn):
        return click.option("--wait", type=float, default=default, show_default=True, metavar="SECONDS",
                            callback=check_seconds, help="If another process holds the store's lock, keep trying "
                                                    "this long before exit 75.")(fn)

    return decorate(fn) if fn is not None else decorate


class Main(click.Group):
    """The command group; a usage error (exit 2) of any command prints the JSON error object when
    ``--json`` is among the arguments."""

    def parse_args(self, ctx, args):
        ctx.meta["json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if not ctx.meta.get("json"):
                raise
            fail(exc.format_message(), exc.exit_code, True)

def scheduler_option(fn):
    return click.option("--scheduler", metavar="tcp://HOST:PORT",
                        help="Run the passes on this dask.distributed cluster (workers must see the store's path). "
                             "Default: Dask threads in this process.")(fn)
