"""The ``streamproc`` command line: each command parses, calls one library function, and reports.

Library errors become a one-line message and an exit code at one boundary (:func:`reporting`):
0 ok, 1 error, 2 usage, 75 store locked by another process.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field

import click

from . import __version__, progress
from .errors import StreamprocError


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
            if as_json:
                click.echo(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
            else:
                click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        if as_json:
            click.echo(json.dumps(report.data))
        elif quiet:
            for line in report.errors:
                click.echo(f"Error: {line}", err=True)
        elif report.text:
            click.echo(report.text)
        sys.exit(report.exit_code)

    return wrapper


def wait_option(fn):
    return click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
                        help="If another process holds the store's lock, keep trying this long before exit 75.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="streamproc")
def main():
    """Streaming clustering of embedding vectors in a crash-safe Zarr store.

    \b
    A day with streamproc:
      streamproc synth inbox --rows 100000 --dim 384 --format parquet --texts   # or your own batches
      streamproc ingest store inbox/ --id-column id --text-column text          # each file one atomic batch
      streamproc fit store                              # PCA -> k-means for k = 4..32 -> Davies-Bouldin
      streamproc classify store                         # label every new row, exactly once
      streamproc render store -o map.png                # the map of every row, labelled clusters
      streamproc report store -o report.html            # sizes, scores against k, keywords per cluster
      streamproc export store -o labels.parquet         # the labels for other programs (.csv, .jsonl)
    """


# Commands live in their own modules; importing them registers them on ``main``.
from . import cli_data, cli_label, cli_model, cli_view  # noqa: E402,F401
