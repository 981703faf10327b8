"""``streamproc render``: every row on one PNG, aggregated by datashader chunk by chunk.

Each block of positions is aggregated onto the same canvas (fixed ranges, from a first pass over
the positions); per-category counts add up exactly, so the picture of 100M rows costs the memory of
one block plus one canvas. Outliers are drawn on top in red so they stay visible.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import progress
from ._project import projection_path
from .align import label_positions
from .errors import StreamprocError, UsageError
from .models import load_model
from .store import Store

COLORS = ("cluster", "outlier", "batch")
LEGEND_WIDTH = 190
TITLE_HEIGHT = 44
MAX_BATCH_GROUPS = 20
BLOCK_ROWS = 1_000_000
OUTLIER_COLOR = "#111111"


def category_colors(n: int) -> list[str]:
    import colorcet

    palette = list(colorcet.palette["glasbey_category10"])
    return [palette[i % len(palette)] for i in range(n)]


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


def render_image(store: Store, model_id: str, *, width: int, height: int, color: str):
    """The composed picture (a PIL image) and the facts about it."""
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
        with progress.bar(rows, "render") as bar:
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
    outliers = aggregate_blocks(blocks(only_outliers=True), canvas, 1)
    if outliers is not None and outliers.values.sum():
        ink = colors[1] if color == "outlier" else OUTLIER_COLOR
        image = tf.stack(image, tf.shade(outliers.sum(dim="c"), cmap=[ink, ink], min_alpha=200))
    image = tf.set_background(image, "white")
    plot = image.to_pil().convert("RGB")
    counts = agg.values.sum(axis=(0, 1))
    page = Image.new("RGB", (width, height), "white")
    page.paste(plot, (0, TITLE_HEIGHT))
    _draw_text(page, model, rows, color, names, colors, counts, plot_w)
    facts = {"rows": rows, "behind": store.rows - rows, "k": model.k, "width": width, "height": height,
             "color": color, "plot_area": [0, TITLE_HEIGHT, plot_w, height], "categories": len(names)}
    return page, facts


def _draw_text(page, model, rows, color, names, colors, counts, plot_w) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=18)
    small = ImageFont.load_default(size=13)
    title = f"{rows:,} rows · k = {model.k} · model {model.id} · coloured by {color}"
    draw.text((12, 12), title, fill="#1f2933", font=font)
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
           width: int = 1200, height: int = 900, color: str = "cluster") -> dict:
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: expected a .png file name")
    if color not in COLORS:
        raise UsageError(f"--color must be one of {', '.join(COLORS)}, got {color!r}")
    check_writable(output)
    page, facts = render_image(Store.open(store_path), model_id, width=width, height=height, color=color)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp.png")
    page.save(tmp)
    os.replace(tmp, output)
    return {**facts, "output": str(output)}


def drawable_rows(store: Store, model_id: str) -> int:
    """Rows the model has both labelled and placed (render and report only read; they never label or
    place rows themselves). A clear error naming the command to run when there are none."""
    entry = store.manifest.models[model_id]
    if int(entry.get("watermark", 0)) == 0:
        raise StreamprocError(f"{store.path}: model {model_id} has labelled no rows yet; "
                              f"run `streamproc classify {store.path}` first")
    if not entry.get("projection") or int(entry.get("projection_watermark", 0)) == 0:
        raise StreamprocError(f"{store.path}: model {model_id} has no 2-D positions yet; "
                              f"run `streamproc project {store.path}` first")
    return min(int(entry["watermark"]), int(entry["projection_watermark"]))


def behind_message(store_path, behind: int) -> str | None:
    """What to run when newer rows are not drawn yet (None when every row is)."""
    if behind <= 0:
        return None
    return (f"{behind:,} newer rows are not labelled or placed yet and are left out; run `streamproc classify "
            f"{store_path}` and `streamproc project {store_path}` to include them")


def check_writable(output: Path) -> None:
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise StreamprocError(f"cannot write {output}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise StreamprocError(f"cannot write {output}: folder {parent} is not writable")
