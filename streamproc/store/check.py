"""``streamproc check``: verify a store like a database's integrity check, without the lock.

Checks the manifest (types, names, row counts, batches, watermarks), every committed chunk of every
array it vouches for (present, right size, crc32c checksum), the stored labels (each one a cluster id
of its model), and every model (arrays finite, shapes, scale > 0). Each problem names the array, the
rows and what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.core.array import AsyncArray

from ..errors import StreamprocError
from . import arrays
from .catalog import load_model
from .integrity import every_chunk_written, read_rows
from .store import WRITING_MARKER, Store, block_ranges, committed_lengths


@dataclass
class CheckReport:
    store: str
    rows: int = 0
    arrays: int = 0
    chunks: int = 0
    models: int = 0
    without_checksums: list[str] = field(default_factory=list)  # arrays written before checksums existed
    problems: list[dict] = field(default_factory=list)

    def add(self, array: str, rows: list[int] | None, problem: str) -> None:
        self.problems.append({"array": array, "rows": rows, "problem": problem})

    def to_dict(self) -> dict:
        return {"store": self.store, "ok": not self.problems, "rows": self.rows, "arrays": self.arrays,
                "chunks": self.chunks, "models": self.models, "without_checksums": self.without_checksums,
                "problems": self.problems}


def check_store(path: str | os.PathLike) -> CheckReport:
    report = CheckReport(str(path))
    try:
        store = Store.open(path)
    except StreamprocError as exc:
        report.add("manifest.json", None, str(exc))
        return report
    report.rows = store.rows
    recovering = (store.path / WRITING_MARKER).exists()  # the next writer resizes arrays to the manifest
    cluster_ids = {}  # labels array -> (model id, the ids its labels may take)
    for model_id in store.manifest.models:
        report.models += 1
        try:
            cluster_ids[f"models/{model_id}/labels"] = (model_id, load_model(store, model_id).classes_)
        except StreamprocError as exc:
            report.add(f"models/{model_id}", None, str(exc))
    lengths = committed_lengths(store.manifest)
    for model_id, entry in store.manifest.models.items():  # the fit's reduced rows: classify and project read them
        if arrays.whole_chunks(store.path / "models" / model_id / "reduced"):
            lengths[f"models/{model_id}/reduced"] = entry.fit_rows[1]
    for name, length in lengths.items():
        if length == 0:
            continue  # no committed rows (e.g. the label arrays of a model that never classified)
        report.arrays += 1
        _check_array(store, name, length, recovering, report, cluster_ids.get(name))
    return report


def _check_array(store: Store, name: str, length: int, recovering: bool, report: CheckReport,
                 labels_of: tuple[str, np.ndarray] | None = None) -> None:
    """Every committed chunk of one array; with ``labels_of`` (model id, its cluster ids), also that
    every stored label is one of them."""
    try:
        arr = store.array(name)
    except StreamprocError as exc:
        report.add(name, [0, length], str(exc))
        return
    if arr.shape[0] < length and not recovering:  # (larger: a commit since our manifest snapshot)
        report.add(name, None, f"stored shape has {arr.shape[0]} rows, the manifest commits {length}")
    if not every_chunk_written(arr):  # (the fit's reduced rows: no checksums, but every chunk is checked)
        report.without_checksums.append(name)
    view = _with_length(arr, length)
    for a, b in block_ranges(length, arr.chunks[0]):
        report.chunks += 1
        try:
            block = read_rows(store.path / name, view, a, b)
        except StreamprocError as exc:
            report.add(name, [a, b], str(exc))
            continue
        if labels_of is not None:
            bad = np.flatnonzero(~np.isin(block, labels_of[1]))
            if len(bad):
                report.add(name, [a, b], f"row {a + bad[0]} holds cluster id {block[bad[0]]}, which model {labels_of[0]} "
                                         f"does not have ({len(bad)} such row{'s' * (len(bad) != 1)} in these rows)")


def _with_length(arr: zarr.Array, length: int) -> zarr.Array:
    """The array as the manifest sees it: ``length`` rows, whatever its stored shape says."""
    if arr.shape[0] == length:
        return arr
    meta = arr.metadata.update_shape((length, *arr.shape[1:]))
    return zarr.Array(AsyncArray(metadata=meta, store_path=arr.store_path, config=arr._async_array.config))


def format_check(report: CheckReport) -> str:
    summary = (f"{report.store}: {report.rows:,} rows, {report.arrays} arrays, {report.chunks} chunks, "
               f"{report.models} model{'s' * (report.models != 1)} checked")
    if report.without_checksums:
        summary += f" ({len(report.without_checksums)} written before checksums: read, not verified)"
    if not report.problems:
        return f"{summary}: sound"
    lines = [f"{summary}: {len(report.problems)} problem(s)"]
    for p in report.problems:
        rows = f" rows [{p['rows'][0]}, {p['rows'][1]})" if p["rows"] else ""
        lines.append(f"  {p['array']}{rows}: {p['problem']}")
    return "\n".join(lines)
