"""Embeddings packed for the JVM (`aiquery.spark.vectors`): the byte layout the extension's
`Vectors.java` reads, NULLs kept, float64 for ARRAY<DOUBLE>, the error struct."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DoubleType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from aiquery.spark import ddl, vectors

FLOATS = ArrayType(FloatType())
DOUBLES = ArrayType(DoubleType())
JAVA = Path(vectors.__file__).parent.parent / "jvm" / "io" / "aiquery" / "spark" / "Vectors.java"


def read(value: bytes, element: type) -> np.ndarray:
    """What the JVM does: the header checked at the start, the values after it."""
    header = np.frombuffer(value[:8], dtype=np.int32)
    assert header.tolist() == [vectors.MAGIC, 0]
    return np.frombuffer(value, dtype=element, offset=8)


def test_the_magic_is_the_one_the_jvm_checks() -> None:
    declared = re.search(r"static final int MAGIC = (0x[0-9a-f]+);", JAVA.read_text())
    assert declared is not None and int(declared.group(1), 16) == vectors.MAGIC


def test_float_vectors_pack_as_their_float32_bytes_after_the_header() -> None:
    rng = np.random.default_rng(3)
    values = [
        rng.standard_normal(1024).astype(np.float32),
        None,
        np.zeros(0, np.float32),
        [0.5, -2.0],
    ]
    packed = vectors.pack(values, FLOATS)
    assert packed.type == pa.binary() and len(packed) == 4 and packed.null_count == 1
    cells = packed.to_pylist()
    assert read(cells[0], np.float32).tobytes() == values[0].tobytes()  # bit for bit
    assert cells[1] is None
    assert len(cells[2]) == 8 and read(cells[2], np.float32).size == 0
    assert read(cells[3], np.float32).tolist() == [0.5, -2.0]  # Python floats too


def test_double_vectors_are_widened_exactly() -> None:
    vector = np.array([0.1, 3.4028235e38, -1e-45], dtype=np.float32)
    cell = vectors.pack([vector], DOUBLES).to_pylist()[0]
    assert read(cell, np.float64).tolist() == vector.astype(np.float64).tolist()


def test_the_error_struct_packs_its_result_and_keeps_its_message() -> None:
    declared = ddl.error_struct_type(FLOATS)
    values = [
        {"result": np.array([1.0, 2.0], np.float32), "errorMessage": None},
        {"result": None, "errorMessage": "[AI_FUNCTION_HTTP_REQUEST_ERROR] 500"},
        None,
    ]
    packed = vectors.pack(values, declared)
    assert packed.type == pa.struct([("result", pa.binary()), ("errorMessage", pa.string())])
    first, second, third = packed.to_pylist()
    assert read(first["result"], np.float32).tolist() == [1.0, 2.0]
    assert first["errorMessage"] is None
    assert second == {"result": None, "errorMessage": "[AI_FUNCTION_HTTP_REQUEST_ERROR] 500"}
    assert third is None


def test_only_vectors_have_a_packed_type() -> None:
    assert vectors.packed_type(FLOATS) == BinaryType()
    assert vectors.packed_type(DOUBLES) == BinaryType()
    assert vectors.packed_type(ddl.error_struct_type(FLOATS)) == StructType(
        [StructField("result", BinaryType()), StructField("errorMessage", StringType())]
    )
    assert vectors.packed_type(StringType()) is None
    assert vectors.packed_type(ArrayType(IntegerType())) is None
    assert vectors.packed_type(ddl.error_struct_type(StringType())) is None


def test_a_type_without_vectors_is_refused() -> None:
    with pytest.raises(TypeError, match="holds no vector"):
        vectors.pack(["a"], StringType())
