"""The async HTTP client: wire formats per endpoint, retries, rate and concurrency limits, the
batch window that keeps many requests in flight per Spark task."""
