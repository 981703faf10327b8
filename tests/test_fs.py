"""fs.flushing: a fit's reduced rows are fsynced on a thread while its later passes compute; what
that flush meets must not be lost, and must not hide the passes' own error."""

from __future__ import annotations

import os

import pytest

from streamproc.errors import StreamprocError
from streamproc.fs import flushing, fsync_tree


def test_flushing_runs_the_block_and_raises_what_the_flush_met(tmp_path):
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "0").write_bytes(b"x" * 4096)
    ran = []
    with flushing(tmp_path / "rows"):
        ran.append(True)
    assert ran == [True]
    os.symlink(tmp_path / "gone", tmp_path / "rows" / "1")  # a file the flush cannot open
    with pytest.raises(StreamprocError, match=r"rows: could not flush the rows to disk \(.*No such file"), \
            flushing(tmp_path / "rows"):
        pass


def test_a_flush_no_longer_wanted_stops_before_the_next_file(tmp_path):
    import threading

    os.symlink(tmp_path / "gone", tmp_path / "1")  # opening it would fail
    stop = threading.Event()
    stop.set()
    fsync_tree(tmp_path, stop)  # returned before opening it
    with pytest.raises(FileNotFoundError):
        fsync_tree(tmp_path)


def test_the_blocks_own_error_wins_over_the_flushs(tmp_path):
    (tmp_path / "rows").mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "rows" / "1")
    with pytest.raises(ValueError, match="the pass failed"), flushing(tmp_path / "rows"):
        raise ValueError("the pass failed")
