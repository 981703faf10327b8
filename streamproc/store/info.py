"""``streamproc info``: what a store holds, from its manifest alone (no lock, no data read)."""

from __future__ import annotations

import os
from dataclasses import asdict

from .store import Store


def store_info(path: str | os.PathLike) -> dict:
    store = Store.open(path)
    m = store.manifest
    return {
        "path": str(store.path),
        "format_version": m.format_version,
        "created_at": m.created_at,
        "rows": m.rows,
        "dim": m.dim,
        "dtype": m.dtype,
        "chunk_rows": m.chunk_rows,
        "columns": list(m.columns),
        "batches": [
            {k: v for k, v in asdict(b).items() if k in ("id", "source", "sha256", "start", "stop", "ingested_at")}
            for b in m.batches
        ],
        "models": [
            {"id": model_id, "current": model_id == m.current_model, "created_at": meta.created_at,
             "k": meta.k, "watermark": meta.watermark}
            for model_id, meta in m.models.items()
        ],
        "current_model": m.current_model,
    }


def format_info(info: dict) -> str:
    lines = [
        f"store    {info['path']}",
        f"rows     {info['rows']:,} x {info['dim']} {info['dtype']} (chunks of {info['chunk_rows']:,} rows)",
        f"columns  {', '.join(info['columns']) or 'none'} (beside the vectors)",
        f"batches  {len(info['batches'])}",
    ]
    for b in info["batches"][-10:]:
        lines.append(f"  {b['id']}  rows [{b['start']:,}, {b['stop']:,})  {b['ingested_at']}  {os.path.basename(b['source'])}")
    if len(info["batches"]) > 10:
        lines.insert(4, f"  ... {len(info['batches']) - 10} earlier batches (see --json)")
    lines.append(f"models   {len(info['models'])}" + (f" (current: {info['current_model']})" if info["current_model"] else ""))
    for model in info["models"]:
        mark = "*" if model["current"] else " "
        lines.append(f" {mark}{model['id']}  k={model['k']}  labelled up to row {model['watermark']:,}")
    return "\n".join(lines)
