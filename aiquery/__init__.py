"""aiquery: Databricks-style `ai_query` batch LLM inference for open-source Apache Spark.

import aiquery
aiquery.register(spark)                      # ai_query(endpoint, request) in spark.sql
aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-4', text, failOnError => false) FROM t")
from aiquery.functions import ai_query       # the DataFrame API (and ai_classify, ai_extract, ...)
aiquery.configure(endpoints={...})           # endpoints from Python (see aiquery.endpoints.registry)
aiquery.estimate(spark, "SELECT ...")        # what a query's AI calls would send and cost; sends nothing
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiquery.version import __version__

__all__ = [
    "AiQueryError",
    "RequestError",
    "__version__",
    "configure",
    "estimate",
    "flush_usage",
    "progress",
    "register",
    "sql",
]

if TYPE_CHECKING:
    from aiquery.endpoints.registry import configure
    from aiquery.errors import AiQueryError, RequestError
    from aiquery.spark.estimate import estimate
    from aiquery.spark.sql import register, sql
    from aiquery.usage.driver.committer import flush as flush_usage
    from aiquery.usage.driver.progress import progress

_LAZY = {
    "configure": "aiquery.endpoints.registry",
    "AiQueryError": "aiquery.errors",
    "RequestError": "aiquery.errors",
    "register": "aiquery.spark.sql",
    "sql": "aiquery.spark.sql",
    "estimate": "aiquery.spark.estimate",
    "progress": "aiquery.usage.driver.progress",
    "flush_usage": "aiquery.usage.driver.committer",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `aiquery serve` and the client never import pyspark.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aiquery' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), "flush" if name == "flush_usage" else name)
