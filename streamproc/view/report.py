"""``streamproc report``: one self-contained HTML page about a model's clusters."""

from __future__ import annotations

import base64
import io
import os
from html import escape
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import UsageError
from ..fs import check_writable
from ..learn.align import label_positions
from ..store.catalog import load_model
from ..store.store import Store
from .charts import bars, lines, stacked_bars
from .keywords import KeywordCounter, sample_step
from .render import behind, category_colors, drawable_rows, render_image

REPRESENTATIVES = 5
BLOCK_ROWS = 262_144
MAX_BATCH_BARS = 60  # more batches than this are drawn in groups of consecutive batches


def cluster_summary(store: Store, model, rows: int, *, lang: str) -> dict:
    """One pass over labels (and texts): sizes, mean distance, outliers, nearest rows, keywords, and
    per batch the rows in each cluster and the outliers. Arrays are indexed by centroid position;
    ``model.classes_`` holds the cluster ids."""
    k = model.k
    base = f"models/{model.id}"
    sizes, dist_sum, outliers = np.zeros(k, np.int64), np.zeros(k), np.zeros(k, np.int64)
    batch_starts = np.array([b.start for b in store.manifest.batches], dtype=np.int64)
    batch_counts = np.zeros((len(batch_starts), k), np.int64)
    batch_outliers = np.zeros(len(batch_starts), np.int64)
    best_d = np.full((k, REPRESENTATIVES), np.inf)
    best_row = np.full((k, REPRESENTATIVES), -1, np.int64)
    keywords = KeywordCounter(k, lang) if store.has_column("texts") else None
    step = sample_step(rows)
    with progress.bar(rows, "report") as bar:
        columns = [f"{base}/labels", f"{base}/distance", f"{base}/outlier"] + (["texts"] if keywords else [])
        for a, b, got in store.iter_rows(columns, 0, rows, BLOCK_ROWS):
            labels = label_positions(model, got[f"{base}/labels"]).astype(np.int64)
            distance = got[f"{base}/distance"].astype(np.float64)
            sizes += np.bincount(labels, minlength=k)
            dist_sum += np.bincount(labels, weights=distance, minlength=k)
            outliers += np.bincount(labels, weights=got[f"{base}/outlier"], minlength=k).astype(np.int64)
            batch = np.searchsorted(batch_starts, np.arange(a, b), side="right") - 1
            batch_counts += np.bincount(batch * k + labels, minlength=batch_counts.size).reshape(batch_counts.shape)
            batch_outliers += np.bincount(batch, weights=got[f"{base}/outlier"],
                                          minlength=len(batch_starts)).astype(np.int64)
            for c in np.unique(labels):
                mine = np.flatnonzero(labels == c)
                d = np.concatenate([best_d[c], distance[mine]])
                r = np.concatenate([best_row[c], mine + a])
                keep = np.argsort(d, kind="stable")[:REPRESENTATIVES]
                best_d[c], best_row[c] = d[keep], r[keep]
            if keywords is not None:  # the evenly spaced rows render names the map's clusters from
                offset = -a % step
                keywords.update(got["texts"][offset::step].tolist(), labels[offset::step].tolist())
            bar.update(b - a)
    reps = [[_row_view(store, int(r), float(d)) for r, d in zip(rs, ds) if r >= 0] for rs, ds in zip(best_row, best_d)]
    return {"sizes": sizes, "mean_distance": dist_sum / np.maximum(sizes, 1), "outliers": outliers,
            "representatives": reps, "keywords": keywords.top(10) if keywords else None,
            "batch_counts": batch_counts, "batch_outliers": batch_outliers}


def _row_view(store: Store, row: int, distance: float) -> dict:
    view = {"row": row, "distance": distance}
    for column in ("ids", "texts"):
        if store.has_column(column) and not store.is_missing(column, row):
            view[column[:-1]] = str(store.read(column, row, row + 1)[0])
    return view


def write_report(store_path: str | os.PathLike, output: str | os.PathLike, *, model_id: str | None = None,
                 lang: str = "en") -> dict:
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: expected an .html file name")
    check_writable(output)
    store = Store.open(store_path)
    model = load_model(store, model_id)
    rows = drawable_rows(store, model.id)
    summary = cluster_summary(store, model, rows, lang=lang)
    keywords = [terms[0][0] if terms else "" for terms in summary["keywords"]] if summary["keywords"] else None
    page, _ = render_image(store, model.id, width=1100, height=760, color="cluster", keywords=keywords)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    html = _html(store, model, rows, base64.b64encode(buffer.getvalue()).decode(), summary)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, output)
    clusters = [{"label": int(model.classes_[c]), "size": int(summary["sizes"][c]),
                 "mean_distance": float(summary["mean_distance"][c]),
                 "outliers": int(summary["outliers"][c]),
                 "representatives": [view.get("id", view["row"]) for view in summary["representatives"][c]],
                 "keywords": [w for w, _ in summary["keywords"][c]] if summary["keywords"] else None}
                for c in range(model.k)]
    return {"output": str(output), "model": model.id, "rows": rows, **behind(store, model.id), "k": model.k,
            "keywords": summary["keywords"] is not None, "clusters": clusters}


def _html(store, model, rows, png64, s) -> str:
    k = model.k
    colors = category_colors(k)
    spectrum = np.cumsum(model.spectrum) / model.total_variance
    shown = min(len(spectrum), max(model.n_components * 2, 10))
    charts = [
        bars("Cluster sizes", [str(c) for c in model.classes_], s["sizes"].tolist(), colors, x_label="cluster",
             y_label="rows"),
        *_batch_charts(store, model, s, colors),
        lines("Explained variance against components", list(range(1, shown + 1)),
              {"cumulative explained variance": spectrum[:shown].tolist()}, x_label="components",
              y_label="fraction of variance", mark_x=model.n_components),
    ]
    table = "".join(_cluster_row(c, int(model.classes_[c]), colors[c], s) for c in range(k))
    keyword_head = "<th>keywords</th>" if s["keywords"] is not None else ""
    no_texts = "" if s["keywords"] is not None else (
        '<p class="note">No texts were ingested with this store, so there are no keywords '
        '(ingest with <code>--text-column</code> to get them).</p>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamproc report: {escape(model.id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1160px; color: #1f2933; }}
h1 {{ font-size: 1.5em; }} h2 {{ margin-top: 2em; border-bottom: 1px solid #d9dee3; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }} .scores {{ display: flex; gap: 1em; align-items: flex-start; }}
.scores table {{ width: auto; font-variant-numeric: tabular-nums; }} .scores td {{ text-align: right; }}
tr.chosen td {{ font-weight: bold; background: #f0f4f8; }} table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #e4e7eb; padding: .4em; vertical-align: top; text-align: left; }}
.swatch {{ display: inline-block; width: 1em; height: 1em; border-radius: 2px; }}
.rep {{ font-size: .9em; color: #3e4c59; }} .note {{ color: #52606d; }} code {{ background: #f0f4f8; }}
</style></head><body>
<h1>streamproc report — model <code>{escape(model.id)}</code></h1>
<p>{rows:,} rows of {store.dim}-d vectors · k = {k} · {model.n_components} PCA components
({model.explained_variance:.1%} of the variance) · scaling {escape(model.scaling)} · metric {escape(model.metric)}</p>
<section id="map"><h2>Map</h2><img alt="map of every row, coloured by cluster" src="data:image/png;base64,{png64}"></section>
<section id="scores"><h2>Every k scored four ways</h2>{_scores_section(model)}</section>
<section id="charts"><h2>Clusters and components</h2><div class="charts">{''.join(charts)}</div></section>
<section id="clusters"><h2>Clusters</h2>{no_texts}
<table><thead><tr><th>cluster</th><th>size</th><th>mean distance</th><th>outliers</th>
<th>representative rows (nearest the centroid)</th>{keyword_head}</tr></thead><tbody>{table}</tbody></table></section>
</body></html>
"""


def _batch_charts(store, model, s: dict, colors: list[str]) -> list[str]:
    """Cluster shares and outlier rate over the batches (groups of consecutive batches past
    ``MAX_BATCH_BARS``): drift shows as a share or a rate that moves."""
    rows = s["batch_counts"].sum(axis=1)
    labelled = np.flatnonzero(rows)
    if len(labelled) == 0:
        return []
    groups = np.array_split(labelled, min(len(labelled), MAX_BATCH_BARS))
    ids = [b.id for b in store.manifest.batches]
    names = [ids[g[0]] if len(g) == 1 else f"{ids[g[0]]}..{ids[g[-1]]}" for g in groups]
    counts = np.array([s["batch_counts"][g].sum(axis=0) for g in groups], dtype=np.float64)
    totals = counts.sum(axis=1)
    shares = counts / totals[:, None]
    outlier_rate = np.array([s["batch_outliers"][g].sum() for g in groups]) / totals
    series = {f"cluster {cid}": shares[:, c].tolist() for c, cid in enumerate(model.classes_)}
    return [stacked_bars("Cluster shares over batches", names, series, colors, x_label="batch", y_label="share of rows"),
            lines("Outlier rate over batches", list(range(1, len(groups) + 1)), {"outlier rate": outlier_rate.tolist()},
                  x_label=f"batch ({names[0]} to {names[-1]})", y_label="outlier rate")]


SCORES = (("davies_bouldin", "Davies-Bouldin", "lower is better", ".4f"),
          ("calinski_harabasz", "Calinski-Harabasz", "higher is better", ".1f"),
          ("silhouette", "silhouette", "higher is better", ".4f"),
          ("inertia", "inertia", "the elbow is the knee", ".4g"))


def _scores_section(model) -> str:
    """The four scores against k as charts, with the numbers in a table beside them."""
    from ..learn.scores import elbow_index

    scores = model.scores
    ks = [sc["k"] for sc in scores]
    charts = [lines(f"{title} against k ({hint})", ks, {title: [sc.get(name) for sc in scores]}, x_label="k",
                    y_label=title, mark_x=model.k) for name, title, hint, _ in SCORES]
    head = "".join(f"<th>{escape(title)}</th>" for _, title, _, _ in SCORES)
    body = "".join(
        f'<tr{" class=chosen" if sc["k"] == model.k else ""}><td>{sc["k"]}</td>'
        + "".join(f"<td>{'-' if sc.get(name) is None else format(sc[name], fmt)}</td>" for name, _, _, fmt in SCORES)
        + "</tr>" for sc in scores)
    params = model.params
    elbow = ks[elbow_index(ks, [sc["inertia"] for sc in scores])] if scores else None
    note = (f"method {escape(str(params.get('method', 'kmeans')))}; k chosen by {escape(str(params.get('select', 'db')))}"
            f" (bold row); the elbow rule would pick k = {elbow}; silhouette on a uniform sample of "
            f"{model.extra.get('silhouette_sample', 0):,} rows, the other scores over every row.")
    return (f'<p class="note">{note}</p><div class="scores"><div class="charts">{"".join(charts)}</div>'
            f'<table id="score-table"><thead><tr><th>k</th>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def _cluster_row(c: int, cid: int, color: str, s: dict) -> str:
    reps = "<br>".join(
        escape(" · ".join(x for x in (f"row {r['row']}", r.get("id", ""), r.get("text", "")[:160]) if x))
        for r in s["representatives"][c])
    keywords = ""
    if s["keywords"] is not None:
        keywords = f"<td>{escape(', '.join(term for term, _ in s['keywords'][c]))}</td>"
    return (f'<tr id="cluster-{cid}"><td><span class="swatch" style="background:{color}"></span> {cid}</td>'
            f'<td>{int(s["sizes"][c]):,}</td><td>{s["mean_distance"][c]:.4g}</td><td>{int(s["outliers"][c]):,}</td>'
            f'<td class="rep">{reps}</td>{keywords}</tr>')
