"""The AI functions' pieces without Spark: the task prompts and answers shared by the client
and the emulator, the argument checks, the answer decoding per row, and image sniffing."""

from __future__ import annotations

import json
import struct

import pyarrow as pa
import pytest
from image_bytes import jpeg, png
from pyspark.sql.types import FloatType, StringType

from aiquery.client.sending import RowResult
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import AnalysisError, InvalidArgumentError, ParseCastError
from aiquery.protocols.common import CHAT, EMBEDDINGS, Message
from aiquery.protocols.images import sniff
from aiquery.protocols.tasks import (
    KINDS,
    Task,
    TaskAnswerError,
    decode,
    read_task,
    system_prompt,
)
from aiquery.spark.aischema import check_options, check_user_schema, labels_v2
from aiquery.spark.callspec import CallSpec
from aiquery.spark.rows import Rows, cosine

TASKS = [
    Task("ai_analyze_sentiment"),
    Task("ai_classify", {"labels": ["a", "b"], "version": "1"}),
    Task("ai_extract", {"schema": {"x": {"type": "integer"}}, "version": "2.0"}),
    Task("ai_fix_grammar"),
    Task("ai_mask", {"labels": ["email"]}),
    Task("ai_summarize", {"max_words": 0}),
    Task("ai_translate", {"to_lang": "th"}),
]


def test_every_chat_task_is_read_back_from_its_prompt_by_the_emulator() -> None:
    assert {t.function for t in TASKS} == set(KINDS)
    for task in TASKS:
        prompt = system_prompt(task)
        assert prompt is not None
        messages = [Message("system", prompt), Message("user", "Task: {}")]
        assert read_task(messages) == task
    # A user's text that looks like a task line is content, never a task.
    assert read_task([Message("user", 'hi\nTask: {"function": "ai_mask"}')]) is None


def test_answers_are_decoded_strictly_and_labels_must_be_known() -> None:
    v1 = Task("ai_classify", {"labels": ["urgent", "later"], "version": "1"})
    assert decode(v1, '```json\n{"labels": [{"value": "later"}]}\n```', "") == "later"
    assert decode(v1, '{"labels": [{"value": "someday"}]}', "") is None
    with pytest.raises(TaskAnswerError, match="not JSON"):
        decode(v1, "later", "")
    with pytest.raises(TaskAnswerError, match="'labels'"):
        decode(v1, '{"label": "later"}', "")
    v2 = Task("ai_extract", {"schema": check_user_schema('{"n": {"type": "integer"}, "ok": {"type": "boolean"}}'), "version": "2.0"})  # fmt: skip
    assert decode(v2, '{"n": "7", "ok": true}', "") == {
        "response": {"n": None, "ok": True},  # a string is not an integer: NULL, as typed
        "error_message": None,
    }


def _spec(task: Task, variant: bool) -> CallSpec:
    endpoint = Endpoint("m", "databricks", "http://127.0.0.1:1", CHAT, "m")
    return CallSpec(
        endpoint,
        {},
        StringType().json(),
        False,
        not variant,
        task=task,
        inputs=("content",),
        variant=variant,
    )


def test_an_answer_of_the_wrong_shape_raises_in_v1_and_is_data_in_v2() -> None:
    v1 = Rows(_spec(Task("ai_analyze_sentiment"), variant=False))
    assert v1.values([RowResult('{"sentiment": "mixed"}')], ["x"]) == ["mixed"]
    with pytest.raises(ParseCastError, match="into the result of ai_analyze_sentiment"):
        v1.values([RowResult("I think positive")], ["x"])
    task = Task("ai_classify", {"labels": ["a", "b"], "version": "2.0"})
    v2 = Rows(_spec(task, variant=True))
    [failed] = v2.values([RowResult("not json")], ["x"])
    assert json.loads(failed)["response"] is None
    assert "AI_FUNCTION_HTTP_PARSE_CAST_ERROR" in json.loads(failed)["error_message"]
    assert v2.values([RowResult(None)], [None]) == [None]


def test_v2_labels_options_and_schemas_are_checked_like_databricks_documents() -> None:
    assert labels_v2('{"a": "first", "b": ""}') == (["a", "b"], {"a": "first"})
    with pytest.raises(AnalysisError, match="2 to 500 labels"):
        labels_v2(json.dumps([f"l{i}" for i in range(501)]))
    with pytest.raises(AnalysisError, match="1 to 100 characters"):
        labels_v2(json.dumps(["a", "b" * 101]))
    assert check_options("ai_classify", {"enableConfidenceScores": "TRUE"}) == {
        "version": "2.1",
        "confidence": True,
    }
    assert check_options("ai_extract", None) == {"version": "2.0"}
    with pytest.raises(AnalysisError, match="no option 'multilabel'"):
        check_options("ai_extract", {"multilabel": "true"})
    with pytest.raises(AnalysisError, match="at most 20,000"):
        check_options("ai_classify", {"instructions": "x" * 20_001})
    deep: dict = {"type": "string"}  # type: ignore[type-arg]
    for _ in range(7):
        deep = {"type": "object", "properties": {"f": deep}}
    with pytest.raises(AnalysisError, match="deeper than 7"):
        check_user_schema({"top": deep})
    with pytest.raises(AnalysisError, match="more than 128 properties"):
        check_user_schema({f"f{i}": {"type": "string"} for i in range(129)})
    with pytest.raises(AnalysisError, match="not starting with '_'"):
        check_user_schema({"_hidden": {"type": "string"}})
    assert check_user_schema('["a", "b"]') == {"a": {"type": "string"}, "b": {"type": "string"}}


def test_image_types_and_sizes_come_from_the_bytes() -> None:
    assert (sniff(png(3, 2)).format, sniff(png(3, 2)).width, sniff(png(3, 2)).height) == (
        "PNG",
        3,
        2,
    )  # type: ignore[union-attr]
    assert sniff(jpeg(640, 480)).media_type == "image/jpeg"  # type: ignore[union-attr]
    assert sniff(b"GIF89a" + struct.pack("<HH", 5, 7)).width == 5  # type: ignore[union-attr]
    vp8x = (
        b"RIFF\x00\x00\x00\x00WEBPVP8X"
        + b"\x00" * 8
        + (99).to_bytes(3, "little")
        + (49).to_bytes(3, "little")
    )
    assert (sniff(vp8x).width, sniff(vp8x).height) == (100, 50)  # type: ignore[union-attr]
    for broken in (b"", png(3, 2)[:20], b"\xff\xd8\xff\xe0\x00", b"%PDF-1.7", jpeg(0, 10)):
        assert sniff(broken) is None


def test_similarity_checks_both_texts_and_sends_none_for_a_null_pair() -> None:
    endpoint = Endpoint("e", "databricks", "http://127.0.0.1:1", EMBEDDINGS, "e")
    spec = CallSpec(endpoint, {}, FloatType().json(), False, True, task=Task("ai_similarity"),
                    inputs=("expr1", "expr2"))  # fmt: skip
    rows = Rows(spec)
    texts, _ = rows.inputs((pa.array(["a", None]), pa.array(["b", "c"])))
    assert texts == ["a", "b", None, None]
    with pytest.raises(InvalidArgumentError, match="takes a STRING"):
        rows.inputs((pa.array(["a"]), pa.array([1])))


def test_similarity_is_the_clamped_cosine() -> None:
    assert cosine([1.0, 0.0], [1.0, 0.0]) == 1.0
    assert cosine([1.0, 0.0], [-1.0, 0.0]) == 0.0
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(2**-0.5)
