"""cryptomon cross-exchange arbitrage detector (PyFlink, Flink SQL only).

Reads trades from Kafka (`trades.raw`), aggregates 10 s tumbling event-time windows per
exchange and asset (VWAP, trade count, volume, last trade time), joins the same asset's
Binance and Coinbase windows (BTC-USDT vs BTC-USD) and writes one JSON alert per asset and
window to `signals.arbitrage` when the VWAP spread exceeds the threshold ($50 by default,
$0.1 in demo mode: `--demo` or ARBITRAGE_DEMO_MODE=true). The alert names both prices, the
spread in dollars and basis points, where to buy and where to sell, and the window.

USDT/USD policy: quotes listed in `--usd-quotes` (USD, USDT, USDC) are taken as US dollars
at par, with no conversion. A stablecoin off its peg therefore shows up as a spread on every
asset at once (documented in the README).

Stale sides never alert: a side needs at least one trade in the window and its last trade
no more than `--max-side-age-ms` before the window end.

Submit (self-contained, no -pyfs, no Python UDFs on the TaskManagers):

    flink run -d -py flink_jobs/arbitrage_detector.py [--demo] [--option value ...]

The pipeline is named `cryptomon-arbitrage-detector`; `--help` lists every option and its
environment variable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ==== shared-begin: identical in anomaly_detector.py and arbitrage_detector.py ====
# `flink run -py` ships only the entry file, so both jobs carry this block verbatim;
# tests/unit/test_flink_jobs.py fails if the two copies drift apart.

SCHEMA_VERSION = 1
WINDOW_SECONDS = 10
# Exact decimal types (never DOUBLE for money). Prices and sizes keep 12 decimals, which
# covers the exchanges' tick and lot sizes; the bounded precisions keep Flink's decimal
# division from cutting results down to 6 decimals (VWAP keeps 10).
PRICE_T = "DECIMAL(24, 12)"
SIZE_T = "DECIMAL(24, 12)"
NOTIONAL_T = "DECIMAL(30, 12)"
VOLUME_T = "DECIMAL(28, 12)"
THRESHOLD_T = "DECIMAL(28, 12)"
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# flink-sql-connector-kafka relocates the Kafka client: JAAS must name the shaded classes.
_SHADED = "org.apache.flink.kafka.shaded.org.apache.kafka.common.security"
_LOGIN_MODULES = {
    "PLAIN": f"{_SHADED}.plain.PlainLoginModule",
    "SCRAM-SHA-256": f"{_SHADED}.scram.ScramLoginModule",
    "SCRAM-SHA-512": f"{_SHADED}.scram.ScramLoginModule",
}
DELIVERY_GUARANTEES = ("at-least-once", "exactly-once")
STARTUP_MODES = ("group-offsets", "earliest-offset", "latest-offset")


class ConfigError(ValueError):
    """A setting is invalid; the message names the option/variable and the problem."""


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{text!r} is not a boolean (true/false)")


def parse_decimal(text: str | float | Decimal, what: str, positive: bool = True) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ConfigError(f"{what}: {text!r} is not a decimal number") from None
    if not value.is_finite() or (positive and value <= 0) or value < 0:
        raise ConfigError(f"{what}: {text!r} must be a {'positive' if positive else 'non-negative'} number")
    return value


def parse_thresholds(text: str, what: str = "thresholds") -> dict[str, Decimal]:
    """`{"BTC": 50, "ETH-USDT": "400"}` (JSON) or `BTC=50,ETH-USDT=400` -> {KEY: Decimal}.

    A key with a dash is a normalized symbol (BASE-QUOTE); a key without one is a base asset
    and applies to every symbol of that asset. Keys are upper-cased.
    """
    text = (text or "").strip()
    if not text:
        return {}
    items: list[tuple[str, object]]
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{what}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{what}: JSON must be an object of KEY: number")
        items = list(obj.items())
    else:
        items = []
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"{what}: {part.strip()!r} is not KEY=value")
            items.append((key, value))
    out: dict[str, Decimal] = {}
    for key, value in items:
        name = str(key).strip().upper()
        if not name or not all(c.isalnum() or c == "-" for c in name) or name.count("-") > 1:
            raise ConfigError(f"{what}: {key!r} is not an asset (BTC) or symbol (BTC-USDT)")
        out[name] = parse_decimal(value, f"{what}[{name}]")  # type: ignore[arg-type]
    return out


def sql_str(value: str) -> str:
    """A SQL string literal (single quotes doubled), for values rendered into DDL/DML."""
    return "'" + value.replace("'", "''") + "'"


def sql_dec(value: Decimal, sql_type: str = THRESHOLD_T) -> str:
    return f"CAST({sql_str(format(value, 'f'))} AS {sql_type})"


def sql_dec_text(expr: str) -> str:
    """Exact decimal as a JSON string without trailing zeros ("43250.12", "5")."""
    return f"REGEXP_EXTRACT(CAST({expr} AS STRING), '^(-?[0-9]+(\\.[0-9]*[1-9])?)', 1)"


def sql_epoch_ms(ts_expr: str) -> str:
    """Epoch millis of a window bound (whole seconds; session time zone is UTC)."""
    return f"CAST(UNIX_TIMESTAMP(CAST({ts_expr} AS STRING)) AS BIGINT) * 1000"


def sql_interval_s(seconds: int) -> str:
    """A DAY TO SECOND literal: plain INTERVAL 'n' SECOND only allows two digits."""
    days, rest = divmod(int(seconds), 86400)
    return f"INTERVAL '{days} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}' DAY TO SECOND"


def sql_iso(ts_expr: str) -> str:
    return f"DATE_FORMAT({ts_expr}, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')"


def sql_threshold_case(symbol_col: str, asset_col: str, thresholds: Mapping[str, Decimal],
                       default: Decimal | None) -> str:
    """Per-symbol threshold lookup compiled into the plan: exact symbol, then asset, then default."""
    whens = [f"WHEN {symbol_col} = {sql_str(k)} THEN {sql_dec(v)}"
             for k, v in sorted(thresholds.items()) if "-" in k]
    whens += [f"WHEN {asset_col} = {sql_str(k)} THEN {sql_dec(v)}"
              for k, v in sorted(thresholds.items()) if "-" not in k]
    fallback = sql_dec(default) if default is not None else f"CAST(NULL AS {THRESHOLD_T})"
    if not whens:
        return fallback
    return "CASE " + " ".join(whens) + f" ELSE {fallback} END"


@dataclass(frozen=True)
class KafkaConn:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    def properties(self) -> dict[str, str]:
        """Connector `properties.*` options (bootstrap and security)."""
        props = {"properties.bootstrap.servers": self.bootstrap_servers,
                 "properties.security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            user = (self.username or "").replace("\\", "\\\\").replace('"', '\\"')
            pwd = (self.password or "").replace("\\", "\\\\").replace('"', '\\"')
            props["properties.sasl.mechanism"] = self.sasl_mechanism
            props["properties.sasl.jaas.config"] = (
                f'{_LOGIN_MODULES[self.sasl_mechanism]} required username="{user}" password="{pwd}";'
            )
        return props


def kafka_conn(args: argparse.Namespace, env: Mapping[str, str]) -> KafkaConn:
    """Same rules as services/cryptomon/kafka_settings.py (KAFKA_* variables)."""
    bootstrap = args.bootstrap_servers
    for server in bootstrap.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS: {server.strip()!r} is not host:port")
    username = env.get("KAFKA_USERNAME", "").strip() or None
    password = env.get("KAFKA_PASSWORD", "").strip() or None
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper()
                or ("SASL_SSL" if username else "PLAINTEXT"))
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of {', '.join(_PROTOCOLS)}")
    if bool(username) != bool(password):
        raise ConfigError("KAFKA_USERNAME and KAFKA_PASSWORD must be set together")
    mechanism = None
    if protocol.startswith("SASL_"):
        if not username:
            raise ConfigError(f"KAFKA_USERNAME: required with KAFKA_SECURITY_PROTOCOL={protocol}")
        mechanism = env.get("KAFKA_SASL_MECHANISM", "").strip().upper() or "SCRAM-SHA-512"
        if mechanism not in _MECHANISMS:
            raise ConfigError(f"KAFKA_SASL_MECHANISM: {mechanism!r} is not one of {', '.join(_MECHANISMS)}")
    elif username:
        raise ConfigError(f"KAFKA_USERNAME is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL")
    return KafkaConn(bootstrap, protocol, mechanism, username, password)


class _EnvDefaults(argparse.ArgumentParser):
    """argparse where each option's default comes from an environment variable if set."""

    def __init__(self, env: Mapping[str, str], **kw: object) -> None:
        super().__init__(formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kw)  # type: ignore[arg-type]
        self._env = env

    def opt(self, flag: str, var: str, default: object, help: str, **kw: object) -> None:
        value = self._env.get(var, "").strip()
        self.add_argument(flag, default=value if value else default,
                          help=f"{help} [env {var}]", **kw)  # type: ignore[arg-type]


def add_common_options(p: _EnvDefaults, prefix: str, job: str, output_var: str, output_default: str) -> None:
    p.opt("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka bootstrap servers")
    p.opt("--trades-topic", "KAFKA_TRADES_TOPIC", "trades.raw", "input topic")
    p.opt("--output-topic", output_var, output_default, "alert topic")
    p.opt("--group-id", f"{prefix}_GROUP_ID", f"cryptomon-{job}", "Kafka consumer group")
    p.opt("--startup-mode", f"{prefix}_STARTUP_MODE", "group-offsets",
          "where a fresh start (no savepoint) reads from; group-offsets falls back to latest",
          choices=STARTUP_MODES)
    p.opt("--delivery-guarantee", f"{prefix}_DELIVERY_GUARANTEE", "at-least-once",
          "Kafka sink guarantee", choices=DELIVERY_GUARANTEES)
    p.opt("--transactional-id-prefix", f"{prefix}_TRANSACTIONAL_ID_PREFIX", f"cryptomon-{job}",
          "Kafka transactional.id prefix (exactly-once); keep stable across upgrades")
    p.opt("--max-out-of-orderness-ms", f"{prefix}_MAX_OUT_OF_ORDERNESS_MS", 1000,
          "watermark delay: trades later than this behind the newest seen are dropped", type=int)
    p.opt("--idle-timeout-ms", f"{prefix}_IDLE_TIMEOUT_MS", 3000,
          "a partition without trades for this long stops holding back the watermark", type=int)
    p.opt("--checkpoint-interval-ms", f"{prefix}_CHECKPOINT_INTERVAL_MS", 2000,
          "checkpoint interval (exactly-once alerts become visible at checkpoints)", type=int)
    p.opt("--parallelism", f"{prefix}_PARALLELISM", 0, "job parallelism (0 = cluster default)", type=int)


def validate_common(args: argparse.Namespace) -> None:
    for name in ("max_out_of_orderness_ms", "idle_timeout_ms", "checkpoint_interval_ms", "parallelism"):
        if int(getattr(args, name)) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must not be negative")
    if int(args.checkpoint_interval_ms) < 100:
        raise ConfigError("--checkpoint-interval-ms: checkpointing is required (>= 100)")
    if int(args.idle_timeout_ms) < 1:
        raise ConfigError("--idle-timeout-ms: must be positive (a quiet partition would stall windows)")
    for name in ("output_topic", "trades_topic"):
        topic = getattr(args, name)
        if not topic or not all(c.isalnum() or c in "._-" for c in topic):
            raise ConfigError(f"--{name.replace('_', '-')}: {topic!r} is not a valid topic name")


def with_options(options: Mapping[str, str]) -> str:
    return "WITH (\n  " + ",\n  ".join(f"{sql_str(k)} = {sql_str(v)}" for k, v in options.items()) + "\n)"


def source_ddl(args: argparse.Namespace, conn: KafkaConn) -> str:
    """trades.raw as a Kafka table with per-partition watermarks and idleness.

    price/size arrive as exact decimal strings; TRY_CAST later turns garbage into NULL (row
    dropped) instead of failing the job. A trade without exchange_ts falls back to
    received_ts, and without both to epoch 0, which is simply late and dropped.
    """
    delay = Decimal(int(args.max_out_of_orderness_ms)) / 1000
    options = {
        "connector": "kafka",
        "topic": args.trades_topic,
        "properties.group.id": args.group_id,
        "properties.auto.offset.reset": "latest",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": args.startup_mode,
        "scan.watermark.idle-timeout": f"{int(args.idle_timeout_ms)} ms",
        "format": "json",
        "json.ignore-parse-errors": "true",
        "json.fail-on-missing-field": "false",
        **conn.properties(),
    }
    return f"""
CREATE TABLE trades (
  `exchange` STRING,
  `symbol` STRING,
  `trade_id` STRING,
  `price` STRING,
  `size` STRING,
  `side` STRING,
  `exchange_ts` BIGINT,
  `received_ts` BIGINT,
  `event_time` AS TO_TIMESTAMP_LTZ(COALESCE(`exchange_ts`, `received_ts`, 0), 3),
  WATERMARK FOR `event_time` AS `event_time` - INTERVAL '{delay}' SECOND
) {with_options(options)}"""


CLEAN_TRADES_VIEW = f"""
CREATE TEMPORARY VIEW clean_trades AS
SELECT
  LOWER(TRIM(`exchange`)) AS `exchange`,
  UPPER(TRIM(`symbol`)) AS `symbol`,
  UPPER(SPLIT_INDEX(TRIM(`symbol`), '-', 0)) AS `asset`,
  UPPER(SPLIT_INDEX(TRIM(`symbol`), '-', 1)) AS `quote`,
  `price`, `size`,
  CAST(`price` * `size` AS {NOTIONAL_T}) AS `notional`,
  COALESCE(`exchange_ts`, `received_ts`, 0) AS `ts_ms`,
  `event_time`
FROM (
  SELECT `exchange`, `symbol`, `exchange_ts`, `received_ts`, `event_time`,
         TRY_CAST(`price` AS {PRICE_T}) AS `price`, TRY_CAST(`size` AS {SIZE_T}) AS `size`
  FROM trades
)
WHERE `exchange` IS NOT NULL AND `symbol` IS NOT NULL AND `price` > 0 AND `size` > 0"""


def sink_ddl(name: str, columns: str, args: argparse.Namespace, conn: KafkaConn) -> str:
    """JSON alerts keyed by alert_id (raw UTF-8 key), so equal alerts land in one partition."""
    options = {
        "connector": "kafka",
        "topic": args.output_topic,
        "key.format": "raw",
        "key.fields": "alert_id",
        "value.format": "json",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": args.delivery_guarantee,
        **conn.properties(),
    }
    if args.delivery_guarantee == "exactly-once":
        options["sink.transactional-id-prefix"] = args.transactional_id_prefix
        # Flink's default (1 h) exceeds the broker's transaction.max.timeout.ms (15 min).
        options["properties.transaction.timeout.ms"] = "900000"
    return f"CREATE TABLE {name} (\n{columns}\n) {with_options(options)}"


def create_table_env(args: argparse.Namespace, pipeline_name: str):
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(int(args.checkpoint_interval_ms), CheckpointingMode.EXACTLY_ONCE)
    if int(args.parallelism) > 0:
        env.set_parallelism(int(args.parallelism))
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    # Window bounds are rendered in UTC; epoch-aligned windows do not depend on it.
    conf.set("table.local-time-zone", "UTC")
    # The Ansible role names the job `<name>@<version>` with -Dpipeline.name and finds it by
    # that name: only fall back to our own name for manual submissions.
    if not conf.get("pipeline.name", ""):
        conf.set("pipeline.name", pipeline_name)
    # Same idleness for any source the planner does not push the watermark into.
    conf.set("table.exec.source.idle-timeout", f"{int(args.idle_timeout_ms)} ms")
    # Keep the last checkpoint when the job is cancelled: a fallback restore point.
    conf.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    # Only for running without a cluster (python <job>.py --explain): a cluster already has
    # the Kafka connector in lib/.
    if os.environ.get("CRYPTOMON_FLINK_JARS"):
        conf.set("pipeline.jars", os.environ["CRYPTOMON_FLINK_JARS"])
    return t_env


def run_statements(statements: Sequence[str], args: argparse.Namespace, pipeline_name: str) -> None:
    t_env = create_table_env(args, pipeline_name)
    for stmt in statements[:-1]:
        t_env.execute_sql(stmt)
    if getattr(args, "explain", False):
        print(t_env.explain_sql(statements[-1]))
        return
    result = t_env.execute_sql(statements[-1])
    job = result.get_job_client()
    name = t_env.get_config().get("pipeline.name", pipeline_name)
    print(f"submitted {name}: JobID {job.get_job_id() if job else '?'}", flush=True)

# ==== shared-end ====


JOB = "arbitrage-detector"
PIPELINE_NAME = "cryptomon-arbitrage-detector"
BUY_SELL_PAIR = ("binance", "coinbase")
DEMO_THRESHOLD = Decimal("0.1")


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = _EnvDefaults(env, prog="arbitrage_detector.py", description=__doc__.split("\n\n")[0])
    add_common_options(p, "ARBITRAGE", JOB, "KAFKA_ARBITRAGE_TOPIC", "signals.arbitrage")
    p.opt("--demo", "ARBITRAGE_DEMO_MODE", "false",
          "demo mode: every asset's threshold becomes $0.1 so alerts show up at once")
    p.opt("--spread-threshold-usd", "ARBITRAGE_SPREAD_THRESHOLD_USD", "50",
          "alert when |binance - coinbase| VWAP exceeds this many dollars")
    p.opt("--thresholds", "ARBITRAGE_THRESHOLDS", "",
          "per-asset overrides in dollars: 'ETH=5,SOL=0.5' or JSON (ignored in demo mode)")
    p.opt("--usd-quotes", "ARBITRAGE_USD_QUOTES", "USD,USDT,USDC",
          "quote currencies counted as US dollars at par")
    p.opt("--max-side-age-ms", "ARBITRAGE_MAX_SIDE_AGE_MS", 5000,
          "a side whose last trade in the window is older than this before the window end is stale",
          type=int)
    p.add_argument("--explain", action="store_true", help="print the plan instead of submitting")
    args = p.parse_args(list(argv))
    validate_common(args)
    # `--demo` alone (flag style) and `--demo true` both work.
    args.demo = parse_bool(args.demo)
    args.spread_threshold_usd = parse_decimal(args.spread_threshold_usd, "--spread-threshold-usd")
    args.thresholds = parse_thresholds(args.thresholds, "--thresholds")
    if any("-" in k for k in args.thresholds):
        raise ConfigError("--thresholds: arbitrage thresholds are per asset (BTC), not per symbol")
    quotes = [q.strip().upper() for q in str(args.usd_quotes).split(",") if q.strip()]
    if not quotes or not all(q.isalnum() for q in quotes):
        raise ConfigError(f"--usd-quotes: {args.usd_quotes!r} is not a list like USD,USDT")
    args.usd_quotes = quotes
    if not 0 < int(args.max_side_age_ms) <= WINDOW_SECONDS * 1000:
        raise ConfigError(f"--max-side-age-ms: must be in 1..{WINDOW_SECONDS * 1000}")
    return args


def _demo_argv(argv: Sequence[str]) -> list[str]:
    """Accept a bare `--demo` flag: argparse options here all take a value."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--demo" and (i + 1 == len(out) or out[i + 1].startswith("--")):
            out[i] = "--demo=true"
    return out


def alert_id_sql() -> str:
    """`arbitrage:<asset>:<window_start_ms>` - one pair per asset, so asset + window is the key."""
    return f"CONCAT('arbitrage:', b.asset, ':', CAST({sql_epoch_ms('b.window_start')} AS STRING))"


def alert_id(asset: str, window_start_ms: int) -> str:
    """Python twin of alert_id_sql() for consumers and tests."""
    return f"arbitrage:{asset}:{window_start_ms}"


SINK_COLUMNS = """
  `alert_id` STRING,
  `alert_type` STRING,
  `schema_version` INT,
  `job` STRING,
  `asset` STRING,
  `window_start` STRING,
  `window_end` STRING,
  `window_start_ms` BIGINT,
  `window_end_ms` BIGINT,
  `buy_exchange` STRING,
  `buy_price` STRING,
  `sell_exchange` STRING,
  `sell_price` STRING,
  `spread_usd` STRING,
  `spread_bps` STRING,
  `threshold_usd` STRING,
  `demo_mode` BOOLEAN,
  `binance_price` STRING,
  `binance_trade_count` BIGINT,
  `binance_volume` STRING,
  `binance_last_trade_ms` BIGINT,
  `coinbase_price` STRING,
  `coinbase_trade_count` BIGINT,
  `coinbase_volume` STRING,
  `coinbase_last_trade_ms` BIGINT,
  `summary` STRING"""


def build_statements(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    conn = kafka_conn(args, env)
    if args.demo:
        threshold = sql_dec(DEMO_THRESHOLD)
    else:
        threshold = sql_threshold_case("b.asset", "b.asset", args.thresholds, args.spread_threshold_usd)
    quotes = ", ".join(sql_str(q) for q in args.usd_quotes)
    exchanges = ", ".join(sql_str(e) for e in BUY_SELL_PAIR)
    # Per exchange and asset: every USD-like quote of the asset counts (at par) toward one
    # VWAP, e.g. BTC-USDT and BTC-USDC on binance. last_ts is for the staleness rule.
    sides = f"""
CREATE TEMPORARY VIEW sides AS
SELECT `exchange`, asset, window_start, window_end,
  COUNT(*) AS trade_count,
  CAST(SUM(`size`) AS {VOLUME_T}) AS volume,
  CAST(CAST(SUM(`notional`) AS {NOTIONAL_T}) / CAST(SUM(`size`) AS DECIMAL(22, 10)) AS DECIMAL(24, 10)) AS vwap,
  MAX(ts_ms) AS last_ts
FROM TABLE(TUMBLE(TABLE clean_trades, DESCRIPTOR(event_time), INTERVAL '{WINDOW_SECONDS}' SECOND))
WHERE `exchange` IN ({exchanges}) AND `quote` IN ({quotes})
GROUP BY `exchange`, asset, window_start, window_end"""
    # Window join: both sides of the same asset and the same window; a window where either
    # exchange has no trade produces no row at all, so a silent exchange never alerts.
    joined = f"""
CREATE TEMPORARY VIEW pairs AS
SELECT b.asset, b.window_start, b.window_end,
  {sql_epoch_ms('b.window_end')} AS window_end_ms,
  b.vwap AS b_price, b.trade_count AS b_count, b.volume AS b_volume, b.last_ts AS b_last,
  c.vwap AS c_price, c.trade_count AS c_count, c.volume AS c_volume, c.last_ts AS c_last,
  ABS(b.vwap - c.vwap) AS spread,
  {threshold} AS threshold
FROM (SELECT * FROM sides WHERE `exchange` = {sql_str(BUY_SELL_PAIR[0])}) b
JOIN (SELECT * FROM sides WHERE `exchange` = {sql_str(BUY_SELL_PAIR[1])}) c
  ON b.asset = c.asset AND b.window_start = c.window_start AND b.window_end = c.window_end"""
    # Cheaper side is where to buy. bps are relative to the buy price (return on the dollar).
    buy_b = "b_price < c_price"
    buy_price = f"CASE WHEN {buy_b} THEN b_price ELSE c_price END"
    sell_price = f"CASE WHEN {buy_b} THEN c_price ELSE b_price END"
    bps = f"CAST(CAST(spread AS DECIMAL(24, 10)) * 10000 / CAST({buy_price} AS DECIMAL(24, 10)) AS DECIMAL(20, 2))"
    buy_ex = f"CASE WHEN {buy_b} THEN {sql_str(BUY_SELL_PAIR[0])} ELSE {sql_str(BUY_SELL_PAIR[1])} END"
    sell_ex = f"CASE WHEN {buy_b} THEN {sql_str(BUY_SELL_PAIR[1])} ELSE {sql_str(BUY_SELL_PAIR[0])} END"
    age = int(args.max_side_age_ms)
    insert = f"""
INSERT INTO arbitrage_alerts
SELECT
  CONCAT('arbitrage:', asset, ':', CAST({sql_epoch_ms('window_start')} AS STRING)) AS alert_id,
  'arbitrage' AS alert_type,
  {SCHEMA_VERSION} AS schema_version,
  {sql_str(JOB)} AS job,
  asset,
  {sql_iso('window_start')}, {sql_iso('window_end')},
  {sql_epoch_ms('window_start')}, window_end_ms,
  {buy_ex}, {sql_dec_text(buy_price)},
  {sell_ex}, {sql_dec_text(sell_price)},
  {sql_dec_text('spread')}, {sql_dec_text(bps)},
  {sql_dec_text('threshold')},
  {'TRUE' if args.demo else 'FALSE'},
  {sql_dec_text('b_price')}, b_count, {sql_dec_text('b_volume')}, b_last,
  {sql_dec_text('c_price')}, c_count, {sql_dec_text('c_volume')}, c_last,
  CONCAT(asset, ': buy on ', {buy_ex}, ' at ', {sql_dec_text(buy_price)},
         ', sell on ', {sell_ex}, ' at ', {sql_dec_text(sell_price)},
         ', spread $', {sql_dec_text('spread')}, ' (', {sql_dec_text(bps)}, ' bps) in ',
         {sql_iso('window_start')}, '/', {sql_iso('window_end')})
FROM pairs
WHERE spread > threshold
  AND b_last >= window_end_ms - {age} AND c_last >= window_end_ms - {age}"""
    return [source_ddl(args, conn), CLEAN_TRADES_VIEW, sink_ddl("arbitrage_alerts", SINK_COLUMNS, args, conn),
            sides, joined, insert]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(_demo_argv(sys.argv[1:] if argv is None else argv))
        statements = build_statements(args)
    except ConfigError as exc:
        print(f"arbitrage_detector: {exc}", file=sys.stderr)
        return 2
    run_statements(statements, args, PIPELINE_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
