"""ingest --move-to: files leave the inbox once their batch has committed; failed files stay."""

import json
import shutil

import numpy as np
from conftest import run_streamproc, validate


def test_move_to_moves_committed_and_duplicate_files_and_leaves_failed_ones(tmp_path):
    inbox, done, store = tmp_path / "inbox", tmp_path / "done", tmp_path / "store"
    inbox.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(inbox / f"{name}.npy", rng.standard_normal((50, 4)).astype("float32"))
    (inbox / "broken.npy").write_bytes(b"not an array")
    proc = run_streamproc("ingest", store, inbox, "--move-to", done, "--json", check=False)
    out = validate(json.loads(proc.stdout), "ingest")
    assert proc.returncode == 1
    assert sorted(p.name for p in inbox.iterdir()) == ["broken.npy"]  # the failed file stays
    assert sorted(p.name for p in done.iterdir()) == ["a.npy", "b.npy"]
    by_name = {b["source"].rsplit("/", 1)[-1]: b for b in out["batches"]}
    assert by_name["a.npy"]["moved_to"] == str(done / "a.npy") and by_name["a.npy"]["status"] == "committed"
    assert by_name["broken.npy"]["moved_to"] is None
    assert f"the file stays in {inbox}" in by_name["broken.npy"]["error"]
    assert out["rows"] == 100

    # the same file dropped again is a duplicate: it is moved too, beside the first (not over it)
    (inbox / "broken.npy").unlink()
    shutil.copy(done / "a.npy", inbox / "a.npy")
    proc = run_streamproc("ingest", store, inbox, "--move-to", done)
    assert "duplicate" in proc.stdout and f"-> {done / 'a.1.npy'}" in proc.stdout
    assert list(inbox.iterdir()) == [] and (done / "a.1.npy").exists() and (done / "a.npy").exists()
    info = json.loads(run_streamproc("info", store, "--json").stdout)
    assert info["rows"] == 100 and len(info["batches"]) == 2


def test_quiet_failure_says_the_file_stays(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "bad.npy").write_bytes(b"nope")
    proc = run_streamproc("ingest", tmp_path / "store", tmp_path / "inbox", "--move-to", tmp_path / "done", "-q",
                          check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "bad.npy" in proc.stderr and "the file stays in" in proc.stderr
    assert (tmp_path / "inbox" / "bad.npy").exists()
