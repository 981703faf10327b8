"""fit's passes: the k-means local-optimum trap (split/merge refinement), one read of the vectors
(the PCA of a projection measured against exact PCA and against how far exact PCA itself moves,
with a fallback to a second read), Lloyd epochs that stop when they stop paying."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from streamproc.io.synth import Mixture
from streamproc.learn import kmeans, stats
from streamproc.learn.pca import basis_from_moments, pca_in_basis, subspace_angle
from streamproc.pipeline import fit as fit_module
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest


def _store(tmp_path, x, chunk_rows, name="store"):
    folder = tmp_path / f"{name}-in"
    folder.mkdir()
    np.save(folder / "x.npy", x.astype(np.float32))
    ingest(tmp_path / name, [folder / "x.npy"], chunk_rows=chunk_rows)
    return tmp_path / name


def test_sample_kmeans_escapes_the_split_and_merge_trap(monkeypatch):
    """The README's kind of data (synth, 20 clusters) at 5000 x 128: the best of 10 k-means++
    restarts splits one true cluster and merges two (ARI 0.76 at k = 20, the fit's behaviour before
    split/merge); with the split/merge moves, 3 restarts find the true partition."""
    x, truth = Mixture(dim=128, clusters=20, seed=5).batch(0, 5000)
    z = PCA(0.95, random_state=0).fit_transform(x).astype(np.float32)

    def ari(centroids):
        [(labels, _)] = stats.nearest_in_sets(z, [centroids.astype(np.float32)])
        return adjusted_rand_score(truth, labels)

    with threadpool_limits(1):  # as the fit runs it: one thread per k
        assert ari(kmeans.init_centroids(z, 20, seed=0, metric="euclidean", restarts=3)) >= 0.95
        monkeypatch.setattr(kmeans, "split_merge", lambda sample, centroids, *args, **kwargs: centroids)
        assert ari(kmeans.init_centroids(z, 20, seed=0, metric="euclidean", restarts=10)) < 0.9  # the trap


def test_split_merge_moves_a_centroid_from_two_merged_blobs_to_a_split_one():
    """Four blobs on a line; start: two centroids in blob 0, one between blobs 2 and 3."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0], [10, 0], [20, 0], [30, 0]])
    truth = np.repeat(np.arange(4), 200)
    x = centres[truth] + rng.standard_normal((800, 2))
    trapped = np.array([[0.0, -1], [0, 1], [10, 0], [25, 0]])
    from sklearn.cluster import KMeans

    km = KMeans(4, init=trapped, n_init=1).fit(x)
    assert adjusted_rand_score(truth, km.labels_) < 0.9  # Lloyd alone stays in the trap
    fixed = kmeans.split_merge(x, km.cluster_centers_, km.inertia_, np.random.RandomState(0))
    labels = stats.sq_distances(x, fixed).argmin(axis=1)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_stopped_paying():
    assert not kmeans.stopped_paying(None, np.array([10.0]), 1e-3)
    assert kmeans.stopped_paying(np.array([10.0, 5.0]), np.array([9.995, 5.0]), 1e-3)
    assert not kmeans.stopped_paying(np.array([10.0, 5.0]), np.array([9.995, 4.9]), 1e-3)


@pytest.fixture(scope="module")
def low_rank(tmp_path_factory):
    """Five clusters in a 6-d subspace of 64-d, tiny noise elsewhere: a clear gap after the leading
    components, so the subspace sampled from a third of the rows is close to exact."""
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((64, 6)))[0]
    truth = rng.integers(0, 5, 6000)
    inside = rng.standard_normal((5, 6))[truth] * 4 + rng.standard_normal((6000, 6))
    x = (inside @ basis.T + rng.standard_normal((6000, 64)) * 1e-3).astype(np.float32)
    tmp = tmp_path_factory.mktemp("one-read")
    return _store(tmp, x, chunk_rows=100), x, truth


def test_one_read_fit_matches_the_two_read_fit(low_rank):
    store, x, truth = low_rank
    options = dict(ks=[3, 5, 7], sample=500, seed=0)
    one = fit(store, FitOptions(**options, one_read=True))
    two = fit(store, FitOptions(**options, one_read=False))
    check = one.passes["one_read"]
    assert one.passes["vector_reads"] == 1 and check["used"]
    assert check["max_angle_degrees"] <= 0.1 and check["variance_gap"] <= 1e-6
    assert two.passes["vector_reads"] == 2 and not two.passes["one_read"]["used"]
    assert subspace_angle(one.model.pca_components.T, two.model.pca_components.T) <= 0.1
    assert one.model.k == two.model.k == 5
    same = (one.model.predict(x) == two.model.predict(x)).mean()
    assert same >= 0.999
    np.testing.assert_allclose(one.model.centroids, two.model.centroids, atol=1e-3 * np.abs(two.model.centroids).max())
    assert adjusted_rand_score(truth, one.model.predict(x)) > 0.95


@pytest.fixture(scope="module")
def smooth_tail(tmp_path_factory):
    """The generator's mixture at 64-d: a spectrum that falls smoothly through the 95 % cut, as on
    the 768-d benchmark data, where exact PCA's kept components move by degrees between halves of the rows."""
    x, truth = Mixture(dim=64, clusters=8, seed=3).batch(0, 20_000)
    return _store(tmp_path_factory.mktemp("smooth"), x, chunk_rows=200), x, truth


def test_one_read_is_used_when_it_is_as_close_to_exact_pca_as_exact_pca_is_to_itself(smooth_tail):
    """Degrees off exact PCA (the rule before refused anything over 0.1 degree), but less than exact PCA of
    half the rows is from exact PCA of all rows, and within 0.001 of the variance: one read, and the
    same clusters as two reads. The model reduces rows as the fit reduced them: its nearest-centroid
    counts over all rows are the cluster sizes the fit counted over its reduced rows."""
    store, x, truth = smooth_tail
    options = dict(ks=[4, 8, 12], sample=1000, seed=0)
    one = fit(store, FitOptions(**options, one_read=True))
    two = fit(store, FitOptions(**options, one_read=False))
    check = one.passes["one_read"]
    assert one.passes["vector_reads"] == 1 and check["used"], check
    assert 0.1 < check["max_angle_degrees"] <= check["half_rows_angle_degrees"] == check["angle_limit_degrees"]
    assert check["variance_gap"] <= 0.001
    assert one.model.k == two.model.k == 8 and one.model.explained_variance >= 0.95
    assert (one.model.predict(x) == two.model.predict(x)).mean() >= 0.999
    counted = np.bincount(one.model.predict(x), minlength=one.model.k)
    assert np.abs(counted - one.model.cluster_sizes).sum() <= 2


def test_by_default_one_read_is_tried_only_for_vectors_larger_than_half_the_memory(smooth_tail, monkeypatch):
    store, _, _ = smooth_tail
    options = dict(ks=[8], sample=1000, seed=0)
    cached = fit(store, FitOptions(**options))
    assert cached.passes["vector_reads"] == 2 and "memory" in cached.passes["one_read"]["reason"]
    monkeypatch.setattr(fit_module, "ONE_READ_WHEN", 0.0)  # as if the vectors did not fit in the page cache
    assert fit(store, FitOptions(**options)).passes["vector_reads"] == 1


@pytest.fixture(scope="module")
def flat_tail(tmp_path_factory):
    """A flat tail of the spectrum at the 95 % cut and few sampled rows: a subspace from the sampled
    rows misses more than 0.001 of the variance."""
    x, _ = Mixture(dim=64, clusters=4, rank=6, spread_rank=12, noise=0.05, seed=1).batch(0, 3000)
    return _store(tmp_path_factory.mktemp("flat"), x, chunk_rows=50)


def test_one_read_is_skipped_when_the_sampled_subspace_misses_variance(flat_tail, cli):
    out = cli.json("fit", flat_tail, "--k", "2,4", "--sample", "40", "--one-read", schema="fit")
    assert out["vector_reads"] == 2
    check = out["one_read"]
    assert not check["used"] and check["predicted_variance_gap"] > 0.004 and "misses variance" in check["reason"]
    two = cli.json("fit", flat_tail, "--k", "2,4", "--sample", "40", "--two-reads", schema="fit")
    assert two["vector_reads"] == 2 and two["one_read"] == {"used": False, "reason": "two reads asked for"}


def test_one_read_falls_back_to_a_second_read_when_the_projection_loses_variance(flat_tail, monkeypatch):
    """With the prediction switched off, pass 1 writes the projection, the check against the exact
    covariance finds it loses more than 0.001 of the variance, and pass 2 reads the vectors: the
    model is the two-read one."""
    monkeypatch.setattr(fit_module, "ONE_READ_PREDICT", np.inf)
    options = dict(ks=[2, 4], sample=40, seed=0)
    fallback = fit(flat_tail, FitOptions(**options, one_read=True))
    two = fit(flat_tail, FitOptions(**options, one_read=False))
    check = fallback.passes["one_read"]
    assert fallback.passes["vector_reads"] == 2 and not check["used"]
    assert check["variance_gap"] > 0.001 and "variance" in check["reason"]
    # (pass 1 summed the rows of even and odd chunks apart: the same moments up to float32 rounding)
    np.testing.assert_allclose(fallback.model.centroids, two.model.centroids, rtol=1e-5, atol=1e-6)
    assert not list(flat_tail.glob("models/.staging-*"))  # the projection went with the staging folder


def test_one_read_falls_back_when_the_projection_is_further_off_than_exact_pca_moves(low_rank, monkeypatch):
    """A subspace 2 degrees off on data whose exact PCA is stable (the 6 signal components kept, a
    clear gap after them: halves agree within 0.1 degree): the limit stays 0.1 degree and the fit
    reads the vectors again."""
    store, x, _ = low_rank
    exact = np.linalg.eigh(np.cov(x, rowvar=False))[1][:, ::-1]
    tilt = np.radians(2.0)  # turn a signal direction 2 degrees towards a noise direction
    basis = exact[:, :9].copy()
    basis[:, 0] = np.cos(tilt) * exact[:, 0] + np.sin(tilt) * exact[:, 40]
    monkeypatch.setattr(fit_module, "_projection_basis", lambda *a: (basis.astype(np.float32), {"used": True}))
    fallback = fit(store, FitOptions(ks=[5], sample=500, seed=0, one_read=True, n_components=6))
    check = fallback.passes["one_read"]
    assert fallback.passes["vector_reads"] == 2 and not check["used"]
    assert check["angle_limit_degrees"] == 0.1 and check["max_angle_degrees"] == pytest.approx(2.0, abs=0.05)
    assert "degrees" in check["reason"]


def test_pca_in_basis_is_exact_pca_for_a_basis_holding_the_components_and_tilts_with_it():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 12)) * np.linspace(3, 0.1, 12)
    pca = PCA(4).fit(x)
    cov = np.cov(x, rowvar=False)
    wide = np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:6].T  # the leading 6 directions
    components, spectrum = pca_in_basis(cov, wide, 0.95, 4)
    assert subspace_angle(components.T, pca.components_.T) < 1e-4
    np.testing.assert_allclose(spectrum[:4], pca.explained_variance_, rtol=1e-6)
    tilt = np.radians(2.0)  # turn the 4th direction 2 degrees towards a dropped one, leave out the 5th and 6th
    tilted = wide[:, :4].copy()
    tilted[:, 3] = np.cos(tilt) * wide[:, 3] + np.sin(tilt) * np.linalg.svd(x - x.mean(0), full_matrices=False)[2][8]
    components, spectrum = pca_in_basis(cov, tilted, 0.95, 4)
    assert subspace_angle(components.T, pca.components_.T) == pytest.approx(2.0, abs=0.01)
    assert spectrum[:4].sum() < pca.explained_variance_.sum()
    shift = x.mean(axis=0)
    assert basis_from_moments(stats.moments_chunk(x, shift), shift, 0.95, None, 0.5).shape[1] >= 4


def test_lloyd_epochs_stop_when_they_stop_paying(tmp_path):
    """Epochs that lower the inertia by less than 0.1 % are not run; the clusters are the same as
    after ten epochs."""
    x, _ = Mixture(dim=48, clusters=6, rank=12, spread_rank=6, seed=2).batch(0, 6000)
    store = _store(tmp_path, x, chunk_rows=100)
    options = dict(ks=[4, 6, 9], sample=500, seed=0, tol=0.0, epochs=10)
    stopped = fit(store, FitOptions(**options, inertia_tol=1e-3))
    ten = fit(store, FitOptions(**options, inertia_tol=0.0))
    assert stopped.passes["epochs"] < ten.passes["epochs"] == 10
    assert stopped.model.k == ten.model.k
    assert adjusted_rand_score(ten.model.predict(x), stopped.model.predict(x)) >= 0.99
    inertia = [s["inertia"] for s in stopped.model.scores]
    assert np.all(np.array(inertia) <= 1.01 * np.array([s["inertia"] for s in ten.model.scores]))


def test_the_one_read_check_holds_moments_not_rows(tmp_path):
    """The subspace for one read is estimated from ~4x --sample rows of whole chunks. Holding those
    rows (in float64, twice over for the halves) peaked at 2.2 GiB for 416k x 2560; their moments
    are d x d whatever the rows. Measured with tracemalloc (numpy reports its buffers to it)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((24_000, 6)) @ rng.standard_normal((6, 96)) * 3
         + rng.standard_normal((24_000, 96)) * 0.01).astype(np.float32)
    store = _store(tmp_path, x, chunk_rows=500)
    opened = fit_module.Store.open(store)
    options = FitOptions(ks=[2, 3], sample=3000, one_read=True)  # 4 x 3000 rows: 24 of the 48 chunks
    tracemalloc.start()
    try:
        basis, decided = fit_module._projection_basis(opened, options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert basis is not None and decided["used"], decided
    sampled_rows_bytes = 12_000 * 96 * 8  # the sampled rows in float64: 9.2 MB
    assert peak < sampled_rows_bytes / 4, f"peak {peak / 2**20:.1f} MiB for {sampled_rows_bytes / 2**20:.1f} MiB of rows"
    exact = np.linalg.eigh(np.cov(x[:, :], rowvar=False))[1][:, ::-1][:, :6]
    assert np.linalg.svd(basis.T @ exact, compute_uv=False).min() > 0.999  # it still spans the signal


@pytest.mark.parametrize("metric, fused", [("euclidean", True), ("cosine", True), ("euclidean", False)])
def test_kmeans_outlier_quantiles_come_from_the_scores_pass(tmp_path, monkeypatch, metric, fused):
    """The chosen k is known only after the scores pass, so the quantiles took a pass of their own
    (0.7 s of a 1M x 768 fit, ~7 s at 10M). The last Lloyd epoch gives every k's largest distance,
    so the scores pass histograms every k's distances: the reduced rows are read once per epoch and
    once more, and the thresholds and mean distances are those of the model's own rows."""
    from streamproc.pipeline import methods
    from streamproc.pipeline.runner import Runner
    from streamproc.store.store import Store

    x, _ = Mixture(dim=32, clusters=5, rank=8, spread_rank=4, seed=4).batch(0, 5000)
    store = _store(tmp_path, x, chunk_rows=250)
    passes = []
    real = Runner.reduce_blocks

    def counted(self, path, ranges, fn, *args, desc="", **kwargs):
        passes.append(desc)
        return real(self, path, ranges, fn, *args, desc=desc, **kwargs)

    monkeypatch.setattr(Runner, "reduce_blocks", counted)
    if not fused:  # a sweep too wide for the scores pass's histograms: pass 5 histograms the chosen k
        monkeypatch.setattr(methods, "FUSED_HISTOGRAM_ENTRIES", 0)
    result = fit(store, FitOptions(ks=[3, 5, 7], sample=1000, seed=0, metric=metric))
    reduced_reads = [p for p in passes if not p.startswith(("pass 1/", "pass 2/"))]  # epochs 2.., scores, (5)
    assert len(reduced_reads) == result.passes["epochs"] + (0 if fused else 1), passes
    assert ("pass 5/5 quantiles" in passes) == (not fused)

    model = result.model
    z = Store.open(store).read(f"models/{model.id}/reduced", 0, 5000)
    d = stats.metric_distances(stats.sq_distances(z.astype(np.float64), model.centroids.astype(np.float64)), metric)
    labels = d.argmin(axis=1)  # the model's nearest-centroid rule
    own = d[np.arange(len(z)), labels]
    for c in range(model.k):
        members = own[labels == c]
        width = members.max() / stats.HISTOGRAM_BINS
        exact = np.quantile(members, [0.90, 0.95, 0.99, 0.999], method="inverted_cdf")  # the ceil(q n)-th
        assert np.all((exact <= model.quantiles[c] + 1e-6) & (model.quantiles[c] <= exact + width + 1e-6)), c
        assert model.cluster_mean_distance[c] == pytest.approx(members.mean(), rel=1e-4)


def test_no_epoch_is_run_only_to_confirm_that_the_epochs_stopped_paying(tmp_path, monkeypatch):
    """The loop stopped after an epoch that lowered no k's inertia by --inertia-tol: that epoch was run
    only to find it out (1.2 s of a 1M fit, ~14 s at 10M). Its gain is expected from the epoch before
    (moving each centroid to its new place lowers the inertia by a known amount): the last epoch run
    is one that paid, and the epoch that would have come next does not pay."""
    x, _ = Mixture(dim=48, clusters=6, rank=12, spread_rank=6, seed=2).batch(0, 6000)
    store = _store(tmp_path, x, chunk_rows=100)
    inertia = []  # each epoch's, per k
    real = kmeans.lloyd_update

    def recorded(total, centroid_sets, *rest):
        inertia.append(np.array([total[f"inertia{i}"] for i in range(len(centroid_sets))]))
        return real(total, centroid_sets, *rest)

    monkeypatch.setattr(kmeans, "lloyd_update", recorded)
    options = dict(ks=[4, 6, 9], sample=500, seed=0, tol=0.0)
    stopped = fit(store, FitOptions(**options, inertia_tol=1e-3))
    epochs = stopped.passes["epochs"]
    gains = [(a - b) / a for a, b in zip(inertia, inertia[1:])]
    assert 1 < epochs < 10 and len(inertia) == epochs
    assert gains[-1].max() > 1e-3, gains  # the last epoch run paid
    inertia.clear()
    one_more = fit(store, FitOptions(**options, inertia_tol=0.0, epochs=epochs + 1))
    gains = [(a - b) / a for a, b in zip(inertia, inertia[1:])]
    assert one_more.passes["epochs"] == epochs + 1
    assert gains[-1].max() <= 1e-3, gains  # the one skipped would not have
    assert one_more.model.k == stopped.model.k
    assert adjusted_rand_score(one_more.model.predict(x), stopped.model.predict(x)) >= 0.99
