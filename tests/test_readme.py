"""The README is the user's manual: its commands run, and every command is documented and has help."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from streamproc.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands_block() -> list[str]:
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_shows_the_two_commands_and_ci_runs_the_second():
    run_demo, run_tests = _commands_block()
    assert "pip install" in run_demo and "streamproc demo" in run_demo
    assert "pip install" in run_tests and "pytest" in run_tests
    assert run_tests in (ROOT / ".ci" / "run").read_text()


def test_readme_demo_command_runs_verbatim_at_a_small_size(tmp_path):
    run_demo = _commands_block()[0]
    demo = run_demo.split("&&", 1)[1].strip()  # the install part ran when this environment was made
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "STREAMPROC_DEMO_ROWS": "3000", "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    subprocess.run(shlex.split(demo) + ["--json"], cwd=tmp_path, env=env, check=True, capture_output=True)
    folder = tmp_path / shlex.split(demo)[-1]
    assert (folder / "map.png").stat().st_size > 10_000
    html = (folder / "report.html").read_text()
    assert "<th>keywords</th>" in html
    info = json.loads(subprocess.run(["streamproc", "info", str(folder / "store"), "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    assert info["rows"] == 3000 and info["models"][0]["watermark"] == 3000


def _all_commands(group=main, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _all_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_has_help_with_an_example_and_is_in_the_readme():
    runner = CliRunner()
    for path, _command in _all_commands():
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, path
        if path[-1] != "list":  # `models list` is documented as `models STORE`
            name = " ".join(path)
            assert f"`{name}" in README or f"streamproc {name}" in README, path


def test_every_reporting_command_has_json_and_quiet():
    runner = CliRunner()
    for path, command in _all_commands():
        if path[-1] in ("demo",):
            continue
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert {"--json", "--quiet"} <= options, path
    assert "--json" in runner.invoke(main, ["demo", "--help"]).output


def test_python_api_from_the_readme(tmp_path):
    import numpy as np

    import streamproc as sp

    x = np.random.default_rng(0).standard_normal((600, 12)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    sp.ingest(tmp_path / "store", [tmp_path / "x.npy"])
    result = sp.fit(tmp_path / "store", sp.FitOptions(ks=[3, 4]))
    model = sp.load_model(tmp_path / "store")
    assert model.id == result.model.id
    proba = model.predict_proba(x[:5])
    assert proba.shape == (5, model.k) and np.allclose(proba.sum(axis=1), 1)
    assert (proba.argmax(axis=1) == model.predict(x[:5])).all()
    assert (model.decision_function(x[:5]).argmin(axis=1) == model.predict(x[:5])).all()
    assert model.transform(x[0]).shape == (1, model.n_components)
    z = model.transform(x[:5])
    clf = sp.CentroidClassifier.from_centroids(model.centroids, metric=model.metric, variance=model.noise_variance)
    assert (clf.predict(z) == model.predict(x[:5])).all()
    np.testing.assert_allclose(clf.predict_proba(z), proba, rtol=1e-4, atol=1e-6)
    assert sp.classify(tmp_path / "store").labelled == 600


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    """The README's Python API block, verbatim, in a folder whose inbox/ holds 384-d batches with texts."""
    import re

    import streamproc as sp
    from streamproc.io.synth import Mixture, write_batches

    block = re.search(r"## Python API\n\n```python\n(.*?)```", README, flags=re.S).group(1)
    write_batches(tmp_path / "inbox", mixture=Mixture(dim=384, clusters=6, seed=3), rows=3000, batch_rows=1500,
                  fmt="parquet", texts=True)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    info = sp.store_info("store")
    assert info["rows"] == 4000 and len(info["batches"]) == 3
    model = namespace["model"]
    assert model.id == info["current_model"] == namespace["refit"].model.id and model.k in (8, 12, 16)
    result = namespace["result"]
    assert result.current is True and result.model.id in repr(result)
    assert namespace["refit"].current is False  # until sp.activate_model chose it
    assert info["models"][-1]["watermark"] == 4000  # sp.classify labelled every row
