"""fs.flushing: a fit's reduced rows are fsynced on a thread while its later passes compute; what
that flush meets must not be lost, and must not hide the passes' own error."""

from __future__ import annotations

import os

import pytest

from streamproc.fs import flushing


def test_flushing_runs_the_block_and_raises_what_the_flush_met(tmp_path):
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "0").write_bytes(b"x" * 4096)
    ran = []
    with flushing(tmp_path / "rows"):
        ran.append(True)
    assert ran == [True]
    os.symlink(tmp_path / "gone", tmp_path / "rows" / "1")  # a file the flush cannot open
    with pytest.raises(FileNotFoundError), flushing(tmp_path / "rows"):
        pass


def test_the_blocks_own_error_wins_over_the_flushs(tmp_path):
    (tmp_path / "rows").mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "rows" / "1")
    with pytest.raises(ValueError, match="the pass failed"), flushing(tmp_path / "rows"):
        raise ValueError("the pass failed")
