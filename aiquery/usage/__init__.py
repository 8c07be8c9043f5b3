"""Usage tracking: one row per HTTP request attempt in the Delta table `system.ai_gateway.usage`.

- `record`: the usage record, defined once (columns, spool lines, rows); both sides;
- `executor`: executor side, a task's spool writer (the client's `Recorder`);
- `driver/`: driver side, settings, the spool reader, the Delta committer, live progress;
- `report`, `dashboard`, `svg`: reading the table back without Spark (the CLI).
"""
