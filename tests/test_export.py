"""export --with-texts and JSON Lines, through the real command."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import run_streamproc, validate


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    run_streamproc("synth", tmp / "in", "--rows", "1200", "--dim", "8", "--clusters", "3", "--texts", "--format",
                   "parquet", "--batch-rows", "600", "-q")
    run_streamproc("ingest", tmp / "store", tmp / "in", "--id-column", "id", "--text-column", "text", "-q")
    run_streamproc("fit", tmp / "store", "--k", "2,3", "-q")
    run_streamproc("classify", tmp / "store", "-q")
    source = pd.concat([pq.read_table(f).to_pandas() for f in sorted((tmp / "in").glob("*.parquet"))])
    return tmp, dict(zip(source["id"], source["text"]))


def _read(path):
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.read_csv(path, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_export_with_texts_in_every_format(labelled, suffix):
    tmp, text_of = labelled
    out = tmp / f"labels{suffix}"
    data = validate(json.loads(run_streamproc("export", tmp / "store", "-o", out, "--with-texts", "--json").stdout),
                    "export")
    assert data["rows"] == 1200 and data["columns"][-1] == "text"
    table = _read(out)
    assert list(table.columns) == data["columns"] and len(table) == 1200
    assert all(text_of[i] == t for i, t in zip(table["id"], table["text"]))  # each id beside its own text
    assert set(table["label"]) <= {0, 1, 2} and table["outlier"].dtype == bool


def test_jsonl_without_texts_and_since_batch(labelled):
    tmp, _ = labelled
    out = tmp / "later.jsonl"
    run_streamproc("export", tmp / "store", "-o", out, "--since-batch", "b000001", "-q")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 600 and {r["batch"] for r in rows} == {"b000002"} and "text" not in rows[0]
    assert rows[0]["row"] == 600 and rows[0]["id"].startswith("r")


def test_with_texts_on_a_store_without_texts(tmp_path):
    run_streamproc("synth", tmp_path / "in", "--rows", "300", "--dim", "4", "--clusters", "2", "-q")
    run_streamproc("ingest", tmp_path / "store", tmp_path / "in", "-q")
    run_streamproc("fit", tmp_path / "store", "--k", "2", "-q")
    proc = run_streamproc("export", tmp_path / "store", "-o", tmp_path / "l.jsonl", "--with-texts", "--json",
                          check=False)
    assert proc.returncode == 2 and "holds no texts" in validate(json.loads(proc.stdout), "error")["error"]
    assert not (tmp_path / "l.jsonl").exists()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_export_into_a_missing_folder_names_the_folder(labelled, suffix):
    """As render and report say it: the folder, not the hidden temp file the export writes first."""
    tmp, _ = labelled
    out = tmp / "no-such-folder" / f"labels{suffix}"
    proc = run_streamproc("export", tmp / "store", "-o", out, "--json", check=False)
    message = validate(json.loads(proc.stdout), "error")["error"]
    assert proc.returncode == 1
    assert message == f"cannot write {out}: folder {out.parent} does not exist"
    assert not out.parent.exists()
