"""streamproc ingest and info through the CLI: every format, every kind of bad input."""

import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from conftest import store_state


def test_ingest_directory_creates_store_and_is_idempotent(cli, tmp_path, npy_batches):
    folder, expected = npy_batches
    (folder / "notes.txt").write_text("not a batch")
    store = tmp_path / "store"
    out = cli.json("ingest", store, folder, schema="ingest")
    assert [b["status"] for b in out["batches"]] == ["committed"] * 3
    assert out["rows"] == len(expected)
    np.testing.assert_array_equal(zarr.open_array(store / "vectors", mode="r")[:], expected)

    again = cli.json("ingest", store, folder, schema="ingest")
    assert [b["status"] for b in again["batches"]] == ["duplicate"] * 3
    assert again["rows"] == len(expected)

    # same content under another name and mtime: recognised by its hash
    copy = tmp_path / "copy.npy"
    copy.write_bytes((folder / "b1.npy").read_bytes())
    assert cli.json("ingest", store, copy)["batches"][0]["status"] == "duplicate"

    info = cli.json("info", store, schema="info")
    assert info["rows"] == len(expected) and info["dim"] == 16 and info["dtype"] == "float32"
    assert [(b["start"], b["stop"]) for b in info["batches"]] == [(0, 100), (100, 210), (210, 330)]
    assert info["models"] == []


def test_human_output_names_every_batch(cli, tmp_path, npy_batches):
    folder, _ = npy_batches
    result = cli("ingest", tmp_path / "s", folder)
    assert "3 committed, 0 duplicate, 0 failed; store has 330 rows" in result.stdout
    assert "b000003" in cli("info", tmp_path / "s").stdout


def test_npz_with_ids_and_texts(cli, tmp_path):
    vectors = np.arange(40, dtype=np.float32).reshape(10, 4)
    ids = np.array([f"id{i}" for i in range(10)])
    texts = np.array([f"text number {i}" for i in range(10)])
    np.savez_compressed(tmp_path / "a.npz", emb=vectors, ids=ids, texts=texts)
    store = tmp_path / "s"
    cli.json("ingest", store, tmp_path / "a.npz", "--array", "emb", "--id-column", "ids", "--text-column", "texts")
    assert zarr.open_array(store / "ids", mode="r")[:].tolist() == ids.tolist()
    assert zarr.open_array(store / "texts", mode="r")[3] == "text number 3"
    np.testing.assert_array_equal(zarr.open_array(store / "vectors", mode="r")[:], vectors)
    # info names the same columns beside the vectors as info --json
    assert cli.json("info", store, schema="info")["columns"] == ["ids", "texts"]
    line = next(line for line in cli("info", store).stdout.splitlines() if line.startswith("columns"))
    assert line.split(None, 1)[1] == "ids, texts (beside the vectors)"


def test_npz_with_several_arrays_needs_array_option(cli, tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((3, 4)), y=np.ones((3, 4)))
    out = cli.json("ingest", tmp_path / "s", tmp_path / "a.npz", code=1, schema="ingest")
    assert "choose one with --array" in out["batches"][0]["error"]


def test_parquet_list_column_and_numeric_columns(cli, tmp_path):
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    table = pa.table({"id": [f"p{i}" for i in range(50)], "text": ["hello"] * 50,
                      "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 8)})
    pq.write_table(table, tmp_path / "a.parquet")
    store = tmp_path / "s"
    cli.json("ingest", store, tmp_path / "a.parquet", "--id-column", "id", "--text-column", "text")
    np.testing.assert_allclose(zarr.open_array(store / "vectors", mode="r")[:], vectors)
    wide = pd.DataFrame(vectors, columns=[f"c{j}" for j in range(8)]).assign(name=[f"q{i}" for i in range(50)])
    wide.to_parquet(tmp_path / "b.parquet")
    cli.json("ingest", store, tmp_path / "b.parquet", "--id-column", "name", "--no-texts")
    assert zarr.open_array(store / "ids", mode="r")[50:52].tolist() == ["q0", "q1"]


def test_csv_numeric_columns_and_vector_column(cli, tmp_path):
    vectors = np.round(np.random.default_rng(0).standard_normal((20, 3)), 4)
    df = pd.DataFrame(vectors, columns=["a", "b", "c"])
    df.insert(0, "id", [f"c{i}" for i in range(20)])
    df.to_csv(tmp_path / "a.csv", index=False)
    store = tmp_path / "s"
    cli.json("ingest", store, tmp_path / "a.csv", "--id-column", "id")
    np.testing.assert_allclose(zarr.open_array(store / "vectors", mode="r")[:], vectors, rtol=1e-6)
    pd.DataFrame({"v": ["[1, 2, 3]", "[4, 5, 6]"]}).to_csv(tmp_path / "b.csv", index=False)
    cli.json("ingest", store, tmp_path / "b.csv", "--vector-column", "v", "--no-ids")
    assert zarr.open_array(store / "vectors", mode="r")[-1].tolist() == [4, 5, 6]


def test_npy_with_id_column_is_usage_error(cli, tmp_path, npy_batches):
    folder, _ = npy_batches
    out = cli.json("ingest", tmp_path / "s", folder / "b0.npy", "--id-column", "x", code=2, schema="error")
    assert "--id-column" in out["error"]


def _bad_inputs(tmp_path):
    """(file, expected words in the error) for every kind of bad input."""
    d = tmp_path / "bad"
    d.mkdir()
    cases = []
    np.save(d / "wrongdim.npy", np.ones((5, 7), np.float32)); cases.append(("wrongdim.npy", "expected dim 16"))
    a = np.ones((5, 16), np.float32); a[3, 2] = np.nan
    np.save(d / "nan.npy", a); cases.append(("nan.npy", "row 3, column 2: NaN or Inf"))
    np.save(d / "empty.npy", np.ones((0, 16), np.float32)); cases.append(("empty.npy", "empty"))
    np.save(d / "object.npy", np.array([[{"x": 1}] * 16] * 2, dtype=object), allow_pickle=True)
    cases.append(("object.npy", "object"))
    np.save(d / "strings.npy", np.array([["a"] * 16] * 2)); cases.append(("strings.npy", "numeric"))
    full = (tmp_path / "inbox" / "b0.npy").read_bytes()
    (d / "truncated.npy").write_bytes(full[: len(full) // 2]); cases.append(("truncated.npy", "truncated"))
    (d / "garbage.npy").write_bytes(b"this is not numpy"); cases.append(("garbage.npy", "not a readable .npy"))
    (d / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n"); cases.append(("ragged.csv", "ragged"))
    (d / "nonnum.csv").write_text("a,b\n1,2\n3,x\n"); cases.append(("nonnum.csv", "line 3, column 'b'"))
    (d / "noheader.csv").write_text("1,2\n3,4\n"); cases.append(("noheader.csv", "header"))
    (d / "emptyfile.csv").write_text(""); cases.append(("emptyfile.csv", "empty"))
    (d / "latin1.csv").write_bytes("a,b,t\n1,2,caf\xe9\n".encode("latin-1")); cases.append(("latin1.csv", "UTF-8"))
    np.savez(d / "dupids.npz", v=np.ones((3, 16), np.float32), ids=np.array(["x", "y", "x"]))
    cases.append(("dupids.npz", "row 2: id 'x' appears twice"))
    (d / "broken.npz").write_bytes(b"PK\x03\x04broken"); cases.append(("broken.npz", "npz"))
    (d / "broken.parquet").write_bytes(b"PAR1 nope"); cases.append(("broken.parquet", "parquet"))
    return d, cases


def test_every_bad_input_fails_alone_and_leaves_store_unchanged(cli, tmp_path, npy_batches):
    folder, _ = npy_batches
    store = tmp_path / "store"
    cli.json("ingest", store, folder)
    before = store_state(store)
    bad_dir, cases = _bad_inputs(tmp_path)
    for name, words in cases:
        extra = ["--id-column", "ids"] if name.endswith(".npz") else []
        out = cli.json("ingest", store, bad_dir / name, *extra, code=1, schema="ingest")
        (batch,) = out["batches"]
        assert batch["status"] == "failed"
        assert name in batch["error"] and words in batch["error"], (name, batch["error"])
        assert "\n" not in batch["error"]
        after = store_state(store)
        assert after[0] == before[0], name
        np.testing.assert_array_equal(after[1], before[1])


def test_bad_file_among_good_ones(cli, tmp_path, npy_batches):
    folder, expected = npy_batches
    np.save(folder / "b1x.npy", np.ones((4, 3), np.float32))  # wrong dim, sorted between b1 and b2
    result = cli("ingest", tmp_path / "s", folder, code=1)
    assert "3 committed, 0 duplicate, 1 failed" in result.stdout
    assert cli.json("info", tmp_path / "s")["rows"] == len(expected)


def test_drop_nonfinite_reports_count(cli, tmp_path):
    a = np.ones((6, 4), np.float32)
    a[1, 0] = np.inf
    a[4, 3] = np.nan
    np.save(tmp_path / "a.npy", a)
    out = cli.json("ingest", tmp_path / "s", tmp_path / "a.npy", "--drop-nonfinite")
    assert out["batches"][0]["dropped"] == 2 and out["rows"] == 4


def test_float16_storage_and_range_check(cli, tmp_path):
    np.save(tmp_path / "a.npy", np.full((3, 4), 0.5, np.float32))
    np.save(tmp_path / "big.npy", np.full((3, 4), 1e6, np.float32))
    store = tmp_path / "s"
    cli.json("ingest", store, tmp_path / "a.npy", "--dtype", "float16")
    assert zarr.open_array(store / "vectors", mode="r").dtype == np.float16
    out = cli.json("ingest", store, tmp_path / "big.npy", code=1)
    assert "float16 range" in out["batches"][0]["error"]


def test_min_age_skips_young_files(cli, tmp_path, npy_batches):
    folder, _ = npy_batches
    out = cli.json("ingest", tmp_path / "s", folder / "b0.npy", "--min-age", "3600")
    assert out["batches"][0]["status"] == "skipped"
    old = time.time() - 7200
    os.utime(folder / "b0.npy", (old, old))
    assert cli.json("ingest", tmp_path / "s", folder / "b0.npy", "--min-age", "3600")["rows"] == 100


def test_chunk_rows_fixed_by_first_ingest(cli, tmp_path, npy_batches):
    folder, _ = npy_batches
    cli.json("ingest", tmp_path / "s", folder, "--chunk-rows", "64")
    assert zarr.open_array(tmp_path / "s" / "vectors", mode="r").chunks == (64, 16)
    assert cli.json("info", tmp_path / "s")["chunk_rows"] == 64


def _ingest_peak(tmp_path, rows, dim=256):
    """Traced peak memory of ingesting a .npy of ``rows`` x ``dim`` float32."""
    import tracemalloc

    from streamproc.pipeline.ingest import ingest

    path = tmp_path / f"big{rows}.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 5000):
        data[start:start + 5000] = np.random.default_rng(start).standard_normal((5000, dim))
    data.flush()
    del data
    tracemalloc.start()
    ingest(tmp_path / f"s{rows}", [path])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_reads_large_npy_in_slices(tmp_path):
    """Ingesting a file never holds it whole: past a few slices, 4x the rows adds nothing to the traced peak.

    Both sizes span several 16 MB read slices (80 MB and 320 MB), so both reach the pipeline's steady
    state (a slice being read, one being written, a few chunks in flight).
    """
    from streamproc.io.readers import SLICE_BYTES

    small, large = _ingest_peak(tmp_path, 80_000), _ingest_peak(tmp_path, 320_000)
    assert large < small + SLICE_BYTES, (small, large)
    assert large < 0.25 * 320_000 * 256 * 4, large


def test_missing_store_and_newer_format(cli, tmp_path, npy_batches):
    out = cli.json("info", tmp_path / "nope", code=1, schema="error")
    assert "no such store" in out["error"]
    folder, _ = npy_batches
    cli.json("ingest", tmp_path / "s", folder / "b0.npy")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    out = cli.json("info", tmp_path / "s", code=1, schema="error")
    assert "newer streamproc" in out["error"]
    out = cli.json("ingest", tmp_path / "s", folder / "b1.npy", code=1, schema="error")
    assert "newer streamproc" in out["error"]


def test_synth_is_seeded_and_unequal(cli, tmp_path):
    a = cli.json("synth", tmp_path / "a", "--rows", "3000", "--dim", "32", "--batch-rows", "1000", schema="synth")
    cli.json("synth", tmp_path / "b", "--rows", "3000", "--dim", "32", "--batch-rows", "1000")
    assert len(a["files"]) == 3
    for name in ("batch-000002.npy", "truth/labels-000002.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    labels = np.concatenate([np.load(tmp_path / "a" / "truth" / f"labels-{i:06d}.npy") for i in range(3)])
    sizes = np.bincount(labels, minlength=20)
    assert sizes.max() > 3 * max(sizes.min(), 1)


def test_info_lists_the_last_ten_batches_after_a_note_of_the_earlier_ones(cli, tmp_path):
    """With more than 10 batches, `info` says how many earlier ones it leaves out, before the ten it lists."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        np.save(folder / f"b{i:02d}.npy", rng.standard_normal((5, 4)).astype(np.float32))
    cli.json("ingest", tmp_path / "store", folder)
    lines = cli("info", tmp_path / "store").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("batches"))
    assert lines[start] == "batches  12"
    assert lines[start + 1] == "  ... 2 earlier batches (see --json)"
    listed = lines[start + 2:start + 12]
    assert [line.split()[0] for line in listed] == [f"b{n:06d}" for n in range(3, 13)], listed


def test_a_missing_column_names_a_few_columns_not_all(cli, tmp_path):
    """A 768-d CSV has 770 columns: the error stays one short line."""
    import pandas as pd

    frame = pd.DataFrame(np.random.default_rng(0).random((3, 300)), columns=[f"f{i}" for i in range(300)])
    frame.insert(0, "ident", ["a", "b", "c"])
    frame.to_csv(tmp_path / "x.csv", index=False)
    out = cli.json("ingest", tmp_path / "store", tmp_path / "x.csv", "--id-column", "id", code=1)
    [failed] = [b for b in out["batches"] if b["status"] == "failed"]
    assert "no column 'id' for --id-column; columns: ident, f0," in failed["error"]
    assert "(293 more)" in failed["error"] and len(failed["error"]) < 300, failed["error"]
