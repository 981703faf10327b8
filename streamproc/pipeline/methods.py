"""The clustering methods of ``fit``, behind one dispatch: each turns the reduced rows into a
:class:`Sweep` (the candidate partitions, one per k, with their exact streamed statistics), from
which ``fit`` scores every k, picks one and builds the model.

* kmeans: the streamed Lloyd sweep (every k of ``--k``) that passes 2-3 ran; one pass of DB/CH
  statistics.
* agglomerative: passes 2-3 ran k-means with ``--micro-clusters`` centroids; their counts and sums
  are merged by :mod:`streamproc.learn.agglomerative` and cut at every k; one pass of DB/CH statistics
  of each cut over all rows (a row belongs to the group of its nearest micro-cluster).
* hdbscan: :mod:`streamproc.learn.density` on the uniform sample; one pass for the means of the
  nearest-centroid labels, one for DB/CH.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..learn import agglomerative, density, stats
from ..learn.model import normalize_rows
from ..learn.scores import pairwise_distances
from ..options import FIT_METHODS, QUANTILES

METHODS = FIT_METHODS


@dataclass
class Sweep:
    ks: list[int]
    centroid_sets: list[np.ndarray]  # the model's centroids for each k
    totals: dict  # per k (key str(i)): count, dist, sqdist, sum and max of the partition's rows
    mean_sets: list[np.ndarray]  # exact means of each partition's clusters
    sample_labels: list[np.ndarray]  # the partition's label of each sample row (-1: none, e.g. noise)
    quantiles: np.ndarray | None = None  # outlier thresholds, when the method sets them itself
    uppers: list[np.ndarray] | None = None  # when totals hold every k's distance histograms (hist, distsum): their ends
    extra: dict | None = None  # what the method reports besides the scores (e.g. noise_fraction)


def lloyd_ks(options) -> list[int]:
    """The k of each centroid set passes 2-3 refine by Lloyd epochs."""
    return {"kmeans": list(options.ks), "agglomerative": [options.micro_clusters], "hdbscan": []}[options.method]


def init_centroid_sets(options, sample_z: np.ndarray) -> list[np.ndarray]:
    from ..learn import kmeans

    if options.method == "kmeans":
        return kmeans.init_centroid_sets(sample_z, options.ks, seed=options.seed, metric=options.metric,
                                         restarts=options.restarts)
    if options.method == "agglomerative":  # k-means++ seeds are enough: the Lloyd epochs refine them
        from ..learn.lloyd import kmeans_plusplus

        seeds = kmeans_plusplus(sample_z, options.micro_clusters, np.random.RandomState(options.seed))
        return [normalize_rows(seeds) if options.metric == "cosine" else seeds]
    return []


def run(options, runner, reduced_path, ranges, sample_z: np.ndarray, centroid_sets: list[np.ndarray],
        total: dict) -> Sweep:
    """The dispatch point: the method's partitions, from the state passes 2-3 left."""
    if options.method == "kmeans":
        return _kmeans(runner, reduced_path, ranges, sample_z, centroid_sets, total, options)
    if options.method == "agglomerative":
        return _agglomerative(runner, reduced_path, ranges, sample_z, centroid_sets[0], total, options)
    return _hdbscan(runner, reduced_path, ranges, sample_z, options)


# ---- block functions (module level: they travel to Dask workers) -------------------------------
def _scores_block(z, start, centroid_sets, mean_sets, uppers=None, metric="euclidean"):
    return stats.scores_chunk(z.astype(np.float32, copy=False), [c.astype(np.float32) for c in centroid_sets],
                              mean_sets, uppers=uppers, metric=metric)


def _cut_scores_block(z, start, micro, group_sets, mean_sets, centroid_sets):
    """DB/CH statistics of each cut (rows take their nearest micro-cluster's group), and each
    cluster's largest distance to its centroid under the model's nearest-centroid rule."""
    z = z.astype(np.float32, copy=False)
    [(micro_labels, _)] = stats.nearest_in_sets(z, [micro.astype(np.float32)])
    out = stats.labelled_scores_chunk(z, [groups[micro_labels] for groups in group_sets], mean_sets)
    for i, (labels, sq) in enumerate(stats.nearest_in_sets(z, [c.astype(np.float32) for c in centroid_sets])):
        out[f"max{i}"] = stats.label_max(np.sqrt(sq), labels, len(centroid_sets[i]))
    return out


# ---- the methods ---------------------------------------------------------------------------------
def _nearest(z: np.ndarray, centroid_sets: list[np.ndarray]) -> list[np.ndarray]:
    return [labels for labels, _ in stats.nearest_in_sets(z.astype(np.float32),
                                                          [c.astype(np.float32) for c in centroid_sets])]


# The k-means scores pass also histograms every k's distances (the chosen k's outlier quantiles with
# no pass of their own) while a block's histograms stay this small: the default --k 4:32:4 needs
# 144 x 4096 (4.7 MB a block result); a wider sweep falls back to pass 5 for the chosen k.
FUSED_HISTOGRAM_ENTRIES = 2**20


def _kmeans(runner, reduced_path, ranges, sample_z, centroid_sets, total, options) -> Sweep:
    """The scores of the partitions the last Lloyd epoch labelled (the same centroids): that epoch's
    label means are the clusters' exact means, and its largest distances bound the histograms."""
    ks = list(options.ks)
    mean_sets = [stats.label_means(total, str(i)) for i in range(len(ks))]
    uppers = None
    if sum(ks) * stats.HISTOGRAM_BINS <= FUSED_HISTOGRAM_ENTRIES:
        uppers = [stats.histogram_upper(total[f"max{i}"], options.metric) for i in range(len(ks))]
    totals = runner.reduce_blocks(reduced_path, ranges, _scores_block, centroid_sets, mean_sets, uppers,
                                  options.metric, desc="pass 4/5 scores" + (" + quantiles" if uppers else ""))
    return Sweep(ks, centroid_sets, totals, mean_sets, _nearest(sample_z, centroid_sets), uppers=uppers)


def _agglomerative(runner, reduced_path, ranges, sample_z, micro, total, options) -> Sweep:
    used = total["count0"] > 0
    micro, counts, sums = micro[used], total["count0"][used], total["sum0"][used]
    if len(micro) < max(options.ks):
        raise UsageError(f"only {len(micro)} micro-clusters have rows (the reduced rows take few distinct values), "
                         f"fewer than the largest --k {max(options.ks)}: lower --k")
    merges = agglomerative.merge_tree(sums / counts[:, None], counts, linkage=options.linkage, metric=options.metric)
    group_sets = agglomerative.cuts(merges, len(micro), options.ks)
    mean_sets = [agglomerative.group_means(groups, counts, sums)[1] for groups in group_sets]
    centroid_sets = [normalize_rows(m) if options.metric == "cosine" else m for m in mean_sets]
    totals = runner.reduce_blocks(reduced_path, ranges, _cut_scores_block, micro, group_sets, mean_sets,
                                  centroid_sets, desc="pass 4/5 merge-tree scores")
    [sample_micro] = _nearest(sample_z, [micro])
    return Sweep(list(options.ks), centroid_sets, totals, mean_sets, [g[sample_micro] for g in group_sets],
                 extra={"micro_clusters": int(len(micro))})


def _hdbscan(runner, reduced_path, ranges, sample_z, options) -> Sweep:
    from ..learn import kmeans

    labels = density.cluster_sample(sample_z, min_cluster_size=options.min_cluster_size,
                                    min_samples=options.min_samples, metric=options.metric,
                                    umap_components=options.umap_components, seed=options.seed)
    centroids, quantiles = density.summarise(sample_z, labels, options.metric)
    first = runner.reduce_blocks(reduced_path, ranges, kmeans.lloyd_block, [centroids], desc="pass 3/5 cluster means")
    means = [stats.label_means(first, "0")]
    totals = runner.reduce_blocks(reduced_path, ranges, _scores_block, [centroids], means, desc="pass 4/5 scores")
    noise = labels < 0
    sample_labels = density.remap(labels)
    d = pairwise_distances(sample_z[noise], centroids, options.metric)
    level = QUANTILES.index(0.99)
    flagged = (d.min(axis=1) > quantiles[d.argmin(axis=1), level]).mean() if noise.any() else 0.0
    return Sweep([len(centroids)], [centroids], totals, means, [sample_labels], quantiles=quantiles,
                 extra={"noise_fraction": float(noise.mean()), "noise_flagged": float(flagged)})

