"""The endpoint registry: what a name resolves to, from which source, and that tokens never leak.

Every test passes an explicit `environ` and `cwd`, so the real environment and working
directory never matter; `configure()` state is cleared around each test.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiquery.endpoints.catalog import DEFAULT_PRICES, Price
from aiquery.endpoints.registry import (
    EMBEDDED,
    Endpoint,
    Registry,
    Secret,
    configure,
    load_registry,
    reset_configuration,
)
from aiquery.errors import AnalysisError, ConfigError, EndpointNotFoundError
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS

SECRET = "dapi-SECRET-123"
HOST = "https://adb-1234.azuredatabricks.net"

# SPEC section 8, written out here so the catalog cannot drift from the documentation unnoticed.
CHAT_NAMES = [
    "databricks-gpt-5-4",
    "databricks-gpt-5",
    "databricks-gpt-5-mini",
    "databricks-gpt-5-nano",
    "databricks-gpt-oss-120b",
    "databricks-gpt-oss-20b",
    "databricks-claude-sonnet-4",
    "databricks-claude-sonnet-4-5",
    "databricks-claude-sonnet-4-6",
    "databricks-claude-opus-4-6",
    "databricks-claude-haiku-4-5",
    "databricks-gemini-2-5-pro",
    "databricks-gemini-2-5-flash",
    "databricks-meta-llama-3-3-70b-instruct",
    "databricks-meta-llama-3-1-8b-instruct",
    "databricks-llama-4-maverick",
    "databricks-gemma-3-12b",
    "databricks-qwen3-next-80b-a3b-instruct",
]
EMBEDDING_NAMES = ["databricks-gte-large-en", "databricks-bge-large-en"]
BUILTIN_NAMES = CHAT_NAMES + EMBEDDING_NAMES


@pytest.fixture(autouse=True)
def _clean_configuration() -> Iterator[None]:
    reset_configuration()
    yield
    reset_configuration()


def load(cwd: Path, **environ: str) -> Registry:
    return load_registry(environ=environ, cwd=cwd)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid endpoint spec, changed by `overrides`."""
    return {"protocol": "openai", "base_url": "http://127.0.0.1:8000/v1", **overrides}


# --- built-in names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_NAMES)
def test_builtin_chat_names_resolve_to_the_embedded_emulator(tmp_path: Path, name: str) -> None:
    endpoint = load(tmp_path).resolve(name)
    assert (endpoint.name, endpoint.protocol, endpoint.base_url) == (name, "databricks", EMBEDDED)
    assert endpoint.task == CHAT
    assert endpoint.model == name
    assert endpoint.token is None
    assert endpoint.source == "builtin"


@pytest.mark.parametrize("name", EMBEDDING_NAMES)
def test_builtin_embedding_names_have_the_embeddings_task(tmp_path: Path, name: str) -> None:
    endpoint = load(tmp_path).resolve(name)
    assert (endpoint.protocol, endpoint.base_url, endpoint.task) == (
        "databricks",
        EMBEDDED,
        EMBEDDINGS,
    )


def test_without_any_configuration_only_the_builtin_names_exist(tmp_path: Path) -> None:
    assert sorted(load(tmp_path).endpoints) == sorted(BUILTIN_NAMES)


@pytest.mark.parametrize(
    ("gateway_name", "endpoint_name", "task"),
    [
        ("system.ai.gpt-5-4", "databricks-gpt-5-4", CHAT),
        ("system.ai.claude-sonnet-4-5", "databricks-claude-sonnet-4-5", CHAT),
        ("system.ai.gte-large-en", "databricks-gte-large-en", EMBEDDINGS),
    ],
)
def test_gateway_name_resolves_to_its_databricks_endpoint(
    tmp_path: Path, gateway_name: str, endpoint_name: str, task: str
) -> None:
    endpoint = load(tmp_path).resolve(gateway_name)
    assert endpoint.name == endpoint_name
    assert endpoint.task == task


# --- DATABRICKS_HOST + DATABRICKS_TOKEN -------------------------------------------------


def test_workspace_variables_route_every_builtin_name_to_the_host_with_the_token(
    tmp_path: Path,
) -> None:
    registry = load(tmp_path, DATABRICKS_HOST=HOST, DATABRICKS_TOKEN=SECRET)
    for name in BUILTIN_NAMES:
        endpoint = registry.resolve(name)
        assert endpoint.base_url == HOST, name
        assert endpoint.protocol == "databricks", name
        assert endpoint.token is not None and endpoint.token.value == SECRET, name
        assert endpoint.source == "environment", name
    assert registry.resolve("system.ai.gpt-5-4").base_url == HOST
    assert registry.resolve("databricks-bge-large-en").task == EMBEDDINGS


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        ("adb-1234.azuredatabricks.net", "https://adb-1234.azuredatabricks.net"),
        ("adb-1234.azuredatabricks.net/", "https://adb-1234.azuredatabricks.net"),
        ("https://adb-1234.azuredatabricks.net/", "https://adb-1234.azuredatabricks.net"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_workspace_host_gets_https_and_loses_its_trailing_slash(
    tmp_path: Path, host: str, base_url: str
) -> None:
    registry = load(tmp_path, DATABRICKS_HOST=host, DATABRICKS_TOKEN=SECRET)
    assert registry.resolve("databricks-gpt-5").base_url == base_url


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"DATABRICKS_HOST": HOST}, "DATABRICKS_TOKEN"),
        ({"DATABRICKS_TOKEN": SECRET}, "DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": ""}, "DATABRICKS_TOKEN"),
    ],
)
def test_half_a_workspace_configuration_names_the_missing_variable(
    tmp_path: Path, environ: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry(environ=environ, cwd=tmp_path)
    assert f"{missing} is not set" in str(caught.value)
    assert SECRET not in str(caught.value)


# --- files --------------------------------------------------------------------------------


def test_aiquery_toml_in_the_working_directory_defines_endpoints(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "aiquery.toml",
        """
        [endpoints.my-llama]
        protocol = "openai"
        base_url = "http://127.0.0.1:8000/v1/"
        model = "meta-llama/Llama-3.1-8B-Instruct"
        task = "chat"
        token_env = "VLLM_API_KEY"
        max_concurrency = 32
        requests_per_minute = 600
        tokens_per_minute = 200000
        timeout_s = 30
        max_batch_size = 16
        input_price_per_million = 0.2
        output_price_per_million = 0
        """,
    )
    endpoint = load(tmp_path, VLLM_API_KEY=SECRET).resolve("my-llama")
    assert endpoint == Endpoint(
        name="my-llama",
        protocol="openai",
        base_url="http://127.0.0.1:8000/v1",
        task=CHAT,
        model="meta-llama/Llama-3.1-8B-Instruct",
        token=Secret(SECRET),
        max_concurrency=32,
        requests_per_minute=600.0,
        tokens_per_minute=200000.0,
        timeout_s=30.0,
        max_batch_size=16,
        price=Price(0.2, 0.0),
        source=f"file:{tmp_path / 'aiquery.toml'}",
    )


def test_a_minimal_file_endpoint_gets_the_documented_defaults(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "aiquery.toml", '[endpoints.plain]\nbase_url = "https://serving.example"\n'
    )
    endpoint = load(tmp_path).resolve("plain")
    assert endpoint.protocol == "databricks"
    assert endpoint.task == CHAT
    assert endpoint.model == "plain"
    assert endpoint.token is None
    assert (endpoint.max_concurrency, endpoint.requests_per_minute) == (None, None)
    assert (endpoint.timeout_s, endpoint.max_batch_size) == (297.0, 100)
    assert endpoint.encoding_format == "base64"
    assert endpoint.price is None  # unknown: no cost shown, no cost budget can be met


def test_databricks_names_have_documented_default_prices_a_file_may_override(
    tmp_path: Path,
) -> None:
    registry = load(tmp_path)
    assert (
        registry.resolve("databricks-gpt-5-mini").price == DEFAULT_PRICES["databricks-gpt-5-mini"]
    )
    assert registry.resolve("system.ai.gpt-5-mini").price == DEFAULT_PRICES["databricks-gpt-5-mini"]
    assert all(e.price is not None for e in registry.endpoints.values())
    write_toml(
        tmp_path / "aiquery.toml",
        """
        [endpoints.databricks-gpt-5-mini]
        base_url = "https://workspace.example"
        [endpoints.databricks-gpt-5-nano]
        base_url = "https://workspace.example"
        input_price_per_million = 0.07
        output_price_per_million = 0.5
        """,
    )
    registry = load(tmp_path)
    assert (
        registry.resolve("databricks-gpt-5-mini").price == DEFAULT_PRICES["databricks-gpt-5-mini"]
    )
    assert registry.resolve("databricks-gpt-5-nano").price == Price(0.07, 0.5)
    assert Price(0.07, 0.5).cost(1_000_000, 2_000_000) == pytest.approx(1.07)


@pytest.mark.parametrize(
    "prices",
    [
        "input_price_per_million = 0.1",
        "input_price_per_million = -1\noutput_price_per_million = 1",
        'input_price_per_million = "cheap"\noutput_price_per_million = 1',
    ],
)
def test_a_bad_price_names_both_settings_and_the_unit(tmp_path: Path, prices: str) -> None:
    write_toml(
        tmp_path / "aiquery.toml",
        f'[endpoints.x]\nbase_url = "https://serving.example"\n{prices}\n',
    )
    with pytest.raises(ConfigError, match="go together, each a number of US dollars per million"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("task", "resolved"),
    [
        ("chat", CHAT),
        ("llm/v1/chat", CHAT),
        ("completions", COMPLETIONS),
        ("llm/v1/completions", COMPLETIONS),
        ("embeddings", EMBEDDINGS),
        ("llm/v1/embeddings", EMBEDDINGS),
        ("custom", CUSTOM),
    ],
)
def test_task_accepts_short_and_databricks_names(tmp_path: Path, task: str, resolved: str) -> None:
    configure({"x": spec(protocol="databricks", task=task)})
    assert load(tmp_path).resolve("x").task == resolved


def test_aiquery_endpoints_variable_wins_over_the_working_directory_file(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "aiquery.toml",
        '[endpoints.shared]\nbase_url = "http://cwd.example"\n'
        '[endpoints.only-in-cwd]\nbase_url = "http://cwd.example"\n',
    )
    named = write_toml(
        tmp_path / "elsewhere.toml", '[endpoints.shared]\nbase_url = "http://named.example"\n'
    )
    registry = load(tmp_path, AIQUERY_ENDPOINTS=str(named))
    assert registry.resolve("shared").base_url == "http://named.example"
    assert registry.resolve("shared").source == f"file:{named}"
    # The named file replaces ./aiquery.toml; the two are not merged.
    assert "only-in-cwd" not in registry.endpoints


def test_aiquery_endpoints_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    write_toml(tmp_path / "aiquery.toml", '[endpoints.x]\nbase_url = "http://x.example"\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, AIQUERY_ENDPOINTS=str(missing))
    assert str(missing) in str(caught.value)
    assert "AIQUERY_ENDPOINTS" in str(caught.value)


def test_a_file_that_is_not_toml_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "aiquery.toml", f'[endpoints.x]\ntoken = "{SECRET}"\nbase_url =\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert "not valid TOML" in str(caught.value)
    assert str(path) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_endpoints_outside_named_tables_are_a_config_error(tmp_path: Path) -> None:
    write_toml(tmp_path / "aiquery.toml", '[endpoints]\nx = "http://x.example"\n')
    with pytest.raises(ConfigError, match=r"\[endpoints\.NAME\]"):
        load(tmp_path)


# --- precedence ---------------------------------------------------------------------------


def test_the_same_name_at_every_level_resolves_to_the_highest_priority(tmp_path: Path) -> None:
    name = "databricks-gpt-5"
    workspace = {"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": SECRET}
    assert load(tmp_path).resolve(name).source == "builtin"

    assert load(tmp_path, **workspace).resolve(name).base_url == HOST

    write_toml(tmp_path / "aiquery.toml", f'[endpoints.{name}]\nbase_url = "http://file.example"\n')
    from_file = load(tmp_path, **workspace).resolve(name)
    assert from_file.base_url == "http://file.example"
    assert from_file.source.startswith("file:")
    assert from_file.token is None  # the file's definition replaces the environment's whole

    configure({name: {"base_url": "http://python.example"}})
    from_python = load(tmp_path, **workspace).resolve(name)
    assert from_python.base_url == "http://python.example"
    assert from_python.source == "python"
    # The gateway form follows whichever definition won.
    assert (
        load(tmp_path, **workspace).resolve("system.ai.gpt-5").base_url == "http://python.example"
    )

    reset_configuration()
    assert load(tmp_path, **workspace).resolve(name).base_url == "http://file.example"


def test_configure_accumulates_and_a_later_call_overrides_the_same_name(tmp_path: Path) -> None:
    configure({"a": spec(model="a1"), "b": spec(model="b1")})
    configure({"a": spec(model="a2")})
    registry = load(tmp_path)
    assert (registry.resolve("a").model, registry.resolve("b").model) == ("a2", "b1")


def test_configure_with_one_bad_endpoint_adds_none_of_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        configure({"good": spec(), "bad": spec(protocol="grpc")})
    assert "good" not in load(tmp_path).endpoints


# --- tokens -------------------------------------------------------------------------------


def test_token_env_reads_the_token_from_the_environment(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "aiquery.toml",
        '[endpoints.vllm]\nbase_url = "http://127.0.0.1:8000/v1"\ntoken_env = "VLLM_API_KEY"\n',
    )
    token = load(tmp_path, VLLM_API_KEY=SECRET).resolve("vllm").token
    assert token is not None and token.value == SECRET


@pytest.mark.parametrize("environ", [{}, {"VLLM_API_KEY": ""}])
def test_token_env_naming_an_unset_variable_is_a_clear_error(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    write_toml(
        tmp_path / "aiquery.toml",
        '[endpoints.vllm]\nbase_url = "http://127.0.0.1:8000/v1"\ntoken_env = "VLLM_API_KEY"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_registry(
            environ={**environ, "DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": SECRET}, cwd=tmp_path
        )
    message = str(caught.value)
    assert "endpoint 'vllm'" in message
    assert "VLLM_API_KEY" in message
    assert "not set" in message
    assert SECRET not in message


# --- validation ---------------------------------------------------------------------------

BAD_SPECS = [
    pytest.param(spec(api_key=SECRET), "api_key", id="unknown-key"),
    pytest.param(spec(protocol="grpc"), "protocol must be one of", id="bad-protocol"),
    pytest.param(spec(task="vision"), "task must be one of", id="bad-task"),
    pytest.param(spec(base_url="ftp://files.example"), "base_url must be an http(s) URL", id="ftp"),
    pytest.param(
        spec(base_url="127.0.0.1:8000"), "base_url must be an http(s) URL", id="no-scheme"
    ),
    pytest.param({"protocol": "openai"}, "base_url must be an http(s) URL", id="no-base-url"),
    pytest.param(spec(max_concurrency=0), "max_concurrency must be a positive", id="zero-conc"),
    pytest.param(spec(max_concurrency=-4), "max_concurrency must be a positive", id="neg-conc"),
    pytest.param(spec(max_concurrency=True), "max_concurrency must be a positive", id="bool-conc"),
    pytest.param(spec(max_concurrency="8"), "max_concurrency must be a positive", id="str-conc"),
    pytest.param(spec(requests_per_minute=0), "requests_per_minute must be a positive", id="rpm"),
    pytest.param(spec(tokens_per_minute=-1.5), "tokens_per_minute must be a positive", id="tpm"),
    pytest.param(spec(timeout_s=0), "timeout_s must be a positive", id="timeout"),
    pytest.param(spec(max_batch_size=0), "max_batch_size must be a positive", id="batch"),
    pytest.param(spec(encoding_format="hex"), "encoding_format must be 'base64'", id="format"),
]


@pytest.mark.parametrize(("bad", "problem"), BAD_SPECS)
def test_configure_rejects_a_bad_endpoint_naming_the_problem(
    bad: dict[str, Any], problem: str
) -> None:
    bad = {**bad, "token": SECRET}
    with pytest.raises(ConfigError) as caught:
        configure({"bad-one": bad})
    message = str(caught.value)
    assert problem in message
    assert "endpoint 'bad-one' (python)" in message
    assert "AIQUERY_CONFIG_ERROR" in message
    assert SECRET not in message


@pytest.mark.parametrize(("bad", "problem"), BAD_SPECS)
def test_a_bad_endpoint_in_the_file_is_rejected_naming_the_problem(
    tmp_path: Path, bad: dict[str, Any], problem: str
) -> None:
    lines = [f"{key} = {_toml_value(value)}" for key, value in {**bad, "token": SECRET}.items()]
    path = write_toml(tmp_path / "aiquery.toml", "[endpoints.bad-one]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert problem in message
    assert f"endpoint 'bad-one' (file:{path})" in message
    assert SECRET not in message


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.mark.parametrize("key", ["max_concurrency", "max_batch_size"])
def test_a_fractional_count_is_rejected_rather_than_truncated(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        configure({"x": spec(**{key: 0.5})})


# --- unknown endpoints --------------------------------------------------------------------


def test_an_unknown_endpoint_lists_known_names_and_how_to_configure_one(tmp_path: Path) -> None:
    registry = load(tmp_path, DATABRICKS_HOST=HOST, DATABRICKS_TOKEN=SECRET)
    with pytest.raises(EndpointNotFoundError) as caught:
        registry.resolve("databricks-gpt-9")
    error = caught.value
    message = str(error)
    assert isinstance(error, AnalysisError)
    assert "AI_FUNCTION_ENDPOINT_NOT_FOUND" in message
    assert "'databricks-gpt-9' is not configured" in message
    assert "databricks-bge-large-en" in message  # first of the known names, sorted
    assert ", ..." in message  # 20 built-ins: only the first few are listed
    assert "databricks-qwen3-next-80b-a3b-instruct" not in message
    for how in ("aiquery.toml", "aiquery.configure(endpoints=...)", "DATABRICKS_HOST"):
        assert how in message
    assert SECRET not in message


def test_an_unknown_gateway_name_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(EndpointNotFoundError, match=r"'system\.ai\.nothing-here'"):
        load(tmp_path).resolve("system.ai.nothing-here")


# --- secrets ------------------------------------------------------------------------------


def _registry_with_tokens_everywhere(tmp_path: Path) -> Registry:
    write_toml(
        tmp_path / "aiquery.toml",
        '[endpoints.from-file]\nbase_url = "http://127.0.0.1:8000/v1"\ntoken_env = "KEY"\n',
    )
    configure({"from-python": spec(token=SECRET)})
    return load(tmp_path, DATABRICKS_HOST=HOST, DATABRICKS_TOKEN=SECRET, KEY=SECRET)


def test_tokens_never_appear_in_reprs_strings_or_descriptions(tmp_path: Path) -> None:
    registry = _registry_with_tokens_everywhere(tmp_path)
    assert SECRET not in repr(registry)
    for name in ("databricks-gpt-5-4", "from-file", "from-python"):
        endpoint = registry.resolve(name)
        assert endpoint.token is not None and endpoint.token.value == SECRET  # it is there...
        for shown in (repr(endpoint), str(endpoint), f"{endpoint}", str(endpoint.describe())):
            assert SECRET not in shown  # ...and never shown
        assert endpoint.describe()["token"] == "***"
    builtin = load(tmp_path / "elsewhere").resolve("databricks-gpt-5-4")
    assert builtin.describe()["token"] == "(none)"


def test_a_secret_hides_its_value_in_repr_and_str() -> None:
    secret = Secret(SECRET)
    assert repr(secret) == str(secret) == "Secret('***')"
    assert secret.value == SECRET


def test_an_endpoint_survives_pickling_with_its_token(tmp_path: Path) -> None:
    endpoint = _registry_with_tokens_everywhere(tmp_path).resolve("from-file")
    revived = pickle.loads(pickle.dumps(endpoint))
    assert revived == endpoint
    assert revived.token is not None and revived.token.value == SECRET
    assert SECRET not in repr(revived)


def test_describe_says_where_an_endpoint_points(tmp_path: Path) -> None:
    configure({"x": spec(model="m", task="embeddings")})
    assert load(tmp_path).resolve("x").describe() == {
        "name": "x",
        "task": EMBEDDINGS,
        "protocol": "openai",
        "url": "http://127.0.0.1:8000/v1",
        "model": "m",
        "token": "(none)",
        "price": "(unknown)",
        "source": "python",
    }
    priced = load(tmp_path).resolve("databricks-gpt-5-nano").describe()["price"]
    assert priced == "$0.05 in / $0.4 out per 1M tokens"


# --- usage-table destination --------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "task", "destination"),
    [
        ("databricks", "chat", "PAY_PER_TOKEN_FOUNDATION_MODEL"),
        ("databricks", "embeddings", "PAY_PER_TOKEN_FOUNDATION_MODEL"),
        ("openai", "chat", "EXTERNAL_FOUNDATION_MODEL"),
        ("anthropic", "chat", "EXTERNAL_FOUNDATION_MODEL"),
        ("gemini", "chat", "EXTERNAL_FOUNDATION_MODEL"),
        ("openai-responses", "chat", "EXTERNAL_FOUNDATION_MODEL"),
        ("databricks", "custom", "CUSTOM_MODEL"),
    ],
)
def test_destination_type_follows_protocol_and_task(
    tmp_path: Path, protocol: str, task: str, destination: str
) -> None:
    configure({"x": spec(protocol=protocol, task=task)})
    assert load(tmp_path).resolve("x").destination_type == destination


def test_builtin_endpoints_are_pay_per_token_foundation_models(tmp_path: Path) -> None:
    registry = load(tmp_path)
    assert {registry.resolve(n).destination_type for n in BUILTIN_NAMES} == {
        "PAY_PER_TOKEN_FOUNDATION_MODEL"
    }


@pytest.mark.parametrize(
    ("protocol", "task"),
    [("openai", "custom"), ("gemini", "completions"), ("anthropic", "embeddings")],
)
def test_a_task_the_protocol_does_not_serve_fails_at_configuration(
    protocol: str, task: str
) -> None:
    with pytest.raises(ConfigError, match=f"protocol {protocol} serves only .*not "):
        configure({"x": spec(protocol=protocol, task=task)})


def test_custom_models_get_the_larger_payload_limit(tmp_path: Path) -> None:
    configure({"custom": spec(protocol="databricks", task="custom"), "chat": spec(task="chat")})
    registry = load(tmp_path)
    assert registry.resolve("custom").payload_limit == 16 * 1024 * 1024
    assert registry.resolve("chat").payload_limit == 4 * 1024 * 1024
