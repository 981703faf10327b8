"""Every shell example runs: the README's ```bash blocks and every command's --help examples
(the top-level "A day with streamproc" included), on small data in a temporary folder.

Sizes are made small (``--rows`` at most 2000) and placeholders made real (a model id of the store,
the installed encoder for ``./my-finetuned-model``); nothing else is changed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from streamproc.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
NOT_RUN = {  # examples that need something a test machine does not have, and the test that covers them
    "10.0.0.5": "needs a Dask cluster at that address (tests/test_distributed.py fits on a real one)",
    "/data/photos": "needs a folder of images (tests/test_serve.py serves thumbnails from --images-root)",
    'predict store --text "': "needs a store embedded from texts (tests/test_serve.py::test_texts_are_embedded_"
                              "with_the_stores_encoder predicts texts with the real encoder)",
}
SERVER = re.compile(r"^streamproc serve\b")  # runs until stopped: started, its URL awaited, then stopped
README_SKIPPED_BLOCKS = ("pip install", "pytest", "tox")  # installing and testing: test_readme.py, CI


def _commands(group=main, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


def help_examples() -> list[tuple[str, list[str]]]:
    """(command, example lines) from every --help: the lines under "Example(s):" or "A day with streamproc:"."""
    out = []
    for path in [(), *_commands()]:
        text = CliRunner().invoke(main, [*path, "--help"]).output
        block = re.search(r"(?:Examples?|A day with streamproc):\n((?:  +\S.*\n?)+)", text)
        if block:
            lines = [line.strip() for line in block.group(1).splitlines()]
            out.append((" ".join(path) or "streamproc", lines))
    return out


def readme_blocks() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    blocks = [b.strip().splitlines() for b in re.findall(r"```bash\n(.*?)```", readme, re.S)]
    return [[line for line in b if not any(marker in line for marker in NOT_RUN)] for b in blocks
            if not any(word in line for line in b for word in README_SKIPPED_BLOCKS)]


def _model_id_pattern():
    return re.compile(r"\bm\d{8}-\d{6}-[0-9a-f]{4}\b")


def runnable(line: str, model_id: str | None, encoder_dir: str) -> str:
    line = re.sub(r"^(\S+\s+){5}(?=streamproc )", "", line)  # a crontab line: its command
    line = re.sub(r"--rows (\d+)", lambda m: f"--rows {min(int(m.group(1)), 2000)}", line)
    if model_id:
        line = _model_id_pattern().sub(model_id, line)
    return line.replace("./my-finetuned-model", encoder_dir)


def _env() -> dict:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "STREAMPROC_DEMO_ROWS": "2000"}


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=900)


def _serve(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """Start ``streamproc serve`` (on a free port), wait until it answers at the URL it prints, stop it."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = re.sub(r" --port \d+", "", line.split(" #")[0]) + f" --port {port}"
    proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, answered = time.time() + 120, False
    while time.time() < deadline and proc.poll() is None and not answered:
        try:
            answered = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2).status == 200
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    told = f"http://127.0.0.1:{port}/" in out + err  # the URL it says to open
    return subprocess.CompletedProcess(line, 0 if answered and told else 1, out, err)


def _model_ids(line: str, models) -> str:
    """The README's placeholder model ids, each replaced by the next model of the store, in order."""
    return _model_id_pattern().sub(lambda m: next(models, {"id": m.group(0)})["id"], line)


def _run_lines(lines: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the lines as one bash script, but each ``streamproc serve`` as a server (see :func:`_serve`)."""
    result, pending = subprocess.CompletedProcess("", 0, "", ""), []
    for line in [*lines, None]:
        if line is not None and not SERVER.match(line):
            pending.append(line)
            continue
        if pending:
            result = _run("\n".join(pending), cwd)
            pending = []
            if result.returncode:
                return result
        if line is not None:
            result = _serve(line, cwd)
            if result.returncode:
                return result
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with what the help examples name: inbox/ (parquet with id and text), store/ (fitted twice,
    labelled, projected), docs.parquet (an `embedding` list column), reviews.csv; and the texts example."""
    base = tmp_path_factory.mktemp("docs") / "base"
    base.mkdir()
    script = """
        streamproc synth inbox --rows 600 --dim 16 --clusters 4 --format parquet --texts --batch-rows 300 -q
        streamproc ingest store inbox/ --id-column id --text-column text -q
        streamproc fit store --k 3,4 -q
        streamproc fit store --k 3,4 --seed 1 -q
        streamproc classify store -q
        streamproc project store --method pca -q
    """
    proc = _run(script, base)
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype("float32")
    pq.write_table(pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 16),
                             "id": [f"d{i}" for i in range(300)], "text": ["a short text"] * 300}),
                   base / "docs.parquet")
    (base / "reviews.csv").write_text("review_id,review\n" + "".join(
        f"r{i},{t}\n" for i, t in enumerate(["great pasta and friendly staff", "slow delivery, cold soup",
                                             "the best espresso in town", "noisy room but a kind host"] * 5)))
    np.save(base / "queries.npy", rng.standard_normal((5, 16)).astype("float32"))  # `predict --vectors queries.npy`
    (base / "examples" / "texts").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "texts" / "texts.csv", base / "examples" / "texts" / "texts.csv")
    models = json.loads(_run("streamproc models store --json", base).stdout)["models"]
    from streamproc.io import encoders

    return base, models[-1]["id"], str(encoders.locate(None)[1])


def _fresh_copy(workspace, tmp_path) -> Path:
    base = workspace[0]
    work = tmp_path / "work"
    shutil.copytree(base, work)
    return work


@pytest.mark.parametrize("command, lines", help_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_help_examples_run(command, lines, workspace, tmp_path):
    _, model_id, encoder_dir = workspace
    work = _fresh_copy(workspace, tmp_path)
    if command in ("embed", "ingest", "streamproc"):
        shutil.rmtree(work / "store")  # embed and ingest start a store of their own; the day starts from nothing
    if command == "streamproc":
        shutil.rmtree(work / "inbox")
    for line in lines:
        if any(marker in line for marker in NOT_RUN):
            continue
        script = runnable(line, model_id, encoder_dir)
        proc = _run_lines([script], work)
        assert proc.returncode == 0, (command, script, proc.stdout[-2000:], proc.stderr[-2000:])


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_bash_blocks_run(index, workspace, tmp_path):
    _, _, encoder_dir = workspace
    work = _fresh_copy(workspace, tmp_path)
    lines = [line for line in readme_blocks()[index] if line.strip() and not line.lstrip().startswith("#")]
    if any(re.match(r"streamproc (synth|ingest|embed|demo)\b", line) for line in lines):
        for name in ("store", "inbox"):  # a block that makes its store starts from an empty folder
            shutil.rmtree(work / name)
    models = iter(json.loads(_run("streamproc models store --json", work).stdout)["models"]) \
        if (work / "store").exists() else iter(())
    script = [_model_ids(runnable(line, None, encoder_dir), models) for line in lines]
    proc = _run_lines(script, work)
    assert proc.returncode == 0, (script, proc.stdout[-2000:], proc.stderr[-2000:])


def test_every_command_help_has_a_runnable_example():
    examples = dict(help_examples())
    for path in _commands():
        name = " ".join(path)
        if name == "models list" or name == "models":
            continue
        assert any(line.startswith("streamproc ") or " streamproc " in line for line in examples.get(name, [])), name
    assert len(examples["streamproc"]) >= 7  # the whole day, not three steps of it
    day = " ".join(examples["streamproc"])
    for step in ("synth", "ingest", "fit", "classify", "render", "report", "export"):
        assert f"streamproc {step} " in day, step


def test_top_level_help_gives_every_command_a_whole_line():
    """`streamproc --help` lists each command with a sentence that is not cut off with '...'."""
    from streamproc.cli.main import main as cli_main

    text = CliRunner().invoke(cli_main, ["--help"], terminal_width=80).output
    listed = text.split("Commands:")[1].strip().splitlines()
    assert len(listed) == len(cli_main.commands)
    assert not [line for line in listed if line.rstrip().endswith("...")], listed
