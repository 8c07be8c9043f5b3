-- Usage by endpoint for the last 7 days, from system.ai_gateway.usage.
SELECT endpoint_name,
       count(*)                                       AS requests,
       count_if(status_code IS NULL OR status_code <> 200) AS errors,
       sum(input_tokens)                              AS input_tokens,
       sum(output_tokens)                             AS output_tokens,
       percentile_approx(latency_ms, 0.5)             AS p50_latency_ms,
       percentile_approx(latency_ms, 0.95)            AS p95_latency_ms
FROM system.ai_gateway.usage
WHERE event_time >= current_timestamp() - INTERVAL 7 DAYS
GROUP BY endpoint_name
ORDER BY requests DESC;
