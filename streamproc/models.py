"""Finding, listing and activating a store's models."""

from __future__ import annotations

import os
from dataclasses import replace

from .errors import ModelError
from .manifest import check_name
from .model import Model
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
    model = Model.load(store.resolve(f"models/{model_id}"))
    if model.id != model_id:
        raise ModelError(f"{store.path}: models/{model_id} holds model {model.id!r}; the store is damaged")
    if model.dim != store.dim:
        raise ModelError(f"model {model_id} was fitted on dim {model.dim}, but the store holds dim {store.dim}")
    return model


def list_models(store_path: str | os.PathLike) -> dict:
    store = Store.open(store_path)
    out = []
    for model_id, meta in store.manifest.models.items():
        model = Model.load(store.resolve(f"models/{model_id}"))
        out.append({"id": model_id, "current": model_id == store.manifest.current_model, "k": model.k,
                    "n_components": model.n_components, "explained_variance": model.explained_variance,
                    "metric": model.metric, "scaling": model.scaling, "created_at": model.created_at,
                    "fit_rows": list(model.fit_rows), "watermark": int(meta.get("watermark", 0)),
                    "scores": model.scores, "cluster_ids": [int(i) for i in model.classes_]})
    return {"current_model": store.manifest.current_model, "models": out}


def activate_model(store_path: str | os.PathLike, model_id: str, *, wait: float = 0.0) -> None:
    with open_writer(store_path, wait=wait) as writer:
        resolve_model_id(writer, model_id)
        writer.commit(replace(writer.manifest, current_model=model_id))
