import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from streamproc.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def validate(data: dict, schema_name: str) -> dict:
    schema = json.loads((SCHEMAS / f"{schema_name}.schema.json").read_text())
    jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())
    return data


class Cli:
    """Run ``streamproc`` in-process through CliRunner."""

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args, code: int | None = 0):
        result = self.runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
        return result

    def json(self, *args, code: int | None = 0, schema: str | None = None) -> dict:
        result = self(*args, "--json", code=code)
        data = json.loads(result.stdout)
        if schema:
            validate(data, schema if result.exit_code in (0,) or "error" not in data else "error")
        return data


@pytest.fixture
def cli():
    return Cli()


def run_streamproc(*args, env=None, check=True, **kw) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "streamproc", *map(str, args)], capture_output=True, text=True,
                          env=full_env, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def spawn_streamproc(*args, env=None, text=False) -> subprocess.Popen:
    """Start the real command in a subprocess and return at once."""
    return subprocess.Popen([sys.executable, "-m", "streamproc", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=text, env={**os.environ, **(env or {})})


def wait_for_flag(flag: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    """Wait until a command paused by a STREAMPROC_TEST_PAUSE_* hook has written ``flag``; fail if it
    exits first or the flag does not appear in time."""
    deadline = time.monotonic() + seconds
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{flag} did not appear within {seconds} s"
        time.sleep(0.05)


def kill_before_commit(*args, flag: Path, seconds: float = 60) -> None:
    """Run the command until it pauses just before its commit, then kill -9 it there."""
    proc = spawn_streamproc(*args, env={"STREAMPROC_TEST_PAUSE_BEFORE_COMMIT": str(flag)})
    wait_for_flag(flag, proc, seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def store_state(store: Path) -> tuple[str, np.ndarray]:
    """The manifest text and the committed vectors, as a plain Zarr reader sees them."""
    import zarr

    manifest = (store / "manifest.json").read_text()
    return manifest, zarr.open_array(store / "vectors", mode="r")[:]


@pytest.fixture
def npy_batches(tmp_path):
    """Three small .npy batches (16-d) and their concatenation."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "inbox"
    folder.mkdir()
    arrays = []
    for i in range(3):
        a = rng.standard_normal((100 + 10 * i, 16)).astype(np.float32)
        np.save(folder / f"b{i}.npy", a)
        arrays.append(a)
    return folder, np.concatenate(arrays)


DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(logs: Path, *, workers: int = 2, nanny: bool = True, scheduler_env: dict | None = None,
                 worker_env: dict | None = None):
    """A real ``dask scheduler`` and ``workers`` x ``dask worker`` (one thread each) as processes on
    127.0.0.1. Yields ``(address, worker processes)``."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"],
                              stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
                              env={**env, **(scheduler_env or {})})]
    worker_procs = []
    for i in range(workers):
        args = [DASK, "worker", address, "--nthreads", "1", "--memory-limit", "2GB", "--name", f"w{i}",
                "--no-dashboard", *([] if nanny else ["--no-nanny"])]
        worker_procs.append(subprocess.Popen(args, stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT,
                                             env={**env, **(worker_env or {})}, cwd=logs))  # not our directory
    procs += worker_procs
    from distributed import Client

    try:
        deadline = time.time() + 60
        while True:
            try:
                with Client(address, timeout="2s") as client:
                    if len(client.scheduler_info()["workers"]) == workers:
                        break
            except OSError:
                pass
            assert time.time() < deadline, (logs / "worker0.log").read_text()
            time.sleep(0.5)
        yield address, worker_procs
    finally:
        for p in reversed(procs):  # workers first, then the scheduler
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
