"""A small labelled, projected store and a real ``streamproc serve`` process, for the serve tests."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import validate

from streamproc.io.readers import ReadOptions
from streamproc.io.synth import Mixture, write_batches
from streamproc.pipeline.classify import classify
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.pipeline.project import project

MIX = Mixture(dim=32, clusters=5, rank=8, spread_rank=4, seed=5)
IMAGE_ROWS = 4  # the first rows' ids are image paths under the images root


def make_store(tmp: Path) -> tuple[Path, Path]:
    """A 3,000-row store with ids, texts, a model, labels and a PCA map; and an images root whose files
    the first rows' ids name (row 0's id points outside the root)."""
    paths = write_batches(tmp / "in", mixture=MIX, rows=3000, batch_rows=1000, fmt="parquet", texts=True)
    first = pd.read_parquet(paths[0])
    first.loc[: IMAGE_ROWS - 1, "id"] = ["../outside.png"] + [f"img/{i}.png" for i in range(1, IMAGE_ROWS)]
    first.to_parquet(paths[0])
    images = tmp / "images"
    (images / "img").mkdir(parents=True)
    from PIL import Image

    for i in range(1, IMAGE_ROWS):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(images / "img" / f"{i}.png")
    Image.new("RGB", (8, 8)).save(tmp / "outside.png")  # exists, but outside the root: never served
    store = tmp / "store"
    ingest(store, [tmp / "in"], chunk_rows=500, read_options=ReadOptions(id_column="id", text_column="text"))
    fit(store, FitOptions(ks=[3, 5], sample=2000))
    classify(store)
    project(store, method="pca")
    return store, images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(store: Path, *args: str, log: Path):
    """``python -m streamproc serve STORE --port P --json`` on 127.0.0.1; yields its base URL (checked against
    the URL it printed); stops it with SIGINT (Ctrl-C) at the end and checks it exits cleanly."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamproc", "serve", str(store), "--port", str(port), "--json",
                                 *args],
                                stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(base + "/api/info", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline, log.read_text()
                time.sleep(0.3)
        printed = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert printed[0]["url"] == base + "/", printed
        validate(printed[0], "serve")
        yield base
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("serve did not stop on Ctrl-C (SIGINT)") from None


def http(method: str, url: str, body=None, *, raw: bytes | None = None) -> tuple[int, dict | bytes, dict]:
    """One HTTP request; returns (status, JSON or bytes, headers)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, payload, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, payload, headers = exc.code, exc.read(), dict(exc.headers)
    if headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(payload), headers
    return status, payload, headers


def store_vectors(store: Path, rows) -> np.ndarray:
    import zarr

    return zarr.open_array(store / "vectors", mode="r")[:][np.asarray(rows)]
