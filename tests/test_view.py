"""project, render, report and keywords: real UMAP, real datashader PNGs, real HTML."""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from streamproc.io.synth import Mixture
from streamproc.learn.neighbours import IVFIndex, place
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.project import project
from streamproc.view.keywords import KeywordCounter

MIX = Mixture(dim=48, clusters=6, rank=12, spread_rank=5, seed=5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("view")
    from streamproc.io.synth import write_batches

    write_batches(tmp / "in", mixture=MIX, rows=12_000, batch_rows=4000, fmt="parquet", texts=True)
    ingest(tmp / "store", [tmp / "in"], chunk_rows=1000,
           read_options=__import__("streamproc.io.readers", fromlist=["ReadOptions"]).ReadOptions(
               id_column="id", text_column="text"))
    fit(tmp / "store", FitOptions(ks=[4, 6, 8], sample=4000))
    classify(tmp / "store")
    project(tmp / "store")
    return tmp / "store"


def _overlap(high, low, k=15):
    a = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high, return_distance=False)[:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(low).kneighbors(low, return_distance=False)[:, 1:]
    return np.mean([len(set(p) & set(q)) / k for p, q in zip(a, b)])


def test_placement_keeps_neighbourhoods_as_well_as_umap_transform():
    import umap

    x, _ = Mixture(dim=64, clusters=10, seed=9).batch(0, 5000)
    z = x[:, :40].astype(np.float32)
    sample, held = z[:3000], z[3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=15, random_state=0).fit(sample)
        theirs = reducer.transform(held)
    index = IVFIndex.build(sample)
    ours = place(index, reducer.embedding_, held)
    assert _overlap(held, ours) >= 0.9 * _overlap(held, theirs)
    # the cells a placed row probes (fewer than a neighbour query's) move 99 % of the rows by less than
    # 0.6 % of the map's extent from where their exact neighbours place them (1 cell: 2.3 %, 3: 1.0 %)
    exact = place(index, reducer.embedding_, held, probes=len(index.cell_centres))
    moved = np.linalg.norm(ours - exact, axis=1) / np.ptp(reducer.embedding_, axis=0).max()
    assert np.quantile(moved, 0.99) < 0.006


def _recall(points, queries, **kw):
    idx, sq = IVFIndex.build(points).query(queries, k=10, **kw)
    assert np.all(np.diff(sq, axis=1) >= 0)
    exact = NearestNeighbors(n_neighbors=10).fit(points).kneighbors(queries, return_distance=False)
    return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact)])


def test_ivf_index_finds_the_true_neighbours():
    x, _ = Mixture(dim=64, clusters=12, seed=3).batch(0, 4300)
    assert _recall(x[:4000], x[4000:]) > 0.95  # clustered data, as reduced embeddings are
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2000, 16))
    assert _recall(noise[:1800], noise[1800:], probes=10_000) == 1.0  # probing every cell is exact


def test_project_is_incremental_and_switches_method(cli, store, tmp_path):
    out = cli.json("project", store, "--method", "pca", schema="project")
    assert out["projected"] == 12_000 and out["method"] == "pca"
    assert cli.json("project", store)["projected"] == 0
    umap_run = cli.json("project", store, "--method", "umap", "--sample", "3000", schema="project")
    assert umap_run["projected"] == 12_000 and umap_run["method"] == "umap"
    np.save(tmp_path / "more.npy", MIX.batch(50, 2000)[0])
    cli.json("ingest", store, tmp_path / "more.npy", "--no-ids", "--no-texts")
    again = cli.json("project", store)
    assert again["projected"] == 2000 and again["method"] == "umap" and again["watermark"] == 14_000


def test_chunked_aggregation_equals_one_canvas():
    import datashader as ds

    from streamproc.view.render import aggregate_blocks

    rng = np.random.default_rng(1)
    x, y, c = rng.normal(size=20_000), rng.normal(size=20_000), rng.integers(0, 5, 20_000)
    canvas = ds.Canvas(plot_width=64, plot_height=48, x_range=(-4, 4), y_range=(-4, 4))
    chunked = aggregate_blocks(((x[a:a + 3000], y[a:a + 3000], c[a:a + 3000]) for a in range(0, 20_000, 3000)),
                               canvas, 5)
    df = pd.DataFrame({"x": x, "y": y, "c": pd.Categorical.from_codes(c, categories=list(range(5)))})
    whole = canvas.points(df, "x", "y", agg=ds.count_cat("c"))
    np.testing.assert_array_equal(chunked.values, whole.values)


def _distinct_colours(region: np.ndarray, palette: list[str]) -> int:
    """How many palette colours appear at (nearly: 12 levels per channel) full strength on at least 20
    pixels (the densest pixels of each cluster are drawn opaque in its own colour)."""
    pixels = region.reshape(-1, 3).astype(int)
    found = 0
    for colour in palette:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        found += int((np.abs(pixels - rgb).max(axis=1) <= 12).sum() >= 20)
    return found


def test_render_png_size_and_colours(cli, store, tmp_path):
    out = cli.json("render", store, "-o", tmp_path / "map.png", "--width", "900", "--height", "700", "--no-labels",
                   schema="render")  # labels would cover the clusters' densest (full-colour) pixels
    image = Image.open(tmp_path / "map.png").convert("RGB")
    assert image.size == (900, 700)
    left, top, right, bottom = out["plot_area"]
    plot = np.asarray(image)[top:bottom, left:right]
    from streamproc.view.render import category_colors

    k = out["k"]
    assert k - 1 <= _distinct_colours(plot, category_colors(k)) <= k
    assert _distinct_colours(plot, category_colors(k + 6)[k:]) <= 1  # colours of clusters that do not exist
    legend = np.asarray(image)[top:bottom, right:]
    assert (legend < 250).any()  # the legend is drawn beside the plot area
    for color in ("outlier", "batch"):
        cli.json("render", store, "-o", tmp_path / f"{color}.png", "--color", color)
        assert Image.open(tmp_path / f"{color}.png").size == (1200, 900)


def test_render_bad_inputs(cli, store, tmp_path):
    out = cli.json("render", store, "-o", tmp_path / "missing" / "map.png", code=1, schema="error")
    assert "does not exist" in out["error"]
    cli("render", store, "-o", tmp_path / "m.png", "--color", "mood", code=2)
    for command, bad in (("render", "m.jpg"), ("report", "r.pdf"), ("export", "labels.xlsx")):
        out = cli.json(command, store, "-o", tmp_path / bad, code=2, schema="error")  # a usage error everywhere
        assert bad in out["error"] and "expected" in out["error"]
    out = cli.json("render", store, "-o", tmp_path / "m.png", "--model", "nope", code=1, schema="error")
    assert "no model 'nope'" in out["error"]


def test_report_holds_every_section_and_cluster(cli, store, tmp_path):
    out = cli.json("report", store, "-o", tmp_path / "r.html", schema="report")
    html = (tmp_path / "r.html").read_text()
    for section in ("map", "charts", "clusters"):
        assert f'<section id="{section}">' in html
    for title in ("Cluster sizes", "Davies-Bouldin against k", "Calinski-Harabasz against k",
                  "Explained variance against components"):
        assert title in html
    assert len(re.findall(r'<tr id="cluster-\d+">', html)) == out["k"]
    assert html.count("data:image/png;base64,") == 1 and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    assert out["keywords"] is True and "<th>keywords</th>" in html


def test_report_without_texts_says_so(cli, tmp_path):
    np.save(tmp_path / "x.npy", MIX.batch(0, 3000)[0])
    cli.json("ingest", tmp_path / "s", tmp_path / "x.npy")
    cli.json("fit", tmp_path / "s", "--k", "3,6")
    cli.json("project", tmp_path / "s", "--method", "pca")
    cli.json("classify", tmp_path / "s")
    out = cli.json("report", tmp_path / "s", "-o", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert out["keywords"] is False and "No texts were ingested" in html and "<th>keywords</th>" not in html


def test_keywords_name_each_topic_and_skip_urls():
    texts = {
        0: ["The striker scored a late goal, the team won the match https://t.co/abc123",
            "Our coach says the league season starts with a derby match @fc_news",
            "Penalty saved by the keeper, the team celebrates the goal in the stadium"],
        1: ["Bake the dough in a hot oven for 20 minutes, see www.recipes.example/bread",
            "Simmer garlic and onion in butter for the sauce, a simple recipe",
            "Knead the dough, add flour, bake and serve the bread with garlic butter"],
        2: ["Stock market rally lifts bank shares, investors cheer the dividend ir@bank.example",
            "Bond yields climb as inflation worries investors, the bank raises its rate",
            "Quarterly earnings beat forecasts, shares and dividend up 5%"],
    }
    counter = KeywordCounter(3)
    for label, docs in texts.items():
        counter.update(docs, [label] * len(docs))
    top = [[term for term, _ in terms[:6]] for terms in counter.top(10)]
    assert {"goal", "team", "match"} <= set(top[0])
    assert {"dough", "garlic", "butter"} & set(top[1]) and "bake" in top[1]
    assert {"shares", "dividend", "bank", "investors"} & set(top[2])
    everything = " ".join(" ".join(t) for t in top)
    for fragment in ("http", "www", "t.co", "abc123", "@", "example", "5"):
        assert fragment not in everything.split(), fragment


def test_render_and_report_only_read_and_say_what_to_run(cli, tmp_path):
    np.save(tmp_path / "a.npy", MIX.batch(0, 2000)[0])
    np.save(tmp_path / "b.npy", MIX.batch(1, 500)[0])
    store = tmp_path / "s"
    cli.json("ingest", store, tmp_path / "a.npy")
    cli.json("fit", store, "--k", "3,6")
    manifest = (store / "manifest.json").read_text()
    for command, what in (("render", "map.png"), ("report", "r.html")):
        out = cli.json(command, store, "-o", tmp_path / what, code=1, schema="error")
        assert f"run `streamproc classify {store}` first" in out["error"]
    assert (store / "manifest.json").read_text() == manifest  # nothing was labelled behind the user's back
    cli.json("classify", store)
    out = cli.json("render", store, "-o", tmp_path / "map.png", code=1, schema="error")
    assert f"run `streamproc project {store}` first" in out["error"]
    cli.json("project", store, "--method", "pca")
    cli.json("ingest", store, tmp_path / "b.npy")  # a newer batch, not labelled or placed yet
    out = cli.json("render", store, "-o", tmp_path / "map.png", schema="render")
    assert out["rows"] == 2000 and out["behind"] == 500
    result = cli("report", store, "-o", tmp_path / "r.html")
    assert "500 newer rows are not labelled or placed yet" in result.stderr
    assert "streamproc classify" in result.stderr and "streamproc project" in result.stderr
    # once classify has run, only project is due, and only project is named
    cli.json("classify", store)
    out = cli.json("render", store, "-o", tmp_path / "map.png", schema="render")
    assert (out["behind"], out["behind_labels"], out["behind_positions"]) == (500, 0, 500)
    result = cli("render", store, "-o", tmp_path / "map.png")
    assert "500 newer rows are not placed yet" in result.stderr
    assert "streamproc project" in result.stderr and "streamproc classify" not in result.stderr


def _nearest_colour(pixels: np.ndarray, colours: list[str]) -> np.ndarray:
    """Index of the colour each pixel was drawn in, at any opacity from 50% on white."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float)
    alphas = np.linspace(0.5, 1.0, 6)
    tints = alphas[None, :, None] * rgb[:, None, :] + (1 - alphas[None, :, None]) * 255  # colour x alpha x rgb
    distance = np.linalg.norm(pixels[:, None, None, :] - tints[None], axis=3).min(axis=2)
    return distance.argmin(axis=1)


def test_map_labels_each_cluster_at_its_centre_with_its_keyword(store, tmp_path):
    from conftest import run_streamproc, validate

    from streamproc.io.synth import TOPICS
    from streamproc.view.render import category_colors

    out = validate(json.loads(run_streamproc("render", store, "-o", tmp_path / "l.png", "--json").stdout), "render")
    run_streamproc("render", store, "-o", tmp_path / "n.png", "--no-labels", "-q")
    left, top, right, bottom = out["plot_area"]
    labelled = np.asarray(Image.open(tmp_path / "l.png").convert("L")).astype(int)
    bare_rgb = np.asarray(Image.open(tmp_path / "n.png").convert("RGB"))
    bare = np.asarray(Image.open(tmp_path / "n.png").convert("L")).astype(int)
    colours = category_colors(out["k"])
    topic_words = {w for words in TOPICS.values() for w in words}
    assert sorted(label["cluster"] for label in out["labels"]) == list(range(out["k"]))
    for label in out["labels"]:
        c, x, y = label["cluster"], label["x"], label["y"]
        number, word = label["text"].split(" ", 1)
        assert number == str(c) and word in topic_words, label
        # the label sits on its cluster: around it, the unlabelled map's points are mostly the cluster's colour
        around = bare_rgb[max(y - 30, top):y + 31, max(x - 30, left):x + 31].reshape(-1, 3).astype(float)
        owners = _nearest_colour(around[around.min(axis=1) < 235], colours)
        assert len(owners) >= 20 and np.bincount(owners, minlength=len(colours)).argmax() == c, label
        # and its text is there: dark ink around (x, y) that the unlabelled map does not have
        box = (slice(y - 8, y + 9), slice(max(x - 30, 0), x + 31))
        assert ((labelled[box] < 80) & (bare[box] >= 80)).sum() >= 30, label


def test_map_without_texts_labels_ids_and_names_its_projection(cli, tmp_path):
    np.save(tmp_path / "x.npy", MIX.batch(0, 3000)[0])
    cli.json("ingest", tmp_path / "s", tmp_path / "x.npy")
    cli.json("fit", tmp_path / "s", "--k", "6")
    cli.json("classify", tmp_path / "s")
    cli.json("project", tmp_path / "s", "--method", "pca")
    out = cli.json("render", tmp_path / "s", "-o", tmp_path / "m.png", schema="render")
    assert [label["text"] for label in sorted(out["labels"], key=lambda la: la["cluster"])] == [str(c) for c in range(6)]
    title = np.asarray(Image.open(tmp_path / "m.png").convert("L"))[34:52, :600]
    assert (title < 150).sum() > 200  # the line under the title naming the projection

    from streamproc.store.manifest import ProjectionEntry
    from streamproc.view.render import projection_note

    assert "PCA" in projection_note(ProjectionEntry("pca", "projection-pca-1"))
    umap_note = projection_note(ProjectionEntry("umap", "projection-umap-1", sample=50_000))
    assert "no units" in umap_note and "50,000" in umap_note


def test_twenty_colours_have_no_near_twins():
    from itertools import combinations

    from streamproc.view.render import category_colors, hex_to_lab

    np.testing.assert_allclose(hex_to_lab(["#ff0000", "#ffffff", "#000000"]),
                               [[53.24, 80.09, 67.20], [100, 0, 0], [0, 0, 0]], atol=0.1)  # CIE L*a*b* references
    colours = category_colors(20)
    lab = hex_to_lab(colours)
    closest = min(np.linalg.norm(lab[a] - lab[b]) for a, b in combinations(range(20), 2))
    assert closest > 30, closest  # CIE76 ΔE: about 2.3 is just noticeable; 30 reads as a different hue
    assert len(set(colours)) == 20 and category_colors(30)[:20] == colours  # a cluster keeps its colour


def test_render_says_what_it_coloured(store, tmp_path):
    from conftest import run_streamproc

    text = run_streamproc("render", store, "-o", tmp_path / "b.png", "--color", "batch").stdout
    assert "batch groups" in text and "clusters" not in text
    assert "inliers and outliers" in run_streamproc("render", store, "-o", tmp_path / "o.png", "--color",
                                                    "outlier").stdout


def test_every_map_label_stays_whole_inside_the_plot(tmp_path):
    """A label centred on a cluster at the plot's edge is moved inward, never cut ("19" read as "9")."""
    from PIL import Image as PILImage

    from streamproc.view.render import _draw_labels

    page = PILImage.new("RGB", (400, 100), "white")
    placed = [{"cluster": 19, "text": "19 island", "x": 0, "y": 50}, {"cluster": 7, "text": "7 engine", "x": 300, "y": 20}]
    _draw_labels(page, placed, plot_w=300)
    ink = np.flatnonzero((np.asarray(page.convert("L")) < 80).any(axis=0))
    assert ink.min() > 0 and ink.max() < 300  # no ink cut at the left edge, none past the plot into the legend
    assert 0 < placed[0]["x"] < 150 and 150 < placed[1]["x"] < 300


def test_map_report_and_explorer_name_clusters_from_the_same_texts(store, monkeypatch):
    """The keywords are read from the same evenly spaced rows by render and by the report (whose
    summary serve shows too): a map naming a cluster 'opening' while the report calls it 'knight'
    confused a new user. Fewer sampled rows than the store holds, so that both sample."""
    from streamproc.store.catalog import load_model
    from streamproc.store.store import Store
    from streamproc.view import keywords, render, report

    monkeypatch.setattr(keywords, "SAMPLE_ROWS", 2500, raising=False)
    monkeypatch.setattr(render, "KEYWORD_SAMPLE", 2500, raising=False)  # (the name before they shared one)
    opened = Store.open(store)
    model = load_model(opened)
    rows = render.drawable_rows(opened, model.id)
    on_the_map = render.top_keywords(opened, model, rows)
    in_the_report = [terms[0][0] for terms in report.cluster_summary(opened, model, rows, lang="en")["keywords"]]
    assert on_the_map == in_the_report


def test_coloured_by_cluster_outliers_do_not_cover_a_dense_cluster(tmp_path):
    """Coloured by cluster, outliers were drawn in full ink over every pixel they shared with inliers:
    at 10M rows (1 % outliers, ~5,000 a cluster) every cluster was black. Now a pixel shows its
    outliers only where they are at least half of its rows; a lone outlier still shows."""
    from PIL import Image

    from streamproc.pipeline.classify import classify
    from streamproc.pipeline.fit import FitOptions, fit
    from streamproc.pipeline.ingest import ingest
    from streamproc.pipeline.project import project
    from streamproc.view.render import LEGEND_WIDTH, TITLE_HEIGHT, render

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((30_000, 16)) + 8 * np.eye(16)[i] for i in range(2)]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    store = tmp_path / "s"
    ingest(store, [tmp_path / "x.npy"])
    fit(store, FitOptions(ks=[2], sample=2000))
    assert abs(classify(store, outlier_quantile=0.9).outlier_rate - 0.1) < 0.01  # 10 % outliers, many a pixel
    project(store, method="pca")
    render(store, tmp_path / "map.png", width=400, height=400)
    plot = np.asarray(Image.open(tmp_path / "map.png").convert("RGB"))[TITLE_HEIGHT:, :400 - LEGEND_WIDTH].astype(int)
    inked, dark = plot.min(axis=2) < 240, plot.max(axis=2) < 60
    assert dark.sum() / inked.sum() < 0.25  # (0.38 when every outlier was drawn over its pixel)
    assert dark.sum() > 100  # the outliers away from the dense cores still show
