"""aiquery: Databricks-style `ai_query` batch LLM inference for open-source Apache Spark."""

__version__ = "0.1.0"
