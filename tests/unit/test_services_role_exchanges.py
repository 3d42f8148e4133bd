"""The cryptomon_services role takes its exchanges from the producer's registry: every exchange
gets a producer environment the producer accepts, in replay and in real mode, without the role
naming a venue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cryptomon.producer.config import ProducerConfig, read_env_file
from cryptomon.producer.registry import describe
from unit.playbook_runner import PlaybookRun, run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_producer_env.yml"
REGISTRY = describe(real_only=True)
NAMES = [e["name"] for e in REGISTRY]


def render(tmp_path: Path, endpoints: str, exchanges: dict, producers: list[str], **settings: object) -> Path:
    out = tmp_path / endpoints
    out.mkdir()
    extra = {"cryptomon_services_registry": REGISTRY, "render_out": str(out), "test_endpoints": endpoints,
             "test_exchanges": exchanges, "test_producers": producers, **settings,
             "cryptomon_templates_dir": str(REPO / "templates"), "ansible_python_interpreter": sys.executable}
    run_playbook(PLAYBOOK, extra_vars=extra).assert_ok()
    return out


def config_of(out: Path, exchange: str) -> ProducerConfig:
    env = read_env_file(out / f"producer-{exchange}.env")
    # kafka.env (shared by every service) holds these; the password comes as a credential.
    env |= {"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092", "KAFKA_PASSWORD": "x"}
    return ProducerConfig.from_env(exchange, env)


def test_registry_lists_the_five_exchanges() -> None:
    assert {"binance", "coinbase", "kraken", "okx", "bybit"} <= set(NAMES)


def test_replay_mode_points_every_exchange_at_its_local_server(tmp_path: Path) -> None:
    out = render(tmp_path, "replay", {"kraken": {"replay_port": 19445, "symbols": ["SOL/USD"]}}, [*NAMES, "mock"])
    derived = json.loads((out / "derived.json").read_text())
    assert derived["replays"] == NAMES  # the mock has no server
    assert {f"cryptomon-producer@{n}.service" for n in [*NAMES, "mock"]} <= set(derived["units_all"])
    for entry in REGISTRY:
        cfg = config_of(out, entry["name"]).feed
        port = 19445 if entry["name"] == "kraken" else entry["replay_default_port"]
        assert cfg.stream_url == f"ws://127.0.0.1:{port}{entry['replay_stream_path']}"
        assert cfg.rest_url.rstrip("/") == f"http://127.0.0.1:{port}"
    assert [m.raw for m in config_of(out, "kraken").feed.symbols.markets] == ["SOL/USD"]
    assert config_of(out, "mock").mock.exchanges  # the mock's own settings still render
    # each instance its own metrics port, the mock after the exchanges, all on loopback
    ports = {n: read_env_file(out / f"producer-{n}.env")["METRICS_PORT"] for n in [*NAMES, "mock"]}
    assert list(ports.values()) == [str(9310 + i) for i in range(len(NAMES) + 1)]
    assert config_of(out, "okx").metrics.port == 9310 + NAMES.index("okx")


def test_real_mode_uses_the_registry_defaults_unless_overridden(tmp_path: Path) -> None:
    own = {"okx": {"stream_url": "wss://ws.okx.example/ws/v5/public", "symbols": ["*-USDT"]}}
    out = render(tmp_path, "real", own, NAMES)
    assert json.loads((out / "derived.json").read_text())["replays"] == []
    for entry in REGISTRY:
        cfg = config_of(out, entry["name"]).feed
        if entry["name"] == "okx":
            assert cfg.stream_url == "wss://ws.okx.example/ws/v5/public"
            assert cfg.symbols.patterns == ("*-USDT",)
        else:
            assert cfg.stream_url == entry["default_stream_url"]
            assert cfg.rest_url == entry["default_rest_url"]


def test_role_names_no_exchange() -> None:
    role = REPO / "roles" / "cryptomon_services"
    for path in [*role.glob("tasks/*.yml"), *role.glob("vars/*.yml"), *role.glob("templates/*.j2"),
                 REPO / "templates" / "services" / "producer.env.j2"]:
        text = path.read_text().lower()
        for name in NAMES:
            assert name not in text, f"{path.relative_to(REPO)} names {name}"


def check(producers: list[str], exchanges: dict) -> PlaybookRun:
    """The role's own registry step, reading the registry from this venv (services/ on the path)."""
    extra = {"test_producers": producers, "test_exchanges": exchanges, "test_venv": sys.prefix,
             "ansible_python_interpreter": sys.executable}
    return run_playbook(REPO / "tests" / "fixtures" / "ansible" / "check_producer_settings.yml", extra_vars=extra,
                        env={"PYTHONPATH": str(REPO / "services")})


def test_registry_step_accepts_every_registry_exchange() -> None:
    res = check([*NAMES, "mock"], {"bybit": {"symbols": ["SOLUSDT"]}})
    assert res.rc == 0, res.stdout[-3000:]


@pytest.mark.parametrize("producers, exchanges, named", [
    (["binance", "krakn"], {}, "(got binance, krakn)"),
    (["binance"], {"krakn": {}}, "(got krakn)"),
    (["binance"], {"binance": {"symbol": ["BTCUSDT"]}}, "one of symbols, stream_url, rest_url, replay_port"),
])
def test_registry_step_names_a_wrong_setting(producers: list[str], exchanges: dict, named: str) -> None:
    res = check(producers, exchanges)
    assert res.rc != 0
    assert named in res.stdout, res.stdout[-3000:]
    assert "may list binance, coinbase" in res.stdout  # and says what is allowed


def test_every_producer_publishes_quotes_by_default_and_the_switch_turns_them_off(tmp_path: Path) -> None:
    on = render(tmp_path, "replay", {}, [*NAMES, "mock"])
    for name in [*NAMES, "mock"]:
        assert read_env_file(on / f"producer-{name}.env")["PRODUCER_QUOTES"] == "true", name
        cfg = config_of(on, name)
        assert cfg.quotes.enabled and cfg.quotes.topic == "quotes.raw", name  # the topic: kafka.env's default
    off = render(tmp_path, "real", {}, ["binance"], cryptomon_services_producer_quotes=False)
    assert read_env_file(off / "producer-binance.env")["PRODUCER_QUOTES"] == "false"
    assert not config_of(off, "binance").quotes.enabled


def test_an_instances_own_environment_still_wins_over_the_quotes_switch(tmp_path: Path) -> None:
    out = render(tmp_path, "replay", {}, ["binance", "coinbase"],
                 cryptomon_services_producer_env={"coinbase": {"PRODUCER_QUOTES": "false"}})
    assert config_of(out, "binance").quotes.enabled
    assert not config_of(out, "coinbase").quotes.enabled
