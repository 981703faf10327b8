"""fit --method agglomerative|hdbscan, silhouette and elbow, the calibrated logistic classifier:
each against the in-memory scikit-learn reference on small data."""

import numpy as np
import pytest
from conftest import validate
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score

from streamproc.io.synth import Mixture
from streamproc.learn import stats
from streamproc.learn.agglomerative import cuts, merge_tree
from streamproc.learn.scores import elbow_index, silhouette_scores
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest

CASES = [("ward", "euclidean"), ("average", "euclidean"), ("average", "cosine"), ("complete", "euclidean"),
         ("complete", "cosine")]


def _store(tmp_path, x, chunk_rows=64):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "x.npy", x.astype(np.float32))
    ingest(tmp_path / "store", [folder / "x.npy"], chunk_rows=chunk_rows)
    return tmp_path / "store"


@pytest.fixture(scope="module")
def rows():
    x, _ = Mixture(dim=16, clusters=5, rank=8, spread_rank=4, seed=3).batch(0, 240)
    return x.astype(np.float64)


@pytest.mark.parametrize("linkage,metric", CASES)
def test_merge_tree_with_every_row_its_own_micro_cluster_is_sklearn(rows, linkage, metric):
    ks = [2, 3, 5, 8, 20]
    ours = cuts(merge_tree(rows, np.ones(len(rows)), linkage=linkage, metric=metric), len(rows), ks)
    for k, groups in zip(ks, ours):
        ref = AgglomerativeClustering(k, linkage=linkage, metric=metric).fit_predict(rows)
        assert adjusted_rand_score(ref, groups) == 1.0, (linkage, metric, k)


@pytest.mark.parametrize("linkage,metric", CASES)
def test_weights_count_as_repeated_rows(rows, linkage, metric):
    """A micro-cluster of n identical rows with weight n = those n rows given to scikit-learn."""
    points = rows[:80]
    counts = np.random.RandomState(0).randint(1, 5, len(points))
    expanded = np.repeat(points, counts, axis=0)
    ks = [3, 6, 12]
    ours = cuts(merge_tree(points, counts, linkage=linkage, metric=metric), len(points), ks)
    for k, groups in zip(ks, ours):
        ref = AgglomerativeClustering(k, linkage=linkage, metric=metric).fit_predict(expanded)
        assert adjusted_rand_score(ref, np.repeat(groups, counts)) == 1.0, (linkage, metric, k)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_rows", [7, 64, 1000])
def test_silhouette_on_the_full_set_is_sklearn(rows, metric, block_rows):
    label_sets = [AgglomerativeClustering(k).fit_predict(rows) for k in (2, 5, 9)]
    ours = silhouette_scores(rows, label_sets, metric=metric, block_rows=block_rows)
    ref = [silhouette_score(rows, labels, metric=metric) for labels in label_sets]
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
    assert silhouette_scores(rows, [np.zeros(len(rows), int)]) == [None]


def test_elbow_is_the_knee_of_the_inertia_curve():
    ks = [2, 3, 4, 5, 6, 7, 8]
    inertia = [100, 60, 25, 22, 20, 18, 16]  # steep until k = 4, then flat
    assert ks[elbow_index(ks, inertia)] == 4
    assert elbow_index(ks, [7, 6, 5, 4, 3, 2, 1]) == 0  # a straight line has no knee
    assert elbow_index([2, 3], [5, 1]) == 0


def test_agglomerative_fit_with_every_row_a_micro_cluster_is_sklearn_on_the_reduced_rows(tmp_path, rows):
    """End to end: the partition, its exact streamed Davies-Bouldin, and centroids = group means."""
    store = _store(tmp_path, rows)
    n = len(rows)
    options = FitOptions(ks=[3, 5, 8], method="agglomerative", micro_clusters=n, sample=n, epochs=1)
    model = fit(store, options).model
    z = model.transform(rows.astype(np.float32)).astype(np.float64)
    for score in model.scores:
        ref = AgglomerativeClustering(score["k"], linkage="ward").fit_predict(z)
        assert score["davies_bouldin"] == pytest.approx(davies_bouldin_score(z, ref), rel=1e-5)
        if score["k"] == model.k:
            means = np.stack([z[ref == c].mean(axis=0) for c in range(model.k)])
            order = np.argsort(means[:, 0])
            np.testing.assert_allclose(model.centroids[np.argsort(model.centroids[:, 0])], means[order], atol=1e-4)
        assert {"davies_bouldin", "calinski_harabasz", "silhouette", "inertia"} <= set(score)


def test_hdbscan_clusters_on_the_sample_are_sklearns(tmp_path, rows):
    store = _store(tmp_path, rows)
    n = len(rows)
    options = FitOptions(method="hdbscan", sample=n, min_cluster_size=10, umap_components=0, ks=[2])
    model = fit(store, options).model
    order = np.argsort(stats.row_keys(0, n, options.seed), kind="stable")  # the sample's row order
    sample_z = model.transform(rows[order].astype(np.float32))
    ref = HDBSCAN(min_cluster_size=10, copy=True).fit_predict(sample_z)
    found = np.unique(ref[ref >= 0])
    np.testing.assert_allclose(model.centroids, np.stack([sample_z[ref == c].mean(axis=0) for c in found]), atol=1e-5)
    assert model.extra["noise_fraction"] == pytest.approx((ref < 0).mean())
    d = model.distances(sample_z)  # outlier thresholds: quantiles of the members' distances only
    for i, c in enumerate(found):
        np.testing.assert_allclose(model.quantiles[i], np.quantile(d[ref == c, i], [0.9, 0.95, 0.99, 0.999]),
                                   rtol=1e-4)
    assert len(model.scores) == 1 and model.scores[0]["k"] == model.k == len(found)


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_logistic_confidence_matches_held_out_accuracy_on_digits(tmp_path, method):
    x, _ = load_digits(return_X_y=True)
    store = _store(tmp_path, x, chunk_rows=200)
    options = FitOptions(ks=[8, 10, 12], method=method, classifier="logistic", micro_clusters=300,
                         umap_components=0, min_cluster_size=10)
    model = fit(store, options).model
    report = model.extra["classifier"]
    assert report["held_out_rows"] > 100
    assert abs(report["mean_confidence"] - report["accuracy"]) <= 0.05, report
    kept = max(report["logistic_accuracy"], report["nearest_centroid_accuracy"])
    assert report["accuracy"] >= kept - 0.02, report  # the candidate kept is (about) the better one
    if report["used"] == "nearest-centroid":  # coef = -I / (T unit): the labels are nearest-centroid's
        z = model.transform(x[:300].astype(np.float32))
        np.testing.assert_array_equal(model.predict(x[:300].astype(np.float32)), model.distances(z).argmin(axis=1))


def test_fit_cli_methods_and_selections(cli, tmp_path, rows):
    store = _store(tmp_path, rows)
    out = cli.json("fit", store, "--k", "2:8", "--method", "agglomerative", "--linkage", "average",
                   "--micro-clusters", "60", "--select", "elbow", schema="fit")
    assert out["method"] == "agglomerative" and out["micro_clusters"] == 60 and out["silhouette_sample"] == len(rows)
    ks = [s["k"] for s in out["scores"]]
    assert out["k"] == ks[elbow_index(ks, [s["inertia"] for s in out["scores"]])]
    out = cli.json("fit", store, "--k", "2:8", "--select", "silhouette", schema="fit")
    best = max(out["scores"], key=lambda s: s["silhouette"])
    assert out["k"] == best["k"] and -1 <= best["silhouette"] <= 1
    listing = cli.json("models", store, schema="models")
    assert all("silhouette" in s for m in listing["models"] for s in m["scores"])
    assert "silhouette" in cli("models", store).output
    bad = cli.json("fit", store, "--k", "2:8", "--method", "agglomerative", "--micro-clusters", "5", code=2,
                   schema="error")
    assert "micro_clusters (--micro-clusters) 5" in bad["error"]
    validate(bad, "error")


def test_tsne_map_keeps_the_clusters_apart_and_places_new_rows(cli, tmp_path):
    """project --method tsne: openTSNE on the sample, every other row placed; clusters stay apart in 2-D."""
    import zarr
    from sklearn.neighbors import KNeighborsClassifier

    mix = Mixture(dim=24, clusters=4, rank=8, spread_rank=4, seed=4)
    x, y = mix.batch(0, 3000)
    store = _store(tmp_path, x, chunk_rows=500)
    fit(store, FitOptions(ks=[4], sample=1000))
    out = cli.json("project", store, "--method", "tsne", "--sample", "800", schema="project")
    assert out["method"] == "tsne" and out["projected"] == 3000
    model_dir = next(p for p in (store / "models").iterdir() if not p.name.startswith("."))
    xy = zarr.open_array(next(model_dir.glob("projection-tsne-*[0-9]")), mode="r")[:]
    assert np.isfinite(xy).all()
    knn = KNeighborsClassifier(5).fit(xy[:2000], y[:2000])  # clusters: neighbours in 2-D share the true label
    assert knn.score(xy[2000:], y[2000:]) > 0.95
    np.save(tmp_path / "more.npy", mix.batch(9, 500)[0])
    cli.json("ingest", store, tmp_path / "more.npy")
    again = cli.json("project", store, schema="project")
    assert again["method"] == "tsne" and again["projected"] == 500 and again["fit_seconds"] == 0


def test_report_plots_the_four_scores_with_ticks_and_a_table(cli, tmp_path, rows):
    import re

    store = _store(tmp_path, rows)
    out = cli.json("fit", store, "--k", "2:6", "--method", "agglomerative", "--micro-clusters", "40", schema="fit")
    cli.json("classify", store)
    cli.json("project", store, "--method", "pca")
    cli.json("report", store, "-o", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    section = html[html.index('<section id="scores">'):html.index('<section id="charts">')]
    for title in ("Davies-Bouldin", "Calinski-Harabasz", "silhouette", "inertia"):
        chart = re.search(rf'<svg[^>]*aria-label="{title} against k[^"]*".*?</svg>', section).group(0)
        x_ticks = re.findall(r'text-anchor="middle">(\d+)</text>', chart)
        assert x_ticks == [str(s["k"]) for s in out["scores"]], title
        assert len(re.findall(r'text-anchor="end" font-size="9">', chart)) == 5  # y ticks
    table = section[section.index('<table id="score-table">'):]
    cells = re.findall(r"<tr( class=chosen)?><td>(\d+)</td><td>([^<]+)</td>", table)
    assert [int(k) for _, k, _ in cells] == [s["k"] for s in out["scores"]]
    assert [float(db) for _, _, db in cells] == pytest.approx([s["davies_bouldin"] for s in out["scores"]], abs=1e-4)
    assert [int(k) for chosen, k, _ in cells if chosen] == [out["k"]]
