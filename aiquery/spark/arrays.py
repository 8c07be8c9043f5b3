"""Arrow arrays built from their buffers, in the Python workers, without importing pandas.

pyarrow's `pa.array` asks pandas whether each sequence or ndarray it converts is one of
pandas' own, and imports it to ask: ~50 MB of every worker's memory and ~1 s of its CPU,
for a library no ai_query call needs. The answers' common types (STRING, embeddings, the
error struct) are built here instead; the rest still go through `pa.array`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

STRING = pa.string()
_MAX_OFFSET = {STRING: 2**31 - 1, pa.large_string(): 2**63 - 1}


def texts(rows: Sequence[Any], arrow_type: pa.DataType = STRING) -> pa.Array | None:
    """A STRING (or LARGE STRING) array of str or None, or None when a value is not text
    or the text overflows 32-bit offsets (`pa.array` then says why, or chunks it)."""
    if arrow_type not in _MAX_OFFSET or not all(v is None or type(v) is str for v in rows):
        return None
    encoded = [b"" if v is None else v.encode() for v in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(rows)), out=offsets[1:])
    if offsets[-1] > _MAX_OFFSET[arrow_type]:
        return None
    if arrow_type == STRING:
        offsets = offsets.astype(np.int32)
    valid, nulls = validity([v is not None for v in rows])
    buffers = [valid, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(arrow_type, len(rows), buffers, null_count=nulls)


def booleans(values: Sequence[bool]) -> pa.Array:
    """A BOOLEAN array without NULLs."""
    bits = np.packbits(np.fromiter(values, bool, len(values)), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def primitives(values: np.ndarray[Any, Any], arrow_type: pa.DataType) -> pa.Array:
    """A fixed-width array without NULLs over `values` (converted to `arrow_type`'s dtype)."""
    data = np.ascontiguousarray(values, dtype=arrow_type.to_pandas_dtype())
    return pa.Array.from_buffers(arrow_type, len(data), [None, pa.py_buffer(data)])


def validity(valid: Sequence[bool] | np.ndarray[Any, Any]) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of `valid` (None when every value is there) and the NULL count."""
    present = np.asarray(valid, dtype=bool)
    nulls = len(valid) - int(present.sum())
    return (pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None), nulls
