"""streamproc classify and export: exactly-once labels through kills and concurrent runs, drift."""

import json
import signal
import time

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import kill_before_commit, run_streamproc, spawn_streamproc, store_state

from streamproc.io.synth import Mixture
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.store.catalog import load_model

MIX = Mixture(dim=32, clusters=5, rank=10, spread_rank=4, seed=7)


def _add_batches(folder, first, count, rows=4000, mixture=MIX):
    folder.mkdir(exist_ok=True)
    for i in range(first, first + count):
        np.save(folder / f"b{i:03d}.npy", mixture.batch(i, rows)[0])


@pytest.fixture
def fitted_store(tmp_path):
    inbox = tmp_path / "inbox"
    _add_batches(inbox, 0, 3)
    store = tmp_path / "store"
    ingest(store, [inbox], chunk_rows=500)
    fit(store, FitOptions(ks=[4, 5, 6], sample=3000))
    return store, inbox


def _labels(store, model_id):
    info = json.loads((store / "manifest.json").read_text())["models"][model_id]
    labels = zarr.open_array(store / "models" / model_id / "labels", mode="r")
    assert labels.shape[0] == info["watermark"]  # plain readers see exactly the committed labels
    return labels[:], info["watermark"]


def test_labels_are_the_argmin_of_numpy_distances(cli, fitted_store):
    store, _ = fitted_store
    out = cli.json("classify", store, schema="classify")
    model = load_model(store)
    assert out["labelled"] == 12_000 and out["model"] == model.id
    x = zarr.open_array(store / "vectors", mode="r")[:].astype(np.float64)
    z = (x - model.pca_mean) @ model.pca_components.T * model.scale
    d = np.sqrt(((z[:, None, :] - model.centroids[None, :, :]) ** 2).sum(axis=2))
    labels, watermark = _labels(store, model.id)
    assert watermark == 12_000
    agree = (labels == d.argmin(axis=1)).mean()
    assert agree > 0.9999, agree
    distance = zarr.open_array(store / "models" / model.id / "distance", mode="r")[:]
    np.testing.assert_allclose(distance, d.min(axis=1), rtol=1e-3, atol=1e-4)
    outlier = zarr.open_array(store / "models" / model.id / "outlier", mode="r")[:]
    assert 0.002 < outlier.mean() < 0.03  # about 1% beyond the 0.99 training quantile
    again = cli.json("classify", store, schema="classify")
    assert again["labelled"] == 0 and again["outlier_rate"] is None
    assert "0 new rows" in cli("classify", store).stdout


def test_incremental_rounds_label_each_row_once(cli, fitted_store):
    store, inbox = fitted_store
    total = 0
    for round_ in range(3):
        _add_batches(inbox, 3 + round_, 1, rows=1500)
        cli.json("ingest", store, inbox)
        total += cli.json("classify", store)["labelled"]
    labels, watermark = _labels(store, load_model(store).id)
    assert total == watermark == 12_000 + 4500
    assert labels.min() >= 0


def test_drift_is_flagged_for_shifted_data_only(cli, fitted_store, tmp_path):
    store, inbox = fitted_store
    cli.json("classify", store)
    _add_batches(inbox, 10, 1, rows=3000)  # same distribution
    cli.json("ingest", store, inbox)
    same = cli.json("classify", store)
    assert same["drift"] is False, same
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    x = MIX.batch(11, 3000)[0] * 1.6 + 2.0
    np.save(shifted / "s.npy", x)
    cli.json("ingest", store, shifted)
    out = cli.json("classify", store)
    assert out["drift"] is True and out["mean_distance"] > 1.25 * out["train_mean_distance"]


def test_kill_inside_commit_window_then_exactly_once(fitted_store, tmp_path):
    store, inbox = fitted_store
    flag = tmp_path / "paused"
    kill_before_commit("classify", store, flag=flag)
    model_id = load_model(store).id
    labels, watermark = _labels(store, model_id) if (store / "models" / model_id / "labels").exists() else ([], 0)
    assert watermark == 0
    out = json.loads(run_streamproc("classify", store, "--json").stdout)
    assert out["labelled"] == 12_000
    assert _labels(store, model_id)[1] == 12_000


@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0])
def test_kill_any_moment_then_every_row_once(fitted_store, delay):
    store, inbox = fitted_store
    _add_batches(inbox, 20, 4, rows=40_000)
    run_streamproc("ingest", store, inbox)
    proc = spawn_streamproc("classify", store)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model_id = load_model(store).id
    before = json.loads((store / "manifest.json").read_text())["models"][model_id]["watermark"]
    out = json.loads(run_streamproc("classify", store, "--json").stdout)
    assert before + out["labelled"] == 12_000 + 160_000
    labels, watermark = _labels(store, model_id)
    assert watermark == 172_000 and len(labels) == watermark


def test_two_concurrent_runs_one_works_one_exits_75(fitted_store):
    store, inbox = fitted_store
    _add_batches(inbox, 30, 3, rows=60_000)
    run_streamproc("ingest", store, inbox)
    procs = [spawn_streamproc("classify", store, "--json") for _ in range(2)]
    outs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 75], [o[1] for o in outs]
    worked = next(json.loads(o[0]) for p, o in zip(procs, outs) if p.returncode == 0)
    assert worked["labelled"] == 12_000 + 180_000
    busy = next(json.loads(o[0]) for p, o in zip(procs, outs) if p.returncode == 75)
    assert busy["exit_code"] == 75 and "locked" in busy["error"]


def test_refit_keeps_each_models_labels(cli, fitted_store):
    store, _ = fitted_store
    first = cli.json("classify", store)["model"]
    second = cli.json("fit", store, "--k", "3,4", "--sample", "2000")["model"]
    out = cli.json("classify", store, "--model", second)
    assert out["labelled"] == 12_000
    assert _labels(store, first)[1] == _labels(store, second)[1] == 12_000
    assert cli.json("classify", store)["labelled"] == 0  # current model is still the first


def test_export_parquet_and_csv(cli, fitted_store, tmp_path):
    store, _ = fitted_store
    cli.json("classify", store)
    out = cli.json("export", store, "-o", tmp_path / "l.parquet", schema="export")
    df = pd.read_parquet(tmp_path / "l.parquet")
    assert list(df.columns) == ["model", "id", "row", "batch", "label", "distance", "confidence", "outlier"]
    assert len(df) == out["rows"] == 12_000 and df["row"].is_monotonic_increasing
    assert df["batch"].iloc[0] == "b000001" and df["batch"].iloc[-1] == "b000003"
    cli.json("export", store, "-o", tmp_path / "l.csv", "--since-batch", "b000002")
    text = (tmp_path / "l.csv").read_text()
    csv = pd.read_csv(tmp_path / "l.csv", keep_default_na=False)
    assert len(csv) == 4000 and set(csv["batch"]) == {"b000003"}
    assert "false" in text.splitlines()[1]
    assert not list(tmp_path.glob(".*tmp"))


def test_bad_inputs(cli, tmp_path, fitted_store):
    np.save(tmp_path / "x.npy", np.ones((10, 8), np.float32))
    cli.json("ingest", tmp_path / "nomodel", tmp_path / "x.npy")
    out = cli.json("classify", tmp_path / "nomodel", code=1, schema="error")
    assert "no model yet" in out["error"]
    store, _ = fitted_store
    before = store_state(store)
    out = cli.json("classify", store, "--model", "nope", code=1, schema="error")
    assert "no model 'nope'" in out["error"]
    out = cli.json("classify", store, "--model", "../x", code=2, schema="error")
    # a model fitted on another dim, listed in this store
    import shutil

    other = tmp_path / "other"
    np.save(tmp_path / "y.npy", np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    cli.json("ingest", other, tmp_path / "y.npy")
    model_id = cli.json("fit", other, "--k", "2,3")["model"]
    shutil.copytree(other / "models" / model_id, store / "models" / model_id)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["models"][model_id] = {"created_at": "2026-01-01T00:00:00Z", "k": 2, "dim": 8, "fit_rows": [0, 2],
                                    "watermark": 0}
    (store / "manifest.json").write_text(json.dumps(manifest))
    before = store_state(store)
    out = cli.json("classify", store, "--model", model_id, code=1, schema="error")
    assert "fitted on dim 8" in out["error"] and "dim 32" in out["error"]
    assert store_state(store)[0] == before[0]
