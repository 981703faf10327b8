"""``streamproc serve`` over real HTTP (a real server process on 127.0.0.1) and ``streamproc predict``."""

import io
import json
import socket
import time
import urllib.parse
from http.client import HTTPConnection, HTTPResponse

import numpy as np
import pytest
import zarr
from _serve_support import IMAGE_ROWS, MIX, http, make_store, running_server, store_vectors
from conftest import ROOT, run_streamproc, validate
from PIL import Image

from streamproc.store.catalog import load_model
from streamproc.store.store import Store


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    store, images = make_store(tmp)
    with running_server(store, "--images-root", str(images), log=tmp / "serve.log") as base:
        yield base, store, images, tmp


def stored(store, name, rows=slice(None)):
    model = Store.open(store).manifest.current_model
    return zarr.open_array(store / "models" / model / name, mode="r")[:][rows]


def positions(store):
    s = Store.open(store)
    meta = s.manifest.models[s.manifest.current_model].projection
    return zarr.open_array(store / "models" / s.manifest.current_model / meta.array, mode="r")[:]


def test_info_clusters_rows_members(served):
    base, store, _, _ = served
    status, info, _ = http("GET", base + "/api/info")
    assert status == 200 and validate(info, "api-info")
    assert info["rows"] == info["projected"] == info["labelled"] == 3000 and info["dim"] == MIX.dim
    assert info["model"] == Store.open(store).manifest.current_model and not info["texts"]

    status, clusters, _ = http("GET", base + "/api/clusters")
    assert status == 200 and validate(clusters, "api-clusters")
    assert sum(c["size"] for c in clusters["clusters"]) == 3000 and len(clusters["clusters"]) == info["k"]
    labels = stored(store, "labels")
    xy = positions(store)
    for c in clusters["clusters"]:
        mine = labels == c["label"]
        assert c["size"] == mine.sum() and c["keywords"]  # the store has texts
        assert np.allclose([c["x"], c["y"]], xy[mine].mean(axis=0), atol=1e-4)  # label placed at its centre
        assert sum(b["rows"] for b in c["batches"]) == c["size"]
        assert all(labels[r] == c["label"] for r in c["representatives"])

    status, row, _ = http("GET", base + "/api/rows/1500")
    assert status == 200 and validate(row, "api-row")
    assert row["label"] == stored(store, "labels", 1500) and row["batch"] == "b000002"
    assert np.allclose([row["x"], row["y"]], xy[1500]) and row["text"] and row["id"].startswith("r000001-")

    label = clusters["clusters"][1]["label"]
    status, page, _ = http("GET", base + f"/api/clusters/{label}/members?offset=3&limit=4")
    assert status == 200 and validate(page, "api-members")
    assert [r["row"] for r in page["rows"]] == np.flatnonzero(labels == label)[3:7].tolist()
    status, page, _ = http("GET", base + f"/api/clusters/{label}/members?outliers=1&limit=100")
    outliers = stored(store, "outlier")
    assert [r["row"] for r in page["rows"]] == np.flatnonzero((labels == label) & outliers)[:100].tolist()


def test_near_is_exact(served):
    base, store, _, _ = served
    xy = positions(store)
    for x, y in [(0.0, 0.0), tuple(xy[42]), (100.0, -100.0)]:
        status, near, _ = http("GET", base + f"/api/near?x={x}&y={y}&n=7")
        assert status == 200 and validate(near, "api-near")
        expected = np.argsort(np.hypot(xy[:, 0] - x, xy[:, 1] - y), kind="stable")[:7]
        assert [r["row"] for r in near["rows"]] == expected.tolist()


def tile(base, path):
    status, png, headers = http("GET", base + path)
    assert status == 200 and headers["content-type"] == "image/png", (status, png)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert image.shape == (256, 256, 4)
    return image


def test_tiles_show_the_points_where_they_are(served):
    base, store, _, _ = served
    _, info, _ = http("GET", base + "/api/info")
    e = info["extent"]
    xy = positions(store)
    whole = tile(base, "/api/tiles/0/0/0.png")
    u = ((xy[:, 0] - e["x0"]) / e["span"] * 256).astype(int)
    v = ((e["y1"] - xy[:, 1]) / e["span"] * 256).astype(int)
    assert whole[v, u, 3].min() > 0  # every point's pixel is drawn
    empty = np.ones((256, 256), bool)
    near_v = np.clip(v[:, None] + np.arange(-3, 4), 0, 255)
    near_u = np.clip(u[:, None] + np.arange(-3, 4), 0, 255)
    empty[near_v[:, :, None], near_u[:, None, :]] = False
    assert whole[empty, 3].max() == 0  # and nothing far from any point
    fu, fv = (xy[:, 0] - e["x0"]) / e["span"], (e["y1"] - xy[:, 1]) / e["span"]  # 0..1 across tile 0/0/0
    for z in (4, 9, 13):  # from the sorted slices (zoom <= 10: one range; deeper: one cell's points, filtered)
        tx, ty = int(fu[42] * 2**z), int(fv[42] * 2**z)
        assert tile(base, f"/api/tiles/{z}/{tx}/{ty}.png")[..., 3].max() > 0, z
        far = (tx + 2**z // 2) % 2**z, (ty + 2**z // 2) % 2**z
        inside = ((fu * 2**z).astype(int) == far[0]) & ((fv * 2**z).astype(int) == far[1])
        assert (tile(base, f"/api/tiles/{z}/{far[0]}/{far[1]}.png")[..., 3].max() > 0) == inside.any(), z
    for color in ("outlier", "batch"):
        assert tile(base, f"/api/tiles/0/0/0.png?color={color}")[..., 3].max() > 0
    # coloured by outlier, every outlier stands out in full red ink whatever inliers share its pixel
    # (blended by count, a lone outlier was a faint pink or grey pixel: hard to find on the map)
    flagged = stored(store, "outlier", slice(0, len(xy)))
    assert flagged.any()
    shown = tile(base, "/api/tiles/0/0/0.png?color=outlier")[v[flagged], u[flagged]].astype(int)
    assert (shown[:, 3] >= 200).all() and (shown[:, 0] - shown[:, 1] >= 100).all(), shown[:5]
    batch = tile(base, "/api/tiles/0/0/0.png?color=batch")
    assert len({tuple(p) for p in batch[batch[..., 3] > 200][:, :3]}) >= 3  # three batches, three colours


def test_predict_equals_what_classify_stored(served):
    base, store, _, _ = served
    rows = [0, 7, 1500, 2999]
    status, out, _ = http("POST", base + "/api/predict", {"vectors": store_vectors(store, rows).tolist()})
    assert status == 200 and validate(out, "predict")
    model = load_model(store)
    assert out["classes"] == model.classes_.tolist()
    got = out["predictions"]
    assert [p["label"] for p in got] == stored(store, "labels", rows).tolist()
    assert np.allclose([p["confidence"] for p in got], stored(store, "confidence", rows), atol=1e-6)
    assert np.allclose([p["distance"] for p in got], stored(store, "distance", rows), rtol=1e-5)
    assert [p["outlier"] for p in got] == stored(store, "outlier", rows).tolist()
    assert np.allclose([p["probabilities"] for p in got], model.predict_proba(store_vectors(store, rows)))
    assert np.allclose([[p["x"], p["y"]] for p in got], positions(store)[rows], atol=1e-5)
    assert [p["neighbours"][0] for p in got] == rows  # a stored vector lands on its own row
    assert all(len(p["neighbours"]) == 5 for p in got)
    status, fewer, _ = http("POST", base + "/api/predict", {"vectors": store_vectors(store, rows).tolist(), "neighbours": 0})
    assert status == 200 and all(p["neighbours"] == [] for p in fewer["predictions"])
    assert [p["label"] for p in fewer["predictions"]] == [p["label"] for p in got]


def raw_get(base, path):
    """GET with the path sent exactly as written (no client-side normalisation of ../)."""
    host = urllib.parse.urlparse(base)
    conn = HTTPConnection(host.hostname, host.port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def raw_request(base, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are on a socket; the status and body of the answer."""
    host = urllib.parse.urlparse(base)
    with socket.create_connection((host.hostname, host.port), timeout=60) as conn:
        conn.sendall(data)
        response = HTTPResponse(conn)
        response.begin()
        return response.status, response.read()


def test_every_bad_request_gets_a_json_4xx_and_the_server_keeps_running(served):
    base, store, _, tmp = served
    dim = MIX.dim
    cases = [
        ("GET", "/api/rows/3000", None, 404, "3,000 committed rows"),
        ("GET", "/api/rows/abc", None, 404, "no such route: /api/rows/abc (rows, clusters and tile coordinates are integers"),
        ("GET", "/api/rows/-1", None, 404, "no such route"),
        ("GET", "/api/near?x=1", None, 400, "'y' is required"),
        ("GET", "/api/near?x=nan&y=0", None, 400, "finite"),
        ("GET", "/api/near?x=0&y=0&n=0", None, 400, "n='0': expected a finite number in [1, 100]"),
        ("GET", "/api/tiles/1/2/0.png", None, 404, "no tile 1/2/0"),
        ("GET", "/api/tiles/19/0/0.png", None, 404, "zoom 0..18"),
        ("GET", "/api/tiles/0/0/0.png?color=rainbow", None, 400, "color='rainbow'"),
        ("GET", "/api/clusters/999/members", None, 404, "no cluster 999"),
        ("GET", "/api/clusters/0/members?limit=1000", None, 400, "limit='1000'"),
        ("GET", "/api/images/0", None, 404, "no image"),  # its id is ../outside.png: outside the root
        ("GET", f"/api/images/{IMAGE_ROWS}", None, 404, "no image"),  # an id that is no file
        ("POST", "/api/predict", b"{not json", 400, "not valid JSON"),
        ("POST", "/api/predict", {"vectors": [[1.0, 2.0]]}, 422, f"dim {dim}"),
        ("POST", "/api/predict", {"vectors": []}, 422, "non-empty"),
        ("POST", "/api/predict", {"vectors": [[1.0] * dim, [1.0] * (dim - 1)]}, 422, "differ in length"),
        ("POST", "/api/predict", {"vectors": [["a"] * dim]}, 422, f"{dim} numbers"),
        ("POST", "/api/predict", b'{"vectors": [[NaN' + b", 0" * (dim - 1) + b"]]}", 422, "NaN or infinity"),
        ("POST", "/api/predict", b'{"vectors": [[Infinity' + b", 0" * (dim - 1) + b"]]}", 422, "NaN or infinity"),
        ("POST", "/api/predict", {"texts": []}, 422, "non-empty list of texts"),
        ("POST", "/api/predict", {"texts": ["a river"]}, 422, "send vectors instead"),  # no encoder recorded
        ("POST", "/api/predict", {"vectors": [[0.0] * dim], "texts": ["x"]}, 422, "either"),
        ("POST", "/api/predict", [1, 2], 422, "either"),
        ("POST", "/api/predict", {"vectors": [[0.0] * dim], "neighbors": 3}, 422, "either"),
        ("POST", "/api/predict", {"vectors": [[0.0] * dim], "neighbours": 101}, 422, "from 0 to 100"),
        ("POST", "/api/predict", {"vectors": [[0.0] * dim], "neighbours": True}, 422, "from 0 to 100"),
        ("GET", "/api/predict", None, 405, "Method Not Allowed"),
        ("GET", "/nowhere", None, 404, "no such route: /nowhere"),
    ]
    for method, path, body, code, message in cases:
        raw = body if isinstance(body, bytes) else None
        status, answer, _ = http(method, base + path, None if raw else body, raw=raw)
        assert status == code, (method, path, status, answer)
        assert validate(answer, "api-error") and message in answer["error"], (path, answer)
    for head, body in [  # bodies over the limit: declared (refused before reading), and streamed in chunks
            (f"Content-Length: {16 * 2**20 + 1}\r\n", b""),
            ("Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (16 * 2**20 + 1, b" " * (16 * 2**20 + 1)))]:
        status, payload = raw_request(base, f"POST /api/predict HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
        assert status == 413 and "over the limit of 16,777,216 bytes" in json.loads(payload)["error"]
    for path in ("/static/../serve.py", "/static/%2e%2e/serve.py", "/static/leaflet/../../tiles.py",
                 "/static/..%2f..%2fmodel.py", "/api/images/..%2f..%2foutside.png", "/../../etc/passwd"):
        status, payload = raw_get(base, path)
        assert 400 <= status < 500 and b"import" not in payload and b"root:" not in payload, (path, status)
    assert http("GET", base + "/api/info")[0] == 200  # still serving


def test_static_assets_and_thumbnails_are_served_from_the_package_only(served):
    base, _, images, _ = served
    status, page, _ = http("GET", base + "/")
    assert status == 200 and b"/static/leaflet/leaflet.js" in page and b"http" not in page.replace(b"http-equiv", b"")
    status, script, _ = http("GET", base + "/static/leaflet/leaflet.js")
    assert status == 200 and b"Leaflet" in script[:200]
    status, row, _ = http("GET", base + "/api/rows/1")
    assert row["image"] == "/api/images/1"
    status, png, headers = http("GET", base + row["image"])
    assert status == 200 and png == (images / "img" / "1.png").read_bytes()
    assert http("GET", base + "/api/rows/0")[1]["image"] is None  # ../outside.png


def test_the_server_is_live_and_never_takes_the_lock(served, tmp_path):
    base, store, _, _ = served
    _, before, _ = http("GET", base + "/api/info")
    np.save(tmp_path / "more.npy", MIX.batch(9, 500)[0])
    # these are writers: they would exit 75 if the server held the store's lock
    run_streamproc("ingest", store, tmp_path / "more.npy", "--no-ids", "--no-texts")
    assert http("GET", base + "/api/info")[1]["rows"] == 3500  # the next request sees the commit
    assert http("GET", base + "/api/rows/3499")[1]["label"] is None  # not labelled yet
    run_streamproc("classify", store)
    run_streamproc("project", store)
    assert http("GET", base + "/api/rows/3499")[1]["label"] is not None
    deadline = time.time() + 30  # the tile index is rebuilt in the background; the old one serves meanwhile
    while not http("GET", base + "/api/info")[1]["version"].startswith("3500-"):
        assert time.time() < deadline
        time.sleep(0.2)
    assert http("GET", base + "/api/info")[1]["version"] != before["version"]
    new_row = http("GET", base + "/api/rows/3499")[1]
    status, near, _ = http("GET", base + f"/api/near?x={new_row['x']}&y={new_row['y']}&n=1")
    assert near["rows"][0]["row"] == 3499


def test_predict_command_writes_nothing_and_matches_the_api(served, tmp_path):
    base, store, _, _ = served
    before = sorted(p.relative_to(store) for p in store.rglob("*")), (store / "manifest.json").read_text()
    rows = [3, 1200]
    np.save(tmp_path / "q.npy", store_vectors(store, rows))
    proc = run_streamproc("predict", store, "--vectors", tmp_path / "q.npy", "--json")
    out = validate(json.loads(proc.stdout), "predict")
    api = http("POST", base + "/api/predict", {"vectors": store_vectors(store, rows).tolist()})[1]
    assert out == api
    assert (sorted(p.relative_to(store) for p in store.rglob("*")), (store / "manifest.json").read_text()) == before
    text = run_streamproc("predict", store, "--vectors", tmp_path / "q.npy").stdout
    assert f"cluster {out['predictions'][0]['label']}" in text.splitlines()[0]


def test_predict_says_that_its_confidence_is_relative(served, tmp_path):
    """A query far from every cluster is flagged OUTLIER, yet its confidence (probability among the
    clusters) can be high: the human output says what each means, instead of leaving a confident
    outlier unexplained."""
    _, store, _, _ = served
    far = store_vectors(store, [3]) * 50
    np.save(tmp_path / "far.npy", far)
    out = json.loads(run_streamproc("predict", store, "--vectors", tmp_path / "far.npy", "--json").stdout)
    assert out["predictions"][0]["outlier"] is True
    text = run_streamproc("predict", store, "--vectors", tmp_path / "far.npy").stdout.splitlines()
    assert "OUTLIER" in text[0] and f"confidence {out['predictions'][0]['confidence']:.3f}" in text[0]
    assert "relative" in text[-1] and "probability among the model's clusters" in text[-1] and "99 %" in text[-1]
    assert "relative" in run_streamproc("predict", "--help").stdout


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "exactly one of --vectors, --text, --texts-file"),
    (["--vectors", "q.npy", "--text", "x"], 2, "exactly one"),
    (["--vectors", "missing.npy"], 1, "missing.npy: no such file"),
    (["--vectors", "wrong.npy"], 1, "expected vectors of dim 32, got dim 3"),
    (["--vectors", "nan.npy"], 1, "vector 1 holds NaN"),
    (["--vectors", "q.txt"], 1, "expected a .npy, .parquet or .csv"),
    (["--text", "a river"], 2, "send vectors instead"),
])
def test_predict_command_errors(served, tmp_path, args, code, message):
    _, store, _, _ = served
    np.save(tmp_path / "q.npy", np.zeros((2, 32), np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "nan.npy", np.array([[0.0] * 32, [np.nan] * 32], np.float32))
    (tmp_path / "q.txt").write_text("1 2 3")
    proc = run_streamproc("predict", store, *args, "--json", check=False, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    answer = validate(json.loads(proc.stdout), "error")
    assert message in answer["error"] and answer["exit_code"] == code


def test_predict_csv_and_parquet_vectors(served, tmp_path):
    _, store, _, _ = served
    vectors = store_vectors(store, [5, 6])
    import pandas as pd

    pd.DataFrame(vectors, columns=[f"v{i}" for i in range(32)]).to_csv(tmp_path / "q.csv", index=False)
    pd.DataFrame({"vector": list(vectors)}).to_parquet(tmp_path / "q.parquet")
    labels = stored(store, "labels", [5, 6]).tolist()
    for name in ("q.csv", "q.parquet"):
        out = json.loads(run_streamproc("predict", store, "--vectors", tmp_path / name, "--json").stdout)
        assert [p["label"] for p in out["predictions"]] == labels


def test_predict_vectors_beside_ids_as_ingest_reads_them(served, tmp_path):
    """A file laid out as ingest takes it (an id column beside the vectors; a named vector column
    among others): `predict` reads it with the same --id-column / --vector-column, and each
    prediction names its id. Without --id-column the id column is an error naming line and column."""
    _, store, _, _ = served
    vectors = store_vectors(store, [5, 6])
    import pandas as pd

    frame = pd.DataFrame(vectors, columns=[f"v{i}" for i in range(32)])
    frame.insert(0, "id", ["q5", "q6"])
    frame.to_csv(tmp_path / "q.csv", index=False)
    pd.DataFrame({"id": ["q5", "q6"], "other": list(vectors * 0), "vector": list(vectors)}).to_parquet(tmp_path / "q.parquet")
    labels = stored(store, "labels", [5, 6]).tolist()
    for name, extra in (("q.csv", []), ("q.parquet", ["--vector-column", "vector"])):
        out = validate(json.loads(run_streamproc("predict", store, "--vectors", tmp_path / name, "--id-column", "id",
                                                 *extra, "--json").stdout), "predict")
        assert [p["label"] for p in out["predictions"]] == labels
        assert [p["id"] for p in out["predictions"]] == ["q5", "q6"]
    proc = run_streamproc("predict", store, "--vectors", tmp_path / "q.csv", "--json", check=False)
    assert proc.returncode == 1 and "column 'id'" in json.loads(proc.stdout)["error"]


def test_texts_are_embedded_with_the_stores_encoder(tmp_path):
    """A store embedded from texts (the real all-MiniLM-L6-v2), mapped by UMAP: a stored text, asked again on
    the command line or over HTTP, gets the label classify stored for it and lands where project put it."""
    import pandas as pd

    texts = pd.read_csv(ROOT / "examples" / "texts" / "texts.csv")
    store = tmp_path / "store"
    run_streamproc("embed", store, ROOT / "examples" / "texts" / "texts.csv", "--text-column", "text", "--id-column", "id")
    run_streamproc("fit", store, "--k", "6", "--metric", "cosine")
    run_streamproc("classify", store)
    run_streamproc("project", store, "--method", "umap", "--sample", "200")
    rows = [0, 100, 200]
    expected = stored(store, "labels", rows).tolist()
    asked = texts["text"].iloc[rows].tolist()
    cli = json.loads(run_streamproc("predict", store, *[a for t in asked for a in ("--text", t)], "--json").stdout)
    assert [p["label"] for p in validate(cli, "predict")["predictions"]] == expected
    assert [p["neighbours"][0] for p in cli["predictions"]] == rows  # the text lands on its own row
    # where project placed it (within 0.05 of a map ~20 wide: the encoder's output differs in its last digits
    # with the batch it is in, and project places fitted rows from the reduced rows the fit stored)
    assert np.allclose([[p["x"], p["y"]] for p in cli["predictions"]], positions(store)[rows], atol=5e-2)
    texts.iloc[rows][["text"]].to_csv(tmp_path / "q.csv", index=False)
    from_file = json.loads(run_streamproc("predict", store, "--texts-file", tmp_path / "q.csv", "--json").stdout)
    assert from_file == cli
    with running_server(store, log=tmp_path / "serve.log") as base:
        assert http("GET", base + "/api/info")[1]["texts"] is True
        status, api, _ = http("POST", base + "/api/predict", {"texts": asked})
        assert status == 200 and [p["label"] for p in api["predictions"]] == expected
        assert np.allclose([[p["x"], p["y"]] for p in api["predictions"]], positions(store)[rows], atol=5e-2)
        assert http("POST", base + "/api/predict", {"texts": asked})[1] == api  # the kept UMAP placement: same answer
        assert np.allclose([p["probabilities"] for p in api["predictions"]],
                           [p["probabilities"] for p in cli["predictions"]], atol=1e-5)
        assert np.allclose([[p["x"], p["y"]] for p in api["predictions"]], [[p["x"], p["y"]] for p in cli["predictions"]],
                           atol=1e-5)
        status, answer, _ = http("POST", base + "/api/predict", {"texts": ["fine", "  "]})
        assert status == 422 and "text 1 is empty" in answer["error"]


def test_serve_refuses_what_it_cannot_serve(tmp_path, served):
    _, store, _, _ = served
    for args, code, message in [((tmp_path / "nowhere",), 1, "no such store"),
                                ((store, "--images-root", tmp_path / "nope"), 2, "no such folder"),
                                ((store, "--model", "m-unknown"), 1, "no model 'm-unknown'")]:
        proc = run_streamproc("serve", *args, "--port", "1", "--json", check=False)
        assert proc.returncode == code, proc.stderr
        answer = validate(json.loads(proc.stdout), "error")
        assert message in answer["error"] and answer["exit_code"] == code
