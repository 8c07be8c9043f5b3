"""Emulator configuration and limiter arithmetic, without sockets (fake clock, seeded RNG)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aiquery.serving.admin import _is_loopback
from aiquery.serving.config import EmulatorConfigError, Faults, load_config
from aiquery.serving.limits import EndpointLimits, TokenBucket, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_rate_and_says_when_capacity_returns() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=120, clock=clock)  # 2/s, burst of 2
    assert bucket.try_take(1) == 0
    assert bucket.try_take(1) == 0
    assert bucket.try_take(1) == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.try_take(1) == 0
    clock.now = 100.0  # refills only up to the burst capacity
    assert [bucket.try_take(1) for _ in range(3)][:2] == [0, 0]


def test_token_bucket_charge_can_go_into_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, clock=clock)  # 1/s
    bucket.charge(3)
    assert bucket.try_take(1) == pytest.approx(3.0)


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.2) == {"Retry-After": "1", "retry-after-ms": "200"}
    assert retry_after_header(2.01)["Retry-After"] == "3"


def test_fault_draws_follow_the_rates() -> None:
    limits = EndpointLimits(Faults(error_rate_500=0.1, drop_rate=0.2, seed=1))
    draws = [limits.draw_fault() for _ in range(10_000)]
    assert draws.count("500") == pytest.approx(1000, rel=0.15)
    assert draws.count("drop") == pytest.approx(2000, rel=0.15)
    assert draws.count("hang") == 0


def test_exponential_latency_has_the_configured_mean() -> None:
    limits = EndpointLimits(Faults(latency_ms=100, latency_distribution="exponential", seed=3))
    samples = [limits.latency_s() for _ in range(20_000)]
    assert sum(samples) / len(samples) == pytest.approx(0.1, rel=0.05)
    assert max(samples) > 0.3  # a real tail, not a fixed delay


def test_a_seed_repeats_the_latencies_whatever_faults_are_drawn_between_them() -> None:
    faults = Faults(latency_ms=100, latency_distribution="exponential", error_rate_500=0.5, seed=4)
    first, second = EndpointLimits(faults), EndpointLimits(faults)
    a = [first.latency_s() for _ in range(50)]
    b = []
    for i in range(50):  # concurrent requests: faults drawn in between, in another order
        b.append(second.latency_s())
        for _ in range(i % 3):
            second.draw_fault()
    assert a == b
    assert EndpointLimits(replace(faults, seed=5)).latency_s() != a[0]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"latency": 1}, "unknown fault setting"),
        ({"error_rate_500": 1.5}, "between 0 and 1"),
        ({"error_rate_500": 0.6, "error_rate_503": 0.6}, "must not exceed 1"),
        ({"latency_distribution": "pareto"}, "latency_distribution"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"latency_ms": "fast"}, "invalid fault setting"),
    ],
)
def test_invalid_faults_are_refused_with_a_reason(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(EmulatorConfigError, match=needle):
        Faults().updated(changes)


def test_config_file_layers_defaults_endpoints_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "emulator.toml"
    path.write_text(
        "[faults]\nlatency_ms = 20\n"
        '[endpoints."databricks-gpt-5".faults]\nerror_rate_503 = 0.5\n'
        '[endpoints.extra-embed]\ntask = "llm/v1/embeddings"\nembedding_dim = 8\n'
    )
    config = load_config(path, fault_overrides={"seed": 9}).endpoint_map()
    assert config["databricks-gpt-5-4"].faults == Faults(latency_ms=20, seed=9)
    assert config["databricks-gpt-5"].faults.error_rate_503 == 0.5
    assert config["extra-embed"].embedding_dim == 8
    assert config["extra-embed"].faults.latency_ms == 20


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[fault]\n", "unknown section"),
        ("[endpoints.x]\ntask = 'llm/v1/embeddings'\n", "embedding_dim"),
        ("[endpoints.x]\ntask = 'chat'\n", "task must be one of"),
        ("[endpoints.x]\ncolour = 'red'\n", "unknown endpoint setting"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(EmulatorConfigError, match=needle):
        load_config(path)


def test_missing_config_file_is_named() -> None:
    with pytest.raises(EmulatorConfigError, match="not found: /no/such"):
        load_config("/no/such.toml")


@pytest.mark.parametrize(
    ("peer", "ok"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        (None, False),
    ],
)
def test_admin_routes_trust_only_loopback_peers(peer: str | None, ok: bool) -> None:
    assert _is_loopback(peer) is ok
