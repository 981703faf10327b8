"""The commands' work over whole stores, the only Dask user: ingest, embed, fit, classify, project,
export, predict, models diff. Each pass runs block by block on :class:`~streamproc.pipeline.runner.Runner`."""
