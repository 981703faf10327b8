"""A seeded generator of embedding-like batches: a Gaussian mixture with unequal cluster sizes,
cluster means in a low-rank subspace, anisotropic low-rank spread within each cluster, isotropic
noise, and a shared offset (real embeddings are not centred). Optional short texts per cluster topic.

Every batch is generated from ``(seed, batch index)`` alone, so any number of rows is written batch by
batch in bounded memory, and the same arguments always give the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..options import SYNTH_FORMATS

TOPICS = {
    "sport": "match goal team league coach striker season stadium referee championship penalty keeper".split(),
    "cooking": "recipe oven garlic sauce flour bake simmer onion butter dough spice kitchen".split(),
    "finance": "stock market investor bond dividend inflation bank interest portfolio earnings shares rate".split(),
    "travel": "flight hotel beach passport luggage airport island tour booking museum resort journey".split(),
    "music": "guitar album concert band song drummer melody chorus vinyl singer lyrics festival".split(),
    "health": "doctor patient vaccine symptom clinic therapy nurse diagnosis fever hospital dose virus".split(),
    "space": "rocket orbit planet astronaut telescope galaxy launch satellite lunar comet nasa mission".split(),
    "gardening": "tomato soil compost seed prune garden bloom weed shovel fertilizer harvest greenhouse".split(),
    "cars": "engine brake tyre dealership sedan mileage gearbox horsepower fuel electric charger dashboard".split(),
    "movies": "director actor film cinema sequel premiere trailer scene screenplay studio oscar cast".split(),
    "weather": "storm rain forecast snow thunder humidity wind cloud temperature sunny frost drought".split(),
    "pets": "puppy kitten vet leash litter fetch purr breed adopt collar treat aquarium".split(),
    "chess": "checkmate bishop knight pawn rook gambit castling opening endgame grandmaster tournament board".split(),
    "fashion": "dress jacket denim runway designer fabric stitch sneakers collection boutique silk tailor".split(),
    "coffee": "espresso latte barista roast arabica grinder brew crema mug cappuccino bean cafe".split(),
    "hiking": "trail summit backpack boots ridge camp tent ascent valley map compass hike".split(),
    "photography": "camera lens shutter aperture tripod exposure portrait zoom pixel flash photo sensor".split(),
    "history": "empire medieval dynasty archive ancient treaty revolution castle monarch century war historian".split(),
    "software": "code bug compiler python deploy server commit function database api repository debugging".split(),
    "fitness": "workout gym squat treadmill cardio muscle stretch yoga protein push marathon trainer".split(),
    "books": "novel author chapter library poetry publisher paperback reader fiction bookshop plot biography".split(),
    "ocean": "whale coral reef tide shark dolphin sailor wave harbor diving seaweed lighthouse".split(),
    "housing": "mortgage rent landlord tenant apartment lease renovation roof plumbing realtor neighbourhood deposit".split(),
    "gaming": "console controller level quest multiplayer arcade joystick boss respawn loot gamer speedrun".split(),
}
FILLER = "the a this my our very really just so and with about today new".split()


@dataclass(frozen=True)
class Mixture:
    """The generating model. ``rank`` is the dimension of the subspace holding the cluster means."""

    dim: int = 384
    clusters: int = 20
    rank: int = 48
    spread_rank: int = 12
    separation: float = 1.0
    noise: float = 0.06
    seed: int = 0

    def __post_init__(self):
        if self.dim < 2 or self.clusters < 1:
            raise UsageError(f"synth needs --dim >= 2 and --clusters >= 1, got dim={self.dim}, clusters={self.clusters}")

    @cached_property
    def _params(self):
        rng = np.random.default_rng([self.seed, 0xC0FFEE])
        rank = min(self.rank, self.dim)
        basis = np.linalg.qr(rng.standard_normal((self.dim, rank)))[0]
        means = rng.standard_normal((self.clusters, rank)) * self.separation @ basis.T
        weights = 1.0 / np.arange(1, self.clusters + 1) ** 0.8
        weights = rng.permutation(weights / weights.sum())
        spread = min(self.spread_rank, self.dim)
        scales = np.linspace(1.8, 0.3, spread) * self.separation  # clusters overlap, as real topics do
        axes = [np.linalg.qr(rng.standard_normal((self.dim, spread)))[0] * scales for _ in range(self.clusters)]
        offset = rng.standard_normal(self.dim) * 0.5 * self.separation
        return means + offset, weights, np.stack(axes)

    @property
    def weights(self) -> np.ndarray:
        return self._params[1]

    def batch(self, index: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of batch ``index``: ``(vectors float32 (rows x dim), true labels int32)``."""
        means, weights, axes = self._params
        rng = np.random.default_rng([self.seed, index])
        labels = rng.choice(self.clusters, size=rows, p=weights).astype(np.int32)
        z = rng.standard_normal((rows, axes.shape[2])).astype(np.float32)
        x = means[labels].astype(np.float32)
        for c in np.unique(labels):  # one matrix product per cluster: its rows' spread along its own axes
            rows_c = labels == c
            x[rows_c] += z[rows_c] @ axes[c].T.astype(np.float32)
        x += rng.standard_normal((rows, self.dim), dtype=np.float32) * np.float32(self.noise)
        return x, labels

    def texts(self, index: int, labels: np.ndarray) -> list[str]:
        """One short text per row, drawn from its cluster's own topic words."""
        rng = np.random.default_rng([self.seed, index, 7])
        out = []
        for label in labels.tolist():
            words = topic_words(label)
            picked = rng.choice(words, size=rng.integers(4, 8)).tolist() + rng.choice(FILLER, size=3).tolist()
            rng.shuffle(picked)
            out.append(" ".join(picked).capitalize() + ".")
        return out


def topic_words(cluster: int) -> list[str]:
    """Cluster ``cluster``'s words: a topic of its own (no two clusters share one; clusters past the
    last topic get made-up words of their own, ``topic24w0``...)."""
    topics = list(TOPICS.values())
    if cluster < len(topics):
        return topics[cluster]
    return [f"topic{cluster}w{j}" for j in range(12)]


def write_batches(
    out_dir: str | os.PathLike,
    *,
    mixture: Mixture,
    rows: int,
    batch_rows: int = 10_000,
    fmt: str = "npy",
    texts: bool = False,
    first_batch: int = 0,
) -> list[Path]:
    """Write ``rows`` rows as files ``batch-NNNNNN.<fmt>`` (true labels under ``truth/``). Returns the paths."""
    if fmt not in SYNTH_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(SYNTH_FORMATS)}, got {fmt!r}")
    if texts and fmt == "npy":
        raise UsageError("--texts needs --format npz, parquet or csv (.npy holds vectors only)")
    if rows < 1 or batch_rows < 1:
        raise UsageError(f"--rows and --batch-rows must be positive, got {rows} and {batch_rows}")
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, rows, batch_rows), start=first_batch):
        n = min(batch_rows, rows - start)
        vectors, labels = mixture.batch(i, n)
        ids = np.array([f"r{i:06d}-{j:06d}" for j in range(n)])
        path = out / f"batch-{i:06d}.{fmt}"
        _write(path, vectors, ids, mixture.texts(i, labels) if texts else None, fmt)
        np.save(out / "truth" / f"labels-{i:06d}.npy", labels)
        paths.append(path)
    return paths


def _write(path: Path, vectors: np.ndarray, ids: np.ndarray, texts: list[str] | None, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "npy":
        with open(tmp, "wb") as f:
            np.save(f, vectors)
    elif fmt == "npz":
        arrays = {"vectors": vectors, "ids": ids}
        if texts is not None:
            arrays["texts"] = np.array(texts)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    else:
        import pyarrow as pa

        columns = {"id": pa.array(ids.tolist())}
        if texts is not None:
            columns["text"] = pa.array(texts)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            flat = pa.array(vectors.reshape(-1))
            columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
            pq.write_table(pa.table(columns), tmp)
        else:
            import pyarrow.csv as pcsv

            for j in range(vectors.shape[1]):
                columns[f"v{j}"] = pa.array(vectors[:, j])
            pcsv.write_csv(pa.table(columns), tmp)
    os.replace(tmp, path)
