"""Learning on numpy arrays: streaming statistics (chunk, combine, finalize), PCA, k-means, agglomerative
and density clustering, scores, the centroid classifier and the fitted :class:`~streamproc.learn.model.Model`.
No files and no Dask here: numpy, scipy and scikit-learn (and umap-learn / openTSNE for sample embeddings)."""
