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


def test_kmeans_plusplus_starts_as_well_as_scikit_learns():
    """Greedy k-means++ (2 + log k candidates a center): over 20 seeds the potential of our starts
    on the digits is within 5 % of scikit-learn's on average, and far below rows drawn uniformly."""
    x = load_digits().data.astype(np.float64)

    def potential(centers):
        return ((x[:, None, :] - centers[None]) ** 2).sum(axis=2).min(axis=1).sum()

    ours = [potential(lloyd.kmeans_plusplus(x, 10, np.random.RandomState(s))) for s in range(20)]
    theirs = [potential(kmeans_plusplus(x, 10, random_state=s)[0]) for s in range(20)]
    uniform = [potential(x[np.random.RandomState(s).choice(len(x), 10, replace=False)]) for s in range(20)]
    assert np.mean(ours) == pytest.approx(np.mean(theirs), rel=0.05)
    assert np.mean(ours) < 0.9 * np.mean(uniform)
    starts = lloyd.kmeans_plusplus(x, 10, np.random.RandomState(0))
    assert len({tuple(row) for row in starts}) == 10 and all((x == row).all(axis=1).any() for row in starts)


def test_an_empty_cluster_takes_the_row_farthest_from_its_center():
    x = _data("mixture")
    start = x[[0, 1, 2]].copy()
    start[2] = 1e6  # no row is nearest to it
    fitted = lloyd.lloyd(x, start)
    assert np.bincount(fitted.labels, minlength=3).min() > 0
    assert np.abs(fitted.centers).max() < 1e5


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
