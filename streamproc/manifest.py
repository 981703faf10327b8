"""The manifest: the one small JSON file whose atomic replacement commits everything in a store.

Readers trust only the manifest. Rows past ``rows``, models not listed, labels past a model's
watermark do not exist, whatever the array files hold.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .errors import StoreError, UsageError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_name(name: str, what: str) -> str:
    """Refuse names that would escape the store when used as a path component."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise UsageError(f"invalid {what} {name!r}: expected letters, digits, '_', '.', '-' (no '..')")
    return name


@dataclass
class Batch:
    """One committed input file: rows ``[start, stop)`` of the store."""

    id: str
    source: str
    sha256: str
    start: int
    stop: int
    ingested_at: str
    size: int = 0
    mtime_ns: int = 0
    options: str = ""

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class Manifest:
    """Everything committed in a store."""

    dim: int
    dtype: str
    chunk_rows: int
    rows: int = 0
    batches: list[Batch] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # optional row-aligned arrays: "ids", "texts"
    models: dict[str, dict] = field(default_factory=dict)  # id -> {"created_at", "watermark", ...}
    current_model: str | None = None
    next_cluster_id: int = 0  # cluster id registry: ids below this were given once and are never reused
    created_at: str = field(default_factory=utc_now)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {"format": "streamproc", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "manifest") -> Manifest:
        version = data.get("format_version")
        if data.get("format") != "streamproc" or not isinstance(version, int):
            raise StoreError(f"{where}: not a streamproc manifest")
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{where}: written by a newer streamproc (store format {version}, this version reads "
                f"up to {FORMAT_VERSION}); upgrade streamproc"
            )
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            fields["batches"] = [Batch(**b) for b in fields.get("batches", [])]
            return cls(**fields)
        except TypeError as exc:
            raise StoreError(f"{where}: damaged manifest ({exc})") from None

    def next_batch_id(self) -> str:
        return f"b{len(self.batches) + 1:06d}"


def read_manifest(store_path: Path) -> Manifest | None:
    """The store's manifest, or None when the store has none yet."""
    path = Path(store_path) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: damaged manifest ({exc})") from None
    return Manifest.from_dict(data, where=str(path))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write, fsync, rename over ``path``, fsync the directory: all or nothing, even on power loss."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_manifest(store_path: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(store_path) / MANIFEST_NAME, manifest.to_dict())
