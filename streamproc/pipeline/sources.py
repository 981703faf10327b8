"""Where a pass over a model's rows reads them from.

The rows a model was fitted on come from the reduced rows its fit stored with it (``models/<id>/reduced``:
about 5x smaller than the vectors, and already reduced by the model), the rows ingested since from the
vectors. ``classify`` and ``project`` both read this way, so neither reads the fitted rows' vectors again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..learn.model import Model
from ..store import arrays
from ..store.store import Store, block_ranges, rows_per_block


@dataclass(frozen=True)
class Source:
    path: Path  # a stored array: the model's reduced rows, or the store's vectors
    ranges: list[tuple[int, int]]  # row ranges to read, in order
    reduced: bool  # True: the rows are already reduced (``Model.transform`` has been applied)


def model_row_sources(store: Store, model: Model, start: int, stop: int, block_bytes: int) -> list[Source]:
    """Rows ``start:stop`` as at most two sources, in row order: the reduced rows the fit stored (for
    the rows it was fitted on), then the vectors (for the rows ingested since)."""
    reduced = store.path / "models" / model.id / "reduced"
    # (only reduced rows whose every chunk the fit wrote: there a missing chunk raises, never reads as zeros)
    fitted_end = model.fit_rows[1] if model.fit_rows[0] == 0 and arrays.whole_chunks(reduced) else 0
    sources = []
    if start < min(stop, fitted_end):
        chunk = arrays.chunk_rows(reduced)
        ranges = [(max(a, start), b) for a, b in block_ranges(
            min(stop, fitted_end), rows_per_block(chunk, model.n_components * 4, block_bytes), start=start - start % chunk)
            if b > start]  # whole chunks, the first cut at ``start``
        sources.append(Source(reduced, ranges, reduced=True))
    if max(start, fitted_end) < stop:
        vector_bytes = store.dim * np.dtype(store.manifest.dtype).itemsize
        ranges = block_ranges(stop, rows_per_block(store.manifest.chunk_rows, vector_bytes, block_bytes),
                              start=max(start, fitted_end))
        sources.append(Source(store.path / "vectors", ranges, reduced=False))
    return sources
