"""``streamproc render``: every row on one PNG, aggregated by datashader chunk by chunk.

Each block of positions is aggregated onto the same canvas (fixed ranges, from a first pass over
the positions); per-category counts add up exactly, so the picture of 100M rows costs the memory of
one block plus one canvas. Outliers are drawn on top in dark ink so they stay visible. Each cluster
is labelled at its densest pixel with its id and top keyword; the line under the title names the
projection.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import StreamprocError, UsageError
from ..fs import check_writable
from ..learn.align import label_positions
from ..pipeline.project import projection_path
from ..store.catalog import load_model
from ..store.store import Store

COLORS = ("cluster", "outlier", "batch")
LEGEND_WIDTH = 240
TITLE_HEIGHT = 62
MAX_BATCH_GROUPS = 20
BLOCK_ROWS = 1_000_000
OUTLIER_COLOR = "#111111"
LABEL_WINDOW = 31  # pixels: a cluster's label goes at the centre of its densest square of this size
LIGHTNESS = (25, 85)  # CIE L* of the palette: visible on white, apart from the outlier ink


def category_colors(n: int) -> list[str]:
    """``n`` colours for categories, as distinct as can be: the first ``n`` of :func:`_palette`
    (cycling past its end). Category ``i`` keeps its colour whatever ``n`` is."""
    palette = _palette()
    return [palette[i % len(palette)] for i in range(n)]


@functools.cache
def _palette() -> tuple[str, ...]:
    """colorcet's Glasbey colours (made for many categories), reordered greedily so that every
    prefix is as distinct as it can be: each next colour is the one farthest (CIE76 ΔE) from those
    already taken and their paler tints (sparse areas are shaded towards white), from the white
    background and from the outlier ink."""
    import colorcet

    candidates = [c for c in colorcet.glasbey if LIGHTNESS[0] <= hex_to_lab([c])[0, 0] <= LIGHTNESS[1]]
    lab = hex_to_lab(candidates)
    nearest = np.linalg.norm(lab[:, None] - hex_to_lab(["#ffffff", OUTLIER_COLOR])[None], axis=2).min(axis=1)
    order = []
    for _ in candidates:
        i = int(np.argmax(nearest))
        order.append(i)
        tints = _tints(candidates[i])
        nearest = np.minimum(nearest, np.linalg.norm(lab[:, None] - tints[None], axis=2).min(axis=1))
        nearest[order] = -np.inf
    return tuple(candidates[i] for i in order)


def _tints(color: str, alphas=(0.55, 0.7, 0.85, 1.0)) -> np.ndarray:
    """L*a*b* of ``color`` drawn at these opacities on white (as the map's sparse pixels are)."""
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return hex_to_lab(["#" + "".join(f"{round(a * v + (1 - a) * 255):02x}" for v in rgb) for a in alphas])


def hex_to_lab(colors: list[str]) -> np.ndarray:
    """CIE L*a*b* (D65) of ``#rrggbb`` colours: one row each."""
    rgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in colors])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.c_[116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])]


def aggregate_blocks(blocks, canvas, n_categories: int):
    """Sum of ``canvas.points`` count_cat aggregates over blocks of (x, y, category codes):
    the same as one aggregate over all points, in the memory of one block."""
    import datashader as ds
    import pandas as pd

    total, template = None, None
    categories = list(range(n_categories))
    for x, y, codes in blocks:
        df = pd.DataFrame({"x": x, "y": y, "c": pd.Categorical.from_codes(codes, categories=categories)})
        agg = canvas.points(df, "x", "y", agg=ds.count_cat("c"))
        if total is None:
            total, template = agg.values.astype(np.uint32), agg
        else:
            total += agg.values.astype(np.uint32)
    if template is None:
        return None
    return template.copy(data=total)


def top_keywords(store: Store, model, rows: int, *, lang: str = "en") -> list[str] | None:
    """Each cluster's top keyword (c-TF-IDF over an evenly spaced sample of its texts), or None
    when the store has no texts."""
    if not store.has_column("texts"):
        return None
    from .keywords import KeywordCounter, sample_step

    counter = KeywordCounter(model.k, lang)
    labels_name = f"models/{model.id}/labels"
    step = sample_step(rows)
    with progress.bar(rows, "render: keywords") as bar:
        for a, b, got in store.iter_rows(["texts", labels_name], 0, rows, BLOCK_ROWS):
            offset = -a % step  # the rows a multiple of step, whatever the block boundaries
            positions = label_positions(model, got[labels_name][offset::step])  # cluster ids -> 0 .. k-1
            counter.update(got["texts"][offset::step].tolist(), positions.tolist())
            bar.update(b - a)
    return [terms[0][0] if terms else "" for terms in counter.top(1)]


def _categories(store: Store, model_id: str, color: str, a: int, b: int) -> tuple[np.ndarray, int, list[str]]:
    if color == "cluster":
        model = load_model(store, model_id)
        labels = store.read(f"models/{model_id}/labels", a, b)
        return label_positions(model, labels), model.k, [f"cluster {i}" for i in model.classes_]
    if color == "outlier":
        return store.read(f"models/{model_id}/outlier", a, b).astype(np.int64), 2, ["inlier", "outlier"]
    batches = store.manifest.batches
    groups = min(len(batches), MAX_BATCH_GROUPS)
    starts = np.array([bt.start for bt in batches])
    index = np.searchsorted(starts, np.arange(a, b), side="right") - 1
    group = index * groups // max(len(batches), 1)
    names = []
    for g in range(groups):
        members = [bt.id for i, bt in enumerate(batches) if i * groups // len(batches) == g]
        names.append(members[0] if len(members) == 1 else f"{members[0]}..{members[-1]}")
    return group, groups, names


def render_image(store: Store, model_id: str, *, width: int, height: int, color: str, labels: bool = True,
                 keywords: list[str] | None = None):
    """The composed picture (a PIL image) and the facts about it. With ``labels`` (and colour by
    cluster), each cluster's id and top keyword (``keywords``, else read from the store's texts)
    are written at its densest pixel."""
    import datashader as ds
    import datashader.transfer_functions as tf
    from PIL import Image

    if color not in COLORS:
        raise UsageError(f"--color must be one of {', '.join(COLORS)}, got {color!r}")
    model = load_model(store, model_id)
    path = projection_path(store, model.id)
    rows = drawable_rows(store, model.id)
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for _, _, got in store.iter_rows([path], 0, rows, BLOCK_ROWS):
        xy = got[path]
        lo, hi = np.minimum(lo, xy.min(axis=0)), np.maximum(hi, xy.max(axis=0))
    pad = (hi - lo) * 0.02 + 1e-9
    plot_w, plot_h = width - LEGEND_WIDTH, height - TITLE_HEIGHT
    canvas = ds.Canvas(plot_width=plot_w, plot_height=plot_h, x_range=(lo[0] - pad[0], hi[0] + pad[0]),
                       y_range=(lo[1] - pad[1], hi[1] + pad[1]))
    _, n_cat, names = _categories(store, model.id, color, 0, 1)

    def blocks(only_outliers=False):
        with progress.bar(rows, "render: outliers" if only_outliers else "render") as bar:
            outlier = f"models/{model.id}/outlier"
            for a, b, got in store.iter_rows([path, outlier] if only_outliers else [path], 0, rows, BLOCK_ROWS):
                xy = got[path]
                codes = _categories(store, model.id, color, a, b)[0]
                if only_outliers:
                    keep = got[outlier]
                    xy, codes = xy[keep], np.zeros(int(keep.sum()), dtype=np.int64)
                bar.update(b - a)
                yield xy[:, 0], xy[:, 1], codes

    colors = category_colors(n_cat) if color != "outlier" else ["#9aa5b1", "#e0301e"]
    agg = aggregate_blocks(blocks(), canvas, n_cat)
    image = tf.shade(agg, color_key=colors, how="eq_hist", min_alpha=140)
    # isolated points grow to a few pixels (a sparse map stays visible); dense areas are left as they are
    image = tf.dynspread(image, threshold=0.5, max_px=3)
    # outliers on top, so they stay visible however many inliers share their pixels
    # (composed with PIL: datashader's tf.stack and set_background compile numba code, 3-4 s a process)
    plot = Image.alpha_composite(Image.new("RGBA", (plot_w, plot_h), "white"), image.to_pil())
    outliers = aggregate_blocks(blocks(only_outliers=True), canvas, 1)
    if outliers is not None:
        shown = outliers.sum(dim="c")
        if color != "outlier":
            # coloured by cluster, a pixel shows its outliers only where they are at least half of its
            # rows: 1 % of 10M rows are outliers, about 5,000 a cluster, and in full ink everywhere
            # they covered every cluster in black; a lone outlier away from the clusters still shows
            shown = shown.where(2 * shown >= agg.sum(dim="c"), 0)
        if shown.values.sum():
            ink = colors[1] if color == "outlier" else OUTLIER_COLOR
            plot = Image.alpha_composite(plot, tf.shade(shown, cmap=[ink, ink], min_alpha=200).to_pil())
    plot = plot.convert("RGB")
    counts = agg.values.sum(axis=(0, 1))
    page = Image.new("RGB", (width, height), "white")
    page.paste(plot, (0, TITLE_HEIGHT))
    placed = []
    if labels and color == "cluster":
        if keywords is None:
            keywords = top_keywords(store, model, rows)
        placed = cluster_labels(agg.values, keywords, model.classes_)
        names = [f"{name} · {keywords[c]}" if keywords and keywords[c] else name for c, name in enumerate(names)]
        _draw_labels(page, placed, plot_w)
    _draw_text(page, model, rows, color, names, colors, counts, plot_w,
               projection_note(store.manifest.models[model.id].projection))
    facts = {"rows": rows, **behind(store, model.id), "k": model.k, "width": width, "height": height, "color": color,
             "plot_area": [0, TITLE_HEIGHT, plot_w, height], "categories": len(names), "labels": placed}
    return page, facts


def cluster_labels(counts: np.ndarray, keywords: list[str] | None, ids) -> list[dict]:
    """Where each cluster's label (its id, and top keyword) goes: the middle of its main blob in the
    (height x width x k) count aggregate (:func:`_blob_centre`), in page coordinates (datashader's row 0
    is the bottom of the plot). ``ids``: the cluster id of each category."""
    height = counts.shape[0]
    out = []
    for c in range(counts.shape[2]):
        if counts[:, :, c].max() == 0:
            continue
        row, col = _blob_centre(counts[:, :, c].astype(np.float64))
        cid = int(ids[c])
        text = f"{cid} {keywords[c]}" if keywords and keywords[c] else str(cid)
        out.append({"cluster": cid, "text": text, "x": int(col), "y": int(height - 1 - row) + TITLE_HEIGHT})
    return out


def _blob_centre(image: np.ndarray) -> tuple[int, int]:
    """The count-weighted centre of the ``3 * LABEL_WINDOW`` square around the densest
    ``LABEL_WINDOW`` square of ``image``: the middle of its main blob, whatever stray points elsewhere."""
    row, col = np.unravel_index(int(np.argmax(_box_sums(image, LABEL_WINDOW))), image.shape)
    r0, c0 = max(row - LABEL_WINDOW, 0), max(col - LABEL_WINDOW, 0)
    window = image[r0:row + LABEL_WINDOW + 1, c0:col + LABEL_WINDOW + 1]
    rows, cols = np.indices(window.shape)
    total = window.sum()
    return int(round((rows * window).sum() / total)) + r0, int(round((cols * window).sum() / total)) + c0


def _box_sums(image: np.ndarray, size: int) -> np.ndarray:
    """Sum over the ``size`` x ``size`` square centred on each pixel (zero outside the image)."""
    half = size // 2
    padded = np.pad(image, half + 1)
    table = padded.cumsum(axis=0).cumsum(axis=1)
    h, w = image.shape
    top, left, bottom, right = slice(0, h), slice(0, w), slice(size, size + h), slice(size, size + w)
    return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


def projection_note(projection) -> str:
    """The line under the map's title: how the positions were made (a ``ProjectionEntry``)."""
    if projection.method == "pca":
        return "projection: the first two PCA components of the model's reduced rows"
    name = {"umap": "UMAP", "tsne": "t-SNE"}[projection.method]
    return (f"projection: {name} fitted on {projection.sample:,} sample rows, the others placed by their "
            "nearest sample neighbours; its axes carry no units (only neighbourhoods are meaningful)")


def _draw_labels(page, placed: list[dict], plot_w: int) -> None:
    """Each label centred on its cluster, moved inward just enough to stay whole inside the plot (a label
    cut at the edge would misread: "19" as "9"); ``placed`` is updated to where the text is."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=15)
    for label in placed:
        half = int(draw.textlength(label["text"], font=font)) // 2 + 4
        label["x"] = min(max(label["x"], half), plot_w - half)
        draw.text((label["x"], label["y"]), label["text"], fill="#111111", font=font, anchor="mm",
                  stroke_width=3, stroke_fill="white")


def _draw_text(page, model, rows, color, names, colors, counts, plot_w, note) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=18)
    small = ImageFont.load_default(size=13)
    title = f"{rows:,} rows · k = {model.k} · model {model.id} · coloured by {color}"
    draw.text((12, 10), title, fill="#1f2933", font=font)
    draw.text((12, 36), note, fill="#52606d", font=small)
    draw.line([(0, TITLE_HEIGHT - 1), (page.width, TITLE_HEIGHT - 1)], fill="#d9dee3")
    x, y = plot_w + 14, TITLE_HEIGHT + 10
    shown = min(len(names), (page.height - y - 40) // 20)
    for name, swatch, count in list(zip(names, colors, counts))[:shown]:
        draw.rectangle([x, y + 3, x + 12, y + 15], fill=swatch)
        draw.text((x + 20, y), f"{name} ({int(count):,})", fill="#1f2933", font=small)
        y += 20
    if shown < len(names):
        draw.text((x, y), f"+ {len(names) - shown} more", fill="#52606d", font=small)
        y += 20
    if color != "outlier":
        draw.rectangle([x, y + 8, x + 12, y + 20], fill=OUTLIER_COLOR)
        draw.text((x + 20, y + 5), "outlier", fill="#1f2933", font=small)


def render(store_path: str | os.PathLike, output: str | os.PathLike, *, model_id: str | None = None,
           width: int = 1200, height: int = 900, color: str = "cluster", labels: bool = True) -> dict:
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: expected a .png file name")
    if color not in COLORS:
        raise UsageError(f"--color must be one of {', '.join(COLORS)}, got {color!r}")
    check_writable(output)
    page, facts = render_image(Store.open(store_path), model_id, width=width, height=height, color=color,
                               labels=labels)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp.png")
    page.save(tmp)
    os.replace(tmp, output)
    return {**facts, "output": str(output)}


def drawable_rows(store: Store, model_id: str) -> int:
    """Rows the model has both labelled and placed (render and report only read; they never label or
    place rows themselves). A clear error naming the command to run when there are none."""
    entry = store.manifest.models[model_id]
    if entry.watermark == 0:
        raise StreamprocError(f"{store.path}: model {model_id} has labelled no rows yet; "
                              f"run `streamproc classify {store.path}` first")
    if not entry.projection or entry.projection_watermark == 0:
        raise StreamprocError(f"{store.path}: model {model_id} has no 2-D positions yet; "
                              f"run `streamproc project {store.path}` first")
    return min(entry.watermark, entry.projection_watermark)


def behind(store: Store, model_id: str) -> dict:
    """Committed rows not drawn, and of them those not labelled and those not placed yet."""
    entry = store.manifest.models[model_id]
    placed = entry.projection_watermark if entry.projection else 0
    return {"behind": store.rows - min(entry.watermark, placed), "behind_labels": store.rows - entry.watermark,
            "behind_positions": store.rows - placed}


def behind_message(store_path, facts: dict) -> str | None:
    """What to run when newer rows are not drawn yet (None when every row is): only the steps that are due."""
    if facts["behind"] <= 0:
        return None
    due = [(step, missing) for step, missing, key in (("classify", "labelled", "behind_labels"),
                                                      ("project", "placed", "behind_positions")) if facts[key] > 0]
    run = " and ".join(f"`streamproc {step} {store_path}`" for step, _ in due)
    missing = " or ".join(what for _, what in due)
    return f"{facts['behind']:,} newer rows are not {missing} yet and are left out; run {run} to include them"
