"""The Python API from a notebook: ingest arrays, DataFrames and Tables as batches, exactly as files."""

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import zarr

import streamproc as sp
from streamproc.errors import InputError, UsageError


def _vectors(n=300, dim=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_ingest_a_numpy_array_with_ids_and_texts_is_one_idempotent_batch(tmp_path):
    store = tmp_path / "store"
    x = _vectors()
    ids = [f"r{i}" for i in range(len(x))]
    texts = [f"text {i}" for i in range(len(x))]
    report = sp.ingest(store, x, ids=ids, texts=texts)
    assert [b.status for b in report.batches] == ["committed"] and report.rows == 300
    np.testing.assert_array_equal(zarr.open_array(store / "vectors", mode="r")[:], x)
    assert zarr.open_array(store / "ids", mode="r")[:].tolist() == ids
    assert zarr.open_array(store / "texts", mode="r")[5] == "text 5"
    again = sp.ingest(store, x.copy(), ids=ids, texts=texts)  # the same values again: nothing added
    assert [b.status for b in again.batches] == ["duplicate"] and again.rows == 300
    more = sp.ingest(store, x[:10] + 1, ids=[f"s{i}" for i in range(10)], texts=["t"] * 10)
    assert [b.status for b in more.batches] == ["committed"] and more.rows == 310
    assert sp.store_info(store)["batches"][0]["source"] == "numpy array 300x8"


def test_a_dataframe_and_a_table_are_read_as_parquet_files_are(tmp_path):
    x = _vectors(120, 4, seed=1)
    frame = pd.DataFrame(x, columns=list("abcd")).assign(key=[f"k{i}" for i in range(120)],
                                                       body=[f"doc {i}" for i in range(120)])
    store = tmp_path / "store"
    sp.ingest(store, frame, ids="key", texts="body")
    table = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array((x + 1).ravel()), 4),
                      "key": [f"t{i}" for i in range(120)], "body": ["x"] * 120})
    report = sp.ingest(store, table, ids="key", texts="body")
    assert report.rows == 240 and report.batches[0].status == "committed"
    stored = zarr.open_array(store / "vectors", mode="r")[:]
    np.testing.assert_array_equal(stored, np.concatenate([x, x + 1]))
    assert zarr.open_array(store / "ids", mode="r")[[0, 120]].tolist() == ["k0", "t0"]
    # ids given beside a table, one per row
    table2 = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array((x + 2).ravel()), 4)})
    report = sp.ingest(store, table2, ids=[f"u{i}" for i in range(120)], texts=["y"] * 120)
    assert report.rows == 360 and zarr.open_array(store / "ids", mode="r")[240] == "u0"


def test_a_path_takes_column_names_and_the_same_model_follows(tmp_path):
    x = _vectors(200, 6, seed=2)
    pd.DataFrame(x, columns=list("abcdef")).assign(id=[f"p{i}" for i in range(200)]).to_parquet(tmp_path / "a.parquet")
    sp.ingest(tmp_path / "store", tmp_path / "a.parquet", ids="id")
    sp.ingest(tmp_path / "mem", pd.DataFrame(x, columns=list("abcdef")).assign(id=[f"p{i}" for i in range(200)]), ids="id")
    for store in ("store", "mem"):
        np.testing.assert_array_equal(zarr.open_array(tmp_path / store / "vectors", mode="r")[:], x)
        assert zarr.open_array(tmp_path / store / "ids", mode="r")[199] == "p199"


def test_bad_in_memory_data_is_refused_and_nothing_is_stored(tmp_path):
    store = tmp_path / "store"
    sp.ingest(store, _vectors(50, 8))
    before = (store / "manifest.json").read_text()
    out = sp.ingest(store, _vectors(5, 7))
    assert out.batches[0].status == "failed" and "expected dim 8" in out.batches[0].error
    bad = _vectors(5, 8)
    bad[3, 2] = np.nan
    out = sp.ingest(store, bad)
    assert out.batches[0].status == "failed" and "row 3, column 2: NaN or Inf" in out.batches[0].error
    with pytest.raises(InputError, match="expected a 2-D array"):
        sp.ingest(store, np.ones((2, 3, 4)))
    with pytest.raises(InputError, match="one value per row"):
        sp.ingest(store, _vectors(5, 8), ids=["a", "b"])
    with pytest.raises(UsageError, match="only applies to a DataFrame"):
        sp.ingest(store, _vectors(5, 8), ids="id")
    assert (store / "manifest.json").read_text() == before


def test_fit_takes_keywords_and_options_are_checked_where_they_are_built(tmp_path, cli):
    store = tmp_path / "store"
    sp.ingest(store, _vectors(400, 8, seed=3))
    result = sp.fit(store, k=[3, 4], metric="cosine", seed=1)
    assert result.model.metric == "cosine" and result.model.k in (3, 4) and result.current
    second = sp.fit(store, k="3:5")
    assert second.current is False and "NOT the current model" in repr(second) and "activate" in repr(second)
    for bad, message in (({"ks": []}, "ks (--k) is empty"), ({"ks": [1, 4]}, "every k >= 2"),
                         ({"solver": "svd"}, "solver (--pca-solver) must be one of covariance, incremental")):
        with pytest.raises(UsageError, match=re.escape(message)):
            sp.FitOptions(**bad)
    out = cli.json("fit", store, "--k", "3", "--pca-solver", "covariance", "--sample", "2", code=2, schema="error")
    assert "sample (--sample) 2 is smaller than the largest k (3)" in out["error"]


def test_refit_result_says_it_is_not_current_and_activate_makes_it_current(tmp_path):
    x = np.random.default_rng(0).standard_normal((400, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    store = tmp_path / "store"
    sp.ingest(store, [tmp_path / "x.npy"])
    first = sp.fit(store, sp.FitOptions(ks=[2, 3]))
    assert first.current and "current model" in repr(first) and "NOT" not in repr(first)
    second = sp.fit(store, sp.FitOptions(ks=[2, 3], seed=1))
    text = repr(second)
    assert not second.current and "NOT the current model" in text
    assert f"streamproc.activate_model({str(store)!r}, {second.model.id!r})" in text
    assert len(text) < 400 and "array(" not in text and "\n" not in text  # a summary, not arrays
    assert "array(" not in repr(second.model) and second.model.id in repr(second.model)
    assert sp.load_model(store).id == first.model.id
    sp.activate_model(store, second.model.id)  # what the summary says to do
    assert sp.load_model(store).id == second.model.id
    third = sp.fit(store, sp.FitOptions(ks=[2]), activate=True)
    assert third.current and sp.load_model(store).id == third.model.id
