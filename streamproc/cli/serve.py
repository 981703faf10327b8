"""Commands that answer questions about vectors and texts without writing: ``serve`` and ``predict``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Report, reporting

ENCODER_HELP = "The encoder that embedded the store's texts, as for `embed --encoder` (default: the built-in one)."


@click.command(name="serve")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--model", "model_id", help="Model id (default: the store's current model, re-read per request).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (other machines: 0.0.0.0).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--images-root", type=click.Path(file_okay=False),
              help="Folder that row ids are image paths under: the explorer shows them as thumbnails.")
@click.option("--encoder", help=ENCODER_HELP)
@click.option("--lang", default="en", show_default=True, help="spaCy language code for the cluster keywords.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001, max=16), default=16, show_default=True,
              help="Largest accepted request body (POST /api/predict), in MiB.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (url, store, model, rows) once serving.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing once serving.")
def serve_command(store, model_id, host, port, images_root, encoder, lang, max_body_mb, as_json, quiet):
    """Explore STORE in the browser: a zoomable map of every row, the clusters, and a query box.

    Read-only: it never takes the store's lock, and every request sees the latest commit.
    Ctrl-C stops it.

    \b
    Example:
      streamproc serve store --port 8765      # then open http://127.0.0.1:8765/
    """
    import json
    import sys

    from ..errors import StreamprocError
    from ..view.serve import serve

    def announce(facts: dict) -> None:
        if as_json:
            click.echo(json.dumps(facts))
        elif not quiet:
            click.echo(f"streamproc serve: {facts['store']} (model {facts['model']}, {facts['rows']:,} rows) "
                       f"at {facts['url']}  (Ctrl-C stops)", err=True)
        sys.stdout.flush()

    try:
        serve(store, model_id=model_id, host=host, port=port, images_root=images_root, encoder=encoder, lang=lang,
              max_body=int(max_body_mb * 2**20), announce=announce)
    except StreamprocError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        else:
            click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


@click.command(name="predict")
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--vectors", "vectors_file", type=click.Path(dir_okay=False),
              help="A .npy, .parquet or .csv file of vectors (read as `ingest` reads them).")
@click.option("--vector-column", help="--vectors .parquet/.csv: a list column holding each vector (default: every "
                                      "numeric column that is not the id column), as for `ingest`.")
@click.option("--id-column", help="--vectors .parquet/.csv: a column of ids, named in each prediction.")
@click.option("--text", "texts", multiple=True, help="A text to embed with the store's encoder (repeatable).")
@click.option("--texts-file", type=click.Path(dir_okay=False), help="A .csv, .jsonl or .parquet file of texts.")
@click.option("--text-column", default="text", show_default=True, help="The column of --texts-file.")
@click.option("--model", "model_id", help="Model id (default: the store's current model).")
@click.option("--encoder", help=ENCODER_HELP)
@click.option("--neighbours", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Stored rows nearest each query on the map to list.")
@reporting
def predict_command(store, vectors_file, vector_column, id_column, texts, texts_file, text_column, model_id, encoder,
                    neighbours):
    """Label vectors or texts with STORE's model, writing nothing: cluster, distance, confidence,
    outlier flag, the probability of every cluster, the map position and the nearest stored rows.

    The confidence is the chosen cluster's probability among the model's clusters: it is relative,
    so a query far from every cluster can still be confident of the nearest one. OUTLIER says the
    query is farther from that cluster's centroid than 99 % of the rows it was fitted on.

    \b
    Examples:
      streamproc predict store --vectors queries.npy --json
      streamproc predict store --text "the battery died after a week" --text "great screen"
    """
    from ..errors import UsageError
    from ..pipeline import predict as predicting
    from ..store.catalog import load_model
    from ..store.store import Store

    given = [name for name, value in (("--vectors", vectors_file), ("--text", texts), ("--texts-file", texts_file))
             if value]
    if len(given) != 1:
        raise UsageError(f"give exactly one of --vectors, --text, --texts-file (got {', '.join(given) or 'none'})")
    snapshot = Store.open(store)
    model = load_model(snapshot, model_id)
    if (vector_column or id_column) and not vectors_file:
        raise UsageError("--vector-column and --id-column go with --vectors")
    ids = None
    if vectors_file:
        vectors, ids = predicting.read_vector_file(Path(vectors_file), model.dim, vector_column=vector_column,
                                                   id_column=id_column)
    else:
        queries = list(texts) if texts else predicting.read_text_file(Path(texts_file), text_column)
        vectors = predicting.check_vectors(predicting.load_store_encoder(snapshot, encoder).encode(queries), model.dim)
    data = predicting.predict_vectors(snapshot, model, vectors, neighbours=neighbours)
    if ids is not None:
        data["predictions"] = [{"id": i, **p} for i, p in zip(ids, data["predictions"])]
    lines = [f"{p.get('id', i)}: cluster {p['label']}  confidence {p['confidence']:.3f}  distance {p['distance']:.4g}"
             + ("  OUTLIER" if p["outlier"] else "") + (f"  near rows {p['neighbours']}" if p["neighbours"] else "")
             for i, p in enumerate(data["predictions"])]
    if lines:
        lines.append(LEGEND)
    return Report(data, "\n".join(lines))


LEGEND = ("(confidence: the cluster's probability among the model's clusters, relative to them; OUTLIER: "
          "farther from the cluster's centroid than 99 % of its training rows)")


COMMANDS = [serve_command, predict_command]
