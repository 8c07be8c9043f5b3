"""`aiquery demo`: a whole batch job on the embedded default, from sample data to usage.

1. writes a Delta table of product reviews (deterministic, a few hundred rows);
2. summarises every review with `ai_query` (SQL, failOnError => false, request tags);
3. embeds every review (DataFrame API) into a second Delta table;
4. commits usage, prints a sample of results and a usage summary, writes the dashboard.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PRODUCTS = (
    ("Aurora wireless headphones", "audio"),
    ("TrailRunner 3 running shoes", "footwear"),
    ("Nimbus 14 laptop", "computers"),
    ("BrewMaster espresso machine", "kitchen"),
    ("Summit 40L hiking backpack", "outdoor"),
    ("Lumen smart desk lamp", "home"),
    ("PixelView 27 monitor", "computers"),
    ("Harbor cast-iron skillet", "kitchen"),
)
PRAISE = (
    "The {aspect} is excellent and exceeded my expectations.",
    "I am impressed by the {aspect}; it works exactly as advertised.",
    "Great {aspect}, and setup took less than five minutes.",
    "After three weeks of daily use the {aspect} still feels premium.",
)
COMPLAINTS = (
    "The {aspect} disappointed me and support was slow to answer.",
    "Unfortunately the {aspect} stopped working after a month.",
    "The {aspect} feels cheap for the price.",
    "I had to return it because the {aspect} was inconsistent.",
)
ASPECTS = {
    "audio": ("battery life", "noise cancelling", "sound quality", "ear cushions"),
    "footwear": ("grip", "cushioning", "fit", "durability"),
    "computers": ("screen", "keyboard", "battery life", "build quality"),
    "kitchen": ("heating", "build quality", "cleanup", "temperature control"),
    "outdoor": ("straps", "zippers", "rain cover", "capacity"),
    "home": ("brightness", "app", "color temperature", "base"),
}
CLOSERS = (
    "Would buy again.",
    "I would recommend it to a friend.",
    "Not sure I would buy it again.",
    "Overall a fair deal.",
    "Shipping was fast.",
)


def sample_reviews(count: int = 300, seed: int = 7) -> list[tuple[int, str, str, int, str]]:
    """(id, product, category, rating, review) rows that read like real reviews."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        product, category = rng.choice(PRODUCTS)
        rating = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 3, 4))[0]
        aspects = rng.sample(ASPECTS[category], 2)
        good = rating >= 4
        first = rng.choice(PRAISE if good else COMPLAINTS).format(aspect=aspects[0])
        second = rng.choice(COMPLAINTS if rating == 3 else PRAISE if good else COMPLAINTS)
        review = f"{first} {second.format(aspect=aspects[1])} {rng.choice(CLOSERS)}"
        rows.append((i, product, category, rating, f"I bought the {product}. {review}"))
    return rows


def run_demo(spark: SparkSession, rows: int = 300, out: TextIO | None = None) -> Path:
    """Run the demo job in `spark`, under its warehouse; returns the dashboard's path."""
    import aiquery
    from aiquery.functions import ai_query
    from aiquery.usage import report
    from aiquery.usage.dashboard import write_dashboard
    from aiquery.usage.driver.settings import usage_settings

    out = out or sys.stdout
    root = Path(urlparse(spark.conf.get("spark.sql.warehouse.dir", None) or "spark-warehouse").path)
    data = root / "aiquery_demo"

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"1/4 writing {rows} sample reviews to {data / 'reviews'}")
    spark.createDataFrame(
        sample_reviews(rows), "id INT, product STRING, category STRING, rating INT, review STRING"
    ).write.format("delta").mode("overwrite").save(str(data / "reviews"))
    spark.read.format("delta").load(str(data / "reviews")).createOrReplaceTempView("reviews")

    say("2/4 summarising every review with ai_query('databricks-gpt-5-4', ...)")
    spark.conf.set("aiquery.requestTags", '{"project": "aiquery-demo", "job": "summarize"}')
    with aiquery.progress(spark, stream=out):
        summaries = aiquery.sql(
            spark,
            """SELECT id, product, rating,
                      ai_query('databricks-gpt-5-4', concat('Summarize: ', review),
                               modelParameters => named_struct('max_tokens', 64),
                               failOnError => false) AS summary
               FROM reviews""",
        )
        summaries.selectExpr(
            "id", "product", "rating", "summary.result AS summary", "summary.errorMessage AS error"
        ).write.format("delta").mode("overwrite").save(str(data / "summaries"))

    say("3/4 embedding every review with ai_query('databricks-gte-large-en', ...)")
    spark.conf.set("aiquery.requestTags", '{"project": "aiquery-demo", "job": "embed"}')
    with aiquery.progress(spark, stream=out):
        spark.table("reviews").select(
            "id", ai_query("databricks-gte-large-en", "review").alias("embedding")
        ).write.format("delta").mode("overwrite").save(str(data / "embeddings"))
    spark.conf.unset("aiquery.requestTags")

    say("4/4 committing usage to system.ai_gateway.usage\n")
    aiquery.flush_usage(spark)
    result = spark.read.format("delta").load(str(data / "summaries"))
    failed = result.where("error IS NOT NULL").count()
    say(f"summaries: {result.count()} rows ({failed} failed) in {data / 'summaries'}")
    sample = [r.asDict() for r in result.orderBy("id").limit(5).collect()]
    say(report.format_table([{k: v for k, v in r.items() if k != "error"} for r in sample]) + "\n")
    dims = (
        spark.read.format("delta")
        .load(str(data / "embeddings"))
        .selectExpr("size(embedding) AS d")
        .first()
    )
    say(f"embeddings: {rows} rows of {dims.d if dims else 0} floats in {data / 'embeddings'}\n")

    location = usage_settings(spark).location
    usage = report.load_rows(location)
    mine = [u for u in usage if (u.get("request_tags") or {}).get("project") == "aiquery-demo"]
    say("usage of this demo, by job (from system.ai_gateway.usage):")
    say(report.format_table(report.summarize(mine, ["endpoint", "job"])) + "\n")
    dashboard = write_dashboard(usage, root / "aiquery-usage.html")
    say(f"usage table: {location}")
    say(f"dashboard:   {dashboard}  (open it in a browser; `aiquery usage dashboard` rewrites it)")
    spark.stop()
    return dashboard
