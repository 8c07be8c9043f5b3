"""Embeddings as packed BINARY between the Python worker and the JVM.

Spark reads an Arrow list into its rows one checked element at a time: for 1,024-float
vectors that was ~60% of workload D's JVM time. A packed vector crosses as one BINARY value
and the JVM extension (`io/aiquery/spark/Vectors.java`) turns it back into the declared
ARRAY<FLOAT> (or ARRAY<DOUBLE>) with one memory copy, using only Spark's own expressions.

Only calls planned by the extension travel packed (it is what unpacks them); the DataFrame
API and `aiquery.sql`'s rewriting return Arrow lists, as before. A packed vector is an 8-byte
header, MAGIC as a native int32 and four zero bytes, then the values in native byte order:
the worker and the JVM reading them share a host. The JVM checks the header where it expects
it, so a layout it does not share fails the statement instead of reading garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DataType,
    DoubleType,
    FloatType,
    StringType,
    StructField,
    StructType,
)

from aiquery.spark import arrays

MAGIC = 0x66765141  # "AQvf" little-endian; io.aiquery.spark.Vectors.MAGIC
_HEADER = np.array([MAGIC, 0], dtype=np.int32).view(np.uint8)  # native order, 8 bytes


def packed_type(declared: DataType) -> DataType | None:
    """What the worker returns for a call of type `declared` when its vectors travel packed:
    BINARY for ARRAY<FLOAT>/ARRAY<DOUBLE>, the same in failOnError => false's error struct;
    None when `declared` holds no vector."""
    if isinstance(declared, ArrayType) and isinstance(declared.elementType, FloatType | DoubleType):
        return BinaryType()
    if isinstance(declared, StructType) and any(packed_type(f.dataType) for f in declared.fields):
        return StructType(
            [
                StructField(f.name, packed_type(f.dataType) or f.dataType, f.nullable)
                for f in declared
            ]
        )
    return None


def pack(values: Sequence[Any], declared: DataType) -> pa.Array:
    """The worker's Arrow array for `values` of type `declared` (vectors, or error-struct
    dicts holding them; None is NULL), its vectors packed."""
    if isinstance(declared, ArrayType):
        element = np.float64 if isinstance(declared.elementType, DoubleType) else np.float32
        return _vectors(values, np.dtype(element))
    if not isinstance(declared, StructType):
        raise TypeError(f"{declared.simpleString()} holds no vector to pack")
    columns = []
    for f in declared.fields:
        column = [None if v is None else v[f.name] for v in values]
        if packed_type(f.dataType) is not None:
            columns.append(pack(column, f.dataType))
        elif isinstance(f.dataType, StringType):
            text = arrays.texts(column)
            columns.append(pa.array(column, type=pa.string()) if text is None else text)
        else:
            raise TypeError(f"field {f.name} of {declared.simpleString()} is not packed")
    mask = arrays.booleans([v is None for v in values])
    return pa.StructArray.from_arrays(columns, names=declared.names, mask=mask)


def _vectors(values: Sequence[Any], element: np.dtype[Any]) -> pa.Array:
    """One BINARY array over one buffer: each vector is copied once, as its bytes."""
    parts: list[np.ndarray] = []
    sizes = np.zeros(len(values), dtype=np.int32)
    valid = np.ones(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            valid[i] = False
            continue
        data = np.ascontiguousarray(v, dtype=element).view(np.uint8)
        parts += (_HEADER, data)
        sizes[i] = _HEADER.size + data.size
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    body = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    bitmap, nulls = arrays.validity(valid)
    buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(body)]
    return pa.Array.from_buffers(pa.binary(), len(values), buffers, null_count=nulls)
