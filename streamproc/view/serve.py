"""``streamproc serve``: a local web explorer of a store's map and clusters, and a JSON API.

Starlette (ASGI) on uvicorn: a few routes, explicit JSON errors, no template engine, no assets
fetched at run time (Leaflet is vendored under ``static/``). Read-only and live: every request
re-checks ``manifest.json`` (one ``stat``) and works from that snapshot; the server never takes the
store's lock and never writes to the store, so cron keeps ingesting and classifying meanwhile.

The map's tile index (:mod:`streamproc.view.tiles`) is built in memory per projection snapshot; when new
positions are committed it is rebuilt on a background thread while the previous one keeps serving.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import InputError, ModelError, StreamprocError, UsageError
from ..learn.model import Model
from ..pipeline import predict as predicting
from ..pipeline.project import Projection, load_projection
from ..store.catalog import load_model, resolve_model_id
from ..store.store import Store
from .report import cluster_summary
from .tiles import MAX_ZOOM, TileIndex, build_index, projection_snapshot

STATIC = Path(__file__).parent / "static"  # view/static: the page and vendored Leaflet
MAX_BODY_BYTES = 16 * 2**20
MAX_NEAR = 100
MAX_PAGE = 100
TILE_CACHE_BYTES = 64 * 2**20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
COLORS = ("cluster", "outlier", "batch")


class Explorer:
    """What requests share: the store's path and caches keyed by what the manifest committed."""

    def __init__(self, store_path, *, model_id: str | None = None, images_root=None, encoder: str | None = None,
                 lang: str = "en", max_body: int = MAX_BODY_BYTES):
        self.path = Path(store_path).absolute()
        self.model_id, self.encoder_spec, self.lang, self.max_body = model_id, encoder, lang, max_body
        self.images_root = Path(images_root).resolve() if images_root else None
        self._store: tuple[tuple, Store] | None = None
        self._models: dict[str, Model] = {}
        self._index: TileIndex | None = None
        self._building = False
        self._lock = threading.Lock()
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._tile_bytes = 0
        self._clusters: dict[tuple, dict] = {}
        self._encoder = None
        self._projection: tuple[tuple | None, Projection | None] = (None, None)

    # ---- snapshots -------------------------------------------------------------------------
    def store(self) -> Store:
        """The store as its manifest says now (reused while manifest.json is the same file)."""
        try:
            stat = (self.path / "manifest.json").stat()
        except FileNotFoundError:
            return Store.open(self.path)  # raises the store's own error (no such store / not a store)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._store is None or self._store[0] != key:
            self._store = (key, Store.open(self.path))
        return self._store[1]

    def model(self, store: Store) -> Model:
        model_id = resolve_model_id(store, self.model_id)
        if model_id not in self._models:  # a committed model never changes
            self._models[model_id] = load_model(store, model_id)
        return self._models[model_id]

    def index(self, store: Store, model: Model) -> TileIndex | None:
        """The tile index of this snapshot; while a newer one is built, the previous one of the same map."""
        key = projection_snapshot(store, model)
        if key is None:
            return None
        current = self._index
        if current is not None and current.key == key:
            return current
        if current is not None and current.key[:2] == key[:2]:  # same map, more rows: rebuild in the background
            with self._lock:
                if not self._building:
                    self._building = True
                    threading.Thread(target=self._rebuild, args=(store, model), daemon=True).start()
            return current
        with self._lock:
            if self._index is None or self._index.key[:2] != key[:2]:
                self._index = build_index(store, model)
        return self._index

    def _rebuild(self, store: Store, model: Model) -> None:
        try:
            self._index = build_index(store, model)
        finally:
            self._building = False

    def tile(self, index: TileIndex, color: str, z: int, x: int, y: int) -> bytes:
        """Tile PNG bytes from a least-recently-used cache of TILE_CACHE_BYTES, rendered when missing."""
        key = (index.key, color, z, x, y)
        with self._lock:
            png = self._tiles.get(key)
            if png is not None:
                self._tiles.move_to_end(key)
                return png
        png = index.tile_png(color, z, x, y)  # outside the lock: tiles render in parallel
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = png
                self._tile_bytes += len(png)
            while self._tile_bytes > TILE_CACHE_BYTES:
                self._tile_bytes -= len(self._tiles.popitem(last=False)[1])
        return png

    def clusters(self, store: Store, model: Model) -> dict:
        rows = store.manifest.models[model.id].watermark
        key = (model.id, rows)
        if key not in self._clusters:
            self._clusters = {key: self._summarise(store, model, rows)}  # keep only the newest snapshot
        return self._clusters[key]

    def _summarise(self, store: Store, model: Model, rows: int) -> dict:
        summary = cluster_summary(store, model, rows, lang=self.lang)
        index = self.index(store, model)
        layout = index.cluster_layout() if index is not None else None
        clusters = []
        for c, label in enumerate(model.classes_):
            keywords = summary["keywords"][c] if summary["keywords"] is not None else None
            item = {"label": int(label), "size": int(summary["sizes"][c]),
                    "mean_distance": float(summary["mean_distance"][c]), "outliers": int(summary["outliers"][c]),
                    "keywords": [term for term, _ in keywords] if keywords is not None else None,
                    "representatives": [r["row"] for r in summary["representatives"][c]],
                    "x": None, "y": None, "batches": []}
            if layout is not None:
                item["x"], item["y"] = (float(v) for v in layout["centres"][c])
                item["batches"] = [{"batch": name, "rows": int(n)}
                                   for name, n in zip(layout["batch_names"], layout["per_batch"][c]) if n]
            clusters.append(item)
        return {"model": model.id, "k": model.k, "rows": rows, "clusters": clusters}

    def projection(self, store: Store, model: Model) -> Projection | None:
        """The model's committed map, kept loaded (a UMAP map's placement index is built once)."""
        meta = store.manifest.models[model.id].projection
        key = (model.id, meta.array) if meta else None
        if self._projection[0] != key:
            self._projection = (key, load_projection(store, model.id) if key else None)
        return self._projection[1]

    def encoder(self, store: Store):
        if self._encoder is None:
            self._encoder = predicting.load_store_encoder(store, self.encoder_spec)
        return self._encoder

    # ---- rows ------------------------------------------------------------------------------
    def row_view(self, store: Store, model: Model, row: int) -> dict:
        if not 0 <= row < store.rows:
            raise HTTPException(404, f"no row {row}: the store has {store.rows:,} committed rows (0 .. {store.rows - 1})")
        entry = store.manifest.models[model.id]
        view = {"row": row, "id": None, "text": None, "label": None, "distance": None, "confidence": None,
                "outlier": None, "batch": None, "x": None, "y": None, "image": None}
        for column in ("ids", "texts"):
            if store.has_column(column):
                view[column[:-1]] = str(store.read(column, row, row + 1)[0])
        if row < entry.watermark:
            base = f"models/{model.id}"
            view["label"] = int(store.read(f"{base}/labels", row, row + 1)[0])
            view["outlier"] = bool(store.read(f"{base}/outlier", row, row + 1)[0])
            for name in ("distance", "confidence"):
                view[name] = float(store.read(f"{base}/{name}", row, row + 1)[0])
        meta = entry.projection
        if meta and row < entry.projection_watermark:
            view["x"], view["y"] = (float(v) for v in store.read(f"models/{model.id}/{meta.array}", row, row + 1)[0])
        view["batch"] = next((b.id for b in store.manifest.batches if b.start <= row < b.stop), None)
        if self.image_path(view["id"]) is not None:
            view["image"] = f"/api/images/{row}"
        return view

    def image_path(self, row_id: str | None) -> Path | None:
        """The image a row's id names under --images-root, or None (nothing outside the root, ever)."""
        if self.images_root is None or not row_id:
            return None
        candidate = (self.images_root / row_id).resolve()
        if not candidate.is_relative_to(self.images_root) or candidate.suffix.lower() not in IMAGE_SUFFIXES:
            return None
        return candidate if candidate.is_file() else None

    def members(self, store: Store, model: Model, c: int, *, offset: int, limit: int, outliers: bool) -> list[int]:
        """Rows ``offset .. offset + limit`` of cluster index ``c`` (only its outliers with ``outliers``),
        scanning the labels block by block and stopping once the page is full."""
        rows = store.manifest.models[model.id].watermark
        base, label = f"models/{model.id}", model.classes_[c]
        found: list[int] = []
        for a, _, got in store.iter_rows([f"{base}/labels", f"{base}/outlier"], 0, rows, 262_144):
            mine = got[f"{base}/labels"] == label
            if outliers:
                mine &= got[f"{base}/outlier"]
            found.extend((np.flatnonzero(mine) + a).tolist())
            if len(found) >= offset + limit:
                break
        return found[offset:offset + limit]


# ---- requests --------------------------------------------------------------------------------
def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


STATUS = {InputError: 422, UsageError: 422, ModelError: 404}


def status_of(exc: StreamprocError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 503)


def query_number(request: Request, name: str, kind=float, default=None, lo=None, hi=None):
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise HTTPException(400, f"query parameter {name!r} is required")
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise HTTPException(400, f"query parameter {name}={raw!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise HTTPException(400, f"query parameter {name}={raw!r}: expected a finite number{bounds}")
    return value


async def read_json(request: Request, limit: int):
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body is over the limit of {limit:,} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not valid JSON ({exc})") from None


def create_app(explorer: Explorer) -> Starlette:
    def snapshot() -> tuple[Store, Model]:
        store = explorer.store()
        return store, explorer.model(store)

    def info(request: Request):
        store, model = snapshot()
        entry = store.manifest.models[model.id]
        index = explorer.index(store, model)
        data = {"model": model.id, "k": model.k, "rows": store.rows, "dim": store.dim,
                "labelled": entry.watermark, "projected": entry.projection_watermark,
                "classes": [int(c) for c in model.classes_], "texts": predicting.recorded_encoder(store) is not None,
                "max_zoom": MAX_ZOOM, "extent": None, "version": None, "colors": {}}
        if index is not None:
            data.update(extent=index.extent(), version=f"{index.n}-{abs(hash(index.key)) % 10**8}",
                        colors={c: {"names": layer.names, "colors": layer.colors} for c, layer in index.layers.items()})
        return JSONResponse(data)

    def clusters(request: Request):
        store, model = snapshot()
        return JSONResponse(explorer.clusters(store, model))

    def members(request: Request):
        store, model = snapshot()
        label = request.path_params["label"]
        where = np.flatnonzero(model.classes_ == label)
        if not len(where):
            raise HTTPException(404, f"no cluster {label} in model {model.id} (clusters: {', '.join(map(str, model.classes_))})")
        offset = query_number(request, "offset", int, 0, 0)
        limit = query_number(request, "limit", int, 20, 1, MAX_PAGE)
        outliers = request.query_params.get("outliers", "0") in ("1", "true")
        rows = explorer.members(store, model, int(where[0]), offset=offset, limit=limit, outliers=outliers)
        return JSONResponse({"model": model.id, "label": label, "offset": offset, "outliers": outliers,
                             "rows": [explorer.row_view(store, model, r) for r in rows]})

    def row(request: Request):
        store, model = snapshot()
        return JSONResponse(explorer.row_view(store, model, request.path_params["row"]))

    def near(request: Request):
        store, model = snapshot()
        x, y = query_number(request, "x"), query_number(request, "y")
        n = query_number(request, "n", int, 5, 1, MAX_NEAR)
        index = explorer.index(store, model)
        if index is None:
            raise HTTPException(404, f"model {model.id} has no map yet: run `streamproc project {store.path}`")
        rows, distances = index.near(x, y, n)
        return JSONResponse({"model": model.id, "x": x, "y": y, "rows": [
            {**explorer.row_view(store, model, int(r)), "map_distance": float(d)} for r, d in zip(rows, distances)]})

    def tile(request: Request):
        z, x, y = (request.path_params[p] for p in ("z", "x", "y"))
        color = request.query_params.get("color", "cluster")
        if color not in COLORS:
            raise HTTPException(400, f"color={color!r}: expected one of {', '.join(COLORS)}")
        if z > MAX_ZOOM or x >= 2**z or y >= 2**z:
            raise HTTPException(404, f"no tile {z}/{x}/{y}: zoom 0..{MAX_ZOOM}, x and y below 2**zoom")
        store, model = snapshot()
        index = explorer.index(store, model)
        if index is None:
            raise HTTPException(404, f"model {model.id} has no map yet: run `streamproc project {store.path}`")
        return Response(explorer.tile(index, color, z, x, y), media_type="image/png",
                        headers={"Cache-Control": "max-age=60"})

    def image(request: Request):
        store, model = snapshot()
        view = explorer.row_view(store, model, request.path_params["row"])
        path = explorer.image_path(view["id"])
        if path is None:
            raise HTTPException(404, f"row {view['row']} has no image under --images-root")
        return FileResponse(path)

    async def predict(request: Request):
        body = await read_json(request, explorer.max_body)
        if not isinstance(body, dict) or len(set(body) & {"vectors", "texts"}) != 1 or set(body) - {
                "vectors", "texts", "neighbours"}:
            raise HTTPException(422, 'expected a JSON object with either "vectors": [[...], ...] or "texts": [...] '
                                     '(and optionally "neighbours": 0..100)')
        n = body.get("neighbours", predicting.NEIGHBOURS)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_NEAR:
            raise HTTPException(422, f'"neighbours": expected an integer from 0 to {MAX_NEAR}, got {n!r}')
        return JSONResponse(await run_in_threadpool(answer_predict, body))

    def answer_predict(body: dict) -> dict:
        store, model = snapshot()
        if "texts" in body:
            texts = predicting.check_texts(body["texts"])
            vectors = explorer.encoder(store).encode(texts)
        else:
            vectors = predicting.check_vectors(body["vectors"], model.dim)
        index = explorer.index(store, model)
        return predicting.predict_vectors(store, model, vectors, near=index.near if index is not None else None,
                                          projection=explorer.projection(store, model),
                                          neighbours=body.get("neighbours", predicting.NEIGHBOURS))

    async def on_http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route matched (e.g. /api/rows/abc)
            return error(404, f"no such route: {request.url.path} (rows, clusters and tile coordinates are "
                              "integers; README.md lists the routes under 'Explore in the browser')")
        return error(exc.status_code, str(exc.detail))

    async def on_streamproc_error(request: Request, exc: StreamprocError):
        return error(status_of(exc), str(exc))

    async def on_other_error(request: Request, exc: Exception):
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    routes = [
        Route("/", lambda request: FileResponse(STATIC / "index.html")),
        Route("/api/info", info),
        Route("/api/clusters", clusters),
        Route("/api/clusters/{label:int}/members", members),
        Route("/api/rows/{row:int}", row),
        Route("/api/near", near),
        Route("/api/tiles/{z:int}/{x:int}/{y:int}.png", tile),
        Route("/api/images/{row:int}", image),
        Route("/api/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {HTTPException: on_http_error, StreamprocError: on_streamproc_error, Exception: on_other_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def serve(store_path, *, model_id=None, host="127.0.0.1", port=8765, images_root=None, encoder=None, lang="en",
          max_body=MAX_BODY_BYTES, announce=print) -> None:
    """Check the store and model, build the map index, ``announce({"url", "store", "model", "rows"})``,
    then serve until Ctrl-C."""
    import uvicorn

    if images_root is not None and not Path(images_root).is_dir():
        raise UsageError(f"--images-root {images_root}: no such folder")
    explorer = Explorer(store_path, model_id=model_id, images_root=images_root, encoder=encoder, lang=lang,
                        max_body=max_body)
    store = explorer.store()
    model = explorer.model(store)
    index = explorer.index(store, model)
    if index is not None:
        explorer.tile(index, "cluster", 0, 0, 0)  # datashader's first shade compiles: do it before the first visitor
    announce({"url": f"http://{host}:{port}/", "store": os.fspath(explorer.path), "model": model.id, "rows": store.rows})
    uvicorn.run(create_app(explorer), host=host, port=port, log_level="warning", access_log=False)
