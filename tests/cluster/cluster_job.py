"""A `spark-submit`ted job for the cluster tier: one ai_query column into Delta, then a report.

Usage: spark-submit ... cluster_job.py <output path> even|skewed. Prints one JSON line:
rows written, distinct ids, rows answered, how usage reached the driver, what merged it into
the usage table, and the usage rows.
"""

from __future__ import annotations

import json
import sys

import aiquery
from aiquery.spark.coordinator import EXCHANGES
from aiquery.spark.session import spark_session
from aiquery.usage.driver.committer import committer
from aiquery.usage.driver.settings import usage_settings

SOURCES = {
    "even": "SELECT id FROM range(0, 160, 1, 4)",
    # One slow partition of 40 rows beside three of one row: a straggler to speculate on.
    "skewed": "SELECT id FROM range(0, 40, 1, 1) UNION ALL SELECT id FROM range(40, 43, 1, 3)",
}

if __name__ == "__main__":
    out, shape = sys.argv[1], sys.argv[2]
    spark = spark_session("aiquery-cluster-job")
    spark.sql(SOURCES[shape]).createOrReplaceTempView("src")
    aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gpt-5-4', concat('Summarize: Row ', id, ' is here. More.'), "
        "failOnError => false) AS a FROM src",
    ).write.format("delta").mode("overwrite").save(out)
    written = spark.read.format("delta").load(out)
    report = {
        # Answers this driver's exchange gave a task that did not send their requests.
        "shared": EXCHANGES.handed_out,
        "rows": written.count(),
        "ids": written.select("id").distinct().count(),
        "answered": written.where("a.result IS NOT NULL").count(),
        "delivery": usage_settings(spark).delivery,
        "merged_by": committer(spark).engine,  # delta-rs for a local or S3 table
    }
    aiquery.flush_usage(spark)
    # Usage as the table holds it, read through Spark: the table may be on object storage.
    usage = aiquery.sql(
        spark,
        "SELECT request_id, status_code, spark_app_id, spark_task FROM system.ai_gateway.usage",
    ).collect()
    report["usage"] = [row.asDict() for row in usage]
    print(json.dumps(report))
