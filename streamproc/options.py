"""The choices commands offer, in one light module (the CLI imports it without the heavy libraries)."""

PCA_SOLVERS = ("covariance", "incremental")
SCALINGS = ("none", "global", "whiten")
METRICS = ("euclidean", "cosine")
DEFAULT_K = "4:32:4"
QUANTILES = (0.90, 0.95, 0.99, 0.999)
SELECTIONS = ("db", "ch", "silhouette", "elbow")
FIT_METHODS = ("kmeans", "agglomerative", "hdbscan")
LINKAGES = ("ward", "average", "complete")
PROJECTIONS = ("umap", "tsne", "pca")
# rows the map (UMAP / t-SNE) is fitted on: kNN overlap 0.312 at 20k against 0.321 at 50k, in 7.7 s
# against 20.8 s (benchmarks/README.md, "Map sample")
MAP_SAMPLE = 20_000
CLASSIFIERS = ("softmax", "logistic")
FIT_COMMIT_WAIT = 600.0  # seconds fit waits for the lock at commit rather than discard its work
DTYPES = ("float32", "float16")  # storage dtypes of the vectors
SYNTH_FORMATS = ("npy", "npz", "parquet", "csv")
