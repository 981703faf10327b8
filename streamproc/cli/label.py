"""Commands that label rows and hand labels on: ``classify``, ``export``."""

from __future__ import annotations

import click

from ..options import QUANTILES
from .common import Report, reporting, scheduler_option, wait_option


@click.command(name="classify")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--outlier-quantile", type=click.Choice([str(q) for q in QUANTILES]), default="0.99",
              show_default=True, help="A row is an outlier when its distance exceeds this training quantile "
                                      "of its cluster.")
@click.option("--drift-threshold", type=float, default=0.25, show_default=True,
              help="Report drift when this run's mean distance departs from training by more than this "
                   "fraction, or its outlier rate exceeds the expected rate by it (beyond sampling noise).")
@click.option("--fail-on-drift", is_flag=True,
              help="Exit 3 when this run drifted (after committing its labels), so cron can alert.")
@scheduler_option
@wait_option
@reporting
def classify_command(store, model_id, outlier_quantile, drift_threshold, fail_on_drift, scheduler, wait):
    """Label every row of STORE that the model has not labelled yet, exactly once.

    Made for cron: nothing new exits 0 at once; another run holding the store exits 75; a run killed
    at any point is finished by the next. Labels are kept per model. Reports each batch's outlier
    rate, mean distance and cluster shares, the clusters whose share moved beyond sampling noise, and
    dense groups among the outliers; with --fail-on-drift a drifting run exits 3.

    \b
    Examples:
      streamproc classify store
      */5 * * * *  streamproc ingest store inbox/ --id-column id --text-column text -q; streamproc classify store --json >> labels.log
      streamproc classify store --fail-on-drift || echo "drift: see the message" | mail -s streamproc ops
    """
    from ..pipeline.classify import classify

    result = classify(store, model_id, outlier_quantile=float(outlier_quantile), drift_threshold=drift_threshold,
                      scheduler=scheduler, wait=wait)
    data = result.to_dict()
    if result.labelled == 0:
        text = f"0 new rows (model {result.model}, labelled up to row {result.watermark:,})"
    else:
        text = (f"labelled {result.labelled:,} rows with model {result.model} at {data['rows_per_s']:,.0f} rows/s; "
                f"outliers {result.outlier_rate:.2%}, mean distance {result.mean_distance:.4g} "
                f"(training {result.train_mean_distance:.4g}){'; DRIFT' if result.drift else ''}")
        text = "\n".join([text, *_drift_lines(result)])
    advice = _advice(result, store)
    if advice:
        data["advice"] = advice
        text += f"\n{advice}"
    return Report(data, text, exit_code=3 if fail_on_drift and result.drift else 0)


def _drift_lines(result) -> list[str]:
    lines = [f"  cluster {c['cluster']}: share {c['share']:.2%} against {c['train_share']:.2%} in training (z = {c['z']})"
             for c in result.moved_clusters]
    lines += [f"  new group: {g['rows']:,} outlier rows near cluster {g['nearest_cluster']}, spread {g['spread']:.4g} "
              f"(that cluster's: {g['nearest_spread']:.4g})" for g in result.new_groups]
    return lines


def _advice(result, store) -> str:
    if result.new_groups:
        rows = sum(g["rows"] for g in result.new_groups)
        return (f"{len(result.new_groups)} new group(s) of {rows:,} rows in all among the outliers: run "
                f"`streamproc fit {store} --warm-start --activate` to give them clusters of their own (the other "
                "clusters keep their ids)")
    if result.drift:
        return (f"drift against model {result.model}'s training data: run `streamproc fit {store} --warm-start "
                "--activate` to refit from the current model (cluster ids are kept)")
    return ""


@click.command(name="export")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="FILE.parquet, FILE.csv or FILE.jsonl (one JSON object per row)")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--since-batch", help="Only rows of batches after this batch id (exclusive; ids as `info` lists "
                                    "them: b000001 is the store's first batch).")
@click.option("--with-texts", is_flag=True, help="Add each row's text (a `text` column) beside its id.")
@reporting
def export_command(store, output, model_id, since_batch, with_texts):
    """Write the labelled rows of STORE to a Parquet, CSV or JSON Lines file (columns model, id, row,
    batch, label, distance, confidence, outlier; and text with --with-texts). Streams in bounded
    memory; the file appears complete or not at all.

    \b
    Examples:
      streamproc export store -o labels.parquet --since-batch b000001
      streamproc export store -o labels.jsonl --with-texts
    """
    from ..pipeline.export import export_labels

    data = export_labels(store, output, model_id=model_id, since_batch=since_batch, with_texts=with_texts)
    return Report(data, f"wrote {data['rows']:,} labelled rows of model {data['model']} to {data['output']}")


COMMANDS = [classify_command, export_command]
