"""The examples run as written."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env():
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def test_cron_simulation_labels_every_row_once(tmp_path):
    subprocess.run(["bash", str(ROOT / "examples/cron/simulate.sh"), str(tmp_path), "4", "3000"], check=True,
                   env=_env(), capture_output=True)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["rows"] == 6000 + 4 * 3000 and len(info["batches"]) == 6
    rounds = [(tmp_path / f"round-{r}.json").read_text().strip().splitlines() for r in range(1, 5)]
    ingested = [json.loads(lines[0]) for lines in rounds]
    labelled = [json.loads(lines[1])["labelled"] for lines in rounds]
    assert [sum(b["status"] == "committed" for b in i["batches"]) for i in ingested] == [1, 1, 1, 1]
    # the first round also labels the 6000 rows the model was fitted on
    assert labelled == [6000 + 3000, 3000, 3000, 3000]
    (model,) = info["models"]
    assert model["watermark"] == info["rows"]
    # every ingested file left the inbox (--move-to): the next run lists and hashes only new files
    assert not list((tmp_path / "inbox").glob("batch-*.npy"))
    assert len(list((tmp_path / "inbox" / "ingested").glob("batch-*.npy"))) == 6  # day 0 too (duplicates)
