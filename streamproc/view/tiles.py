"""Map tiles and "rows near a point" for ``streamproc serve``, from a model's stored 2-D positions.

Tiles follow the web-map scheme: tile ``z/x/y`` is 256 x 256 pixels, ``0/0/0`` covers the whole map
(a square around every position, y up), tile ``x`` grows to the right and ``y`` downwards.

:class:`TileIndex` is built once per projection snapshot (model, projection array, rows shown) and
kept in memory (about 15 bytes per row plus the pyramid; nothing is written to the store or
elsewhere, so the server never needs the store's lock):

* the positions, sorted by the Morton (Z-order) code of their cell on a 1024 x 1024 grid, with the
  offset of every cell: the points of a tile at zoom <= 10 are one contiguous slice, and deeper
  tiles filter the slice of their one cell;
* per colouring (cluster / outlier / batch), a pyramid of per-category count aggregates for zooms
  0..2 (1024 x 1024 at zoom 2; zoom 1 and 0 are 2 x 2 sums; 5.3 MiB per category): a shallow tile
  is a slice of it instead of millions of points.

A tile is the per-category counts of its 256 x 256 pixels, shaded by datashader (log scale over the
zoom level's highest pixel count, and points spread to 3 x 3 pixels on sparse zooms: decided per zoom,
not per tile, so neighbouring tiles agree) to a transparent PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from ..store.store import Store
from .render import _categories, category_colors

TILE = 256
GRID_BITS = 10  # cells per side of the sort grid: 2**10 = 1024 = the pixels per side at zoom 2
PYRAMID_ZOOM = 2
MAX_ZOOM = 18
BLOCK_ROWS = 1_000_000
OUTLIER_COLORS = ["#9aa5b1", "#e0301e"]
SPARSE_PEAK = 8  # a zoom whose densest pixel holds at most this many points draws each point 3 x 3 pixels


def spread_bits(v: np.ndarray) -> np.ndarray:
    """Put the bits of 16-bit integers at the even bit positions (half of a Morton code)."""
    v = v.astype(np.int64) & 0xFFFF
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    return (v | (v << 1)) & 0x55555555


def morton(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return spread_bits(cx) | (spread_bits(cy) << 1)


@dataclass
class Layer:
    """The categories of one colouring: a code per sorted point, names, colours, and the pyramid."""

    codes: np.ndarray
    names: list[str]
    colors: list[str]
    pyramid: list[np.ndarray] = field(default_factory=list)  # level z: (n, 256*2**z, 256*2**z) counts
    peaks: list[float] = field(default_factory=list)  # level z: the highest count of one pixel


class TileIndex:
    """Spatially sorted positions of ``rows`` rows of one model's projection (see the module docstring)."""

    def __init__(self, xy: np.ndarray, rows: np.ndarray, layers: dict[str, Layer], *, key: tuple):
        self.key = key
        self.n = len(xy)
        lo, hi = (xy.min(axis=0), xy.max(axis=0)) if len(xy) else (np.zeros(2), np.ones(2))
        span = float(max(hi - lo)) or 1.0
        pad = span * 0.02
        self.x0, self.y1, self.span = float(lo[0]) - pad, float(hi[1]) + pad, span + 2 * pad
        cells = self._cells(xy)
        order = np.argsort(morton(*cells), kind="stable")
        self.xy, self.rows = xy[order], rows[order]
        self.offsets = np.zeros(4**GRID_BITS + 1, np.int64)
        np.cumsum(np.bincount(morton(*cells)[order], minlength=4**GRID_BITS), out=self.offsets[1:])
        self.layers = {name: Layer(layer.codes[order], layer.names, layer.colors) for name, layer in layers.items()}
        for layer in self.layers.values():
            layer.pyramid = self._pyramid(layer)
            layer.peaks = [float(level.sum(axis=0).max()) for level in layer.pyramid]

    # ---- coordinates -----------------------------------------------------------------------
    def unit(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates to [0, 1) from the left / from the top of tile 0/0/0."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy[:, 0] - self.x0) / self.span, (self.y1 - xy[:, 1]) / self.span

    def _cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v = self.unit(xy)
        side = 2**GRID_BITS
        return (np.clip((u * side).astype(np.int64), 0, side - 1), np.clip((v * side).astype(np.int64), 0, side - 1))

    def extent(self) -> dict:
        return {"x0": self.x0, "y1": self.y1, "span": self.span}

    # ---- tiles -----------------------------------------------------------------------------
    def counts(self, color: str, z: int, x: int, y: int) -> np.ndarray:
        """Per-category counts of tile z/x/y: (categories, 256, 256), row 0 at the top."""
        layer = self.layers[color]
        if z <= PYRAMID_ZOOM:
            level = layer.pyramid[z]
            return level[:, y * TILE:(y + 1) * TILE, x * TILE:(x + 1) * TILE]
        a, b, inside = self._slice(z, x, y)
        u, v = self.unit(self.xy[a:b])
        px, py = u * 2**z - x, v * 2**z - y
        keep = (px >= 0) & (px < 1) & (py >= 0) & (py < 1) if not inside else slice(None)
        return self._bin(layer, layer.codes[a:b][keep], px[keep], py[keep], TILE)

    def _slice(self, z: int, x: int, y: int) -> tuple[int, int, bool]:
        """The sorted-point range holding tile z/x/y's points; True when it holds nothing else."""
        if z <= GRID_BITS:
            shift = 2 * (GRID_BITS - z)
            first = int(morton(np.array([x]), np.array([y]))[0]) << shift
            return int(self.offsets[first]), int(self.offsets[first + (1 << shift)]), True
        cell = int(morton(np.array([x >> (z - GRID_BITS)]), np.array([y >> (z - GRID_BITS)]))[0])
        return int(self.offsets[cell]), int(self.offsets[cell + 1]), False

    @staticmethod
    def _bin(layer: Layer, codes, px, py, side: int) -> np.ndarray:
        ix = np.clip((px * side).astype(np.int64), 0, side - 1)
        iy = np.clip((py * side).astype(np.int64), 0, side - 1)
        flat = (codes.astype(np.int64) * side + iy) * side + ix
        n = len(layer.names)
        return np.bincount(flat, minlength=n * side * side).astype(np.uint32).reshape(n, side, side)

    def _pyramid(self, layer: Layer) -> list[np.ndarray]:
        """Per-category counts of the whole map at zoom 0..PYRAMID_ZOOM (each level 2 x 2 sums of the next)."""
        u, v = self.unit(self.xy)
        levels = [self._bin(layer, layer.codes, u, v, TILE * 2**PYRAMID_ZOOM)]
        for _ in range(PYRAMID_ZOOM):
            a = levels[0]
            levels.insert(0, a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2])
        return levels

    def max_count(self, color: str, z: int) -> float:
        """The highest count of one pixel at zoom z (exact for the pyramid, scaled down below it)."""
        top = self.layers[color].peaks[min(z, PYRAMID_ZOOM)]
        return max(1.0, top / 4 ** max(z - PYRAMID_ZOOM, 0))

    def tile_png(self, color: str, z: int, x: int, y: int) -> bytes:
        """Tile z/x/y coloured by ``color`` as PNG bytes (transparent where there is no point)."""
        import datashader.transfer_functions as tf
        import xarray as xr

        layer = self.layers[color]
        counts = self.counts(color, z, x, y)
        agg = xr.DataArray(np.ascontiguousarray(counts[:, ::-1, :].transpose(1, 2, 0)), dims=("y", "x", "c"),
                           coords={"y": np.arange(TILE), "x": np.arange(TILE), "c": list(range(len(layer.names)))})
        if not counts.any():
            return empty_png()
        sparse = self.max_count(color, z) <= SPARSE_PEAK  # sparse at this zoom: points grow to 3 x 3 pixels
        if color == "outlier":  # outliers drawn over the inliers (blended by count, one outlier among
            picture = self._over(agg, layer.colors, color, z, sparse)  # 30 inliers was a grey pixel)
        else:
            image = tf.shade(agg, color_key=layer.colors, how="log", span=(0, self.max_count(color, z)), min_alpha=110)
            picture = (tf.spread(image, px=1) if sparse else image).to_pil()
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def _over(self, agg, colors: list[str], color: str, z: int, sparse: bool):
        """Category 1 (outliers) in full ink and always 3 x 3 pixels, composed over category 0."""
        import datashader.transfer_functions as tf
        from PIL import Image

        span = (0, self.max_count(color, z))
        inliers = tf.shade(agg.sel(c=0), cmap=[colors[0], colors[0]], how="log", span=span, min_alpha=110)
        picture = (tf.spread(inliers, px=1) if sparse else inliers).to_pil()
        if agg.sel(c=1).values.any():
            outliers = tf.spread(tf.shade(agg.sel(c=1), cmap=[colors[1], colors[1]], min_alpha=230), px=1)
            picture = Image.alpha_composite(picture, outliers.to_pil())
        return picture

    # ---- rows near a point -----------------------------------------------------------------
    def near(self, x: float, y: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows nearest the map position (x, y) and their distances, nearest first.

        Searches a square of cells around the point, doubling it until the n-th nearest candidate
        is closer than the square's edge (so the answer is exact)."""
        side = 2**GRID_BITS
        u, v = self.unit(np.array([[x, y]]))
        cx, cy = (int(np.clip(c[0] * side, 0, side - 1)) for c in (u, v))
        radius = max(1, int(np.sqrt(n * 4**GRID_BITS / max(self.n, 1)) / 2))  # a square holding ~n points on average
        while True:
            x0, x1, y0, y1 = max(cx - radius, 0), min(cx + radius, side - 1), max(cy - radius, 0), min(cy + radius, side - 1)
            whole = x0 == 0 and y0 == 0 and x1 == side - 1 and y1 == side - 1
            found = self._points_in_cells(x0, x1, y0, y1)
            if len(found) >= n or whole:
                d = np.hypot(self.xy[found, 0] - x, self.xy[found, 1] - y)
                best = np.argsort(d, kind="stable")[:n]
                reach = radius * self.span / side  # every point closer than this lies in the square
                if whole or (len(best) and d[best[-1]] <= reach):
                    return self.rows[found[best]], d[best]
            radius *= 2

    def _points_in_cells(self, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
        cells = morton(np.arange(x0, x1 + 1)[None, :], np.arange(y0, y1 + 1)[:, None]).ravel()
        starts, stops = self.offsets[cells], self.offsets[cells + 1]
        lengths = stops - starts
        first_out = np.cumsum(lengths) - lengths  # where each cell's points begin in the result
        return np.arange(int(lengths.sum())) + np.repeat(starts - first_out, lengths)

    def cluster_layout(self) -> dict:
        """Per cluster: the mean map position of its rows, and its rows per batch group."""
        cluster, batch = self.layers["cluster"], self.layers["batch"]
        k, groups = len(cluster.names), len(batch.names)
        sizes = np.bincount(cluster.codes, minlength=k)
        centre = np.stack([np.bincount(cluster.codes, weights=self.xy[:, i], minlength=k) for i in (0, 1)], axis=1)
        per_batch = np.bincount(cluster.codes.astype(np.int64) * groups + batch.codes, minlength=k * groups)
        return {"centres": centre / np.maximum(sizes, 1)[:, None], "sizes": sizes,
                "per_batch": per_batch.reshape(k, groups), "batch_names": batch.names}


_EMPTY: list[bytes] = []


def empty_png() -> bytes:
    if not _EMPTY:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGBA", (TILE, TILE), (0, 0, 0, 0)).save(buffer, format="PNG")
        _EMPTY.append(buffer.getvalue())
    return _EMPTY[0]


def projection_snapshot(store: Store, model) -> tuple | None:
    """What a tile index depends on: (model id, projection array, rows shown, batches); None if unprojected."""
    entry = store.manifest.models[model.id]
    meta = entry.projection
    rows = min(entry.watermark, entry.projection_watermark)
    if not meta or rows == 0:
        return None
    return model.id, meta.array, rows, len(store.manifest.batches)


def build_index(store: Store, model) -> TileIndex | None:
    """Read the positions and categories of every shown row, block by block, and sort them."""
    key = projection_snapshot(store, model)
    if key is None:
        return None
    _, array, rows, _ = key
    path = f"models/{model.id}/{array}"
    xy = np.empty((rows, 2), np.float32)
    codes = {"cluster": np.empty(rows, np.uint16), "outlier": np.empty(rows, np.uint8),
             "batch": np.empty(rows, np.uint8)}
    names = {}
    for a, b, got in store.iter_rows([path], 0, rows, BLOCK_ROWS):
        xy[a:b] = got[path]
        for color, out in codes.items():
            values, _, names[color] = _categories(store, model.id, color, a, b)
            out[a:b] = cluster_codes(model, values) if color == "cluster" else values
    names["cluster"] = [f"cluster {c}" for c in model.classes_]
    layers = {color: Layer(codes[color], names[color],
                           OUTLIER_COLORS if color == "outlier" else category_colors(len(names[color])))
              for color in codes}
    return TileIndex(xy, np.arange(rows, dtype=np.int64), layers, key=key)


def cluster_codes(model, labels: np.ndarray) -> np.ndarray:
    """The position of each stored label (a cluster id) in ``model.classes_``."""
    classes = np.asarray(model.classes_)
    order = np.argsort(classes)
    return order[np.searchsorted(classes[order], labels)]
