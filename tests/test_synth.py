"""synth --texts: every true cluster talks about its own topic."""

from itertools import combinations

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_streamproc

from streamproc.view.keywords import KeywordCounter


@pytest.mark.parametrize("clusters", [20, 26])
def test_each_true_cluster_has_its_own_keywords(tmp_path, clusters):
    run_streamproc("synth", tmp_path, "--rows", "6000", "--dim", "8", "--clusters", str(clusters), "--texts",
                   "--format", "parquet", "--batch-rows", "3000", "-q")
    texts = [t for f in sorted(tmp_path.glob("batch-*.parquet")) for t in pq.read_table(f)["text"].to_pylist()]
    labels = np.concatenate([np.load(f) for f in sorted((tmp_path / "truth").glob("labels-*.npy"))])
    counter = KeywordCounter(clusters)
    counter.update(texts, labels.tolist())
    top = [{term for term, _ in terms[:5]} for terms in counter.top(5)]
    present = [c for c in range(clusters) if (labels == c).sum() >= 20]
    assert len(present) >= clusters - 2
    for a, b in combinations(present, 2):
        assert not top[a] & top[b], (a, b, top[a] & top[b])
