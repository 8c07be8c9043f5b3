"""Spark integration: the session builder, and (next) the ai_query UDFs and SQL rewriting."""
