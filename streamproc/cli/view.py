"""Commands that show what the clusters are: ``project``, ``render``, ``report``."""

from __future__ import annotations

import click

from ..options import MAP_SAMPLE, PROJECTIONS
from .common import Report, reporting, scheduler_option, wait_option

MAX_PIXELS = 8192  # per side of a rendered map: 8192 x 8192 RGBA is 256 MiB


@click.command(name="project")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--method", type=click.Choice(PROJECTIONS),
              help="umap or tsne (openTSNE): fitted on a sample, other rows placed by their nearest sample neighbours; "
                   "pca: the first two components. [default: the stored method, else umap]")
@click.option("--sample", type=click.IntRange(min=16), default=MAP_SAMPLE, show_default=True,
              help="Rows UMAP or t-SNE is fitted on (the others are placed from it).")
@click.option("--seed", type=int, default=0, show_default=True)
@scheduler_option
@wait_option
@reporting
def project_command(store, model_id, method, sample, seed, scheduler, wait):
    """Store a 2-D position for every row of STORE (new rows only, on later runs).

    \b
    Example:
      streamproc project store --method umap --sample 50000   # a larger sample: slower, a little finer
      streamproc project store --method tsne
    """
    from ..pipeline.project import project

    result = project(store, model_id, method=method, sample=sample, seed=seed, scheduler=scheduler, wait=wait)
    data = result.to_dict()
    text = (f"projected {result.projected:,} rows with {result.method} for model {result.model}"
            + (f" ({data['rows_per_s']:,.0f} rows/s; fit {result.fit_seconds:.1f} s)" if result.projected else ""))
    return Report(data, text)


@click.command(name="render")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The PNG to write.")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--width", type=click.IntRange(min=200, max=MAX_PIXELS), default=1200, show_default=True,
              help=f"PNG width in pixels (at most {MAX_PIXELS}).")
@click.option("--height", type=click.IntRange(min=200, max=MAX_PIXELS), default=900, show_default=True,
              help=f"PNG height in pixels (at most {MAX_PIXELS}).")
@click.option("--color", type=click.Choice(["cluster", "outlier", "batch"]), default="cluster", show_default=True,
              help="What colours the points.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Write each cluster's id and top keyword (when the store has texts) at its centre.")
@reporting
def render_command(store, output, model_id, width, height, color, labels):
    """Draw every row of STORE on its 2-D map with datashader, coloured by cluster, outlier or batch.

    Only reads: it draws the rows that `classify` labelled and `project` placed, and says what to
    run when newer rows are missing. Never takes the lock; memory stays bounded whatever the rows.
    The line under the title names the projection (a UMAP map's axes carry no units).

    \b
    Examples:
      streamproc render store -o map.png --width 1600 --height 1200
      streamproc render store -o batches.png --color batch
    """
    from ..view.render import behind_message, render

    data = render(store, output, model_id=model_id, width=width, height=height, color=color, labels=labels)
    what = {"cluster": f"{data['k']} clusters", "outlier": "inliers and outliers",
            "batch": f"{data['categories']} batch groups"}[color]
    return Report(data, f"drew {data['rows']:,} rows ({what}) to {data['output']}",
                  warnings=[w for w in [behind_message(store, data)] if w])


@click.command(name="report")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--lang", default="en", show_default=True, help="spaCy language code for keyword extraction.")
@reporting
def report_command(store, output, model_id, lang):
    """Write one self-contained HTML page about STORE's clusters: the map, sizes, DB/CH against k,
    explained variance, and per cluster its representative rows and keywords.

    \b
    Example:
      streamproc report store -o report.html
    """
    from ..view.render import behind_message
    from ..view.report import write_report

    data = write_report(store, output, model_id=model_id, lang=lang)
    return Report(data, f"wrote a report on {data['rows']:,} rows and {data['k']} clusters to {data['output']}",
                  warnings=[w for w in [behind_message(store, data)] if w])


COMMANDS = [project_command, render_command, report_command]
