"""Progress on stderr: a bar on a terminal (a real pty), one start and one end line off it, nothing
under -q/--json; the first run's numba compilation is announced."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import run_streamproc

from streamproc import progress

SHOW_ALL = {"STREAMPROC_PROGRESS_AFTER": "0"}  # steps of any length report themselves


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    run_streamproc("synth", tmp / "in", "--rows", "4000", "--dim", "16", "--clusters", "4", "-q")
    run_streamproc("ingest", tmp / "store", tmp / "in", "-q")
    return tmp / "store"


def _on_a_terminal(*args, env: dict, until: str | None = None, timeout: float = 240) -> str:
    """Run the real command with stdout and stderr on a pseudo-terminal; what it drew (stops early
    once ``until`` was drawn)."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # 30 rows x 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "streamproc", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=secondary, stderr=secondary, env={**os.environ, **env}, close_fds=True)
    os.close(secondary)
    seen, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (until and until.encode() in seen):
            if select.select([main], [], [], 1.0)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the program closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
    return seen.decode(errors="replace")


def test_off_a_terminal_each_step_says_when_it_starts_and_ends(store):
    err = run_streamproc("fit", store, "--k", "3,4", env=SHOW_ALL).stderr
    for step in ("pass 1/5 PCA", "k-means++ seeding", "pass 2/5", "pass 4/5 scores + quantiles"):
        assert f"\n{step}" in "\n" + err, (step, err)
    assert "pass 1/5 PCA: done, 4,000 rows in" in err
    assert "\r" not in err and "%|" not in err  # lines for a log, not a bar
    err = run_streamproc("project", store, "--method", "umap", "--sample", "500", env=SHOW_ALL).stderr
    assert "project: UMAP on 500 sample rows ..." in err
    assert "project: UMAP on 500 sample rows: done, in" in err


def test_short_steps_stay_silent_and_quiet_is_silent(store):
    assert run_streamproc("info", store).stderr == ""
    assert run_streamproc("fit", store, "--k", "3", "-q", env=SHOW_ALL).stderr == ""


def test_on_a_terminal_fit_and_umap_draw_bars(store):
    drawn = _on_a_terminal("fit", store, "--k", "3,4", env=SHOW_ALL)
    assert "pass 1/5 PCA" in drawn and "4.00k/4.00k" in drawn and "%|" in drawn
    assert "k-means++ seeding" in drawn
    run_streamproc("project", store, "--method", "pca", "-q")  # so that umap fits again
    drawn = _on_a_terminal("project", store, "--method", "umap", "--sample", "600", env=SHOW_ALL)
    assert "UMAP epochs" in drawn and "%|" in drawn  # umap-learn's own epoch loop, as a bar
    assert "project: UMAP on 600 sample rows" in drawn


def test_tqdm_disabled_in_the_environment_does_not_break_a_terminal_run(store):
    """TQDM_DISABLE makes tqdm skip its setup (no clock): the bars' own checks must not assume one."""
    drawn = _on_a_terminal("fit", store, "--k", "3", env={**SHOW_ALL, "TQDM_DISABLE": "1"})
    assert "Traceback" not in drawn and "model m" in drawn, drawn[-2000:]


def test_a_cold_numba_cache_is_announced(store, tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    assert progress.numba_cache_is_cold() is False  # this environment has compiled before
    run_streamproc("project", store, "--method", "pca", "-q")  # so that umap fits again
    out = _on_a_terminal("project", store, "--method", "umap", "--sample", "500", env=env, until="later runs",
                         timeout=120)
    assert "numba compiles umap-learn's functions once (about" in out, out


def test_numba_cache_detection(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert progress.numba_cache_is_cold()
    compiled = tmp_path / "work" / "venv" / "site-packages" / "pynndescent"
    compiled.mkdir(parents=True)
    (compiled / "utils.tau_rand_int-64.py311.nbi").write_bytes(b"")
    assert not progress.numba_cache_is_cold()
