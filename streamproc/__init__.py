"""streamproc: streaming clustering of embedding vectors in a crash-safe Zarr store.

The public API (imported lazily, so the command line starts fast)::

    ingest, open_store, store_info, fit, FitOptions, load_model, activate_model, classify, project, render,
    write_report, export_labels, StreamingPCA, CentroidClassifier, Model
"""

__version__ = "0.1.0"

_EXPORTS = {
    "ingest": "_ingest", "open_store": "store", "store_info": "info", "fit": "_fit", "FitOptions": "_fit",
    "load_model": "models", "activate_model": "models", "classify": "_classify", "project": "_project", "render": "_render",
    "write_report": "report", "export_labels": "export", "StreamingPCA": "pca",
    "CentroidClassifier": "classifier", "Model": "model",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamproc' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = module.Store.open if name == "open_store" else getattr(module, name)
    globals()[name] = value
    return value
