"""Pure-Python parts of the PyFlink jobs: settings, alert ids, generated SQL (no JVM)."""

from __future__ import annotations

import importlib.util
import re
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

JOBS = Path(__file__).resolve().parents[2] / "flink_jobs"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


anomaly = load("anomaly_detector")
arbitrage = load("arbitrage_detector")


def shared_block(path: Path) -> str:
    text = path.read_text()
    return text[text.index("# ==== shared-begin"):text.index("# ==== shared-end ====")]


def test_shared_block_is_identical_in_both_jobs() -> None:
    # `flink run -py` ships one file per job, so the helpers are duplicated; they must not drift.
    assert shared_block(JOBS / "anomaly_detector.py") == shared_block(JOBS / "arbitrage_detector.py")


@pytest.mark.parametrize("text", ['{"btc": 50, "ETH-USDT": "400.5"}', "btc=50, ETH-USDT=400.5,"])
def test_thresholds_parse_from_json_and_pairs(text: str) -> None:
    assert anomaly.parse_thresholds(text) == {"BTC": Decimal("50"), "ETH-USDT": Decimal("400.5")}


@pytest.mark.parametrize("text", ["BTC", "BTC=abc", "BTC=-1", "BTC=0", "B/C=1", "A-B-C=1", "[1]", "{bad"])
def test_bad_thresholds_are_rejected(text: str) -> None:
    with pytest.raises(anomaly.ConfigError):
        anomaly.parse_thresholds(text)


def test_threshold_case_prefers_symbol_over_asset_over_default() -> None:
    sql = anomaly.sql_threshold_case("s", "a", {"BTC": Decimal(5), "BTC-USD": Decimal(7)}, Decimal(1))
    assert sql.index("s = 'BTC-USD'") < sql.index("a = 'BTC'") < sql.index("ELSE CAST('1'")
    assert anomaly.sql_threshold_case("s", "a", {}, None) == "CAST(NULL AS DECIMAL(28, 12))"


def test_sql_string_literals_are_escaped() -> None:
    assert anomaly.sql_str("it's") == "'it''s'"


def test_interval_literal_for_long_lookbacks() -> None:
    assert anomaly.sql_interval_s(300) == "INTERVAL '0 00:05:00' DAY TO SECOND"
    assert anomaly.sql_interval_s(90_061) == "INTERVAL '1 01:01:01' DAY TO SECOND"


def test_alert_ids_are_derived_from_job_key_and_window() -> None:
    assert anomaly.alert_id("binance", "BTC-USDT", 1_700_000_000_000) == "anomaly:binance:BTC-USDT:1700000000000"
    assert arbitrage.alert_id("BTC", 1_700_000_000_000) == "arbitrage:BTC:1700000000000"


def test_anomaly_defaults_and_env() -> None:
    args = anomaly.parse_args([], env={})
    assert args.bootstrap_servers == "localhost:9092" and args.trades_topic == "trades.raw"
    assert args.output_topic == "signals.alerts" and args.group_id == "cryptomon-anomaly-detector"
    assert args.delivery_guarantee == "at-least-once" and args.startup_mode == "group-offsets"
    assert args.thresholds == {"BTC": Decimal(50), "ETH": Decimal(500), "SOL": Decimal(5000)}
    assert args.default_threshold is None and args.spike_factor == Decimal(5)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "KAFKA_ALERTS_TOPIC": "a.b",
           "ANOMALY_VOLUME_THRESHOLDS": "BTC=1", "ANOMALY_DEFAULT_VOLUME_THRESHOLD": "3",
           "ANOMALY_DELIVERY_GUARANTEE": "exactly-once", "ANOMALY_SPIKE_MIN_WINDOWS": "2"}
    args = anomaly.parse_args(["--spike-factor", "4"], env=env)
    assert args.bootstrap_servers == "k1:9092,k2:9092" and args.output_topic == "a.b"
    assert args.thresholds == {"BTC": Decimal(1)} and args.default_threshold == Decimal(3)
    assert args.delivery_guarantee == "exactly-once" and args.spike_min_windows == 2
    assert args.spike_factor == Decimal(4)  # the command line wins over the environment
    assert anomaly.parse_args(["--thresholds", "BTC=2"], env=env).thresholds == {"BTC": Decimal(2)}


@pytest.mark.parametrize("argv", [["--delivery-guarantee", "none"], ["--spike-min-windows", "40"],
                                  ["--idle-timeout-ms", "0"], ["--checkpoint-interval-ms", "0"],
                                  ["--output-topic", "bad topic"]])
def test_anomaly_bad_settings(argv: list[str]) -> None:
    with pytest.raises((anomaly.ConfigError, SystemExit)):
        anomaly.parse_args(argv, env={})


def test_demo_mode_by_flag_or_variable() -> None:
    assert arbitrage.parse_args(arbitrage._demo_argv(["--demo"]), env={}).demo is True
    assert arbitrage.parse_args(arbitrage._demo_argv(["--demo", "--parallelism", "2"]), env={}).demo is True
    assert arbitrage.parse_args([], env={"ARBITRAGE_DEMO_MODE": "true"}).demo is True
    assert arbitrage.parse_args([], env={}).demo is False
    with pytest.raises(arbitrage.ConfigError):
        arbitrage.parse_args([], env={"ARBITRAGE_DEMO_MODE": "maybe"})


def test_arbitrage_thresholds_in_sql() -> None:
    args = arbitrage.parse_args(["--thresholds", "ETH=5"], env={})
    insert = arbitrage.build_statements(args, env={})[-2]
    assert "WHEN b.asset = 'ETH' THEN CAST('5' AS" in insert and "ELSE CAST('50' AS" in insert
    demo = arbitrage.parse_args(["--demo=true", "--thresholds", "ETH=5"], env={})
    pairs = arbitrage.build_statements(demo, env={})[-2]
    assert "CAST('0.1' AS DECIMAL(28, 12)) AS threshold" in pairs and "'ETH'" not in pairs
    with pytest.raises(arbitrage.ConfigError):
        arbitrage.parse_args(["--thresholds", "BTC-USD=5"], env={})


def test_usd_quote_policy_in_sql() -> None:
    args = arbitrage.parse_args(["--usd-quotes", "usd,usdt"], env={})
    sides = arbitrage.build_statements(args, env={})[3]
    assert "`quote` IN ('USD', 'USDT')" in sides and "`exchange` IN ('binance', 'coinbase')" in sides


def options(ddl: str) -> dict[str, str]:
    return dict(re.findall(r"'([^']+)' = '((?:[^']|'')*)'", ddl))


def test_sink_options_per_delivery_guarantee() -> None:
    alo = options(anomaly.build_statements(anomaly.parse_args([], env={}), env={})[2])
    assert alo["sink.delivery-guarantee"] == "at-least-once" and "sink.transactional-id-prefix" not in alo
    assert alo["key.fields"] == "alert_id" and alo["topic"] == "signals.alerts"
    eo_args = anomaly.parse_args(["--delivery-guarantee", "exactly-once"], env={})
    eo = options(anomaly.build_statements(eo_args, env={})[2])
    assert eo["sink.transactional-id-prefix"] == "cryptomon-anomaly-detector"
    assert int(eo["properties.transaction.timeout.ms"]) <= 900_000


def test_source_options_watermark_and_idleness() -> None:
    args = anomaly.parse_args(["--max-out-of-orderness-ms", "1500", "--idle-timeout-ms", "2500"], env={})
    ddl = anomaly.build_statements(args, env={})[0]
    assert "WATERMARK FOR `event_time` AS `event_time` - INTERVAL '1.5' SECOND" in ddl
    opts = options(ddl)
    assert opts["scan.watermark.idle-timeout"] == "2500 ms" and opts["topic"] == "trades.raw"
    assert opts["properties.group.id"] == "cryptomon-anomaly-detector"


def test_sasl_settings_reach_the_connector_with_shaded_login_module() -> None:
    env = {"KAFKA_USERNAME": "flink", "KAFKA_PASSWORD": 'p"w', "KAFKA_SASL_MECHANISM": "plain"}
    ddl = arbitrage.build_statements(arbitrage.parse_args([], env=env), env=env)[0]
    opts = options(ddl)
    assert opts["properties.security.protocol"] == "SASL_SSL" and opts["properties.sasl.mechanism"] == "PLAIN"
    assert opts["properties.sasl.jaas.config"] == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="flink" password="p\\"w";')
    scram = {"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    opts = options(arbitrage.build_statements(arbitrage.parse_args([], env=scram), env=scram)[0])
    assert opts["properties.sasl.mechanism"] == "SCRAM-SHA-512" and "scram.ScramLoginModule" in opts[
        "properties.sasl.jaas.config"]


@pytest.mark.parametrize("env", [{"KAFKA_USERNAME": "u"}, {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
                                 {"KAFKA_SECURITY_PROTOCOL": "TLS"},
                                 {"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_SECURITY_PROTOCOL": "SSL"},
                                 {"KAFKA_BOOTSTRAP_SERVERS": "nohost"}])
def test_bad_kafka_settings(env: dict[str, str]) -> None:
    with pytest.raises(anomaly.ConfigError):
        anomaly.build_statements(anomaly.parse_args([], env=env), env=env)


def test_main_reports_config_errors_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert arbitrage.main(["--spread-threshold-usd", "-3"]) == 2
    assert "--spread-threshold-usd" in capsys.readouterr().err
