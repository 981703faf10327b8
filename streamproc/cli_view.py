"""Commands that show what the clusters are: ``project``, ``render``, ``report``."""

from __future__ import annotations

import click

from .cli import Report, main, reporting, wait_option
from .cli_model import scheduler_option


@main.command(name="project")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--method", type=click.Choice(["umap", "pca"]),
              help="umap: fitted on a sample, other rows placed by their nearest sample neighbours; "
                   "pca: the first two components. [default: the stored method, else umap]")
@click.option("--sample", type=click.IntRange(min=16), default=50_000, show_default=True,
              help="Rows UMAP is fitted on.")
@click.option("--seed", type=int, default=0, show_default=True)
@scheduler_option
@wait_option
@reporting
def project_command(store, model_id, method, sample, seed, scheduler, wait):
    """Store a 2-D position for every row of STORE (new rows only, on later runs).

    \b
    Example:
      streamproc project store --method umap --sample 50000
    """
    from ._project import project

    result = project(store, model_id, method=method, sample=sample, seed=seed, scheduler=scheduler, wait=wait)
    data = result.to_dict()
    text = (f"projected {result.projected:,} rows with {result.method} for model {result.model}"
            + (f" ({data['rows_per_s']:,.0f} rows/s; fit {result.fit_seconds:.1f} s)" if result.projected else ""))
    return Report(data, text)


@main.command(name="render")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The PNG to write.")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--width", type=click.IntRange(min=200), default=1200, show_default=True, help="PNG width in pixels.")
@click.option("--height", type=click.IntRange(min=200), default=900, show_default=True, help="PNG height in pixels.")
@click.option("--color", type=click.Choice(["cluster", "outlier", "batch"]), default="cluster", show_default=True,
              help="What colours the points.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Write each cluster's id and top keyword (when the store has texts) at its centre.")
@wait_option
@reporting
def render_command(store, output, model_id, width, height, color, labels, wait):
    """Draw every row of STORE on its 2-D map with datashader, coloured by cluster, outlier or batch.

    Labels and positions missing for new rows are computed first (as classify and project would).
    Memory stays bounded whatever the number of rows. The line under the title names the
    projection (a UMAP map's axes carry no units).

    \b
    Examples:
      streamproc render store -o map.png --width 1600 --height 1200
      streamproc render store -o batches.png --color batch
    """
    from ._render import render

    data = render(store, output, model_id=model_id, width=width, height=height, color=color, labels=labels,
                  wait=wait)
    what = {"cluster": f"{data['k']} clusters", "outlier": "inliers and outliers",
            "batch": f"{data['categories']} batch groups"}[color]
    return Report(data, f"drew {data['rows']:,} rows ({what}) to {data['output']}")


@main.command(name="report")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--lang", default="en", show_default=True, help="spaCy language code for keyword extraction.")
@wait_option
@reporting
def report_command(store, output, model_id, lang, wait):
    """Write one self-contained HTML page about STORE's clusters: the map, sizes, DB/CH against k,
    explained variance, and per cluster its representative rows and keywords.

    \b
    Example:
      streamproc report store -o report.html
    """
    from .report import write_report

    data = write_report(store, output, model_id=model_id, lang=lang, wait=wait)
    return Report(data, f"wrote a report on {data['rows']:,} rows and {data['k']} clusters to {data['output']}")
