"""The ``streamproc`` command line: the group, and every command registered on it.

Each command lives in a ``cli_*`` module (parse, call one library function, report); what they share
is in :mod:`cli_common`. Nothing here imports numpy or the heavy libraries: commands import their
work when they run, so ``streamproc --help`` starts fast.
"""

from __future__ import annotations

import click

from .. import __version__
from . import check, data, label, models, serve, view
from .common import Main


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="streamproc")
def main():
    """Streaming clustering of embedding vectors in a crash-safe Zarr store.

    \b
    A day with streamproc:
      streamproc synth inbox --rows 100000 --dim 384 --format parquet --texts   # or your own batches
      streamproc ingest store inbox/ --id-column id --text-column text          # each file one atomic batch
      streamproc fit store                              # PCA -> k-means for k = 4..32 -> Davies-Bouldin
      streamproc classify store                         # label every new row, exactly once
      streamproc project store                          # 2-D positions: UMAP on a sample, then placement
      streamproc render store -o map.png                # the map of every row, labelled clusters
      streamproc report store -o report.html            # sizes, scores against k, keywords per cluster
      streamproc export store -o labels.parquet         # the labels for other programs (.csv, .jsonl)
    """


# one line each in `streamproc --help` (the commands' own first sentences are cut off at the line's end)
SHORT_HELP = {
    "check": "Verify a store: manifest, every chunk's checksum, every model.",
    "classify": "Label every row the model has not labelled yet, exactly once.",
    "demo": "Run the whole job end to end on built-in synthetic data.",
    "embed": "Embed texts with a local sentence encoder and ingest them.",
    "export": "Write the labelled rows to Parquet, CSV or JSON Lines.",
    "fit": "Fit PCA + clustering for every k, pick k, save the model.",
    "info": "Show what a store holds: rows, dimension, batches, models.",
    "ingest": "Add each file to the store as one atomic batch.",
    "models": "List, compare and activate a store's models.",
    "predict": "Label vectors or texts with the model, writing nothing.",
    "project": "Store a 2-D map position for every row (UMAP, t-SNE, PCA).",
    "render": "Draw every row on the map to a PNG, with datashader.",
    "report": "Write one self-contained HTML page about the clusters.",
    "serve": "Explore the store in the browser: map, clusters, queries.",
    "synth": "Write seeded synthetic embedding batches (with texts).",
}

for _module in (check, data, label, models, serve, view):
    for _command in _module.COMMANDS:
        _command.short_help = SHORT_HELP.get(_command.name, _command.short_help)
        main.add_command(_command)
