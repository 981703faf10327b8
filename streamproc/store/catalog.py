"""Finding, listing, activating and removing a store's models."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import jsonschema
import zarr

from ..errors import ModelError
from ..fs import fsync_dir
from ..learn.model import ARRAYS, Model
from . import arrays
from .manifest import check_name
from .store import Store, open_writer


def resolve_model_id(store: Store, model_id: str | None) -> str:
    """The named model, or the store's current one; a clear error when there is none."""
    if model_id is None:
        if store.manifest.current_model is None:
            raise ModelError(f"{store.path}: no model yet; run `streamproc fit {store.path}` first")
        return store.manifest.current_model
    check_name(model_id, "model id")
    if model_id not in store.manifest.models:
        known = ", ".join(store.manifest.models) or "none"
        raise ModelError(f"{store.path}: no model {model_id!r} (models: {known})")
    return model_id


def load_model(store: Store | str | os.PathLike, model_id: str | None = None) -> Model:
    """Load a committed model of a store (default: the current one) and check it fits the store."""
    store = store if isinstance(store, Store) else Store.open(store)
    model_id = resolve_model_id(store, model_id)
    model = read_model(store.resolve(f"models/{model_id}"))
    if model.id != model_id:
        raise ModelError(f"{store.path}: models/{model_id} holds model {model.id!r}; the store is damaged")
    if model.dim != store.dim:
        raise ModelError(f"model {model_id} was fitted on dim {model.dim}, but the store holds dim {store.dim}")
    return model


def list_models(store_path: str | os.PathLike) -> dict:
    store = Store.open(store_path)
    out = []
    for model_id, meta in store.manifest.models.items():
        model = read_model(store.resolve(f"models/{model_id}"))
        out.append({"id": model_id, "current": model_id == store.manifest.current_model, "k": model.k,
                    "n_components": model.n_components, "explained_variance": model.explained_variance,
                    "metric": model.metric, "scaling": model.scaling, "created_at": model.created_at,
                    "fit_rows": list(model.fit_rows), "watermark": meta.watermark,
                    "scores": model.scores, "cluster_ids": [int(i) for i in model.classes_]})
    return {"current_model": store.manifest.current_model, "models": out}


def activate_model(store_path: str | os.PathLike, model_id: str, *, wait: float = 0.0) -> None:
    with open_writer(store_path, wait=wait) as writer:
        resolve_model_id(writer, model_id)
        writer.commit(replace(writer.manifest, current_model=model_id))


def remove_models(store_path: str | os.PathLike, model_ids: list[str] | None, *, wait: float = 0.0) -> dict:
    """Remove models that are not the store's current one (``None``: every one but the current), and
    their folders (parameters, reduced rows, labels, map: each refit keeps its own, 6 GB at 10M x 768).
    The manifest is committed without them first, then the folders are deleted: killed before the
    commit, nothing changed; killed after, the next writer's recovery deletes the unlisted folders.
    Returns the ids removed, the bytes freed and the current model."""
    with open_writer(store_path, wait=wait) as writer:
        current = writer.manifest.current_model
        if model_ids is None:
            if current is None:
                raise ModelError(f"{writer.path}: no current model, so --all-but-current would remove every model; "
                                 "name the models to remove")
            model_ids = [m for m in writer.manifest.models if m != current]
        model_ids = list(dict.fromkeys(model_ids))  # (an id given twice is removed once)
        for model_id in model_ids:
            resolve_model_id(writer, model_id)
            if model_id == current:
                raise ModelError(f"{writer.path}: {model_id} is the current model; make another one current first "
                                 f"(streamproc models activate {writer.path} ID), then remove it")
        folders = [writer.resolve(f"models/{model_id}") for model_id in model_ids]
        folders = [f for f in folders if f.is_dir() and not f.is_symlink()]  # (a folder already gone: nothing to free)
        freed = sum(os.path.getsize(os.path.join(root, name))
                    for folder in folders for root, _, names in os.walk(folder) for name in names)
        if model_ids:
            kept = {k: v for k, v in writer.manifest.models.items() if k not in model_ids}
            writer.commit(replace(writer.manifest, models=kept))
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)  # (unlisted now: what a failure leaves, recovery removes)
        if folders:
            fsync_dir(folders[0].parent)
    return {"removed": list(model_ids), "bytes_freed": freed, "current_model": current}


# ---- a model on disk: model.json (validated by schemas/model.schema.json) and one small array per parameter
SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "model.schema.json"


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def save_model(model: Model, directory: Path) -> None:
    """Write ``model`` into ``directory`` (a staging folder: the commit that lists it makes it visible)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        value = getattr(model, name)
        if value is not None:
            arrays.save_small(directory / name, value)
    meta = model.metadata()
    jsonschema.validate(meta, load_schema())
    (directory / "model.json").write_text(json.dumps(meta, indent=1))


def read_model(directory: Path) -> Model:
    """The model saved in ``directory``, validated (nothing is executed: JSON and numeric arrays only)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "model.json").read_text())
        jsonschema.validate(meta, load_schema())
        values = {}
        for name in ARRAYS:
            values[name] = arrays.load_small(directory / name) if arrays.exists(directory / name) else None
            if values[name] is not None and values[name].dtype.hasobject:
                raise ModelError(f"{directory}: array {name} has an object dtype")
    except FileNotFoundError as exc:
        raise ModelError(f"{directory}: damaged model, {Path(exc.filename or '').name or 'a file'} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, jsonschema.ValidationError) as exc:
        raise ModelError(f"{directory}: damaged model metadata ({str(exc).splitlines()[0][:200]})") from None
    except (ValueError, TypeError, KeyError, zarr.errors.BaseZarrError) as exc:  # damaged array metadata or chunks
        raise ModelError(f"{directory}: damaged model array ({str(exc).splitlines()[0][:200]})") from None
    return Model.from_parts(meta, values, directory)
