"""Usage tracking: one row per HTTP request attempt in the Delta table `system.ai_gateway.usage`.

Executors append records to a spool (`spool.py`); the driver's committer merges them into
Delta exactly once, keyed by request id (`committer.py`); `report.py` and `dashboard.py`
read the table back.
"""
