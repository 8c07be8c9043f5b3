"""The usage table's columns: Databricks' `system.ai_gateway.usage`, plus a few aiquery columns."""

from __future__ import annotations

# (name, Spark SQL type, comment). The first block is Databricks' schema, in its order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("request_id", "STRING", "unique id of this HTTP request attempt (sent as x-request-id)"),
    ("invocation_id", "STRING", "one ai_query call site in one statement"),
    ("event_time", "TIMESTAMP", "when the request was sent"),
    ("endpoint_name", "STRING", "the endpoint as ai_query named it"),
    ("endpoint_id", "STRING", "stable id of the endpoint's name and URL"),
    (
        "destination_type",
        "STRING",
        "PAY_PER_TOKEN_FOUNDATION_MODEL | EXTERNAL_FOUNDATION_MODEL | CUSTOM_MODEL",
    ),
    ("destination_name", "STRING", "the serving endpoint or provider called"),
    ("destination_model", "STRING", "the model id sent upstream"),
    ("requester", "STRING", "who ran the query (aiquery.usage.requester, else the Spark user)"),
    ("api_type", "STRING", "e.g. serving-endpoints/invocations, openai/v1/chat/completions"),
    ("url", "STRING", "the URL called (never with credentials)"),
    ("user_agent", "STRING", "aiquery/<version>"),
    ("request_tags", "MAP<STRING, STRING>", "Databricks-Ai-Gateway-Request-Tags of the request"),
    ("input_tokens", "BIGINT", "NULL when the request failed before the model answered"),
    ("output_tokens", "BIGINT", "NULL when the request failed before the model answered"),
    ("total_tokens", "BIGINT", "input_tokens + output_tokens"),
    ("token_details", "MAP<STRING, BIGINT>", "reserved; NULL"),
    (
        "status_code",
        "INT",
        "HTTP status; NULL when no answer arrived (timeout, dropped, task died)",
    ),
    ("latency_ms", "BIGINT", "request sent → answer read"),
    ("time_to_first_byte_ms", "BIGINT", "request sent → response headers"),
    ("routing_information", "STRING", "the server's own request id, when it sent one"),
    # aiquery's own columns.
    ("event_date", "DATE", "partition column: the UTC date of event_time"),
    ("tokens_estimated", "BOOLEAN", "token counts are the (len + 1) // 4 estimate"),
    ("rows", "INT", "table rows this request served (embeddings batch many)"),
    ("attempt", "INT", "1 for the first try of a request, 2+ for retries"),
    ("error_message", "STRING", "why the attempt failed; NULL on success"),
    ("spark_app_id", "STRING", "the Spark application that sent it"),
    ("spark_task", "STRING", "stage.partition.attempt of the Spark task that sent it"),
)

DDL = ", ".join(f"{name} {kind}" for name, kind, _ in COLUMNS)
NAMES = tuple(name for name, _, _ in COLUMNS)
TABLE = "ai_gateway.usage"
SYSTEM_TABLE = ("system", "ai_gateway", "usage")
