"""cryptomon volume anomaly detector (PyFlink, Flink SQL only).

Reads trades from Kafka (`trades.raw`), aggregates 10 s tumbling event-time windows per
exchange and symbol (trade count, volume, notional, VWAP, min/max price) and writes one JSON
alert per window to `signals.alerts` when the window's volume

* exceeds the symbol's fixed threshold (`volume_threshold`), and/or
* is more than `--spike-factor` times the mean volume of the same exchange+symbol's
  non-empty windows in the preceding `--spike-lookback-windows` windows, given at least
  `--spike-min-windows` of them (`volume_spike`).

Submit (the file is self-contained; no -pyfs needed, no Python UDFs run on the TaskManagers):

    flink run -d -py flink_jobs/anomaly_detector.py [--option value ...]

Every option also reads an environment variable (option > env > default); `--help` lists
them. The pipeline is named `cryptomon-anomaly-detector`. the README ("Flink jobs") documents the
alert schema, watermarks, the delivery guarantee and every setting.
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


JOB = "anomaly-detector"
PIPELINE_NAME = "cryptomon-anomaly-detector"
# Base-asset units per 10 s window; a few times the busiest normal windows on Binance.
DEFAULT_THRESHOLDS = "BTC=50,ETH=500,SOL=5000"


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = _EnvDefaults(env, prog="anomaly_detector.py", description=__doc__.split("\n\n")[0])
    add_common_options(p, "ANOMALY", JOB, "KAFKA_ALERTS_TOPIC", "signals.alerts")
    p.opt("--thresholds", "ANOMALY_VOLUME_THRESHOLDS", DEFAULT_THRESHOLDS,
          "per-asset/per-symbol volume thresholds (base units per window): 'BTC=50,ETH-USD=300' or JSON")
    p.opt("--default-threshold", "ANOMALY_DEFAULT_VOLUME_THRESHOLD", "",
          "threshold for symbols not listed (empty: only spike detection for them)")
    p.opt("--spike-factor", "ANOMALY_SPIKE_FACTOR", "5",
          "volume_spike when volume > factor x mean of the recent windows")
    p.opt("--spike-lookback-windows", "ANOMALY_SPIKE_LOOKBACK_WINDOWS", 30,
          "how many preceding windows (time span) form the baseline", type=int)
    p.opt("--spike-min-windows", "ANOMALY_SPIKE_MIN_WINDOWS", 6,
          "non-empty baseline windows needed before spikes are judged", type=int)
    p.add_argument("--explain", action="store_true", help="print the plan instead of submitting")
    args = p.parse_args(list(argv))
    validate_common(args)
    args.thresholds = parse_thresholds(args.thresholds, "--thresholds")
    args.default_threshold = (parse_decimal(args.default_threshold, "--default-threshold")
                              if str(args.default_threshold).strip() else None)
    args.spike_factor = parse_decimal(args.spike_factor, "--spike-factor")
    if args.spike_lookback_windows < 1 or args.spike_min_windows < 1:
        raise ConfigError("--spike-lookback-windows and --spike-min-windows must be >= 1")
    if args.spike_min_windows > args.spike_lookback_windows:
        raise ConfigError("--spike-min-windows cannot exceed --spike-lookback-windows")
    return args


def alert_id_sql() -> str:
    """`anomaly:<exchange>:<symbol>:<window_start_ms>` - same window, same id, on any replay."""
    return f"CONCAT('anomaly:', `exchange`, ':', `symbol`, ':', CAST({sql_epoch_ms('window_start')} AS STRING))"


def alert_id(exchange: str, symbol: str, window_start_ms: int) -> str:
    """Python twin of alert_id_sql() for consumers and tests."""
    return f"anomaly:{exchange}:{symbol}:{window_start_ms}"


SINK_COLUMNS = """
  `alert_id` STRING,
  `alert_type` STRING,
  `schema_version` INT,
  `job` STRING,
  `exchange` STRING,
  `symbol` STRING,
  `window_start` STRING,
  `window_end` STRING,
  `window_start_ms` BIGINT,
  `window_end_ms` BIGINT,
  `trade_count` BIGINT,
  `volume` STRING,
  `notional` STRING,
  `vwap` STRING,
  `min_price` STRING,
  `max_price` STRING,
  `reasons` ARRAY<STRING>,
  `volume_threshold` STRING,
  `baseline_volume` STRING,
  `baseline_windows` BIGINT,
  `spike_ratio` STRING,
  `summary` STRING"""


def build_statements(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    conn = kafka_conn(args, env)
    lookback_s = int(args.spike_lookback_windows) * WINDOW_SECONDS
    threshold = sql_threshold_case("`symbol`", "`asset`", args.thresholds, args.default_threshold)
    windows = f"""
CREATE TEMPORARY VIEW trade_windows AS
SELECT `exchange`, `symbol`, `asset`, window_start, window_end, window_time,
  COUNT(*) AS trade_count,
  CAST(SUM(`size`) AS {VOLUME_T}) AS volume,
  CAST(SUM(`notional`) AS {NOTIONAL_T}) AS notional,
  MIN(`price`) AS min_price,
  MAX(`price`) AS max_price
FROM TABLE(TUMBLE(TABLE clean_trades, DESCRIPTOR(event_time), INTERVAL '{WINDOW_SECONDS}' SECOND))
GROUP BY `exchange`, `symbol`, `asset`, window_start, window_end, window_time"""
    # The baseline is the same key's non-empty windows in the lookback span before this one
    # (OVER can only end at CURRENT ROW, so the current window is subtracted again). RANGE
    # rather than ROWS so a symbol that was quiet for an hour is not compared with stale data.
    with_history = f"""
CREATE TEMPORARY VIEW windows_with_history AS
SELECT *,
  CAST(SUM(volume) OVER w - volume AS {VOLUME_T}) AS hist_volume,
  COUNT(*) OVER w - 1 AS hist_windows,
  {threshold} AS volume_threshold
FROM trade_windows
WINDOW w AS (PARTITION BY `exchange`, `symbol` ORDER BY window_time
             RANGE BETWEEN {sql_interval_s(lookback_s)} PRECEDING AND CURRENT ROW)"""
    flagged = f"""
CREATE TEMPORARY VIEW flagged AS
SELECT *,
  COALESCE(volume > volume_threshold, FALSE) AS over_threshold,
  (hist_windows >= {int(args.spike_min_windows)} AND hist_volume > 0
   AND volume * CAST(hist_windows AS DECIMAL(10, 0))
       > {sql_dec(args.spike_factor, 'DECIMAL(10, 4)')} * hist_volume) AS is_spike,
  CASE WHEN hist_windows > 0
       THEN CAST(hist_volume / CAST(hist_windows AS DECIMAL(10, 0)) AS {VOLUME_T}) END AS baseline_volume
FROM windows_with_history"""
    vwap = "CAST(notional / CAST(volume AS DECIMAL(22, 10)) AS DECIMAL(24, 10))"
    insert = f"""
INSERT INTO anomaly_alerts
SELECT
  {alert_id_sql()} AS alert_id,
  'volume_anomaly' AS alert_type,
  {SCHEMA_VERSION} AS schema_version,
  {sql_str(JOB)} AS job,
  `exchange`, `symbol`,
  {sql_iso('window_start')}, {sql_iso('window_end')},
  {sql_epoch_ms('window_start')}, {sql_epoch_ms('window_end')},
  trade_count,
  {sql_dec_text('volume')}, {sql_dec_text('notional')}, {sql_dec_text(vwap)},
  {sql_dec_text('min_price')}, {sql_dec_text('max_price')},
  ARRAY_REMOVE(ARRAY[CASE WHEN over_threshold THEN 'volume_threshold' ELSE '' END,
                     CASE WHEN is_spike THEN 'volume_spike' ELSE '' END], ''),
  {sql_dec_text('volume_threshold')},
  {sql_dec_text('baseline_volume')},
  hist_windows,
  CASE WHEN baseline_volume > 0
       THEN {sql_dec_text('CAST(volume / CAST(baseline_volume AS DECIMAL(22, 10)) AS DECIMAL(20, 2))')} END,
  CONCAT(`exchange`, ' ', `symbol`, ' volume ', {sql_dec_text('volume')},
         CASE WHEN over_threshold THEN CONCAT(' > threshold ', {sql_dec_text('volume_threshold')}) ELSE '' END,
         CASE WHEN is_spike THEN CONCAT(' (', {sql_dec_text('CAST(volume / CAST(baseline_volume AS DECIMAL(22, 10)) AS DECIMAL(20, 2))')},
                                        'x the recent mean ', {sql_dec_text('baseline_volume')}, ')') ELSE '' END,
         ' in ', {sql_iso('window_start')}, '/', {sql_iso('window_end')},
         ', VWAP ', {sql_dec_text(vwap)}, ', ', CAST(trade_count AS STRING), ' trades')
FROM flagged
WHERE over_threshold OR is_spike"""
    return [source_ddl(args, conn), CLEAN_TRADES_VIEW, sink_ddl("anomaly_alerts", SINK_COLUMNS, args, conn),
            windows, with_history, flagged, insert]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        statements = build_statements(args)
    except ConfigError as exc:
        print(f"anomaly_detector: {exc}", file=sys.stderr)
        return 2
    run_statements(statements, args, PIPELINE_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
