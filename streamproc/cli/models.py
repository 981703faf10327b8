"""Commands that fit and manage models: ``fit``, ``models``, ``models activate``."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..options import (
    CLASSIFIERS,
    DEFAULT_K,
    FIT_COMMIT_WAIT,
    FIT_METHODS,
    LINKAGES,
    METRICS,
    PCA_SOLVERS,
    SCALINGS,
    SELECTIONS,
)
from .common import Report, reporting, scheduler_option, wait_option


@click.command(name="fit")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--k", "k_range", help=f"k values to try: START:STOP[:STEP] (stop inclusive) or a list like 8,12,16 "
                                     f"[default: {DEFAULT_K}; with --warm-start: the current k plus one per new group]")
@click.option("--variance", type=float, default=0.95, show_default=True,
              help="Keep the fewest PCA components explaining this fraction of the variance.")
@click.option("--components", type=click.IntRange(min=1), help="Keep exactly this many PCA components instead.")
@click.option("--pca-solver", type=click.Choice(PCA_SOLVERS), default="covariance", show_default=True,
              help="covariance: exact, one pass, parallel; incremental: scikit-learn's IncrementalPCA.")
@click.option("--scale", "scaling", type=click.Choice(SCALINGS), default="none", show_default=True,
              help="Scaling of the PCA components before clustering (whiten = unit variance each).")
@click.option("--metric", type=click.Choice(METRICS), default="euclidean", show_default=True,
              help="cosine = spherical k-means on normalised vectors.")
@click.option("--method", type=click.Choice(FIT_METHODS), default="kmeans", show_default=True,
              help="kmeans: streamed Lloyd sweep; agglomerative: merge tree over k-means micro-clusters; "
                   "hdbscan: HDBSCAN on the uniform sample (k comes from HDBSCAN).")
@click.option("--linkage", type=click.Choice(LINKAGES), default="ward", show_default=True,
              help="agglomerative: how merged groups are compared.")
@click.option("--micro-clusters", type=click.IntRange(min=2), default=1000, show_default=True,
              help="agglomerative: k-means micro-clusters the merge tree is built over (at most --sample).")
@click.option("--min-cluster-size", type=click.IntRange(min=2), default=25, show_default=True,
              help="hdbscan: smallest cluster, in sample rows.")
@click.option("--min-samples", type=click.IntRange(min=1), help="hdbscan: neighbours of a core point "
              "(default: --min-cluster-size).")
@click.option("--umap-components", type=click.IntRange(min=0), default=5, show_default=True,
              help="hdbscan: UMAP the sample to this many dimensions first (0: cluster the reduced rows).")
@click.option("--select", type=click.Choice(SELECTIONS), default="db", show_default=True,
              help="Choose k by lowest Davies-Bouldin, highest Calinski-Harabasz or silhouette, or the "
                   "elbow (knee) of inertia against k.")
@click.option("--silhouette-sample", type=click.IntRange(min=2), default=5000, show_default=True,
              help="Rows of the uniform sample the silhouette is computed on (it is O(n^2)).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Most k-means passes.")
@click.option("--tol", type=float, default=1e-4, show_default=True,
              help="Stop k-means when no centroid moves more than this (relative to the cluster spread).")
@click.option("--inertia-tol", type=float, default=1e-3, show_default=True,
              help="... or when an epoch lowers no k's inertia by more than this fraction, or the next one is "
                   "expected to lower none by more.")
@click.option("--one-read/--two-reads", "one_read", default=None,
              help="Reduce the rows from pass 1's projection of the vectors (used when measured as close to exact "
                   "PCA as exact PCA is to itself) or from a second read. Default: one read when the vectors are "
                   "larger than half this machine's memory.")
@click.option("--sample", type=click.IntRange(min=2), default=10_000, show_default=True,
              help="Rows in the uniform sample that seeds k-means.")
@click.option("--restarts", type=click.IntRange(min=1), default=3, show_default=True,
              help="k-means++ runs on the sample per k; the lowest-inertia one, refined by split/merge "
                   "moves, seeds the full passes.")
@click.option("--classifier", type=click.Choice(CLASSIFIERS), default="softmax", show_default=True,
              help="Confidence model for classify: Gaussian posterior over distances, or a logistic "
                   "regression on the distance vector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--activate", is_flag=True, help="Make this model the store's current one (the first model always is).")
@click.option("--warm-start", is_flag=True,
              help="Start from the current model: its reduction and centroids; only rows added since are reduced, "
                   "k-means starts converged, dense groups among the new rows' outliers get new clusters.")
@click.option("--no-align", is_flag=True,
              help="Do not match the clusters to the current model's: every cluster takes a new id.")
@scheduler_option
@wait_option(default=FIT_COMMIT_WAIT)
@reporting
def fit_command(store, k_range, variance, components, pca_solver, scaling, metric, method, linkage, micro_clusters,
                min_cluster_size, min_samples, umap_components, select, silhouette_sample, epochs, tol, inertia_tol,
                one_read, sample, restarts, classifier, seed, activate, warm_start, no_align, scheduler, wait):
    """Fit PCA + k-means for every k on STORE's vectors, pick k, and save the model in STORE.

    Reads the rows committed when it starts, without the lock (ingest can go on meanwhile); takes
    the lock only to commit the model, waiting up to --wait seconds (default 600) for it rather than
    discarding its work. Memory does not grow with the number of rows.

    \b
    Examples:
      streamproc fit store
      streamproc fit store --k 8:32:4 --metric cosine --activate
      streamproc fit store --method agglomerative --linkage average --metric cosine --classifier logistic
      streamproc fit store --method hdbscan --min-cluster-size 50
      streamproc fit store --scheduler tcp://10.0.0.5:8786
      streamproc fit store --warm-start --activate     # after new batches: keeps the ids, adds new groups
    """
    from ..learn.kmeans import parse_k_range
    from ..pipeline.fit import FitOptions, fit

    try:
        ks = [] if warm_start and k_range is None else parse_k_range(k_range or DEFAULT_K)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = FitOptions(variance=variance, n_components=components, solver=pca_solver, scaling=scaling,
                         metric=metric, ks=ks, select=select, epochs=epochs, tol=tol, inertia_tol=inertia_tol,
                         one_read=one_read, seed=seed, sample=sample, restarts=restarts, classifier=classifier,
                         method=method, linkage=linkage, micro_clusters=micro_clusters,
                         min_cluster_size=min_cluster_size, min_samples=min_samples, umap_components=umap_components,
                         silhouette_sample=silhouette_sample, warm_start=warm_start, align=not no_align)
    result = fit(store, options, scheduler=scheduler, activate=activate, wait=wait)
    data = result.to_dict()
    m = result.model
    lines = [f"model {m.id}{' (current)' if result.current else ''}: k={m.k}, {m.n_components} components "
             f"({m.explained_variance:.1%} of the variance), {result.rows:,} rows in {result.seconds:.1f} s",
             f"cluster ids {', '.join(map(str, data['cluster_ids']))}"
             + (f" (matched clusters keep the ids of {result.aligned_to})" if result.aligned_to else ""),
             "", _score_table(m.scores, m.k)]
    return Report(data, "\n".join(lines))


def _score_table(scores: list[dict], chosen: int) -> str:
    lines = ["     k  Davies-Bouldin  Calinski-Harabasz  silhouette       inertia"]
    for s in scores:
        cells = [_cell(s.get(name), fmt) for name, fmt in
                 (("davies_bouldin", ".4f"), ("calinski_harabasz", ".1f"), ("silhouette", ".4f"), ("inertia", ".4g"))]
        lines.append(f"{'*' if s['k'] == chosen else ' '} {s['k']:>4}  {cells[0]:>14}  {cells[1]:>17}  "
                     f"{cells[2]:>10}  {cells[3]:>12}")
    return "\n".join(lines)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


class _ListByDefault(click.Group):
    """``streamproc models STORE`` means ``streamproc models list STORE``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(name="models", cls=_ListByDefault)
def models_group():
    """List a store's models (`models STORE`), choose the current one (`models activate STORE ID`),
    compare two (`models diff STORE A B`), or remove one that is not current (`models remove STORE ID`).

    \b
    Examples:
      streamproc models store --json
      streamproc models activate store m20261122-081500-ab12
      streamproc models diff store m20261122-081500-ab12 m20261123-020000-cd34
      streamproc models remove store --all-but-current
    """


@models_group.command(name="list")
@click.argument("store", type=click.Path(file_okay=False))
@reporting
def models_list(store):
    """List STORE's models, which one is current, and their score tables.

    \b
    Example:
      streamproc models store
    """
    from ..store.catalog import list_models

    data = list_models(store)
    lines = []
    for m in data["models"]:
        lines.append(f"{'*' if m['current'] else ' '} {m['id']}  k={m['k']}  {m['n_components']} components  "
                     f"rows [{m['fit_rows'][0]:,}, {m['fit_rows'][1]:,})  labelled to row {m['watermark']:,}  "
                     f"ids {','.join(map(str, m['cluster_ids']))}")
        lines.append(_score_table(m["scores"], m["k"]))
    return Report(data, "\n".join(lines) or "no models yet (run streamproc fit STORE)")


@models_group.command(name="activate")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("model_id")
@wait_option
@reporting
def models_activate(store, model_id, wait):
    """Make MODEL_ID the current model of STORE (what classify labels with by default).

    \b
    Example:
      streamproc models activate store m20261122-081500-ab12
    """
    from ..store.catalog import activate_model

    activate_model(store, model_id, wait=wait)
    return Report({"current_model": model_id}, f"current model: {model_id}")


@models_group.command(name="remove")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("model_ids", metavar="[ID]...", nargs=-1)
@click.option("--all-but-current", is_flag=True, help="Remove every model but the current one.")
@wait_option
@reporting
def models_remove(store, model_ids, all_but_current, wait):
    """Remove models of STORE that are not its current one, with their folders: reduced rows, labels
    and map (each refit keeps its own: 6 GB at 10M x 768 rows). The rows and the current model are
    untouched. Name the models (ID...), or keep only the current one with --all-but-current.

    \b
    Example:
      streamproc models remove store --all-but-current
    """
    from ..errors import UsageError
    from ..store.catalog import remove_models

    if bool(model_ids) == all_but_current:
        raise UsageError("give the ids of the models to remove, or --all-but-current (not both)")
    data = remove_models(store, None if all_but_current else list(model_ids), wait=wait)
    removed = ", ".join(data["removed"]) or "no model"
    return Report(data, f"removed {removed} ({data['bytes_freed'] / 1e6:,.1f} MB freed); "
                        f"current model: {data['current_model']}")


@models_group.command(name="diff")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("from_id", metavar="A")
@click.argument("to_id", metavar="B")
@reporting
def models_diff(store, from_id, to_id):
    """How model A's clusters became model B's: matched, split, merged, new and gone clusters, in rows.

    Compares both models' labels over the rows both have labelled (else both label a sample).

    \b
    Example:
      streamproc models diff store m20261122-081500-ab12 m20261123-020000-cd34 --json
    """
    from ..pipeline.diff import diff_models

    data = diff_models(store, from_id, to_id)
    kept = "-" if data["kept"] is None else f"{data['kept']:.1%}"
    lines = [f"{data['from']} -> {data['to']}: {data['rows']:,} rows compared ({data['source']}), same id for {kept}"]
    lines += [f"  matched {m['from']} -> {m['to']} ({m['rows']:,} rows)" for m in data["matched"]]
    lines += [f"  split   {s['from']} -> {', '.join(map(str, s['to']))} ({', '.join(f'{r:,}' for r in s['rows'])} rows)"
              for s in data["split"]]
    lines += [f"  merged  {', '.join(map(str, m['from']))} -> {m['to']} ({', '.join(f'{r:,}' for r in m['rows'])} rows)"
              for m in data["merged"]]
    lines += [f"  new     {n['id']} ({n['rows']:,} rows)" for n in data["new"]]
    lines += [f"  gone    {g['id']} ({g['rows']:,} rows)" for g in data["gone"]]
    return Report(data, "\n".join(lines))


COMMANDS = [fit_command, models_group]
