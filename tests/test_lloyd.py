"""The in-memory k-means the fit seeds with (streamproc.learn.lloyd), against scikit-learn's: the
same Lloyd iterations from the same start, k-means++ starts as good, and a fit that does not
import scikit-learn at all."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_digits

from streamproc.io.synth import Mixture
from streamproc.learn import lloyd


def _data(name):
    if name == "digits":  # integer pixels, jittered: rows at exactly equal distances would be labelled by rounding
        x = load_digits().data
        return (x + np.random.RandomState(0).normal(scale=0.01, size=x.shape)).astype(np.float32)
    return Mixture(dim=64, clusters=12, seed=3).batch(0, 3000)[0].astype(np.float32)


@pytest.mark.parametrize("name", ["digits", "mixture"])
@pytest.mark.parametrize("k", [2, 10, 25])
def test_lloyd_from_a_start_ends_where_scikit_learn_ends(name, k):
    x = _data(name)
    for seed in range(3):
        start, _ = kmeans_plusplus(x.astype(np.float64), k, random_state=seed)
        ours = lloyd.lloyd(x, start)
        theirs = KMeans(k, init=start.astype(np.float32), n_init=1, max_iter=100).fit(x)
        assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-4)
        assert np.mean(ours.labels == theirs.labels_) > 0.999
        np.testing.assert_allclose(ours.centers, theirs.cluster_centers_, atol=1e-3 * np.abs(x).max())
        assert abs(ours.n_iter - theirs.n_iter_) <= 1  # scikit-learn also counts the step that finds no change


def test_lloyd_reports_the_inertia_of_its_labels_and_centers():
    x = _data("mixture")
    fitted = lloyd.kmeans(x, 12, np.random.RandomState(0))
    nearest = ((x[:, None, :].astype(np.float64) - fitted.centers[None].astype(np.float64)) ** 2).sum(axis=2)
    np.testing.assert_array_equal(fitted.labels, nearest.argmin(axis=1))
    assert fitted.inertia == pytest.approx(nearest.min(axis=1).sum(), rel=1e-5)
    for c in range(12):  # every center is its cluster's mean
        np.testing.assert_allclose(fitted.centers[c], x[fitted.labels == c].mean(axis=0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [2, 10, 30])
def test_kmeans_plusplus_picks_the_rows_scikit_learn_picks_for_a_seed(k):
    """The same greedy k-means++ and the same random draws: a seed gives the starts it gave with
    scikit-learn, so a model does not change because the seeding moved to numpy."""
    x = _data("digits").astype(np.float64)
    for seed in range(5):
        _, theirs = kmeans_plusplus(x, k, random_state=seed)
        ours = lloyd.kmeans_plusplus(x, k, np.random.RandomState(seed))
        np.testing.assert_array_equal(ours, x[theirs])


def test_an_empty_cluster_takes_the_row_scikit_learn_gives_it():
    x = _data("mixture")
    start = x[[0, 1, 2]].copy()
    start[2] = 1e6  # no row is nearest to it
    ours = lloyd.lloyd(x, start)
    theirs = KMeans(3, init=start, n_init=1, max_iter=100).fit(x)
    assert np.bincount(ours.labels, minlength=3).min() > 0
    np.testing.assert_allclose(ours.centers, theirs.cluster_centers_, atol=1e-3 * np.abs(x).max())
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-4)


def test_integer_rows_are_clustered_as_floats():
    x = np.array([[0, 0], [0, 1], [10, 10], [10, 11]])
    fitted = lloyd.lloyd(x, x[[0, 2]])
    np.testing.assert_array_equal(fitted.centers, [[0, 0.5], [10, 10.5]])
    assert fitted.inertia == pytest.approx(1.0)


def test_identical_rows_stop_without_a_loop():
    x = np.ones((50, 3), np.float32)
    fitted = lloyd.kmeans(x, 3, np.random.RandomState(0))
    assert fitted.n_iter <= 2 and fitted.inertia == 0.0 and np.all(fitted.centers == 1.0)


def test_memory_stays_at_a_chunk_of_rows_for_a_large_sample_and_k():
    """n x k distances and k x n memberships for 100k rows and k = 200 would be 80 MB each; held a
    chunk of rows at a time they stay a few MB (scikit-learn worked in chunks too)."""
    import tracemalloc

    x = np.random.default_rng(0).standard_normal((100_000, 8)).astype(np.float32)
    start = x[:200].copy()
    tracemalloc.start()
    try:
        fitted = lloyd.lloyd(x, start, max_iter=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(fitted.labels) == 100_000
    assert peak < 50e6, f"peak {peak / 1e6:.0f} MB"


def test_kmeans_plusplus_refuses_more_centers_than_rows():
    with pytest.raises(ValueError, match="1 <= k <= the number of rows"):
        lloyd.kmeans_plusplus(np.zeros((3, 2)), 4, np.random.RandomState(0))


def test_a_local_fit_does_not_import_scikit_learn_or_distributed(tmp_path):
    """Importing scikit-learn costs a fit 1.0-1.3 s (scipy.stats, pandas): the default k-means fit,
    its seeding included, runs without it; a refit whose clusters each have a clear predecessor
    matches them without scipy.optimize (0.25 s); and without --scheduler, dask.distributed (0.28 s)
    is not imported."""
    script = f"""
import sys, numpy as np
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.io.synth import Mixture
x, _ = Mixture(dim=32, clusters=4, seed=0).batch(0, 4000)
np.save({str(tmp_path / 'x.npy')!r}, x)
ingest({str(tmp_path / 'store')!r}, [{str(tmp_path / 'x.npy')!r}], chunk_rows=1000)
fit({str(tmp_path / 'store')!r}, FitOptions(ks=[3, 4, 5]))
fit({str(tmp_path / 'store')!r}, FitOptions(ks=[3, 4, 5], seed=1))
print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas', 'distributed') or m == 'scipy.optimize'))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout[-2000:]
