"""`streamproc models remove`: a refit keeps every earlier model, and each keeps its reduced rows
(612 MB at 1M x 768, 6 GB at 10M), so a store refitted from cron grew without end. A model that is
not current can be removed: its manifest entry in one commit, then its folder."""

import os

import numpy as np
import pytest
from conftest import kill_before_commit, run_streamproc, store_state

from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest


@pytest.fixture
def two_models(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 6
    x = (centres[rng.integers(0, 4, 3000)] + rng.standard_normal((3000, 16))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    store = tmp_path / "store"
    ingest(store, [tmp_path / "x.npy"], chunk_rows=500)
    old = fit(store, FitOptions(ks=[3, 4], sample=1000)).model.id
    classify(store, model_id=old)
    new = fit(store, FitOptions(ks=[4], sample=1000), activate=True).model.id
    classify(store)
    return store, old, new


def _labels(store, model_id):
    import zarr

    return zarr.open_array(store / "models" / model_id / "labels", mode="r")[:]


def _size(folder) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def test_remove_frees_the_models_folder_and_keeps_everything_else(cli, two_models):
    store, old, new = two_models
    folder = store / "models" / old
    size = _size(folder)
    vectors_before = store_state(store)[1]
    labels_before = _labels(store, new)
    out = cli.json("models", "remove", store, old, schema="models_remove")
    assert out == {"removed": [old], "bytes_freed": size, "current_model": new}
    assert not folder.exists()
    assert [m["id"] for m in cli.json("models", store, schema="models")["models"]] == [new]
    assert cli.json("check", store, schema="check")["ok"] is True
    assert np.array_equal(store_state(store)[1], vectors_before)  # the rows and the current model's labels
    assert np.array_equal(_labels(store, new), labels_before)  # are untouched
    cli.json("classify", store, schema="classify")  # the current model goes on labelling


def test_the_current_model_and_unknown_ids_are_refused(cli, two_models):
    store, old, new = two_models
    before = _size(store)
    out = cli.json("models", "remove", store, new, code=1, schema="error")
    assert new in out["error"] and "current" in out["error"] and "models activate" in out["error"]
    out = cli.json("models", "remove", store, "m-nope", code=1, schema="error")
    assert "no model 'm-nope'" in out["error"]
    assert (store / "models" / new).exists() and (store / "models" / old).exists() and _size(store) == before


def test_a_remove_killed_before_its_commit_changes_nothing(tmp_path, two_models):
    """The manifest is committed first and the folder deleted after: killed before the commit, the
    model is still listed and whole; (killed after it, the next writer's recovery removes the unlisted
    folder, as it does for a fit killed after moving its model into place)."""
    store, old, new = two_models
    before = (store / "manifest.json").read_text(), _size(store / "models" / old)
    kill_before_commit("models", "remove", store, old, flag=tmp_path / "paused")
    assert ((store / "manifest.json").read_text(), _size(store / "models" / old)) == before
    assert run_streamproc("check", store).returncode == 0
    assert run_streamproc("models", "remove", store, old).returncode == 0
    assert not (store / "models" / old).exists()


def test_all_but_current_keeps_only_the_current_model(cli, two_models):
    store, old, new = two_models
    third = fit(store, FitOptions(ks=[3], sample=1000)).model.id
    assert cli("models", "remove", store, code=2).exit_code == 2  # neither ids nor --all-but-current
    assert cli("models", "remove", store, old, "--all-but-current", code=2).exit_code == 2
    out = cli.json("models", "remove", store, "--all-but-current", schema="models_remove")
    assert sorted(out["removed"]) == sorted([old, third]) and out["current_model"] == new
    assert sorted(p.name for p in (store / "models").iterdir()) == [new]
    assert cli.json("models", "remove", store, "--all-but-current", schema="models_remove")["removed"] == []


def test_an_id_given_twice_and_a_folder_already_gone_still_remove_cleanly(cli, two_models):
    """Given twice, the model was counted and deleted twice: the second delete failed after the commit,
    and the command reported an error for a removal that had happened."""
    import shutil

    store, old, new = two_models
    size = _size(store / "models" / old)
    out = cli.json("models", "remove", store, old, old, schema="models_remove")
    assert out["removed"] == [old] and out["bytes_freed"] == size
    third = fit(store, FitOptions(ks=[3], sample=1000)).model.id
    shutil.rmtree(store / "models" / third)  # deleted by hand: still listed
    out = cli.json("models", "remove", store, third, schema="models_remove")
    assert out == {"removed": [third], "bytes_freed": 0, "current_model": new}
    assert [m["id"] for m in cli.json("models", store, schema="models")["models"]] == [new]


def test_all_but_current_is_refused_when_no_model_is_current(cli, tmp_path):
    from streamproc.store.store import open_writer

    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((600, 8)).astype(np.float32))
    store = tmp_path / "store"
    ingest(store, [tmp_path / "x.npy"], chunk_rows=200)
    model = fit(store, FitOptions(ks=[2], sample=300)).model.id
    with open_writer(store) as writer:  # a store whose current model was unset
        from dataclasses import replace

        writer.commit(replace(writer.manifest, current_model=None))
    out = cli.json("models", "remove", store, "--all-but-current", code=1, schema="error")
    assert "no current model" in out["error"]
    assert (store / "models" / model).exists()
