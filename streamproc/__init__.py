"""streamproc: streaming clustering of embedding vectors in a crash-safe Zarr store."""

__version__ = "0.1.0"
