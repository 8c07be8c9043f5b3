"""`ai_query(..., files => content)`: a Delta table of images made in the test (PNG and JPEG
bytes, one corrupt file) sent to a vision chat model, through the SQL function and the
DataFrame API."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_bytes import jpeg, png
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from aiquery.functions import ai_query
from aiquery.serving.control import EmulatorControl

pytestmark = pytest.mark.spark
VISION = "databricks-llama-4-maverick"


@pytest.fixture
def images(spark, tmp_path: Path):  # type: ignore[no-untyped-def]
    files = [
        ("cat.png", png(64, 48)),
        ("dog.jpg", jpeg(320, 200)),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really"),
        ("empty.png", None),
    ]
    location = str(tmp_path / "images")
    spark.createDataFrame(files, "path STRING, content BINARY").write.format("delta").save(location)
    spark.read.format("delta").load(location).createOrReplaceTempView("images")


def test_images_are_described_and_a_corrupt_file_is_that_rows_error(
    spark, workspace, images, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    rows = spark.sql(
        f"""SELECT path, ai_query('{VISION}', 'what is this image about?', files => content,
                                  failOnError => false) AS r
            FROM images"""
    ).collect()
    by_path = {r.path: r.r for r in rows}
    assert by_path["cat.png"].result == "A PNG image of 64x48 pixels."
    assert by_path["dog.jpg"].result == "A JPEG image of 320x200 pixels."
    assert by_path["broken.png"].result is None
    assert "is not an image (PNG, JPEG, GIF, WebP" in by_path["broken.png"].errorMessage
    assert "nothing was sent" in by_path["broken.png"].errorMessage
    # NULL files: the prompt alone.
    assert by_path["empty.png"].result == "what is this image about?"
    assert len(control.requests(VISION)) == 3  # the corrupt file sent nothing

    with pytest.raises(Exception, match="is not an image"):
        spark.sql(
            f"SELECT ai_query('{VISION}', 'describe', files => content) FROM images"
        ).collect()


def test_files_from_the_dataframe_api_and_checked_at_analysis(spark, workspace, images) -> None:  # type: ignore[no-untyped-def]
    [row] = (
        spark.table("images")
        .where("path = 'dog.jpg'")
        .select(ai_query(VISION, F.lit("what is it?"), files="content").alias("d"))
        .collect()
    )
    assert row.d == "A JPEG image of 320x200 pixels."
    with pytest.raises(AnalysisException, match="files must be a BINARY column"):
        spark.sql(f"SELECT ai_query('{VISION}', 'x', files => path) FROM images")
    with pytest.raises(AnalysisException, match="needs a chat endpoint"):
        spark.sql("SELECT ai_query('databricks-gte-large-en', 'x', files => content) FROM images")


def test_an_image_over_the_payload_limit_is_refused_before_sending(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    huge = png(8, 8) + b"\x00" * (3 * 1024 * 1024 + 1)  # 4 MB+ once base64-encoded
    df = spark.createDataFrame([(huge,)], "content BINARY")
    [row] = df.select(
        ai_query(VISION, F.lit("describe"), failOnError=False, files="content").alias("r")
    ).collect()
    assert row.r.result is None and "over the endpoint's 4 MB request limit" in row.r.errorMessage
    assert control.requests(VISION) == []
