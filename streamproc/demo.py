"""``streamproc demo``: the whole job end to end on built-in synthetic data, in one folder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import progress
from .errors import UsageError
from .io.readers import ReadOptions
from .io.synth import Mixture, write_batches
from .pipeline.classify import classify
from .pipeline.fit import FitOptions, fit
from .pipeline.ingest import ingest
from .pipeline.project import project
from .view.render import render
from .view.report import write_report

DEMO_MARKER = ".streamproc-demo"  # written into every folder the demo makes: only such folders are reused
DEMO_OUTPUTS = ("store", "inbox", "map.png", "report.html")


def prepare_folder(folder: Path) -> None:
    """Make ``folder`` ready for a demo: create it, or reuse an empty one or an earlier demo's (its
    outputs removed). Any other non-empty folder is refused: the demo never deletes user data."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / DEMO_MARKER).is_file():
            raise UsageError(f"{folder}: not empty and not made by `streamproc demo`; choose a new or empty folder")
        for name in DEMO_OUTPUTS:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("made by streamproc demo; the demo may replace this folder's outputs\n")


def run_demo(folder: str | os.PathLike, *, rows: int = 100_000, dim: int = 384, clusters: int = 20,
             seed: int = 0) -> dict:
    """synth -> ingest (in two rounds) -> fit -> classify -> project -> render -> report."""
    folder = Path(folder)
    store, inbox = folder / "store", folder / "inbox"
    prepare_folder(folder)
    steps, began = {}, time.perf_counter()

    def step(name, fn, *args, **kwargs):
        progress.message(f"demo: {name} ...")
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        steps[name] = round(time.perf_counter() - t, 2)
        return result

    mixture = Mixture(dim=dim, clusters=clusters, seed=seed)
    batch_rows = max(rows // 10, 1)
    first = max(rows * 8 // 10, batch_rows)
    step("synth", write_batches, inbox, mixture=mixture, rows=first, batch_rows=batch_rows, fmt="parquet", texts=True)
    options = ReadOptions(id_column="id", text_column="text")
    step("ingest", ingest, store, [inbox], read_options=options)
    model = step("fit", fit, store, FitOptions(seed=seed)).model
    labelled = step("classify", classify, store).labelled
    # a later batch arrives: ingest and label only the new rows, as cron would
    if rows > first:
        write_batches(inbox, mixture=mixture, rows=rows - first, batch_rows=batch_rows, fmt="parquet", texts=True,
                      first_batch=100)
        step("ingest new batches", ingest, store, [inbox], read_options=options)
        labelled += step("classify new rows", classify, store).labelled
    step("project", project, store)
    step("render", render, store, folder / "map.png")
    step("report", write_report, store, folder / "report.html")
    return {"folder": str(folder), "store": str(store), "rows": rows, "dim": dim, "model": model.id, "k": model.k,
            "n_components": model.n_components, "labelled": labelled, "map": str(folder / "map.png"),
            "report": str(folder / "report.html"), "steps": steps,
            "seconds": round(time.perf_counter() - began, 2)}
