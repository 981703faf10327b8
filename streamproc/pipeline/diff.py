"""``streamproc models diff``: how the clusters of one model became those of another, in rows.

Both models' stored labels are compared over the rows both have labelled (or, when they share none,
both models label a sample of the store's rows). Rows that model A flagged as outliers belong to none
of A's clusters (a group the outliers formed is *new*, not a split). From the table of rows per
(from id, to id) pair:
a pair is *linked* when its rows are at least ``LINK_SHARE`` (20 %) of the from-cluster's rows and of
the to-cluster's rows. A from-cluster linked to one to-cluster that is linked to it alone is
*matched*; linked to several, *split*; a to-cluster linked from several is *merged*; a from-cluster
with no link is *gone*, a to-cluster with none is *new* (e.g. a group the outliers formed).
"""

from __future__ import annotations

import os

import numpy as np

from ..learn.align import label_positions
from ..store.catalog import load_model
from ..store.store import Store

LINK_SHARE = 0.2
SAMPLE_ROWS = 50_000
BLOCK_ROWS = 262_144


def diff_models(store_path: str | os.PathLike, from_id: str, to_id: str) -> dict:
    store = Store.open(store_path)
    a, b = load_model(store, from_id), load_model(store, to_id)
    inliers, outliers, source = _tables(store, a, b)
    every = inliers + outliers
    rows = int(every.sum())
    from_sizes, to_sizes = inliers.sum(axis=1), inliers.sum(axis=0)
    linked = (inliers >= LINK_SHARE * from_sizes[:, None]) & (inliers >= LINK_SHARE * to_sizes[None, :]) & (inliers > 0)
    same_id = a.classes_[:, None] == b.classes_[None, :]
    out = {"from": a.id, "to": b.id, "rows": rows, "source": source,
           "kept": float(every[same_id].sum() / rows) if rows else None,
           "matched": [], "split": [], "merged": [], "new": [], "gone": []}
    ida, idb = [int(i) for i in a.classes_], [int(i) for i in b.classes_]
    for i in range(a.k):
        targets = np.flatnonzero(linked[i])
        if len(targets) == 0:
            out["gone"].append({"id": ida[i], "rows": int(every[i].sum())})
        elif len(targets) > 1:
            out["split"].append({"from": ida[i], "to": [idb[j] for j in targets], "rows": [int(inliers[i, j]) for j in targets]})
        elif linked[:, targets[0]].sum() == 1:
            out["matched"].append({"from": ida[i], "to": idb[targets[0]], "rows": int(inliers[i, targets[0]])})
    for j in range(b.k):
        sources = np.flatnonzero(linked[:, j])
        if len(sources) == 0:
            out["new"].append({"id": idb[j], "rows": int(every[:, j].sum())})
        elif len(sources) > 1:
            out["merged"].append({"from": [ida[i] for i in sources], "to": idb[j], "rows": [int(inliers[i, j]) for i in sources]})
    return out


def _tables(store: Store, a, b) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows per (from position, to position), for A's inliers and A's outliers: from the stored
    labels, or by labelling a sample."""
    inliers, outliers = np.zeros((a.k, b.k), np.int64), np.zeros((a.k, b.k), np.int64)
    common = min(_watermark(store, a.id), _watermark(store, b.id))
    if common > 0:
        names = [f"models/{a.id}/labels", f"models/{a.id}/outlier", f"models/{b.id}/labels"]
        for _, _, got in store.iter_rows(names, 0, common, BLOCK_ROWS):
            _add(inliers, outliers, label_positions(a, got[names[0]]), got[names[1]], label_positions(b, got[names[2]]))
        return inliers, outliers, "labels"
    rows = np.unique(np.linspace(0, store.rows - 1, min(SAMPLE_ROWS, store.rows)).astype(np.int64))
    vectors = store.array("vectors").get_orthogonal_selection((rows, slice(None)))
    labelled = a.label(vectors)
    _add(inliers, outliers, label_positions(a, labelled["labels"]), labelled["outlier"],
         label_positions(b, b.predict(vectors)))
    return inliers, outliers, "sample"


def _add(inliers: np.ndarray, outliers: np.ndarray, pa: np.ndarray, outlier: np.ndarray, pb: np.ndarray) -> None:
    for table, keep in ((inliers, ~outlier), (outliers, outlier)):
        ok = keep & (pa >= 0) & (pb >= 0)
        table += np.bincount(pa[ok] * table.shape[1] + pb[ok], minlength=table.size).reshape(table.shape)


def _watermark(store: Store, model_id: str) -> int:
    return store.manifest.models[model_id].watermark
