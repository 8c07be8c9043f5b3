"""The response cache's keys and stored answers (executor side, no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from aiquery.client.cache import Keys, cache_key, decode_answer, encode_answer
from aiquery.client.wire import Prompt
from aiquery.endpoints.registry import Endpoint
from aiquery.protocols.common import CHAT, Image

CHATTY = Endpoint(
    "databricks-gpt-5-mini", "databricks", "http://a.test", CHAT, "databricks-gpt-5-mini"
)


def test_a_key_changes_with_the_model_the_parameters_and_the_input_and_nothing_else() -> None:
    base = cache_key(CHATTY, {"max_tokens": 10}, "hello")
    assert base == cache_key(CHATTY, {"max_tokens": 10}, "hello")
    assert base == cache_key(
        Endpoint(
            "system.ai.gpt-5-mini", "databricks", "http://other.test", CHAT, "databricks-gpt-5-mini"
        ),
        {"max_tokens": 10},
        "hello",
    )  # the same model under its gateway name, served elsewhere
    others = {
        cache_key(CHATTY, {"max_tokens": 11}, "hello"),
        cache_key(CHATTY, {}, "hello"),
        cache_key(CHATTY, {"max_tokens": 10}, "hello!"),
        cache_key(
            Endpoint("databricks-gpt-5-mini", "databricks", "http://a.test", CHAT, "gpt-6"),
            {"max_tokens": 10},
            "hello",
        ),
        cache_key(CHATTY, {"max_tokens": 10}, Prompt("hello", system="Classify.")),
    }
    assert base not in others and len(others) == 5


def test_prompts_with_images_key_by_their_bytes() -> None:
    one = Prompt("describe", images=(Image("image/png", b"\x89PNG one"),))
    two = Prompt("describe", images=(Image("image/png", b"\x89PNG two"),))
    assert cache_key(CHATTY, {}, one) == cache_key(CHATTY, {}, one)
    assert cache_key(CHATTY, {}, one) != cache_key(CHATTY, {}, two)


def test_a_call_sites_keys_are_the_keys_of_the_whole_document() -> None:
    """`Keys` hashes the endpoint and parameters once; stored cache entries were keyed by
    `cache_key`, so each input must key the same either way."""
    params = {"max_tokens": 10, "temperature": 0.5, "response_format": {"type": "json_object"}}
    keys = Keys(CHATTY, params)
    inputs = [
        "hello",
        "",
        'quotes " and \\ backslashes',
        "ünïcode, 漢字 and an emoji 🎉",
        "control \x00\x1f\n\t characters",
        "\ud800 a lone surrogate",
        None,
        Prompt("hello", system="Classify."),
        {"feature_a": 1.5, "b": [1, 2]},
    ]
    for value in inputs:
        assert keys(value) == cache_key(CHATTY, params, value), repr(value)
    assert Keys(CHATTY, {})("hello") == cache_key(CHATTY, {}, "hello")


@pytest.mark.parametrize(
    "answer", ["a summary, with ünïcode", {"prediction": [1.5, 2]}, 42, None, ""]
)
def test_answers_round_trip(answer: object) -> None:
    assert decode_answer(encode_answer(answer)) == answer


def test_vectors_round_trip_bit_for_bit_as_float32() -> None:
    vector = np.random.default_rng(3).standard_normal(1024).astype(np.float32)
    back = decode_answer(encode_answer(vector))
    assert back.dtype == np.float32 and back.tobytes() == vector.tobytes()
