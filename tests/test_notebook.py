"""A refit in a notebook: the result says whether it became the current model, and how to activate it."""

import numpy as np

import streamproc as sp


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
