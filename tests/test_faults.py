"""Fault injection: disk full (a small tmpfs), a read-only store, failed staged writes, the lock race
of a first ingest, hostile manifests and models, damaged chunks. After every fault the store passes
`streamproc check`, a rerun completes, every row carries the label a fault-free run gives, and
nothing outside the store changed.

Mount-based tests need root and a kernel that lets us mount tmpfs; they skip with the reason otherwise.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import run_streamproc, spawn_streamproc, validate, wait_for_flag

from streamproc.cli.main import main
from streamproc.io.readers import ReadOptions
from streamproc.io.synth import Mixture, write_batches
from streamproc.pipeline import classify as classify_module
from streamproc.pipeline import sources as sources_module
from streamproc.pipeline.fit import FitOptions, fit
from streamproc.pipeline.ingest import ingest
from streamproc.store import store as store_module
from streamproc.store.catalog import load_model
from streamproc.store.check import check_store

ROWS, DIM, CHUNK = 1800, 8, 128
COUNTS = {"injected": 0, "survived": 0, "rows_lost": 0}


@pytest.fixture(scope="module", autouse=True)
def fault_counts():
    yield COUNTS
    print(f"\nfaults injected {COUNTS['injected']}, survived {COUNTS['survived']}, rows lost {COUNTS['rows_lost']}")
    out = os.environ.get("STREAMPROC_FAULT_COUNTS")
    if out:
        Path(out).write_text(json.dumps(COUNTS))


def tree_hash(folder: Path) -> str:
    """A digest of every path, file content and symlink target below ``folder``."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(root) / name
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An inbox of 3 parquet files (ids, texts) and a store with them ingested and a model fitted."""
    root = tmp_path_factory.mktemp("base")
    write_batches(root / "inbox", mixture=Mixture(dim=DIM, clusters=4, seed=0), rows=ROWS, batch_rows=ROWS // 3,
                  fmt="parquet", texts=True)
    ingest(root / "store", [root / "inbox"], read_options=ReadOptions(id_column="id", text_column="text"),
           chunk_rows=CHUNK)
    fit(root / "store", FitOptions(ks=[3, 4], seed=0, sample=500, restarts=2))
    return root


def copy_store(base: Path, dest: Path) -> Path:
    shutil.copytree(base / "store", dest, symlinks=True)
    return dest


def cli_run(*args, code=None):
    """The command in this process (a traceback fails the test), ``--json``; returns (exit code, output)."""
    result = CliRunner().invoke(main, [*map(str, args), "--json"], catch_exceptions=False)
    data = json.loads(result.stdout)
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout)
    schema = "check" if args[0] == "check" else "error" if result.exit_code not in (0, 3) else args[0]
    validate(data, schema)
    return result.exit_code, data


def assert_sound(store: Path) -> None:
    report = check_store(store).to_dict()
    validate(report, "check")
    assert report["ok"], report["problems"]


def assert_labelled_exactly(store: Path) -> int:
    """Every committed row carries the label a fault-free labelling gives; returns rows checked."""
    manifest = json.loads((store / "manifest.json").read_text())
    model = load_model(store)
    watermark = manifest["models"][model.id]["watermark"]
    assert watermark == manifest["rows"]
    vectors = zarr.open_array(store / "vectors", mode="r")[:watermark]
    labels = zarr.open_array(store / "models" / model.id / "labels", mode="r")[:watermark]
    expected = model.label(vectors)
    np.testing.assert_array_equal(labels, expected["labels"])
    lost = int((labels != expected["labels"]).sum())
    COUNTS["rows_lost"] += lost
    return watermark


# ---- 1. the lock race of a first ingest ---------------------------------------------------------
def test_failed_first_ingest_keeps_the_lock_file_so_writers_never_overlap(tmp_path):
    """A first ingest that commits nothing held the lock while a second waited; a third starting while
    the second holds the lock must find it held (exit 75), not a fresh .lock of its own."""
    store, rng = tmp_path / "s", np.random.default_rng(1)
    bad = rng.standard_normal((300, 16)).astype(np.float32)
    bad[-1, 3] = np.inf
    good_b, good_c = (rng.standard_normal((300, 16)).astype(np.float32) for _ in range(2))
    for name, a in (("bad", bad), ("b", good_b), ("c", good_c)):
        np.save(tmp_path / f"{name}.npy", a)
    COUNTS["injected"] += 1
    first = spawn_streamproc("ingest", store, tmp_path / "bad.npy", text=True,
                             env={"STREAMPROC_TEST_PAUSE_AFTER_LOCK": str(tmp_path / "f1"), "STREAMPROC_TEST_PAUSE_SECONDS": "1"})
    wait_for_flag(tmp_path / "f1", first)
    second = spawn_streamproc("ingest", store, tmp_path / "b.npy", "--wait", "60", text=True,
                              env={"STREAMPROC_TEST_PAUSE_BEFORE_COMMIT": str(tmp_path / "f2"), "STREAMPROC_TEST_PAUSE_SECONDS": "3"})
    assert first.wait(60) == 1
    wait_for_flag(tmp_path / "f2", second)
    third = run_streamproc("ingest", store, tmp_path / "c.npy", "--json", check=False)
    assert third.returncode == 75, (third.stdout, third.stderr)
    assert second.wait(60) == 0, second.communicate()
    run_streamproc("ingest", store, tmp_path / "c.npy")
    assert_sound(store)
    vectors = zarr.open_array(store / "vectors", mode="r")[:]
    np.testing.assert_array_equal(vectors, np.concatenate([good_b, good_c]))
    COUNTS["survived"] += 1


# ---- 2. a failed staged write never lets its commit through -------------------------------------
@pytest.mark.parametrize("fail_at", [1, 2, 3, 5, 8, 13, 21, 28])
def test_failed_staged_write_in_classify_commits_nothing_past_it(base, tmp_path, cli, monkeypatch, fail_at):
    store = copy_store(base, tmp_path / "s")
    monkeypatch.setattr(classify_module, "COMMIT_ROWS", 256)
    monkeypatch.setattr(classify_module, "LABEL_CHUNK_ROWS", 256)
    monkeypatch.setattr(sources_module, "rows_per_block", lambda *args: 256)  # 7 blocks, 4 staged writes each
    monkeypatch.setattr(store_module, "_staged_writes", 0)
    monkeypatch.setenv("STREAMPROC_TEST_FAIL_STAGED_WRITE", str(fail_at))
    COUNTS["injected"] += 1
    out = cli.json("classify", store, code=1, schema="error")
    assert "No space left on device" in out["error"] and "\n" not in out["error"]
    manifest = json.loads((store / "manifest.json").read_text())
    watermark = manifest["models"][manifest["current_model"]]["watermark"]
    assert watermark < ROWS and watermark % 256 == 0
    assert_sound(store)
    monkeypatch.delenv("STREAMPROC_TEST_FAIL_STAGED_WRITE")
    assert cli.json("classify", store)["labelled"] == ROWS - watermark
    assert_sound(store)
    assert_labelled_exactly(store)
    COUNTS["survived"] += 1


def test_failed_staged_write_in_project(base, tmp_path, cli, monkeypatch):
    store = copy_store(base, tmp_path / "s")
    monkeypatch.setattr(store_module, "_staged_writes", 0)
    monkeypatch.setenv("STREAMPROC_TEST_FAIL_STAGED_WRITE", "1")
    COUNTS["injected"] += 1
    cli.json("project", store, "--method", "pca", code=1, schema="error")
    model = load_model(store)
    assert _manifest(store)["models"][model.id].get("projection") is None
    assert_sound(store)
    monkeypatch.delenv("STREAMPROC_TEST_FAIL_STAGED_WRITE")
    cli.json("project", store, "--method", "pca")
    assert_sound(store)
    manifest = _manifest(store)
    assert manifest["models"][model.id]["projection_watermark"] == ROWS
    projection = manifest["models"][model.id]["projection"]["array"]
    xy = zarr.open_array(store / "models" / model.id / projection, mode="r")[:]
    np.testing.assert_allclose(xy, model.transform(zarr.open_array(store / "vectors", mode="r")[:])[:, :2], rtol=1e-5)
    generations = [p.name for p in (store / "models" / model.id).iterdir() if p.name.startswith("projection-")]
    assert generations == [projection]  # the failed run's generation was removed by the next writer
    COUNTS["survived"] += 1


@pytest.mark.parametrize("fail_at", [1, 2, 3, 5])
def test_failed_staged_write_in_ingest(base, tmp_path, cli, monkeypatch, fail_at):
    store = copy_store(base, tmp_path / "s")
    more = np.random.default_rng(2).standard_normal((300, DIM)).astype(np.float32)
    np.save(tmp_path / "more.npy", more)
    monkeypatch.setattr(store_module, "_staged_writes", 0)
    monkeypatch.setenv("STREAMPROC_TEST_FAIL_STAGED_WRITE", str(fail_at))
    COUNTS["injected"] += 1
    out = cli.json("ingest", store, tmp_path / "more.npy", "--no-texts", "--no-ids", code=1, schema="error")
    assert "No space left on device" in out["error"]
    assert _manifest(store)["rows"] == ROWS
    assert_sound(store)
    monkeypatch.delenv("STREAMPROC_TEST_FAIL_STAGED_WRITE")
    cli.json("ingest", store, tmp_path / "more.npy", "--no-texts", "--no-ids")
    assert_sound(store)
    np.testing.assert_array_equal(zarr.open_array(store / "vectors", mode="r")[ROWS:], more)
    COUNTS["survived"] += 1


# ---- 3. disk full on a real filesystem, at many points --------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """A 12 MiB tmpfs mounted at tmp_path/mnt (root only)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12M", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int) -> Path:
    """Fill the filesystem so that about ``leave`` bytes stay free."""
    filler = mnt / "filler"
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
        except OSError:
            pass
    return filler


def free_bytes(mnt: Path) -> int:
    return os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize


OPERATIONS = {
    "ingest": lambda store, extra: ["ingest", store, extra / "more.npy", "--no-texts", "--no-ids"],
    "fit": lambda store, extra: ["fit", store, "--k", "3:4", "--sample", "500", "--restarts", "2"],
    "classify": lambda store, extra: ["classify", store],
    "project": lambda store, extra: ["project", store, "--method", "pca"],
    "export": lambda store, extra: ["export", store, "-o", extra / "labels.parquet"],
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_disk_full_at_many_points(base, tmpfs, tmp_path, cli, operation):
    """Run the operation once on a full disk for each of several amounts of free space, from none to
    nearly what it needs: each run succeeds or fails with the JSON error object, and the store stays sound."""
    extra = tmpfs / "extra"
    extra.mkdir()
    np.save(extra / "more.npy", np.random.default_rng(3).standard_normal((300, DIM)).astype(np.float32))
    sibling = tmpfs / "sibling"
    shutil.copytree(base / "inbox", sibling)
    sibling_hash = tree_hash(sibling)
    prepare = ["classify"] if operation == "export" else []
    store = copy_store(base, tmpfs / "store")
    for step in prepare:
        cli.json(step, store)
    before = free_bytes(tmpfs)
    cli.json(*OPERATIONS[operation](store, extra))  # measure what a fault-free run needs, then start over
    needed = max(before - free_bytes(tmpfs), 4096)
    shutil.rmtree(store)
    (extra / "labels.parquet").unlink(missing_ok=True)
    levels = sorted({0, 4096, 16384, *(int(needed * f) for f in (0.1, 0.3, 0.5, 0.7, 0.9))})
    failures = 0
    for leave in levels:
        store = copy_store(base, tmpfs / "store")
        for step in prepare:
            cli.json(step, store)
        filler = fill(tmpfs, leave)
        COUNTS["injected"] += 1
        result = cli(*OPERATIONS[operation](store, extra), "--json", code=None)
        assert result.exit_code in (0, 1), result.output
        data = json.loads(result.stdout)
        if result.exit_code == 1:
            failures += 1
            validate(data, "error")
            assert "\n" not in data["error"]
        filler.unlink()
        assert_sound(store)
        cli.json(*OPERATIONS[operation](store, extra))  # the rerun completes
        assert_sound(store)
        _verify_after(operation, store, extra)
        assert tree_hash(sibling) == sibling_hash
        assert not list(extra.glob(".*.tmp"))
        COUNTS["survived"] += 1
        shutil.rmtree(store)
    assert failures >= 2, f"the disk never ran full for {operation} (levels {levels}, needed {needed})"


def test_disk_full_while_fit_writes_the_one_read_projection(tmpfs, cli):
    """Pass 1 of a one-read fit writes every row's projection into the model's staging folder (the
    base store's 8-d vectors are too narrow for a projection, so this store is 64-d with a 6-d
    signal): on a disk that fills at several points the fit succeeds or fails with the JSON error
    object, the store stays sound, no staging folder outlives the run, and the rerun completes."""
    from streamproc.io.synth import Mixture

    x, _ = Mixture(dim=64, clusters=4, rank=6, spread_rank=4, seed=2).batch(0, 6000)
    np.save(tmpfs / "x.npy", x.astype(np.float32))
    source = tmpfs / "source"
    ingest(source, [tmpfs / "x.npy"], chunk_rows=250)
    (tmpfs / "x.npy").unlink()
    command = ["fit", None, "--k", "3:4", "--sample", "500", "--restarts", "2", "--one-read"]
    store = tmpfs / "store"
    shutil.copytree(source, store)
    before = free_bytes(tmpfs)
    assert cli.json(*[store if a is None else a for a in command])["vector_reads"] == 1
    needed = before - free_bytes(tmpfs)
    shutil.rmtree(store)
    failures = 0
    for leave in sorted({0, 16384, *(int(needed * f) for f in (0.2, 0.4, 0.6, 0.8))}):
        shutil.copytree(source, store)
        filler = fill(tmpfs, leave)
        result = cli(*[store if a is None else a for a in command], "--json", code=None)
        assert result.exit_code in (0, 1), result.output
        if result.exit_code == 1:
            failures += 1
            assert "\n" not in validate(json.loads(result.stdout), "error")["error"]
        filler.unlink()
        assert_sound(store)
        assert not list((store / "models").glob(".staging-*"))
        cli.json(*[store if a is None else a for a in command])
        assert_sound(store)
        shutil.rmtree(store)
    assert failures >= 2, f"the disk never ran full (needed {needed})"


def _verify_after(operation: str, store: Path, extra: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    if operation == "ingest":
        assert manifest["rows"] == ROWS + 300 and len(manifest["batches"]) == 4
        np.testing.assert_array_equal(zarr.open_array(store / "vectors", mode="r")[ROWS:], np.load(extra / "more.npy"))
    elif operation == "fit":
        assert len(manifest["models"]) == 2
        assert not [p for p in (store / "models").iterdir() if p.name not in manifest["models"]]
    elif operation == "classify":
        assert_labelled_exactly(store)
    elif operation == "project":
        model_id = manifest["current_model"]
        assert manifest["models"][model_id]["projection_watermark"] == ROWS
    elif operation == "export":
        import pyarrow.parquet as pq

        assert pq.read_table(extra / "labels.parquet").num_rows == ROWS


# ---- 4. a read-only store -----------------------------------------------------------------------
def test_read_only_store_every_writer_fails_with_one_line(base, tmp_path):
    store = copy_store(base, tmp_path / "s")
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    if subprocess.run(["mount", "--bind", str(store), str(ro)], capture_output=True).returncode != 0:
        pytest.skip("mount --bind refused here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("remount,ro refused here")
        np.save(tmp_path / "more.npy", np.ones((10, DIM), np.float32))
        for args in (["ingest", ro, tmp_path / "more.npy"], ["classify", ro], ["fit", ro, "--k", "3"],
                     ["project", ro, "--method", "pca"], ["models", "remove", ro, "--all-but-current"]):
            COUNTS["injected"] += 1
            code, data = cli_run(*args, code=1)
            assert "Read-only file system" in data["error"], data
            COUNTS["survived"] += 1
        assert cli_run("check", ro, code=0)[1]["ok"]
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    assert_sound(store)


# ---- 5. hostile manifests and models ------------------------------------------------------------
def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def _write_manifest(store: Path, data: dict) -> None:
    (store / "manifest.json").write_text(json.dumps(data))


def _damage(data: dict, how: str) -> dict:
    model_id = data["current_model"]
    model = data["models"][model_id]
    cases = {
        "model id traversal": lambda: data.update(models={"../../victim": model}, current_model="../../victim"),
        "current_model outside": lambda: data.update(current_model="../../../victim"),
        "current_model not listed": lambda: data.update(current_model="m-unknown"),
        "projection traversal": lambda: model.update(projection={"method": "pca", "array": "../../../victim"},
                                                     projection_watermark=0),
        "batch id traversal": lambda: data["batches"][0].update(id="../x"),
        "column traversal": lambda: data.update(columns=["../../victim"]),
        "rows negative": lambda: data.update(rows=-5),
        "rows a string": lambda: data.update(rows="1800"),
        "dim zero": lambda: data.update(dim=0),
        "dtype unknown": lambda: data.update(dtype="object"),
        "watermark past rows": lambda: model.update(watermark=10**9),
        "watermark negative": lambda: model.update(watermark=-1),
        "batch stop before start": lambda: data["batches"][1].update(stop=0),
        "batches not a list": lambda: data.update(batches={"a": 1}),
        "batch missing key": lambda: data["batches"][0].pop("start"),
        "models a list": lambda: data.update(models=[]),
        "not an object": None,
    }
    if cases[how] is None:
        return [data]
    cases[how]()
    return data


HOSTILE = ["model id traversal", "current_model outside", "current_model not listed", "projection traversal",
           "batch id traversal", "column traversal", "rows negative", "rows a string", "dim zero", "dtype unknown",
           "watermark past rows", "watermark negative", "batch stop before start", "batches not a list",
           "batch missing key", "models a list", "not an object"]


@pytest.mark.parametrize("how", HOSTILE)
def test_hostile_manifest_is_refused_in_one_line(base, tmp_path, how):
    """Every command refuses a damaged or hostile manifest with StoreError, and nothing outside changes."""
    root = tmp_path / "a" / "b" / "c"
    store = copy_store(base, root / "s")
    victim = tmp_path / "a" / "b" / "victim"
    victim.mkdir()
    zarr.create_array(victim, data=np.arange(10), chunks=(5,))
    sibling = root / "sibling"
    shutil.copytree(base / "inbox", sibling)
    outside = tree_hash(victim), tree_hash(sibling)
    original = (store / "manifest.json").read_text()
    _write_manifest(store, _damage(_manifest(store), how))
    np.save(tmp_path / "more.npy", np.ones((10, DIM), np.float32))
    COUNTS["injected"] += 1
    for args in (["ingest", store, tmp_path / "more.npy", "--no-texts", "--no-ids"], ["classify", store],
                 ["info", store], ["check", store], ["models", "remove", store, "--all-but-current"]):
        code, data = cli_run(*args)
        assert code == 1, (args, data)
        message = data["error"] if "error" in data else data["problems"][0]["problem"]
        assert "damaged manifest" in message or "not a streamproc manifest" in message, message
    (store / "manifest.json").write_text(original)
    assert (tree_hash(victim), tree_hash(sibling)) == outside
    assert_sound(store)
    COUNTS["survived"] += 1


def test_symlinks_out_of_the_store_are_never_followed(base, tmp_path):
    store = copy_store(base, tmp_path / "s")
    outside = tmp_path / "outside"
    shutil.move(store / "models", outside)
    (outside / "someone-elses-folder").mkdir()
    (outside / "someone-elses-folder" / "notes.txt").write_text("keep me")
    (store / "models").symlink_to(outside)
    before = tree_hash(outside)
    COUNTS["injected"] += 1
    for args in (["classify", store], ["ingest", store, base / "inbox", "--id-column", "id", "--text-column", "text"],
                 ["models", store]):
        code, data = cli_run(*args, code=1)
        assert "outside the store" in data["error"], data
    assert tree_hash(outside) == before
    code, data = cli_run("check", store, code=1)
    assert any("outside the store" in p["problem"] for p in data["problems"])
    COUNTS["survived"] += 1


def test_models_remove_deletes_nothing_outside_the_store(base, tmp_path):
    """models remove deletes folders: a hostile id, or models/ symlinked elsewhere, is refused and
    nothing outside the store is touched."""
    store = copy_store(base, tmp_path / "s")
    old = fit(store, FitOptions(ks=[3], seed=1, sample=500, restarts=1)).model.id  # not current
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep me")
    COUNTS["injected"] += 1
    for hostile in ("../../victim", "../victim", "/tmp", "."):
        code, data = cli_run("models", "remove", store, hostile, code=2)  # a usage error: not a model id
        assert f"invalid model id {hostile!r}" in data["error"], data
    outside = tmp_path / "outside"
    shutil.move(store / "models", outside)
    (store / "models").symlink_to(outside)
    before = tree_hash(outside), tree_hash(victim)
    code, data = cli_run("models", "remove", store, old, code=1)
    assert "outside the store" in data["error"], data
    assert (tree_hash(outside), tree_hash(victim)) == before
    COUNTS["survived"] += 1


def test_only_folders_the_store_created_are_removed(base, tmp_path, cli):
    """A user's folder under models/ stays; a staging folder of a live process or another host stays; a
    dead process's staging folder on this host and an old projection generation go."""
    import socket

    store = copy_store(base, tmp_path / "s")
    models = store / "models"
    model_id = _manifest(store)["current_model"]
    (models / "my-notes").mkdir()
    (models / "my-notes" / "n.txt").write_text("mine")
    host = socket.gethostname()
    keep = [models / f".staging-m1@{host}@{os.getpid()}", models / ".staging-m2@other-host@1"]
    dead = models / f".staging-m3@{host}@999999999"
    unmarked = models / f".staging-m4@{host}@999999998"
    for folder in (*keep, dead, unmarked):
        folder.mkdir()
    for folder in (*keep, dead):
        (folder / store_module.CREATED_MARKER).touch()
    old_generation = models / model_id / "projection-pca-20200101000000-1"
    old_generation.mkdir()
    cli.json("classify", store)
    assert (models / "my-notes" / "n.txt").read_text() == "mine"
    assert all(folder.exists() for folder in keep) and unmarked.exists()
    assert not dead.exists() and not old_generation.exists()


@pytest.mark.parametrize("damage", ["nan centroids", "zero scale", "inf quantiles", "wrong shape",
                                    "negative fit rows", "model.json not json", "array missing"])
def test_damaged_model_is_refused(base, tmp_path, damage):
    store = copy_store(base, tmp_path / "s")
    model_dir = store / "models" / _manifest(store)["current_model"]

    def rewrite(name, fn):
        arr = zarr.open_array(model_dir / name, mode="r")[...]
        zarr.create_array(model_dir / name, data=fn(arr), chunks=arr.shape or (1,), overwrite=True)

    def edit_meta(fn):
        meta = json.loads((model_dir / "model.json").read_text())
        fn(meta)
        (model_dir / "model.json").write_text(json.dumps(meta))

    {"nan centroids": lambda: rewrite("centroids", lambda a: np.where(a == a.max(), np.nan, a)),
     "zero scale": lambda: rewrite("scale", lambda a: a * 0),
     "inf quantiles": lambda: rewrite("quantiles", lambda a: a + np.inf),
     "wrong shape": lambda: rewrite("pca_mean", lambda a: a[:-1]),
     "negative fit rows": lambda: edit_meta(lambda m: m.update(fit_rows=[5, 1])),
     "model.json not json": lambda: (model_dir / "model.json").write_text("{oops"),
     "array missing": lambda: shutil.rmtree(model_dir / "centroids")}[damage]()
    COUNTS["injected"] += 1
    code, data = cli_run("classify", store, code=1)
    assert "damaged model" in data["error"], data
    code, data = cli_run("check", store, code=1)
    assert any("damaged model" in p["problem"] for p in data["problems"])
    COUNTS["survived"] += 1


# ---- 6. damaged chunks --------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted", "truncated", "flipped bit"])
@pytest.mark.parametrize("array", ["vectors", "texts", "labels"])
def test_damaged_chunk_is_an_error_never_zeros(base, tmp_path, cli, damage, array):
    store = copy_store(base, tmp_path / "s")
    model_id = _manifest(store)["current_model"]
    if array == "labels":
        cli.json("classify", store)
    folder = store / ("models/" + model_id + "/labels" if array == "labels" else array)
    chunk = folder / "c" / ("2/0" if array == "vectors" else "0")
    if damage == "deleted":
        chunk.unlink()
    elif damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:-9])
    else:
        raw = bytearray(chunk.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        chunk.write_bytes(bytes(raw))
    COUNTS["injected"] += 1
    data = cli.json("check", store, code=1, schema="check")
    [problem] = data["problems"]
    assert problem["array"] == str(folder.relative_to(store))
    expected_rows = {"vectors": [2 * CHUNK, 3 * CHUNK], "texts": [0, CHUNK], "labels": [0, ROWS]}[array]
    assert problem["rows"] == expected_rows, problem
    if array == "vectors":
        out = cli.json("fit", store, "--k", "3", code=1, schema="error")
        assert "vectors" in out["error"] and "rows [256, 384)" in out["error"], out
    elif array == "labels":
        out = cli.json("export", store, "-o", tmp_path / "l.csv", code=1, schema="error")
        assert "labels" in out["error"]
    COUNTS["survived"] += 1


# ---- 7. one-line errors instead of tracebacks and stalls ---------------------------------------
def test_zero_width_npy_fails_that_file_and_the_inbox_run_goes_on(tmp_path, cli):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    np.save(inbox / "a.npy", np.zeros((10, 0), np.float32))
    np.save(inbox / "b.npy", np.ones((10, 4), np.float32))
    out = cli.json("ingest", tmp_path / "s", inbox, code=1, schema="ingest")
    status = {Path(b["source"]).name: b["status"] for b in out["batches"]}
    assert status == {"a.npy": "failed", "b.npy": "committed"}
    assert "dimension 0" in out["batches"][0]["error"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"v": pa.array([[]] * 5, pa.list_(pa.float32()))}), tmp_path / "empty-lists.parquet")
    out = cli.json("ingest", tmp_path / "s2", tmp_path / "empty-lists.parquet", code=1, schema="ingest")
    assert "no values" in out["batches"][0]["error"]
    assert not (tmp_path / "s2" / "manifest.json").exists() and (tmp_path / "s2" / ".lock").exists()


def test_fifo_is_refused_before_the_lock(tmp_path):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    proc = run_streamproc("ingest", tmp_path / "s", fifo, "--json", check=False, timeout=30)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and "not a regular file" in data["batches"][0]["error"]


@pytest.mark.parametrize("args", [["classify", "S", "--wait", "nan"], ["classify", "S", "--wait", "-1"],
                                  ["render", "S", "-o", "m.png", "--width", "100000"],
                                  ["ingest", "S"], ["classify", "S", "--no-such-option"]])
def test_usage_errors_honour_json(tmp_path, cli, args):
    out = cli.json(*[tmp_path / "s" if a == "S" else a for a in args], code=2, schema="error")
    assert out["exit_code"] == 2 and "\n" not in out["error"]


def test_csv_nan_is_non_finite_and_bad_values_are_echoed_short(tmp_path, cli):
    (tmp_path / "a.csv").write_text("x,y\n1,2\nnan,3\n4,5\n")
    out = cli.json("ingest", tmp_path / "s", tmp_path / "a.csv", code=1, schema="ingest")
    assert "NaN or Inf" in out["batches"][0]["error"]
    out = cli.json("ingest", tmp_path / "s", tmp_path / "a.csv", "--drop-nonfinite", schema="ingest")
    assert out["rows"] == 2 and out["batches"][0]["dropped"] == 1
    (tmp_path / "b.csv").write_text("x,y\n1,2\n" + "z" * 5000 + ",3\n")
    out = cli.json("ingest", tmp_path / "s", tmp_path / "b.csv", code=1, schema="ingest")
    error = out["batches"][0]["error"]
    assert "line 3" in error and "zzz..." in error and len(error) < len(str(tmp_path)) + 200


def test_damaged_manifest_bytes_are_a_one_line_error(base, tmp_path):
    store = copy_store(base, tmp_path / "s")
    for text in ("", "[1, 2]", '"x"', "\xff\xfe", '{"format": "streamproc", "format_version": 1}'):
        (store / "manifest.json").write_bytes(text.encode("latin-1"))
        code, data = cli_run("info", store, code=1)
        assert "manifest" in data["error"]


# ---- 8. work is never thrown away: fit waits for the lock at commit -----------------------------
def test_fit_waits_for_the_lock_at_commit_by_default(base, tmp_path):
    store = copy_store(base, tmp_path / "s")
    holder = spawn_streamproc("ingest", store, base / "inbox", "--id-column", "id", "--text-column", "text",
                              text=True, env={"STREAMPROC_TEST_PAUSE_AFTER_LOCK": str(tmp_path / "f"),
                                              "STREAMPROC_TEST_PAUSE_SECONDS": "4"})
    wait_for_flag(tmp_path / "f", holder)
    COUNTS["injected"] += 1
    code, data = cli_run("fit", store, "--k", "3", "--sample", "500", "--restarts", "1", code=0)
    assert holder.wait(30) == 0
    assert len(_manifest(store)["models"]) == 2
    COUNTS["survived"] += 1


# ---- 9. texts and ids are never dropped silently ----------------------------------------------
def test_batch_without_texts_is_refused_unless_no_texts(base, tmp_path, cli):
    store = copy_store(base, tmp_path / "s")
    np.save(tmp_path / "more.npy", np.ones((10, DIM), np.float32))
    out = cli.json("ingest", store, tmp_path / "more.npy", code=1, schema="ingest")
    assert "--no-ids --no-texts" in out["batches"][0]["error"] and _manifest(store)["rows"] == ROWS
    cli.json("ingest", store, tmp_path / "more.npy", "--no-texts", "--no-ids", schema="ingest")
    assert _manifest(store)["batches"][-1]["missing"] == ["ids", "texts"]
    cli.json("classify", store)
    cli.json("export", store, "-o", tmp_path / "l.parquet", schema="export")
    import pyarrow.parquet as pq

    ids = pq.read_table(tmp_path / "l.parquet").column("id")
    assert ids.null_count == 10 and ids[ROWS - 1].as_py() != ""


# ---- 10. the demo never deletes a folder it did not make ----------------------------------------
def test_demo_refuses_a_non_empty_folder(tmp_path, cli):
    (tmp_path / "mine.txt").write_text("keep")
    out = cli.json("demo", tmp_path, "--rows", "1000", code=2, schema="error")
    assert "not made by" in out["error"] and (tmp_path / "mine.txt").read_text() == "keep"
    from streamproc.demo import DEMO_MARKER, prepare_folder

    demo = tmp_path / "demo"
    prepare_folder(demo)
    (demo / "store").mkdir()
    (demo / "notes.txt").write_text("mine too")
    prepare_folder(demo)  # an earlier demo's folder: its outputs go, nothing else
    assert (demo / DEMO_MARKER).exists() and not (demo / "store").exists() and (demo / "notes.txt").exists()


def test_dead_export_temp_files_are_cleaned_by_the_next_export(base, tmp_path, cli):
    store = copy_store(base, tmp_path / "s")
    cli.json("classify", store)
    stale = tmp_path / ".labels.csv.999999999.tmp"
    stale.write_text("half")
    other = tmp_path / ".labels.csv.notes.tmp"
    other.write_text("not ours")
    cli.json("export", store, "-o", tmp_path / "labels.csv")
    assert not stale.exists() and other.exists()


def test_arrays_written_before_checksums_read_as_before(tmp_path):
    """Stores of earlier versions (no crc32c, chunks of fill values never written) stay readable;
    the same damage to a checksummed array is an error."""
    from streamproc.errors import StoreError
    from streamproc.store.integrity import checksummed, read_rows

    legacy = zarr.create_array(tmp_path / "legacy", shape=(20,), chunks=(5,), dtype="int32")
    current = zarr.create_array(tmp_path / "current", shape=(20,), chunks=(5,), dtype="int32",
                                compressors=checksummed())
    for arr, name in ((legacy, "legacy"), (current, "current")):
        arr[:] = np.arange(20)
        (tmp_path / name / "c" / "1").unlink()
    assert read_rows(tmp_path / "legacy", legacy, 0, 20).tolist() == [*range(5), *[0] * 5, *range(10, 20)]
    with pytest.raises(StoreError, match=r"rows \[5, 10\) are missing"):
        read_rows(tmp_path / "current", current, 0, 20)


def test_check_finds_labels_that_are_no_cluster_of_their_model(base, tmp_path):
    """A labels chunk whose checksum is right but which holds a value that is no cluster id of its
    model (written by another tool, say): check names the array, the row and the id."""
    store = copy_store(base, tmp_path / "s")
    cli_run("classify", store)
    assert check_store(store).to_dict()["ok"]
    model_id = _manifest(store)["current_model"]
    labels = zarr.open_array(store / "models" / model_id / "labels", mode="r+")
    labels[7] = 999
    code, data = cli_run("check", store, code=1)
    [problem] = data["problems"]
    assert problem["array"] == f"models/{model_id}/labels" and problem["rows"][0] <= 7 < problem["rows"][1]
    assert "row 7 holds cluster id 999" in problem["problem"], problem
