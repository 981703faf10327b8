import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from streamproc.cli import main

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
