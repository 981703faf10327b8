"""fit and classify on a real dask.distributed cluster: a scheduler and two workers as processes."""

import numpy as np
import pytest
import zarr
from conftest import dask_cluster

from streamproc.io.synth import Mixture
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask-logs")) as (address, _workers):
        yield address


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mix = Mixture(dim=32, clusters=5, rank=10, spread_rank=4, seed=11)
    for i in range(4):
        np.save(tmp / f"b{i}.npy", mix.batch(i, 5000)[0])
    ingest(tmp / "store", sorted(tmp.glob("b*.npy")), chunk_rows=500)
    return tmp / "store"


OPTIONS = dict(ks=[3, 5, 7], sample=3000, block_bytes=500 * 32 * 4)  # one chunk per task: 40 tasks a pass


@pytest.mark.parametrize("one_read", [False, True], ids=["two-reads", "one-read"])
def test_fit_on_cluster_uses_both_workers_and_matches_local(cluster, store, one_read):
    """Both ways of reducing the rows: from a second read, and from the projection the workers wrote
    in pass 1 (the workers also sum the half-rows moments the one-read check needs)."""
    remote = fit(store, FitOptions(**OPTIONS, one_read=one_read), scheduler=cluster)
    local = fit(store, FitOptions(**OPTIONS, one_read=one_read))
    assert len(remote.workers) == 2 and all(w.startswith("tcp://127.0.0.1") for w in remote.workers)
    assert local.workers == ["local"]
    assert remote.passes["vector_reads"] == local.passes["vector_reads"] == (1 if one_read else 2)
    assert remote.passes["one_read"]["used"] == one_read
    if one_read:  # the same measurement from the workers' sums as from the local threads'
        for key in ("max_angle_degrees", "half_rows_angle_degrees", "variance_gap"):
            assert remote.passes["one_read"][key] == pytest.approx(local.passes["one_read"][key], rel=1e-3, abs=1e-6)
        assert remote.passes["one_read"]["half_rows_angle_degrees"] > 0
    a, b = remote.model, local.model
    assert a.k == b.k and a.n_components == b.n_components
    np.testing.assert_allclose(np.abs(a.pca_components), np.abs(b.pca_components), atol=1e-5)
    np.testing.assert_allclose(a.centroids, b.centroids, atol=1e-4)


def test_relative_store_path_works_on_workers_started_elsewhere(cluster, store, monkeypatch):
    """The workers run in another directory (as on other machines): a relative path must reach them
    resolved."""
    monkeypatch.chdir(store.parent)
    result = fit("store", FitOptions(**OPTIONS), scheduler=cluster)
    assert len(result.workers) == 2 and result.model.k in OPTIONS["ks"]


def test_classify_on_cluster_labels_exactly_once_like_local(cluster, store):
    from streamproc.store.catalog import load_model

    model = load_model(store)
    result = classify(store, scheduler=cluster, block_bytes=OPTIONS["block_bytes"])
    assert result.labelled == 20_000 and len(result.workers) == 2
    again = classify(store, scheduler=cluster)
    assert again.labelled == 0
    labels = zarr.open_array(store / "models" / model.id / "labels", mode="r")[:]
    x = zarr.open_array(store / "vectors", mode="r")[:]
    expected = model.predict(x)
    np.testing.assert_array_equal(labels, expected)
