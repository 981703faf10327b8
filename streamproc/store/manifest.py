"""The manifest: the one small JSON file whose atomic replacement commits everything in a store.

Readers trust only the manifest. Rows past ``rows``, models not listed, labels past a model's
watermark do not exist, whatever the array files hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StoreError, UsageError
from ..fs import write_json_atomic
from ..options import DTYPES, PROJECTIONS

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def utc_now() -> str:
    """The current time as ISO-8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_name(name: str, what: str, error: type[Exception] = UsageError) -> str:
    """Refuse names that would escape the store when used as a path component (from the command line,
    or with ``error=StoreError`` from a stored file)."""
    if not is_safe_name(name):
        raise error(f"invalid {what} {str(name)[:80]!r}: expected letters, digits, '_', '.', '-' (no '..')")
    return name


def is_safe_name(name) -> bool:
    return isinstance(name, str) and len(name) <= 200 and bool(SAFE_NAME.match(name)) and ".." not in name


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
    missing: list[str] = field(default_factory=list)  # row-aligned columns this batch has no values for

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ProjectionEntry:
    """A model's committed 2-D map: how it was made and the array (a generation) holding the positions."""

    method: str  # one of options.PROJECTIONS
    array: str  # "projection-<method>-<time>-<pid>", under models/<id>/
    seed: int = 0
    sample: int = 0  # rows the map was fitted on

    @classmethod
    def from_dict(cls, data, where: str, model_id: str) -> ProjectionEntry:
        if not isinstance(data, dict):
            raise StoreError(f"{where}: damaged manifest (model {model_id} projection must be an object)")
        try:
            entry = cls(**data)
        except TypeError as exc:
            raise StoreError(f"{where}: damaged manifest (model {model_id} projection: {exc})") from None
        if not is_safe_name(entry.array) or not entry.array.startswith("projection-"):
            raise StoreError(f"{where}: damaged manifest (model {model_id} projection array must be a safe name "
                             "starting 'projection-')")
        if entry.method not in PROJECTIONS:
            raise StoreError(f"{where}: damaged manifest (model {model_id} projection method must be one of "
                             f"{', '.join(PROJECTIONS)})")
        return entry


@dataclass(frozen=True)
class ModelEntry:
    """A committed model as the manifest lists it: what it is and how far it has labelled and placed rows."""

    created_at: str
    k: int
    dim: int
    fit_rows: tuple[int, int]
    watermark: int = 0  # rows [0, watermark) are labelled
    cluster_ids: tuple[int, ...] = ()  # (empty in stores written before stable ids)
    projection: ProjectionEntry | None = None
    projection_watermark: int = 0  # rows [0, projection_watermark) are placed on the map

    @classmethod
    def from_dict(cls, data, where: str, model_id: str) -> ModelEntry:
        if not isinstance(data, dict):
            raise StoreError(f"{where}: damaged manifest (model {model_id} must be an object)")
        fields = dict(data)
        try:
            fields["fit_rows"] = tuple(fields.get("fit_rows", (0, 0)))
            fields["cluster_ids"] = tuple(fields.get("cluster_ids", ()))
            if fields.get("projection") is not None:
                fields["projection"] = ProjectionEntry.from_dict(fields["projection"], where, model_id)
            return cls(**fields)
        except TypeError as exc:
            raise StoreError(f"{where}: damaged manifest (model {model_id}: {exc})") from None


@dataclass
class Manifest:
    """Everything committed in a store."""

    dim: int
    dtype: str
    chunk_rows: int
    rows: int = 0
    batches: list[Batch] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # optional row-aligned arrays: "ids", "texts"
    models: dict[str, ModelEntry] = field(default_factory=dict)
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
            if not isinstance(fields.get("batches", []), list):
                raise TypeError("batches must be a list")
            fields["batches"] = [Batch(**b) for b in fields.get("batches", [])]
            if not isinstance(fields.get("models", {}), dict):
                raise TypeError("models must be an object")
            fields["models"] = {model_id: ModelEntry.from_dict(entry, where, model_id)
                                for model_id, entry in fields.get("models", {}).items()}
            manifest = cls(**fields)
        except TypeError as exc:
            raise StoreError(f"{where}: damaged manifest ({exc})") from None
        validate_manifest(manifest, where)
        return manifest

    def next_batch_id(self) -> str:
        return f"b{len(self.batches) + 1:06d}"


COLUMNS = ("ids", "texts")


def validate_manifest(m: Manifest, where: str) -> None:
    """Refuse a manifest whose fields have the wrong type, impossible numbers, or names that are not
    safe path components: everything later resolved to a path or trusted as a row count."""
    def fail(what: str):
        raise StoreError(f"{where}: damaged manifest ({what})")

    def count(value, what: str, low: int = 0) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            fail(f"{what} must be an integer >= {low}, got {str(value)[:80]!r}")
        return value

    count(m.dim, "dim", 1)
    count(m.chunk_rows, "chunk_rows", 1)
    count(m.rows, "rows")
    if m.dtype not in DTYPES:
        fail(f"dtype must be one of {', '.join(DTYPES)}, got {str(m.dtype)[:80]!r}")
    if not isinstance(m.columns, list) or any(c not in COLUMNS for c in m.columns):
        fail(f"columns must be a list of {', '.join(COLUMNS)}, got {str(m.columns)[:80]!r}")
    end = 0
    for b in m.batches:
        if not is_safe_name(b.id):
            fail(f"invalid batch id {str(b.id)[:80]!r}")
        if count(b.start, f"batch {b.id} start") != end or count(b.stop, f"batch {b.id} stop") < b.start:
            fail(f"batch {b.id} covers rows [{b.start}, {b.stop}), expected to start at row {end}")
        if not isinstance(b.missing, list) or any(c not in COLUMNS for c in b.missing):
            fail(f"batch {b.id} missing must be a list of {', '.join(COLUMNS)}")
        if not all(isinstance(v, str) for v in (b.source, b.sha256, b.ingested_at, b.options)):
            fail(f"batch {b.id} source, sha256, ingested_at and options must be strings")
        count(b.size, f"batch {b.id} size")
        count(b.mtime_ns, f"batch {b.id} mtime_ns", -2**63)
        end = b.stop
    if end != m.rows:
        fail(f"batches end at row {end}, but rows is {m.rows}")
    for model_id, entry in m.models.items():
        if not is_safe_name(model_id):
            fail(f"invalid model id {str(model_id)[:80]!r}")
        if count(entry.watermark, f"model {model_id} watermark") > m.rows:
            fail(f"model {model_id} watermark {entry.watermark} is past the {m.rows} rows")
        if count(entry.projection_watermark, f"model {model_id} projection_watermark") > m.rows:
            fail(f"model {model_id} projection_watermark is past the {m.rows} rows")
        count(entry.k, f"model {model_id} k", 1)
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in entry.cluster_ids):
            fail(f"model {model_id} cluster_ids must be integers >= 0")
    if m.current_model is not None and m.current_model not in m.models:
        fail(f"current_model {str(m.current_model)[:80]!r} is not a listed model")


def read_manifest(store_path: Path) -> Manifest | None:
    """The store's manifest, or None when the store has none yet."""
    path = Path(store_path) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise StoreError(f"{path}: damaged manifest (not UTF-8)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: damaged manifest ({exc})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: damaged manifest (expected a JSON object)")
    return Manifest.from_dict(data, where=str(path))


def write_manifest(store_path: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(store_path) / MANIFEST_NAME, manifest.to_dict())
