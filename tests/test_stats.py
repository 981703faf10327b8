"""The streaming statistics match their in-memory references, however the rows are chunked."""

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from streamproc.learn import stats


def _chunks(n, count):
    edges = np.linspace(0, n, count + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((6, 10)) * 4
    labels = rng.integers(0, 6, 3000)
    return centres[labels] + rng.standard_normal((3000, 10)) + 50.0, labels  # far from the origin on purpose


@pytest.mark.parametrize("n_chunks", [1, 3, 7])
def test_db_and_ch_match_sklearn(data, n_chunks):
    x, labels = data
    means = np.stack([x[labels == c].mean(axis=0) for c in range(6)])
    parts = [stats.labelled_scores_chunk(x[a:b], [labels[a:b]], [means]) for a, b in _chunks(len(x), n_chunks)]
    total = stats.combine(*parts)
    np.testing.assert_allclose(stats.label_means(total, "0"), means, rtol=1e-10)
    assert stats.davies_bouldin_finalize(total, means, "0") == pytest.approx(davies_bouldin_score(x, labels), rel=1e-6)
    assert stats.calinski_harabasz_finalize(total, means, "0") == pytest.approx(
        calinski_harabasz_score(x, labels), rel=1e-6)


def test_lloyd_and_scores_chunks_match_per_set_references(data):
    """The stacked products give, set by set, what a direct computation gives, also when the
    sets are split over several products."""
    x, _ = data
    rng = np.random.default_rng(0)
    sets = [x[rng.choice(len(x), k, replace=False)] for k in (2, 5, 9)]
    for columns in (512, 6):  # one product for all sets; one product per set
        stats.STACK_COLUMNS, saved = columns, stats.STACK_COLUMNS
        try:
            lloyd = stats.lloyd_chunk(x, sets)
            scores = stats.scores_chunk(x, sets, sets)
        finally:
            stats.STACK_COLUMNS = saved
        for i, c in enumerate(sets):
            sq = ((x[:, None, :] - c[None]) ** 2).sum(axis=2)
            labels = sq.argmin(axis=1)
            np.testing.assert_array_equal(lloyd[f"count{i}"], np.bincount(labels, minlength=len(c)))
            np.testing.assert_allclose(lloyd[f"sum{i}"], [x[labels == j].sum(axis=0) for j in range(len(c))])
            assert lloyd[f"inertia{i}"] == pytest.approx(sq.min(axis=1).sum(), rel=1e-9)
            np.testing.assert_allclose(scores[f"dist{i}"], np.bincount(labels, np.sqrt(sq.min(axis=1)), len(c)))
            np.testing.assert_allclose(scores[f"max{i}"], [np.sqrt(sq.min(axis=1)[labels == j]).max()
                                                           for j in range(len(c))])


@pytest.mark.parametrize("n_chunks", [1, 4])
def test_moments_match_numpy(data, n_chunks):
    x = data[0].astype(np.float32)
    shift = x[:100].mean(axis=0)
    total = stats.combine(*[stats.moments_chunk(x[a:b], shift) for a, b in _chunks(len(x), n_chunks)])
    mean, cov = stats.moments_finalize(total, shift)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64).T, bias=True), atol=1e-4)


@pytest.mark.parametrize("start, run_rows", [(0, 7), (5, 7), (40, 100), (0, 1)])
def test_moments_by_parity_are_the_moments_of_the_even_and_odd_runs(data, start, run_rows):
    x = data[0][:90].astype(np.float32)
    shift = x.mean(axis=0).astype(np.float64)
    even = ((np.arange(start, start + len(x)) // run_rows) % 2) == 0
    halves = stats.moments_by_parity(stats.centred(x, shift), start, run_rows)
    for half, rows in zip(halves, (x[even], x[~even]), strict=True):
        expected = stats.moments_chunk(rows, shift)
        assert half["n"] == expected["n"] == len(rows)
        np.testing.assert_allclose(half["sum"], expected["sum"], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(half["cross"], expected["cross"], rtol=1e-4, atol=1e-3)


def test_sample_is_chunking_invariant_and_uniform():
    x = np.arange(100_000, dtype=np.float32)[:, None]

    def sample(n_chunks):
        parts = [stats.sample_chunk(x[a:b], a, size=2000, total_rows=len(x), seed=5) for a, b in _chunks(len(x), n_chunks)]
        return stats.sample_finalize(stats.combine(*parts))

    one, many = sample(1), sample(9)
    assert len(one) == 2000
    np.testing.assert_array_equal(one, many)
    # uniform over the rows: each tenth of the data holds about a tenth of the sample
    counts = np.bincount((one[:, 0] // 10_000).astype(int), minlength=10)
    assert counts.min() > 140 and counts.max() < 260


def test_quantiles_from_histograms():
    rng = np.random.default_rng(0)
    d = rng.exponential(1.0, 50_000)
    labels = rng.integers(0, 2, len(d))
    upper = np.array([d[labels == 0].max(), d[labels == 1].max()])
    total = stats.combine(*[stats.histogram_chunk(d[a:b], labels[a:b], upper) for a, b in _chunks(len(d), 5)])
    q = stats.quantiles_finalize(total, upper, (0.5, 0.99))
    for c in range(2):
        np.testing.assert_allclose(q[c], np.quantile(d[labels == c], [0.5, 0.99]), atol=2 * upper[c] / 4096)
