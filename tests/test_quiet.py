"""`-q` means quiet and `--json` means one JSON object: every command, run as the real program."""

import json
from pathlib import Path

import pytest
from conftest import run_streamproc, validate

ROOT = Path(__file__).resolve().parents[1]
LOUD = {"STREAMPROC_PROGRESS_AFTER": "0"}  # every step would report itself if it were allowed to


def _commands(tmp: Path) -> list[tuple[str, list]]:
    """(schema, arguments) for every command, in an order that works on an empty folder."""
    store, inbox = tmp / "store", tmp / "inbox"
    texts = tmp / "texts.csv"
    texts.write_text("id,text\n" + "".join(f"t{i},the match and the goal number {i}\n" for i in range(20)))
    return [
        ("synth", ["synth", inbox, "--rows", "3000", "--dim", "16", "--clusters", "4", "--format", "parquet",
                   "--texts", "--batch-rows", "1500"]),
        ("ingest", ["ingest", store, inbox, "--id-column", "id", "--text-column", "text"]),
        ("info", ["info", store]),
        ("fit", ["fit", store, "--k", "3,4"]),
        ("fit", ["fit", store, "--k", "3,4", "--seed", "1"]),
        ("models", ["models", store]),
        ("classify", ["classify", store]),
        ("project", ["project", store, "--method", "pca"]),
        ("render", ["render", store, "-o", tmp / "map.png"]),
        ("report", ["report", store, "-o", tmp / "report.html"]),
        ("export", ["export", store, "-o", tmp / "labels.csv"]),
        ("embed", ["embed", tmp / "text-store", texts, "--text-column", "text", "--id-column", "id"]),
    ]


@pytest.mark.parametrize("flag", ["-q", "--json"])
def test_every_command_prints_nothing_but_its_result(tmp_path, flag):
    for schema, args in _commands(tmp_path):
        if flag == "--json" and schema == "embed":
            continue  # loading the encoder twice is slow; test_embed checks embed --json
        proc = run_streamproc(*args, flag, env=LOUD)
        assert proc.stderr == "", (args, proc.stderr)
        if flag == "-q":
            assert proc.stdout == "", (args, proc.stdout)
        else:
            validate(json.loads(proc.stdout), schema)  # exactly one JSON object: anything else fails to parse
    model = json.loads(run_streamproc("models", tmp_path / "store", "--json").stdout)["models"][0]["id"]
    proc = run_streamproc("models", "activate", tmp_path / "store", model, flag, env=LOUD)
    assert proc.stderr == "" and (proc.stdout == "" if flag == "-q" else json.loads(proc.stdout))


def test_demo_quiet(tmp_path):
    proc = run_streamproc("demo", tmp_path / "demo", "-q", env={**LOUD, "STREAMPROC_DEMO_ROWS": "2000"})
    assert (proc.stdout, proc.stderr) == ("", "")
    assert (tmp_path / "demo" / "map.png").exists()


def test_quiet_still_shows_errors(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    proc = run_streamproc("ingest", tmp_path / "store", tmp_path / "bad.npy", "-q", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and "bad.npy" in proc.stderr
    proc = run_streamproc("info", tmp_path / "nowhere", "-q", check=False)
    assert proc.returncode == 1 and proc.stdout == "" and "nowhere" in proc.stderr
