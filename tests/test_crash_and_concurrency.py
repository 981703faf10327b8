"""kill -9 at any moment, and several writers at once: the store keeps exactly the committed batches."""

import json
import os
import signal
import time

import numpy as np
import pytest
import zarr
from conftest import kill_before_commit, run_streamproc, spawn_streamproc


def _check_consistent(store, batches_by_name):
    """The store opens, info agrees with the data, plain zarr sees exactly the committed rows."""
    info = json.loads(run_streamproc("info", store, "--json").stdout)
    arr = zarr.open_array(store / "vectors", mode="r")
    assert arr.shape[0] == info["rows"]
    for b in info["batches"]:
        name = os.path.basename(b["source"])
        np.testing.assert_array_equal(arr[b["start"]:b["stop"]], batches_by_name[name])
    return info


@pytest.fixture
def big_batches(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for i in range(3):
        a = rng.standard_normal((60_000, 128)).astype(np.float32)  # 30 MB each
        np.save(inbox / f"b{i}.npy", a)
        batches[f"b{i}.npy"] = a
    return inbox, batches


def test_kill_inside_commit_window_then_rerun(tmp_path, big_batches):
    inbox, batches = big_batches
    store = tmp_path / "store"
    run_streamproc("ingest", store, inbox / "b0.npy")
    flag = tmp_path / "paused"
    kill_before_commit("ingest", store, inbox / "b1.npy", flag=flag)
    info = _check_consistent(store, batches)
    assert info["rows"] == 60_000 and len(info["batches"]) == 1
    run_streamproc("ingest", store, inbox)
    info = _check_consistent(store, batches)
    assert info["rows"] == 180_000 and len(info["batches"]) == 3


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2, 1.6])
def test_kill_at_random_moments(tmp_path, big_batches, delay):
    inbox, batches = big_batches
    store = tmp_path / "store"
    proc = spawn_streamproc("ingest", store, inbox)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (store / "manifest.json").exists():
        _check_consistent(store, batches)
    run_streamproc("ingest", store, inbox)
    info = _check_consistent(store, batches)
    assert info["rows"] == 180_000
    assert sorted(os.path.basename(b["source"]) for b in info["batches"]) == sorted(batches)


def test_four_concurrent_writers(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    batches = {}
    for i in range(4):
        a = np.random.default_rng(i).standard_normal((20_000, 64)).astype(np.float32)
        np.save(inbox / f"w{i}.npy", a)
        batches[f"w{i}.npy"] = a
    store = tmp_path / "store"
    # two give up at once when busy (exit 75, then retry), two wait for the lock
    procs = [spawn_streamproc("ingest", store, inbox / f"w{i}.npy", *(["--wait", "60"] if i % 2 else [])) for i in range(4)]
    codes = [p.wait() for p in procs]
    assert set(codes) <= {0, 75}, [p.stderr.read() for p in procs]
    for i, code in enumerate(codes):
        if code == 75:
            assert b"locked" in procs[i].stderr.read()
            run_streamproc("ingest", store, inbox / f"w{i}.npy", "--wait", "60")
    info = _check_consistent(store, batches)
    assert info["rows"] == 80_000 and len(info["batches"]) == 4


def test_busy_lock_exits_75_with_json(tmp_path, npy_batches):
    from streamproc.store.lock import StoreLock

    folder, _ = npy_batches
    store = tmp_path / "s"
    run_streamproc("ingest", store, folder / "b0.npy")
    with StoreLock(store):
        proc = run_streamproc("ingest", store, folder / "b1.npy", "--json", check=False)
    assert proc.returncode == 75
    assert json.loads(proc.stdout) == {"error": json.loads(proc.stdout)["error"], "exit_code": 75}


def test_fit_killed_midway_leaves_no_half_model(tmp_path):
    from streamproc.io.synth import Mixture

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(4):
        np.save(inbox / f"m{i}.npy", Mixture(dim=128, clusters=8, seed=1).batch(i, 30_000)[0])
    store = tmp_path / "store"
    run_streamproc("ingest", store, inbox)
    proc = spawn_streamproc("fit", store, "--k", "4:16:2")
    deadline = time.time() + 60
    while not list((store / "models").glob(".staging-*")) if (store / "models").exists() else True:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    info = json.loads(run_streamproc("info", store, "--json").stdout)
    assert info["models"] == [] and info["current_model"] is None
    assert list((store / "models").glob(".staging-*"))  # left behind by the killed fit ...
    run_streamproc("ingest", store, inbox)  # ... and removed by the next writer, its owner being dead
    assert not list((store / "models").glob(".staging-*"))
    assert json.loads(run_streamproc("fit", store, "--k", "4,8", "--json").stdout)["current"] is True
