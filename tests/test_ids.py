"""Clusters that keep their ids: alignment of refits, the id registry, models diff, warm refits that add
new groups, drift per batch and per cluster (--fail-on-drift exits 3), kills during aligned refits."""

import json
import os
import signal
import time

import numpy as np
import pytest
import zarr
from conftest import kill_before_commit, run_streamproc, spawn_streamproc, validate

from streamproc.io.synth import Mixture
from streamproc.learn.align import SAME_CLUSTER, centroid_distances, cheapest_matching, label_positions
from streamproc.store.catalog import load_model

MIX = Mixture(dim=32, clusters=8, rank=12, spread_rank=4, seed=3)


def _save_batches(folder, first, count, rows, mixture=MIX):
    folder.mkdir(exist_ok=True)
    for i in range(first, first + count):
        np.save(folder / f"b{i:03d}.npy", mixture.batch(i, rows)[0])


def _new_group(rows, seed=9):
    """A tight group of rows outside every cluster of MIX (but inside the subspace its PCA keeps)."""
    means = MIX._params[0]
    center = means[0] + 2.0 * (means[0] - means[1])
    return (center + np.random.default_rng(seed).standard_normal((rows, MIX.dim)) * 0.15).astype(np.float32)


@pytest.fixture
def store(tmp_path, cli):
    inbox = tmp_path / "inbox"
    _save_batches(inbox, 0, 3, 10_000)
    store = tmp_path / "store"
    cli.json("ingest", store, inbox, "--chunk-rows", 2000)
    return store, inbox


def _vectors(store):
    return zarr.open_array(store / "vectors", mode="r")[:]


def _manifest(store):
    return json.loads((store / "manifest.json").read_text())


def test_refit_with_another_seed_keeps_the_ids_of_the_rows(cli, store):
    store, _ = store
    first = cli.json("fit", store, "--k", "8", "--seed", "0", schema="fit")
    assert first["cluster_ids"] == list(range(8)) and first["aligned_to"] is None
    cli.json("classify", store)
    second = cli.json("fit", store, "--k", "8", "--seed", "5", "--sample", "4000", "--activate", schema="fit")
    assert second["aligned_to"] == first["model"] and sorted(second["cluster_ids"]) == list(range(8))
    cli.json("classify", store)
    labels = [zarr.open_array(store / "models" / m / "labels", mode="r")[:] for m in (first["model"], second["model"])]
    assert (labels[0] == labels[1]).mean() >= 0.95
    assert second["cluster_ids"] != list(range(8))  # the seed found them in another order: alignment renamed them
    diff = json.loads(run_streamproc("models", "diff", store, first["model"], second["model"], "--json").stdout)
    validate(diff, "models_diff")
    assert diff["source"] == "labels" and diff["rows"] == 30_000 and diff["kept"] >= 0.95
    assert len(diff["matched"]) == 8 and all(m["from"] == m["to"] for m in diff["matched"])
    assert not diff["new"] and not diff["gone"] and not diff["split"] and not diff["merged"]


def test_refit_on_digits_keeps_the_ids(cli, tmp_path):
    from sklearn.datasets import load_digits

    np.save(tmp_path / "digits.npy", load_digits().data.astype(np.float32))
    store = tmp_path / "digits"
    cli.json("ingest", store, tmp_path / "digits.npy")
    x = _vectors(store)
    models = [load_model(store, cli.json("fit", store, "--k", "10", "--seed", str(seed), "--activate")["model"])
              for seed in (0, 1, 2)]
    for before, after in zip(models, models[1:]):
        kept = (before.predict(x) == after.predict(x)).mean()
        assert kept >= 0.95, kept


def test_no_align_takes_new_ids_and_retired_ids_are_never_reused(cli, store):
    store, _ = store
    first = cli.json("fit", store, "--k", "8")
    fresh = cli.json("fit", store, "--k", "8", "--seed", "3", "--no-align")
    assert fresh["cluster_ids"] == list(range(8, 16)) and fresh["aligned_to"] is None
    assert _manifest(store)["next_cluster_id"] == 16
    wider = cli.json("fit", store, "--k", "10", "--seed", "4")  # aligned to the current (first) model
    ids = wider["cluster_ids"]
    assert len(set(ids)) == 10
    kept = [i for i in ids if i < 8]
    assert len(kept) >= 6 and all(i >= 16 for i in ids if i >= 8)  # never one of the retired 8..15
    assert _manifest(store)["next_cluster_id"] == 16 + (10 - len(kept))
    listed = cli.json("models", store, schema="models")["models"]
    assert [m["cluster_ids"] for m in listed] == [first["cluster_ids"], fresh["cluster_ids"], ids]


def test_same_cluster_threshold_is_relative_to_the_spread(store, cli):
    store, _ = store
    model = load_model(store, cli.json("fit", store, "--k", "8")["model"])
    d = centroid_distances(model, model)
    assert np.allclose(np.diag(d), 0, atol=1e-3 * model.cluster_mean_distance.max())
    off = d[~np.eye(model.k, dtype=bool)].reshape(model.k, model.k - 1)
    assert (off.min(axis=1) > SAME_CLUSTER * model.cluster_mean_distance).all()  # other clusters never "same"


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4)])
def test_cheapest_matching_costs_what_the_hungarian_algorithm_costs(shape):
    """Random costs (where the row minima often collide, so scipy decides) and costs with a clear
    partner for each cluster (where the row minima decide): the least total, one-to-one."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for trial in range(200):
        cost = rng.random(shape)
        if trial % 2:  # each row of the shorter side has a distinct cheapest partner
            short = min(shape)
            partners = rng.permutation(max(shape))[:short]
            view = cost if shape[0] <= shape[1] else cost.T
            view[np.arange(short), partners] = -rng.random(short)
        rows, cols = cheapest_matching(cost)
        best_rows, best_cols = linear_sum_assignment(cost)
        assert cost[rows, cols].sum() == pytest.approx(cost[best_rows, best_cols].sum())
        assert len(set(rows.tolist())) == len(set(cols.tolist())) == min(shape)
        np.testing.assert_array_equal(rows, np.sort(rows))


def test_label_positions_map_ids_back_to_centroids():
    from dataclasses import replace

    from streamproc.learn.model import Model

    base = Model(id="m", dim=2, metric="euclidean", scaling="none", pca_mean=np.zeros(2), pca_components=np.eye(2),
                 spectrum=np.ones(2), total_variance=2.0, scale=np.ones(2), centroids=np.zeros((3, 2)),
                 quantiles=np.zeros((3, 4)), cluster_sizes=np.ones(3), cluster_mean_distance=np.ones(3),
                 noise_variance=1.0, scores=[], params={}, fit_rows=(0, 3))
    model = replace(base, cluster_ids=np.array([7, 2, 11]))
    np.testing.assert_array_equal(label_positions(model, np.array([2, 11, 7, 7, 5])), [1, 2, 0, 0, -1])


def test_warm_refit_gives_a_new_group_its_own_id(store, tmp_path):
    store, inbox = store
    cold = json.loads(run_streamproc("fit", store, "--k", "6,8,10", "--json").stdout)
    new_rows = _new_group(1000)
    np.save(inbox / "b100.npy", np.vstack([MIX.batch(50, 2000)[0], new_rows]))
    run_streamproc("ingest", store, inbox)
    out = json.loads(run_streamproc("classify", store, "--json").stdout)
    validate(out, "classify")
    [group] = out["new_groups"]
    assert 900 <= group["rows"] <= 1100 and group["spread"] < group["nearest_spread"]
    assert out["drift"] is True and "--warm-start" in out["advice"]
    assert [b["batch"] for b in out["batches"]] == ["b000001", "b000002", "b000003", "b000004"]
    text = run_streamproc("classify", store).stdout  # nothing new: the report of the run above was the JSON
    assert "0 new rows" in text

    warm = json.loads(run_streamproc("fit", store, "--warm-start", "--activate", "--json").stdout)
    validate(warm, "fit")
    assert warm["warm_start"] is True and warm["aligned_to"] == cold["model"] and warm["k"] == cold["k"] + 1
    before, after = load_model(store, cold["model"]), load_model(store, warm["model"])
    [new_id] = sorted(set(after.classes_) - set(before.classes_))
    assert new_id == cold["k"]  # the registry's next id
    assert (after.predict(new_rows) == new_id).mean() >= 0.90
    old = _vectors(store)[:30_000]
    assert (after.predict(old) == before.predict(old)).mean() >= 0.95
    run_streamproc("classify", store)
    diff = json.loads(run_streamproc("models", "diff", store, cold["model"], warm["model"], "--json").stdout)
    assert [n["id"] for n in diff["new"]] == [new_id] and diff["new"][0]["rows"] >= 900


def test_warm_refit_reads_only_the_new_rows(store, cli, tmp_path):
    from streamproc.pipeline.fit import FitOptions, fit

    store, inbox = store
    small_blocks = 256 * 1024  # whole chunks of 2000 rows: the old rows fill 15 chunks the warm fit can link
    cold = fit(store, FitOptions(ks=[8], block_bytes=small_blocks)).to_dict()
    _save_batches(inbox, 60, 1, 3000)
    cli.json("ingest", store, inbox)
    warm = validate(fit(store, FitOptions(ks=[8], warm_start=True, block_bytes=small_blocks)).to_dict(), "fit")
    before, after = load_model(store, cold["model"]), load_model(store, warm["model"])
    assert after.k == 8 and sorted(after.classes_) == sorted(before.classes_)
    np.testing.assert_array_equal(after.pca_components, before.pca_components)
    reduced = zarr.open_array(store / "models" / warm["model"] / "reduced", mode="r")
    assert reduced.shape[0] == 33_000
    np.testing.assert_allclose(reduced[:], after.transform(_vectors(store)), rtol=1e-5, atol=1e-5)
    old_chunk = store / "models" / cold["model"] / "reduced" / "c" / "0" / "0"
    assert os.path.samefile(old_chunk, store / "models" / warm["model"] / "reduced" / "c" / "0" / "0")


def test_fail_on_drift_exits_3_after_committing_and_never_on_in_distribution_batches(cli, store, tmp_path):
    store, _ = store
    cli.json("fit", store, "--k", "8")
    cli.json("classify", store)
    fresh = tmp_path / "fresh"
    for i in range(20):
        _save_batches(fresh, 200 + i, 1, 1000)
        cli.json("ingest", store, fresh)
        out = cli.json("classify", store, "--fail-on-drift", schema="classify")  # exit 0 asserted
        assert out["drift"] is False and out["moved_clusters"] == [] and out["new_groups"] == [], (i, out)
        assert len(out["batches"]) == 1 and abs(sum(out["batches"][0]["shares"]) - 1) < 1e-4
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    np.save(shifted / "s.npy", MIX.batch(300, 2000)[0] * 1.6 + 2.0)
    run_streamproc("ingest", store, shifted)
    proc = run_streamproc("classify", store, "--fail-on-drift", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "DRIFT" in proc.stdout and "fit" in proc.stdout and "--warm-start" in proc.stdout
    model = load_model(store)
    assert _manifest(store)["models"][model.id]["watermark"] == 30_000 + 20_000 + 2000  # committed all the same
    proc = run_streamproc("classify", store, "--fail-on-drift", "--json", check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["labelled"] == 0


def test_a_cluster_whose_share_moves_is_named(cli, store, tmp_path):
    store, _ = store
    cli.json("fit", store, "--k", "8")
    cli.json("classify", store)
    x, truth = MIX.batch(400, 20_000)
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    top = np.bincount(truth).argmax()
    np.save(skewed / "s.npy", np.vstack([x, x[truth == top]]))  # one true cluster twice as often
    cli.json("ingest", store, skewed)
    out = cli.json("classify", store, schema="classify")
    moved = {c["cluster"] for c in out["moved_clusters"]}
    model = load_model(store)
    grown = int(np.bincount(label_positions(model, model.predict(x[truth == top]))).argmax())
    assert int(model.classes_[grown]) in moved and out["drift"] is True


def test_kill_inside_an_aligned_refits_commit_changes_nothing(store, tmp_path):
    store, inbox = store
    run_streamproc("fit", store, "--k", "8")
    before = (store / "manifest.json").read_text()
    flag = tmp_path / "paused"
    kill_before_commit("fit", store, "--k", "8", "--seed", "5", flag=flag, seconds=120)
    assert (store / "manifest.json").read_text() == before  # no model, registry unchanged
    again = json.loads(run_streamproc("fit", store, "--k", "8", "--seed", "5", "--json").stdout)
    assert sorted(again["cluster_ids"]) == list(range(8)) and _manifest(store)["next_cluster_id"] == 8
    assert sorted(p.name for p in (store / "models").iterdir()) == sorted(_manifest(store)["models"])


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_kill_any_moment_after_a_warm_refit_labels_every_row_once(store, delay):
    store, inbox = store
    run_streamproc("fit", store, "--k", "8")
    np.save(inbox / "g.npy", _new_group(1000))
    _save_batches(inbox, 500, 4, 40_000)
    run_streamproc("ingest", store, inbox)
    warm = json.loads(run_streamproc("fit", store, "--warm-start", "--activate", "--json").stdout)
    assert warm["k"] == 9
    proc = spawn_streamproc("classify", store)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _manifest(store)["models"][warm["model"]]["watermark"]
    out = json.loads(run_streamproc("classify", store, "--json").stdout)
    total = 30_000 + 1000 + 160_000
    assert before + out["labelled"] == total
    labels = zarr.open_array(store / "models" / warm["model"] / "labels", mode="r")[:]
    assert len(labels) == total and set(np.unique(labels)) <= set(warm["cluster_ids"])


def test_cosine_refit_keeps_the_ids(cli, store):
    store, _ = store
    first = cli.json("fit", store, "--k", "8", "--metric", "cosine")
    second = cli.json("fit", store, "--k", "8", "--metric", "cosine", "--seed", "5", "--sample", "4000")
    x = _vectors(store)
    kept = (load_model(store, first["model"]).predict(x) == load_model(store, second["model"]).predict(x)).mean()
    assert second["aligned_to"] == first["model"] and kept >= 0.95, kept


def test_report_and_render_use_the_ids_and_chart_the_batches(cli, store, tmp_path):
    from PIL import Image

    store, _ = store
    cli.json("fit", store, "--k", "8")
    fresh = cli.json("fit", store, "--k", "8", "--no-align", "--activate")  # ids 8..15: not positions
    cli.json("classify", store)
    cli.json("project", store, "--method", "pca")
    out = cli.json("report", store, "-o", tmp_path / "r.html", schema="report")
    assert sorted(c["label"] for c in out["clusters"]) == fresh["cluster_ids"] == list(range(8, 16))
    assert sum(c["size"] for c in out["clusters"]) == 30_000
    sizes = np.bincount(zarr.open_array(store / "models" / fresh["model"] / "labels", mode="r")[:] - 8)
    assert [c["size"] for c in sorted(out["clusters"], key=lambda c: c["label"])] == sizes.tolist()
    html = (tmp_path / "r.html").read_text()
    assert "Cluster shares over batches" in html and "Outlier rate over batches" in html
    assert html.count("<title>b000002 · cluster ") == 8 and '<tr id="cluster-15">' in html
    cli.json("render", store, "-o", tmp_path / "map.png", schema="render")
    assert Image.open(tmp_path / "map.png").size == (1200, 900)
