"""Model.transform / predict / predict_proba / decision_function: the one labelling path.

classify stores exactly what Model.predict returns, on a real data set (scikit-learn's digits), with
both classifiers.
"""

import numpy as np
import pytest
import zarr
from sklearn.datasets import load_digits

import streamproc as sp
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.store.catalog import load_model


@pytest.fixture(scope="module")
def digits():
    return load_digits().data.astype(np.float32)


@pytest.mark.parametrize("classifier", ["softmax", "logistic"])
def test_classify_stores_exactly_model_predict(tmp_path, digits, classifier):
    np.save(tmp_path / "digits.npy", digits)
    store = tmp_path / "store"
    sp.ingest(store, [tmp_path / "digits.npy"])
    fit(store, FitOptions(ks=[8, 10, 12], classifier=classifier, sample=1500))
    classify(store)
    model = load_model(store)
    stored = {name: zarr.open_array(store / "models" / model.id / name, mode="r")[:]
              for name in ("labels", "distance", "confidence", "outlier")}
    np.testing.assert_array_equal(stored["labels"], model.predict(digits))
    expected = model.label(digits)
    for name, values in stored.items():
        np.testing.assert_array_equal(values, expected[name])
    proba = model.predict_proba(digits)
    assert proba.shape == (len(digits), model.k)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(digits))
    np.testing.assert_allclose(stored["confidence"], proba.max(axis=1), rtol=1e-6)


def test_one_vector_and_wrong_dim(tmp_path, digits):
    np.save(tmp_path / "digits.npy", digits)
    store = tmp_path / "store"
    sp.ingest(store, [tmp_path / "digits.npy"])
    fit(store, FitOptions(ks=[4, 6], sample=1000))
    model = load_model(store)
    assert model.predict(digits[7]).tolist() == model.predict(digits[7:8]).tolist()
    assert model.predict_proba(digits[7]).shape == (1, model.k)
    assert model.transform(digits[7].tolist()).shape == (1, model.n_components)
    with pytest.raises(ValueError, match="expects vectors of dim 64, got shape \\(3, 10\\)"):
        model.predict(np.ones((3, 10)))
    with pytest.raises(ValueError, match="dim 64"):
        model.predict_proba(np.ones(63))
