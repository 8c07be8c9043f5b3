"""The DataFrame API: `ai_query` as a Column expression.

from aiquery.functions import ai_query
df.select(ai_query("databricks-gpt-5-4", F.concat(F.lit("Summarize: "), "text")).alias("summary"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from aiquery.errors import ConfigError, InvalidArgumentError
from aiquery.spark.callspec import analyze
from aiquery.spark.udf import make_udf


def ai_query(
    endpoint: str,
    request: Column | str,
    returnType: str | None = None,  # noqa: N803 - Databricks' argument names
    failOnError: bool = True,  # noqa: N803
    modelParameters: Mapping[str, Any] | None = None,  # noqa: N803
    responseFormat: str | None = None,  # noqa: N803
    requestTags: Mapping[str, str] | None = None,  # noqa: N803
    *,
    return_type: str | None = None,
) -> Column:
    """Query `endpoint` once per row of `request` (a column or column name).

    Same arguments and result types as Databricks' SQL `ai_query`: STRING for chat and
    completions, ARRAY<FLOAT> for embeddings, `returnType` parsed like from_json, and with
    `failOnError=False` a STRUCT<result, errorMessage>. `requestTags` adds to the
    session's `aiquery.requestTags`. Arguments are checked now, before any request.
    `return_type` is Databricks' PySpark name for `returnType`.
    """
    if return_type is not None and returnType is not None:
        raise InvalidArgumentError(
            "ai_query got both returnType and return_type; they are the same argument "
            "(SQL's name and Databricks' PySpark name): pass one."
        )
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise ConfigError("ai_query needs an active SparkSession; create one first.")
    spec = analyze(
        spark,
        endpoint,
        return_type=returnType if return_type is None else return_type,
        fail_on_error=failOnError,
        model_parameters=modelParameters,
        response_format=responseFormat,
        request_tags=requestTags,
    )
    column = F.col(request) if isinstance(request, str) else request
    result: Column = make_udf(spark, spec)(column)
    return result
