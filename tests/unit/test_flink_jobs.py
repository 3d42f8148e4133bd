"""Pure-Python parts of the PyFlink jobs: settings, alert ids, generated SQL (no JVM)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "flink_jobs"
# The jobs import their shared modules by plain name, as the driver does next to the job file.
sys.path.insert(0, str(JOBS))

import flink_common  # noqa: E402
import kafka_settings  # noqa: E402


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


anomaly = load("anomaly_detector")
arbitrage = load("arbitrage_detector")


# --- one copy of the shared code --------------------------------------------------------------

def test_kafka_settings_of_the_jobs_is_the_services_module() -> None:
    link = JOBS / "kafka_settings.py"
    assert link.is_symlink(), "flink_jobs/kafka_settings.py must be a link, not a copy"
    assert link.resolve() == (REPO / "services" / "cryptomon" / "kafka_settings.py").resolve()


@pytest.mark.parametrize("job", [anomaly, arbitrage], ids=["anomaly", "arbitrage"])
def test_jobs_import_the_shared_modules_instead_of_copying_them(job: ModuleType) -> None:
    assert job.ConfigError is kafka_settings.ConfigError
    assert job.KafkaSettings is kafka_settings.KafkaSettings
    for name in ("source_ddl", "sink_ddl", "run_statements", "add_common_options", "sql_dec_text"):
        assert getattr(job, name) is getattr(flink_common, name), name
    text = Path(job.__file__).read_text()
    # No second copy of a Kafka-settings rule or of the shared helpers in the job files.
    for marker in ("shared-begin", "_PROTOCOLS", "_MECHANISMS", "LoginModule", "def kafka_conn",
                   "def source_ddl", "def sink_ddl", "def parse_decimal", "CREATE TABLE trades"):
        assert marker not in text, marker


def test_flink_common_keeps_no_kafka_rule_of_its_own() -> None:
    text = (JOBS / "flink_common.py").read_text()
    for marker in ("_PROTOCOLS", "_MECHANISMS", "isdigit()", "65536", "SASL_SSL\" if"):
        assert marker not in text, marker


@pytest.mark.parametrize("job", ["anomaly_detector.py", "arbitrage_detector.py"])
def test_a_job_runs_from_its_own_directory_with_the_pyfs_files_only(tmp_path: Path, job: str) -> None:
    """What the role deploys: the job file and its pyfs files side by side, nothing else.

    `python -E -s` ignores PYTHONPATH and the user site, so the repository cannot leak in (-I
    would also drop the script's own directory from sys.path, which the driver relies on).
    """
    shutil.copy(JOBS / job, tmp_path / job)
    env = {"PATH": os.environ.get("PATH", ""), "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    missing = subprocess.run([sys.executable, "-E", "-s", str(tmp_path / job), "--help"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "No module named 'flink_common'" in missing.stderr
    for pyfs in ("flink_common.py", "kafka_settings.py"):
        shutil.copy(JOBS / pyfs, tmp_path / pyfs)  # copy follows the link, like Ansible's copy
    res = subprocess.run([sys.executable, "-E", "-s", str(tmp_path / job), "--help"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "(default: k:9092)" in res.stdout


def option_help(job: ModuleType) -> list[tuple[str, str]]:
    """(option, its help text) for every option, as --help prints them; last ("epilog", all)."""
    out = subprocess.run([sys.executable, job.__file__, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    section = out.stdout.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    blocks = re.split(r"\n(?=  -)", section)
    return [(re.findall(r"--[a-z-]+", b)[0], " ".join(b.split())) for b in blocks] + [("epilog", out.stdout)]


@pytest.mark.parametrize("job", [anomaly, arbitrage], ids=["anomaly", "arbitrage"])
def test_help_lists_every_option_with_its_variable(job: ModuleType) -> None:
    helps = option_help(job)
    options = {o for o, _ in helps if o.startswith("--")}
    assert len(options) >= 15
    for opt, text in helps:
        if opt in ("--help", "--explain", "epilog"):
            continue
        assert re.search(r"\[env [A-Z_]+\]", text), f"{opt}: {text}"
    epilog = helps[-1][1]
    for var in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_USERNAME", "KAFKA_PASSWORD",
                "KAFKA_PASSWORD_FILE", "KAFKA_SSL_CA_LOCATION"):
        assert var in epilog


def test_arbitrage_help_names_the_new_settings() -> None:
    text = "\n".join(t for _, t in option_help(arbitrage))
    for var in ("ARBITRAGE_TRIGGER", "ARBITRAGE_TAKER_FEES_BPS", "ARBITRAGE_DEFAULT_TAKER_FEE_BPS",
                "ARBITRAGE_EXCHANGES", "ARBITRAGE_MAX_SIDE_AGE_MS", "ARBITRAGE_DEMO_MODE"):
        assert var in text
    assert "binance=10,bybit=10,coinbase=60,kraken=40,okx=10" in text


# --- shared helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['{"btc": 50, "ETH-USDT": "400.5"}', "btc=50, ETH-USDT=400.5,"])
def test_thresholds_parse_from_json_and_pairs(text: str) -> None:
    assert flink_common.parse_thresholds(text) == {"BTC": Decimal("50"), "ETH-USDT": Decimal("400.5")}


@pytest.mark.parametrize("text", ["BTC", "BTC=abc", "BTC=-1", "BTC=0", "B/C=1", "A-B-C=1", "[1]", "{bad"])
def test_bad_thresholds_are_rejected(text: str) -> None:
    with pytest.raises(flink_common.ConfigError):
        flink_common.parse_thresholds(text)


def test_threshold_case_prefers_symbol_over_asset_over_default() -> None:
    sql = flink_common.sql_threshold_case("s", "a", {"BTC": Decimal(5), "BTC-USD": Decimal(7)}, Decimal(1))
    assert sql.index("s = 'BTC-USD'") < sql.index("a = 'BTC'") < sql.index("ELSE CAST('1'")
    assert flink_common.sql_threshold_case("s", "a", {}, None) == "CAST(NULL AS DECIMAL(28, 12))"


def test_sql_string_literals_are_escaped() -> None:
    assert flink_common.sql_str("it's") == "'it''s'"


def test_interval_literal_for_long_lookbacks() -> None:
    assert flink_common.sql_interval_s(300) == "INTERVAL '0 00:05:00' DAY TO SECOND"
    assert flink_common.sql_interval_s(90_061) == "INTERVAL '1 01:01:01' DAY TO SECOND"


def test_alert_ids_are_derived_from_job_key_and_window() -> None:
    assert anomaly.alert_id("binance", "BTC-USDT", 1_700_000_000_000) == "anomaly:binance:BTC-USDT:1700000000000"
    assert arbitrage.alert_id("BTC", 1_700_000_000_000) == "arbitrage:BTC:1700000000000"


# --- anomaly settings -------------------------------------------------------------------------

def test_anomaly_defaults_and_env() -> None:
    args = anomaly.parse_args([], env={})
    assert args.bootstrap_servers == "localhost:9092" and args.trades_topic == "trades.raw"
    assert args.output_topic == "signals.alerts" and args.group_id == "cryptomon-flink-anomaly-detector"
    assert args.delivery_guarantee == "at-least-once" and args.startup_mode == "group-offsets"
    assert args.thresholds == {"BTC": Decimal(50), "ETH": Decimal(500), "SOL": Decimal(5000)}
    assert args.default_threshold is None and args.spike_factor == Decimal(5)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "KAFKA_ALERTS_TOPIC": "a.b",
           "ANOMALY_VOLUME_THRESHOLDS": "BTC=1", "ANOMALY_DEFAULT_VOLUME_THRESHOLD": "3",
           "ANOMALY_DELIVERY_GUARANTEE": "exactly-once", "ANOMALY_SPIKE_MIN_WINDOWS": "2"}
    args = anomaly.parse_args(["--spike-factor", "4"], env=env)
    assert args.kafka.bootstrap_servers == "k1:9092,k2:9092" and args.kafka.alerts_topic == "a.b"
    assert args.thresholds == {"BTC": Decimal(1)} and args.default_threshold == Decimal(3)
    assert args.delivery_guarantee == "exactly-once" and args.spike_min_windows == 2
    assert args.spike_factor == Decimal(4)  # the command line wins over the environment
    assert anomaly.parse_args(["--thresholds", "BTC=2"], env=env).thresholds == {"BTC": Decimal(2)}
    # The options win over KAFKA_* too, and the sink writes to the option's topic.
    args = anomaly.parse_args(["--output-topic", "x.y", "--bootstrap-servers", "k3:1"], env=env)
    assert args.kafka.alerts_topic == "x.y" and args.kafka.bootstrap_servers == "k3:1"
    assert options(anomaly.build_statements(args)[2])["topic"] == "x.y"


@pytest.mark.parametrize("argv", [["--delivery-guarantee", "none"], ["--spike-min-windows", "40"],
                                  ["--idle-timeout-ms", "0"], ["--checkpoint-interval-ms", "0"],
                                  ["--output-topic", "bad topic"], ["--trades-topic", ""],
                                  ["--bootstrap-servers", "k:99999"]])
def test_anomaly_bad_settings(argv: list[str]) -> None:
    with pytest.raises((anomaly.ConfigError, SystemExit)):
        anomaly.parse_args(argv, env={})


# --- Kafka connection: kafka_settings' rules, the connector's properties ----------------------

def options(ddl: str) -> dict[str, str]:
    return dict(re.findall(r"'([^']+)' = '((?:[^']|'')*)'", ddl))


def test_sink_options_per_delivery_guarantee() -> None:
    alo = options(anomaly.build_statements(anomaly.parse_args([], env={}))[2])
    assert alo["sink.delivery-guarantee"] == "at-least-once" and "sink.transactional-id-prefix" not in alo
    assert alo["key.fields"] == "alert_id" and alo["topic"] == "signals.alerts"
    eo_args = anomaly.parse_args(["--delivery-guarantee", "exactly-once"], env={})
    eo = options(anomaly.build_statements(eo_args)[2])
    assert eo["sink.transactional-id-prefix"] == "cryptomon-flink-anomaly-detector"
    assert int(eo["properties.transaction.timeout.ms"]) <= 900_000
    arb = options(arbitrage.build_statements(arbitrage.parse_args([], env={}))[2])
    assert arb["topic"] == "signals.arbitrage"


def test_source_options_watermark_and_idleness() -> None:
    args = anomaly.parse_args(["--max-out-of-orderness-ms", "1500", "--idle-timeout-ms", "2500"], env={})
    ddl = anomaly.build_statements(args)[0]
    assert "WATERMARK FOR `event_time` AS `event_time` - INTERVAL '1.5' SECOND" in ddl
    opts = options(ddl)
    assert opts["scan.watermark.idle-timeout"] == "2500 ms" and opts["topic"] == "trades.raw"
    assert opts["properties.group.id"] == "cryptomon-flink-anomaly-detector"


def test_sasl_settings_reach_the_connector_with_shaded_login_module() -> None:
    env = {"KAFKA_USERNAME": "flink", "KAFKA_PASSWORD": 'p"w', "KAFKA_SASL_MECHANISM": "plain"}
    ddl = arbitrage.build_statements(arbitrage.parse_args([], env=env))[0]
    opts = options(ddl)
    assert opts["properties.security.protocol"] == "SASL_SSL" and opts["properties.sasl.mechanism"] == "PLAIN"
    assert opts["properties.sasl.jaas.config"] == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="flink" password="p\\"w";')
    scram = {"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    opts = options(arbitrage.build_statements(arbitrage.parse_args([], env=scram))[0])
    assert opts["properties.sasl.mechanism"] == "SCRAM-SHA-512" and "scram.ScramLoginModule" in opts[
        "properties.sasl.jaas.config"]


def test_a_ca_file_becomes_a_pem_truststore(tmp_path: Path) -> None:
    """KAFKA_SSL_CA_LOCATION reaches the Java client as a PEM truststore."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_SSL_CA_LOCATION": str(ca)}
    opts = options(anomaly.build_statements(anomaly.parse_args([], env=env))[0])
    assert opts["properties.security.protocol"] == "SASL_SSL"
    assert opts["properties.ssl.truststore.type"] == "PEM"
    assert opts["properties.ssl.truststore.location"] == str(ca)
    plain = options(anomaly.build_statements(anomaly.parse_args([], env={}))[0])
    assert "properties.ssl.truststore.location" not in plain


def test_a_password_file_is_named_not_inlined(tmp_path: Path) -> None:
    """KAFKA_PASSWORD_FILE: the SQL names the file for Kafka's DirectoryConfigProvider."""
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cr3t")
    env = {"KAFKA_USERNAME": "flink", "KAFKA_PASSWORD_FILE": str(secret)}
    ddl = arbitrage.build_statements(arbitrage.parse_args([], env=env))[0]
    assert "s3cr3t" not in ddl
    opts = options(ddl)
    provider = opts["properties.config.providers"]
    assert opts[f"properties.config.providers.{provider}.class"] == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.config.provider.DirectoryConfigProvider")
    assert f'password="${{{provider}:{tmp_path}:kafka-password}}";' in opts["properties.sasl.jaas.config"]


@pytest.mark.parametrize("env", [{"KAFKA_USERNAME": "u"}, {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
                                 {"KAFKA_SECURITY_PROTOCOL": "TLS"},
                                 {"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_SECURITY_PROTOCOL": "SSL"},
                                 {"KAFKA_BOOTSTRAP_SERVERS": "nohost"},
                                 # the copies in the jobs had drifted: they accepted an invalid port
                                 {"KAFKA_BOOTSTRAP_SERVERS": "k:99999"}, {"KAFKA_BOOTSTRAP_SERVERS": "k:0"},
                                 {"KAFKA_TRADES_TOPIC": "bad/topic"}])
@pytest.mark.parametrize("job", [anomaly, arbitrage], ids=["anomaly", "arbitrage"])
def test_bad_kafka_settings(job: ModuleType, env: dict[str, str]) -> None:
    with pytest.raises(job.ConfigError) as err:
        job.parse_args([], env=env)
    # The same message the services print for the same variable.
    with pytest.raises(kafka_settings.ConfigError) as svc:
        kafka_settings.KafkaSettings.from_env(env)
    assert str(err.value) == str(svc.value)


@pytest.mark.parametrize("job", [anomaly, arbitrage], ids=["anomaly", "arbitrage"])
def test_main_reports_config_errors_with_exit_code_2(job: ModuleType, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:99999")
    assert job.main([]) == 2
    assert capsys.readouterr().err.strip().endswith("KAFKA_BOOTSTRAP_SERVERS: 'k:99999' is not host:port")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    if job is arbitrage:
        assert job.main(["--spread-threshold-usd", "-3"]) == 2
        assert "--spread-threshold-usd" in capsys.readouterr().err


# --- arbitrage settings and SQL ---------------------------------------------------------------

def statements(argv: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """The arbitrage job's statements by the view/table they create (insert: 'insert')."""
    out = {}
    for stmt in arbitrage.build_statements(arbitrage.parse_args(arbitrage._demo_argv(argv), env=env or {})):
        m = re.search(r"CREATE (?:TEMPORARY VIEW|TABLE) (\w+)", stmt)
        out[m.group(1) if m else "insert"] = stmt
    return out


def test_demo_mode_by_flag_or_variable() -> None:
    assert arbitrage.parse_args(arbitrage._demo_argv(["--demo"]), env={}).demo is True
    assert arbitrage.parse_args(arbitrage._demo_argv(["--demo", "--parallelism", "2"]), env={}).demo is True
    assert arbitrage.parse_args([], env={"ARBITRAGE_DEMO_MODE": "true"}).demo is True
    assert arbitrage.parse_args([], env={}).demo is False
    with pytest.raises(arbitrage.ConfigError, match="--demo"):
        arbitrage.parse_args([], env={"ARBITRAGE_DEMO_MODE": "maybe"})


def test_arbitrage_thresholds_in_sql() -> None:
    sql = statements(["--thresholds", "ETH=5"])["candidates"]
    assert "WHEN asset = 'ETH' THEN CAST('5' AS" in sql and "ELSE CAST('50' AS" in sql
    demo = statements(["--demo", "--thresholds", "ETH=5"])["candidates"]
    assert "CAST('0.1' AS DECIMAL(28, 12)) AS threshold" in demo and "'ETH'" not in demo
    with pytest.raises(arbitrage.ConfigError):
        arbitrage.parse_args(["--thresholds", "BTC-USD=5"], env={})


def test_every_exchange_is_compared_unless_a_list_is_given() -> None:
    sides = statements([])["sides"]
    assert "`exchange` IN" not in sides  # no hard-coded pair any more
    only = statements([], env={"ARBITRAGE_EXCHANGES": "OKX, kraken,binance"})["sides"]
    assert "AND `exchange` IN ('binance', 'kraken', 'okx')" in only
    for bad in ("binance", "binance,binance", "bin ance,okx"):
        with pytest.raises(arbitrage.ConfigError, match="--exchanges"):
            arbitrage.parse_args(["--exchanges", bad], env={})


def test_usd_quote_policy_and_staleness_in_sql() -> None:
    sides = statements(["--usd-quotes", "usd,usdt", "--max-side-age-ms", "4000"])["sides"]
    assert "`quote` IN ('USD', 'USDT')" in sides
    assert "WHERE last_ts >= CAST(UNIX_TIMESTAMP(CAST(window_end AS STRING)) AS BIGINT) * 1000 - 4000" in sides
    for bad in ("0", "10001"):
        with pytest.raises(arbitrage.ConfigError, match="--max-side-age-ms"):
            arbitrage.parse_args(["--max-side-age-ms", bad], env={})


def test_taker_fees_default_to_the_published_table_and_merge_overrides() -> None:
    assert arbitrage.parse_args([], env={}).taker_fees_bps == {
        "binance": Decimal(10), "bybit": Decimal(10), "coinbase": Decimal(60), "kraken": Decimal(40),
        "okx": Decimal(10)}
    args = arbitrage.parse_args(["--taker-fees-bps", "Kraken=26,mockex=2.5", "--default-taker-fee-bps", "7"],
                                env={"ARBITRAGE_TAKER_FEES_BPS": "okx=1"})
    assert args.taker_fees_bps["kraken"] == Decimal(26) and args.taker_fees_bps["mockex"] == Decimal("2.5")
    assert args.taker_fees_bps["okx"] == Decimal(10)  # the option replaced the variable, not merged with it
    assert args.default_taker_fee_bps == Decimal(7)
    fees = statements(["--taker-fees-bps", '{"kraken": 26}'])["sides"]
    assert "WHEN 'kraken' THEN CAST('26' AS DECIMAL(8, 4))" in fees
    assert "WHEN 'coinbase' THEN CAST('60' AS DECIMAL(8, 4))" in fees
    assert "ELSE CAST('10' AS DECIMAL(8, 4)) END AS fee_bps" in fees


@pytest.mark.parametrize("argv", [["--taker-fees-bps", "kraken=-1"], ["--taker-fees-bps", "kraken=1000"],
                                  ["--taker-fees-bps", "kraken=0.00001"], ["--taker-fees-bps", "kraken"],
                                  ["--taker-fees-bps", "kra ken=1"], ["--default-taker-fee-bps", "x"],
                                  ["--trigger", "both"]])
def test_bad_fee_settings(argv: list[str]) -> None:
    with pytest.raises((arbitrage.ConfigError, SystemExit)):
        arbitrage.parse_args(argv, env={})


def test_trigger_picks_the_ranking_and_the_compared_spread() -> None:
    gross = statements([])
    assert "ORDER BY spread DESC, net_spread DESC, buy_exchange, sell_exchange" in gross["best_pairs"]
    assert gross["insert"].rstrip().endswith("WHERE spread > threshold")
    net = statements([], env={"ARBITRAGE_TRIGGER": "net"})
    assert "ORDER BY net_spread DESC, spread DESC, buy_exchange, sell_exchange" in net["best_pairs"]
    assert net["insert"].rstrip().endswith("WHERE net_spread > threshold")
    assert "'net'" in net["insert"] and "'gross'" in gross["insert"]


def test_pairs_are_every_ordered_pair_of_distinct_fresh_venues() -> None:
    sql = statements([])
    assert "FROM sides\nGROUP BY asset, window_start, window_end" in sql["asset_windows"]
    assert "ARRAY_AGG(ROW(`exchange`, vwap, fee_bps" in sql["asset_windows"]
    pairs = sql["pairs"]
    assert "CROSS JOIN UNNEST(w.sides) AS b" in pairs and "CROSS JOIN UNNEST(w.sides) AS s" in pairs
    assert pairs.rstrip().endswith("WHERE b.ex <> s.ex")


def test_alert_schema_version_2_drops_the_fixed_venue_fields() -> None:
    assert arbitrage.SCHEMA_VERSION == 2 and anomaly.SCHEMA_VERSION == 1
    columns = re.findall(r"`(\w+)`", arbitrage.SINK_COLUMNS)
    for field in ("alert_id", "buy_exchange", "buy_price", "sell_exchange", "sell_price", "spread_usd",
                  "spread_bps", "net_spread_usd", "net_spread_bps", "buy_fee_bps", "sell_fee_bps",
                  "threshold_usd", "venues", "venue_count", "summary", "alert_type", "window_start_ms"):
        assert field in columns
    assert not [c for c in columns if c.startswith(("binance_", "coinbase_"))]
