"""The store on disk, the only zarr user: the manifest (the commit point), the writer's lock, row-aligned
arrays staged and committed, checksums and ``check``, model files (the catalog)."""
