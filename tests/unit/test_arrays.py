"""Arrow arrays from their buffers: the same arrays `pa.array` builds, and no pandas import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql.types import ArrayType, FloatType, StringType

from aiquery.spark import answers, arrays

TEXTS = [
    ["a", None, "", "grüße 🙂", None],
    [],
    [None, None],
    ["x" * 100_000],
]


@pytest.mark.parametrize("rows", TEXTS)
@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string()])
def test_texts_are_the_array_pa_array_builds(
    rows: list[str | None], arrow_type: pa.DataType
) -> None:
    built = arrays.texts(rows, arrow_type)
    assert built is not None
    built.validate(full=True)
    assert built.equals(pa.array(rows, type=arrow_type))
    assert built.null_count == rows.count(None)


def test_what_is_not_text_is_left_to_pa_array_and_bad_text_fails_as_there() -> None:
    assert arrays.texts(["a", 1]) is None
    assert arrays.texts([b"bytes"]) is None
    assert arrays.texts(["a"], pa.binary()) is None
    with pytest.raises(pa.ArrowTypeError):
        answers.to_arrow_array(["a", 1], StringType())
    for build in (lambda: arrays.texts(["a\ud800"]), lambda: pa.array(["a\ud800"])):
        with pytest.raises(UnicodeEncodeError):
            build()


def test_booleans_primitives_and_validity() -> None:
    assert arrays.booleans([True, False, True] * 5).to_pylist() == [True, False, True] * 5
    floats = arrays.primitives(np.array([1.5, 2.5]), pa.float32())
    assert floats.type == pa.float32() and floats.to_pylist() == [1.5, 2.5]
    bitmap, nulls = arrays.validity([True, False, True])
    assert nulls == 1 and bitmap is not None
    assert arrays.validity([True, True]) == (None, 0)


def test_answers_leave_a_worker_without_importing_pandas() -> None:
    """STRING answers, Arrow-list embeddings and packed ones with their error struct."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from pyspark.sql.types import (
            ArrayType, FloatType, StringType, StructField, StructType,
        )
        from aiquery.spark import answers, vectors

        answers.to_arrow_array(["a", None], StringType())
        answers.to_arrow_array([np.ones(3, np.float32), None], ArrayType(FloatType()))
        error = StructType([
            StructField("result", ArrayType(FloatType())),
            StructField("errorMessage", StringType()),
        ])
        vectors.pack([{"result": None, "errorMessage": "bad"}, None], error)
        print("pandas" in sys.modules)
        """
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"


def test_arrow_list_embeddings_are_the_array_pa_array_builds() -> None:
    rows = [np.array([1.0, 2.0], np.float32), None, np.array([], np.float32), np.ones(3)]
    built = answers.to_arrow_array(rows, ArrayType(FloatType()))
    built.validate(full=True)
    expected = pa.array(
        [None if v is None else v.tolist() for v in rows], type=pa.list_(pa.float32())
    )
    assert built.equals(expected)
