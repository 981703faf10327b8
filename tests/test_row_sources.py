"""classify and project read the rows a model was fitted on from the reduced rows the fit stored (not
a second read of the vectors), and rows ingested since from the vectors."""

import numpy as np
import zarr

from streamproc.io.synth import Mixture
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.project import project
from streamproc.pipeline.sources import model_row_sources
from streamproc.store.catalog import load_model
from streamproc.store.store import Store


def _read_chars() -> int:
    return int(dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())["rchar"])


def _fitted_then_ingested(tmp_path, **fit_options):
    """A store of 4000 rows a model was fitted on, then 1000 more rows."""
    mixture = Mixture(dim=256, clusters=4, seed=3)
    x, _ = mixture.batch(0, 4000)
    later, _ = mixture.batch(1, 1000)
    for name, rows in (("a.npy", x), ("b.npy", later)):
        (tmp_path / "in").mkdir(exist_ok=True)
        np.save(tmp_path / "in" / name, rows)
    store_path = tmp_path / "store"
    ingest(store_path, [tmp_path / "in" / "a.npy"], chunk_rows=500)
    model = fit(store_path, FitOptions(ks=[4], sample=1000, **fit_options)).model
    ingest(store_path, [tmp_path / "in" / "b.npy"])
    return store_path, model, x, later


def test_sources_are_the_reduced_rows_for_fitted_rows_and_the_vectors_after(tmp_path):
    store_path, model, _, _ = _fitted_then_ingested(tmp_path)
    store = Store.open(store_path)
    sources = model_row_sources(store, load_model(store, model.id), 0, 5000, 16 * 2**20)
    assert [(s.path.name, s.reduced, s.ranges[0][0], s.ranges[-1][1]) for s in sources] == [
        ("reduced", True, 0, 4000), ("vectors", False, 4000, 5000)]
    sources = model_row_sources(store, load_model(store, model.id), 3900, 5000, 16 * 2**20)
    assert [(s.path.name, s.ranges[0][0], s.ranges[-1][1]) for s in sources] == [
        ("reduced", 3900, 4000), ("vectors", 4000, 5000)]


def test_project_reads_the_reduced_rows_for_fitted_rows_and_the_vectors_after(tmp_path):
    store_path, model, x, later = _fitted_then_ingested(tmp_path)

    before = _read_chars()
    project(store_path, method="pca")
    read = _read_chars() - before
    vector_bytes = 5000 * 256 * 4
    assert read < 0.5 * vector_bytes  # 4000 reduced rows (a few components) + 1000 vectors, not 5000 vectors

    xy = zarr.open_array(_projection_array(store_path, model.id), mode="r")[:]
    expected = model.transform(np.concatenate([x, later]))[:, :2]
    np.testing.assert_allclose(xy, expected, atol=1e-3 * np.abs(expected).max())


def test_classify_reads_the_reduced_rows_for_fitted_rows_and_labels_them_as_from_the_vectors(tmp_path):
    store_path, model, x, later = _fitted_then_ingested(tmp_path)
    before = _read_chars()
    result = classify(store_path)
    read = _read_chars() - before
    assert result.labelled == 5000
    assert read < 0.5 * 5000 * 256 * 4  # 4000 reduced rows + 1000 vectors, not 5000 vectors

    expected = model.label(np.concatenate([x, later]))
    stored = {name: zarr.open_array(store_path / "models" / model.id / name, mode="r")[:]
              for name in ("labels", "distance", "confidence", "outlier")}
    np.testing.assert_array_equal(stored["labels"], expected["labels"])
    np.testing.assert_array_equal(stored["outlier"], expected["outlier"])
    np.testing.assert_allclose(stored["distance"], expected["distance"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stored["confidence"], expected["confidence"], atol=1e-4)
    assert result.outlier_rate == expected["outlier"].mean()


def _projection_array(store_path, model_id):
    meta = Store.open(store_path).manifest.models[model_id].projection
    return store_path / "models" / model_id / meta.array



def test_a_missing_chunk_of_the_reduced_rows_stops_classify_and_check_names_it(tmp_path):
    """The fit's reduced rows carry no checksums: a deleted chunk file read as zeros, so classify
    labelled those rows from zero vectors and `check` called the store sound."""
    import pytest

    from streamproc.errors import StoreError
    from streamproc.store.check import check_store

    store_path, model, _, _ = _fitted_then_ingested(tmp_path, block_bytes=500 * 256 * 4)  # 500-row chunks
    assert check_store(store_path).to_dict()["ok"]
    reduced = store_path / "models" / model.id / "reduced"
    chunk = arrays_chunk_rows = zarr.open_array(reduced, mode="r").chunks[0]
    assert chunk == 500
    (reduced / "c" / "1" / "0").unlink()
    with pytest.raises(StoreError, match=rf"rows \[{chunk}, {2 * chunk}\) are missing"):
        classify(store_path)
    report = check_store(store_path).to_dict()
    assert not report["ok"]
    assert [p["array"] for p in report["problems"]] == [f"models/{model.id}/reduced"]
    assert report["problems"][0]["rows"] == [arrays_chunk_rows, 2 * arrays_chunk_rows]
    assert Store.open(store_path).manifest.models[model.id].watermark == 0  # nothing labelled
