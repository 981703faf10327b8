"""streamproc: streaming clustering of embedding vectors in a crash-safe Zarr store.

The package's layers, bottom up (imports go one way; each heavy library lives in one of them)::

    learn/     numpy + scikit-learn: statistics, PCA, clustering, scores, the Model and its classifier
    store/     the store on disk (the only zarr user): manifest, lock, staged commits, checks, model files
    io/        input files, texts and encoders (the only torch user), in-memory data, synthetic batches
    pipeline/  the commands' work over whole stores (the only Dask user)
    view/      map, report, keywords, the web explorer (datashader, spaCy, Starlette)
    cli/       the command line

The public API (imported lazily, so the command line starts fast)::

    ingest, open_store, store_info, fit, FitOptions, load_model, activate_model, classify, project, render,
    write_report, export_labels, StreamingPCA, CentroidClassifier, Model
"""

__version__ = "0.1.0"

_EXPORTS = {
    "ingest": "pipeline.ingest", "fit": "pipeline.fit", "FitOptions": "pipeline.fit", "classify": "pipeline.classify",
    "project": "pipeline.project", "export_labels": "pipeline.export", "open_store": "store.store",
    "store_info": "store.info", "load_model": "store.catalog", "activate_model": "store.catalog",
    "render": "view.render", "write_report": "view.report", "StreamingPCA": "learn.streaming_pca",
    "CentroidClassifier": "learn.classifier", "Model": "learn.model",
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
