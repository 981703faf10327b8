"""A Dask worker killed with SIGKILL in the middle of a pass of fit or classify.

Two real single-process workers (``--no-nanny``, so a killed worker stays dead) run every task with
a test hook that holds it until the test says go; the test waits until both workers hold a task of
the pass, kills one, and lets the pass go on. With the scheduler's default retries the run completes
on the remaining worker with the same result as a local run; with retries off it fails with a clear
error, commits nothing, and a rerun completes — labels still exactly once.
"""

import signal
import threading
import time

import numpy as np
import pytest
import zarr
from conftest import dask_cluster

from streamproc.errors import StreamprocError
from streamproc.io.synth import Mixture
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.store.store import Store

OPTIONS = dict(ks=[3, 5], sample=2000, block_bytes=500 * 24 * 4)  # one 500-row chunk per task


@pytest.fixture
def store(tmp_path):
    mix = Mixture(dim=24, clusters=4, rank=8, spread_rank=3, seed=5)
    for i in range(3):
        np.save(tmp_path / f"b{i}.npy", mix.batch(i, 4000)[0])
    ingest(tmp_path / "store", sorted(tmp_path.glob("b*.npy")), chunk_rows=500)
    return tmp_path / "store"


def _run_killing_one_worker(hold, workers, work):
    """Run ``work()`` in a thread; once both workers hold a task, SIGKILL one of them and release the rest."""
    outcome = {}

    def target():
        try:
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.time() + 120
    while len({p.name.split("-")[1] for p in hold.glob("started-*")}) < 2:
        assert time.time() < deadline and thread.is_alive(), ("tasks never held on both workers", outcome)
        time.sleep(0.02)
    victim = workers[0]
    assert victim.poll() is None
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (hold / "go").touch()
    thread.join(timeout=300)
    assert not thread.is_alive()
    return outcome


def _model_dirs(store):
    return sorted(p.name for p in (store / "models").iterdir()) if (store / "models").exists() else []


def _cluster(tmp_path, name, **kw):
    hold, logs = tmp_path / f"{name}-hold", tmp_path / f"{name}-logs"
    hold.mkdir()
    logs.mkdir()
    return hold, dask_cluster(logs, nanny=False, worker_env={"STREAMPROC_TEST_HOLD_TASKS": str(hold)}, **kw)


NO_RETRIES = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}


def test_fit_completes_on_the_surviving_worker_with_the_same_model(tmp_path, store):
    local = fit(store, FitOptions(**OPTIONS)).model
    hold, cluster = _cluster(tmp_path, "fit")
    with cluster as (address, workers):
        outcome = _run_killing_one_worker(hold, workers, lambda: fit(store, FitOptions(**OPTIONS), scheduler=address))
    assert "error" not in outcome, outcome
    remote = outcome["value"]
    assert len(remote.workers) == 1  # every task ended up on the survivor
    np.testing.assert_allclose(np.abs(remote.model.pca_components), np.abs(local.pca_components), atol=1e-5)
    np.testing.assert_allclose(remote.model.centroids, local.centroids, atol=1e-4)
    assert remote.model.k == local.k
    assert not [p for p in (store / "models").iterdir() if p.name.startswith(".staging")]


def test_classify_completes_on_the_surviving_worker_labelling_each_row_once(tmp_path, store):
    model = fit(store, FitOptions(**OPTIONS)).model
    hold, cluster = _cluster(tmp_path, "classify")
    with cluster as (address, workers):
        outcome = _run_killing_one_worker(
            hold, workers, lambda: classify(store, scheduler=address, block_bytes=OPTIONS["block_bytes"]))
    assert "error" not in outcome, outcome
    assert outcome["value"].labelled == 12_000
    _check_labels_once(store, model)


def test_without_retries_runs_fail_clearly_commit_nothing_and_reruns_complete(tmp_path, store):
    model = fit(store, FitOptions(**OPTIONS)).model
    models_before = _model_dirs(store)
    hold, cluster = _cluster(tmp_path, "fit", scheduler_env=NO_RETRIES)
    with cluster as (address, workers):
        outcome = _run_killing_one_worker(hold, workers, lambda: fit(store, FitOptions(**OPTIONS), scheduler=address))
        assert isinstance(outcome.get("error"), StreamprocError), outcome
        assert "a Dask worker died" in str(outcome["error"]) and "run it again" in str(outcome["error"])
        assert _model_dirs(store) == models_before  # no new model, no staging left behind
        rerun = fit(store, FitOptions(**OPTIONS), scheduler=address)  # on the survivor
        assert len(_model_dirs(store)) == len(models_before) + 1 and rerun.model.k == model.k

    hold, cluster = _cluster(tmp_path, "classify", scheduler_env=NO_RETRIES)
    with cluster as (address, workers):
        outcome = _run_killing_one_worker(
            hold, workers, lambda: classify(store, model.id, scheduler=address, block_bytes=OPTIONS["block_bytes"]))
        assert isinstance(outcome.get("error"), StreamprocError), outcome
        watermark = Store.open(store).manifest.models[model.id].watermark
        assert watermark % 500 == 0 and watermark < 12_000  # whatever was committed, committed whole
        rerun = classify(store, model.id, scheduler=address, block_bytes=OPTIONS["block_bytes"])
        assert rerun.labelled == 12_000 - watermark
    _check_labels_once(store, model)


def _check_labels_once(store, model):
    manifest = Store.open(store).manifest
    assert manifest.models[model.id].watermark == 12_000
    labels = zarr.open_array(store / "models" / model.id / "labels", mode="r")[:]
    assert labels.shape == (12_000,)
    x = zarr.open_array(store / "vectors", mode="r")[:]
    np.testing.assert_array_equal(labels, model.predict(x))
