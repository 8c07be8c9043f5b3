"""Driver side of usage: where it goes (`settings`), reading the spool (`spool`), committing
it to Delta exactly once (`committer`) and live progress (`progress`). Needs pyspark."""
