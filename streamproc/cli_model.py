"""Commands that fit and manage models: ``fit``, ``models``, ``models activate``."""

from __future__ import annotations

import click

from .choices import DEFAULT_K, METRICS, PCA_SOLVERS, SCALINGS
from .cli import Report, main, reporting, wait_option
from .errors import UsageError


def scheduler_option(fn):
    return click.option("--scheduler", metavar="tcp://HOST:PORT",
                        help="Run the passes on this dask.distributed cluster (workers must see the store's path). "
                             "Default: Dask threads in this process.")(fn)


@main.command(name="fit")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--k", "k_range", default=DEFAULT_K, show_default=True,
              help="k values to try: START:STOP[:STEP] (stop inclusive) or a list like 8,12,16.")
@click.option("--variance", type=float, default=0.95, show_default=True,
              help="Keep the fewest PCA components explaining this fraction of the variance.")
@click.option("--components", type=click.IntRange(min=1), help="Keep exactly this many PCA components instead.")
@click.option("--pca-solver", type=click.Choice(PCA_SOLVERS), default="covariance", show_default=True,
              help="covariance: exact, one pass, parallel; incremental: scikit-learn's IncrementalPCA.")
@click.option("--scale", "scaling", type=click.Choice(SCALINGS), default="none", show_default=True,
              help="Scaling of the PCA components before clustering (whiten = unit variance each).")
@click.option("--metric", type=click.Choice(METRICS), default="euclidean", show_default=True,
              help="cosine = spherical k-means on normalised vectors.")
@click.option("--select", type=click.Choice(["db", "ch"]), default="db", show_default=True,
              help="Choose k by lowest Davies-Bouldin or highest Calinski-Harabasz.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Most k-means passes.")
@click.option("--tol", type=float, default=1e-4, show_default=True,
              help="Stop k-means when no centroid moves more than this (relative to the cluster spread).")
@click.option("--inertia-tol", type=float, default=1e-3, show_default=True,
              help="... or when an epoch lowers no k's inertia by more than this fraction.")
@click.option("--two-reads", is_flag=True,
              help="Reduce the rows from a second read of the vectors instead of their one-read projection.")
@click.option("--sample", type=click.IntRange(min=2), default=10_000, show_default=True,
              help="Rows in the uniform sample that seeds k-means.")
@click.option("--restarts", type=click.IntRange(min=1), default=3, show_default=True,
              help="k-means++ runs on the sample per k; the lowest-inertia one, refined by split/merge "
                   "moves, seeds the full passes.")
@click.option("--classifier", type=click.Choice(["softmax", "logistic"]), default="softmax", show_default=True,
              help="Confidence model for classify: Gaussian posterior over distances, or a logistic "
                   "regression on the distance vector.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--activate", is_flag=True, help="Make this model the store's current one (the first model always is).")
@scheduler_option
@wait_option
@reporting
def fit_command(store, k_range, variance, components, pca_solver, scaling, metric, select, epochs, tol, inertia_tol,
                two_reads, sample, restarts, classifier, seed, activate, scheduler, wait):
    """Fit PCA + k-means for every k on STORE's vectors, pick k, and save the model in STORE.

    Reads the rows committed when it starts, without the lock (ingest can go on meanwhile); takes
    the lock only to commit the model. Memory does not grow with the number of rows.

    \b
    Examples:
      streamproc fit store
      streamproc fit store --k 8:32:4 --metric cosine --activate
      streamproc fit store --scheduler tcp://10.0.0.5:8786
    """
    from ._fit import FitOptions, fit
    from .kmeans import parse_k_range

    try:
        ks = parse_k_range(k_range)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = FitOptions(variance=variance, n_components=components, solver=pca_solver, scaling=scaling,
                         metric=metric, ks=ks, select=select, epochs=epochs, tol=tol, inertia_tol=inertia_tol,
                         one_read=not two_reads, seed=seed, sample=sample, restarts=restarts, classifier=classifier)
    result = fit(store, options, scheduler=scheduler, activate=activate, wait=wait)
    data = result.to_dict()
    m = result.model
    lines = [f"model {m.id}{' (current)' if result.current else ''}: k={m.k}, {m.n_components} components "
             f"({m.explained_variance:.1%} of the variance), {result.rows:,} rows in {result.seconds:.1f} s",
             "", _score_table(m.scores, m.k)]
    return Report(data, "\n".join(lines))


def _score_table(scores: list[dict], chosen: int) -> str:
    lines = ["     k  Davies-Bouldin  Calinski-Harabasz"]
    for s in scores:
        db = "-" if s["davies_bouldin"] is None else f"{s['davies_bouldin']:.4f}"
        ch = "-" if s["calinski_harabasz"] is None else f"{s['calinski_harabasz']:.1f}"
        lines.append(f"{'*' if s['k'] == chosen else ' '} {s['k']:>4}  {db:>14}  {ch:>17}")
    return "\n".join(lines)


class _ListByDefault(click.Group):
    """``streamproc models STORE`` means ``streamproc models list STORE``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@main.group(name="models", cls=_ListByDefault)
def models_group():
    """List a store's models (`models STORE`) or choose the current one (`models activate STORE ID`).

    \b
    Examples:
      streamproc models store --json
      streamproc models activate store m20261122-081500-ab12
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
    from .models import list_models

    data = list_models(store)
    lines = []
    for m in data["models"]:
        lines.append(f"{'*' if m['current'] else ' '} {m['id']}  k={m['k']}  {m['n_components']} components  "
                     f"rows [{m['fit_rows'][0]:,}, {m['fit_rows'][1]:,})  labelled to row {m['watermark']:,}")
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
    from .models import activate_model

    activate_model(store, model_id, wait=wait)
    return Report({"current_model": model_id}, f"current model: {model_id}")
