"""What both cryptomon PyFlink jobs share: settings, SQL helpers, the Kafka tables, submission.

Only the job's driver (the `python <job>.py` that `flink run -py` starts on the submitting
host) imports this module: the jobs are pure Flink SQL and run no Python on the TaskManagers.
It is shipped next to the job with

    flink run -d -py flink_jobs/<job>.py -pyfs flink_jobs/flink_common.py,flink_jobs/kafka_settings.py

`kafka_settings.py` is the services' own module (services/cryptomon/kafka_settings.py, stdlib
only; flink_jobs/kafka_settings.py is a symlink to it), so the KAFKA_* rules exist once.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from kafka_settings import ConfigError, KafkaSettings

__all__ = ["ConfigError", "KafkaSettings"]  # the jobs catch the one ConfigError of kafka_settings

WINDOW_SECONDS = 10
# Exact decimal types (never DOUBLE for money). Prices and sizes keep 12 decimals, which
# covers the exchanges' tick and lot sizes; the bounded precisions keep Flink's decimal
# division from cutting results down to 6 decimals (VWAP keeps 10).
PRICE_T = "DECIMAL(24, 12)"
SIZE_T = "DECIMAL(24, 12)"
NOTIONAL_T = "DECIMAL(30, 12)"
VOLUME_T = "DECIMAL(28, 12)"
THRESHOLD_T = "DECIMAL(28, 12)"
# flink-sql-connector-kafka relocates the Kafka client: JAAS must name the shaded classes.
_SHADED_KAFKA = "org.apache.flink.kafka.shaded.org.apache.kafka"
_SHADED = f"{_SHADED_KAFKA}.common.security"
_LOGIN_MODULES = {
    "PLAIN": f"{_SHADED}.plain.PlainLoginModule",
    "SCRAM-SHA-256": f"{_SHADED}.scram.ScramLoginModule",
    "SCRAM-SHA-512": f"{_SHADED}.scram.ScramLoginModule",
}
DELIVERY_GUARANTEES = ("at-least-once", "exactly-once")
STARTUP_MODES = ("group-offsets", "earliest-offset", "latest-offset")
# Read by kafka_settings.KafkaSettings.from_env only (no command-line option): listed in --help.
_KAFKA_ENV_ONLY = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_USERNAME",
                   "KAFKA_PASSWORD or KAFKA_PASSWORD_FILE", "KAFKA_SSL_CA_LOCATION")


def parse_bool(text: str | bool, what: str = "value") -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{what}: {text!r} is not a boolean (true/false)")


def parse_decimal(text: str | float | Decimal, what: str, positive: bool = True) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ConfigError(f"{what}: {text!r} is not a decimal number") from None
    if not value.is_finite() or (positive and value <= 0) or value < 0:
        raise ConfigError(f"{what}: {text!r} must be a {'positive' if positive else 'non-negative'} number")
    return value


def parse_mapping(text: str, what: str) -> list[tuple[str, object]]:
    """`{"a": 1, "b": "2"}` (JSON) or `a=1,b=2` -> [(key, value), ...] in the given order."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{what}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{what}: JSON must be an object of KEY: number")
        return list(obj.items())
    items: list[tuple[str, object]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{what}: {part.strip()!r} is not KEY=value")
        items.append((key, value))
    return items


def parse_thresholds(text: str, what: str = "thresholds") -> dict[str, Decimal]:
    """`{"BTC": 50, "ETH-USDT": "400"}` (JSON) or `BTC=50,ETH-USDT=400` -> {KEY: Decimal}.

    A key with a dash is a normalized symbol (BASE-QUOTE); a key without one is a base asset
    and applies to every symbol of that asset. Keys are upper-cased.
    """
    out: dict[str, Decimal] = {}
    for key, value in parse_mapping(text, what):
        name = str(key).strip().upper()
        if not name or not all(c.isalnum() or c == "-" for c in name) or name.count("-") > 1:
            raise ConfigError(f"{what}: {key!r} is not an asset (BTC) or symbol (BTC-USDT)")
        out[name] = parse_decimal(value, f"{what}[{name}]")  # type: ignore[arg-type]
    return out


# --- fees -------------------------------------------------------------------------------------
# Lowest-tier (no volume, no token discount) spot taker fees in basis points, as published by
# each venue, for both arbitrage jobs; sources and the date they were read are in
# docs/alerts.md ("Fees").
DEFAULT_TAKER_FEES_BPS = {
    "binance": Decimal("10"),   # Regular user / VIP 0: 0.100 %
    "bybit": Decimal("10"),     # non-VIP spot: 0.1 %
    "coinbase": Decimal("60"),  # Coinbase Exchange, $0-10K tier: 0.60 %
    "kraken": Decimal("40"),    # Kraken Pro, $0-10K tier: 0.40 %
    "okx": Decimal("10"),       # Lv1, USDT/crypto spot pairs: 0.100 %
}
MAX_FEE_BPS = Decimal(1000)  # 10 %: anything higher is a typo (a percentage given as bps?)


def parse_fee_bps(value: object, what: str) -> Decimal:
    """A taker fee in basis points: [0, 1000) with at most 4 decimals."""
    fee = parse_decimal(value, what, positive=False)  # type: ignore[arg-type]
    if fee >= MAX_FEE_BPS:
        raise ConfigError(f"{what}: {value!r} bps is 10 % or more (fees are in basis points: 0.1 % = 10)")
    if fee != fee.quantize(Decimal("0.0001")):
        raise ConfigError(f"{what}: {value!r} has more than 4 decimals")
    return fee


def exchange_name(key: object, what: str) -> str:
    name = str(key).strip().lower()
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"{what}: {key!r} is not an exchange name")
    return name


def parse_fee_table(text: str, what: str) -> dict[str, Decimal]:
    """`kraken=26,okx=8` or JSON -> {exchange: bps}, laid over DEFAULT_TAKER_FEES_BPS."""
    fees = dict(DEFAULT_TAKER_FEES_BPS)
    for key, value in parse_mapping(text, what):
        name = exchange_name(key, what)
        fees[name] = parse_fee_bps(value, f"{what}[{name}]")
    return fees


def sql_str(value: str) -> str:
    """A SQL string literal (single quotes doubled), for values rendered into DDL/DML."""
    return "'" + value.replace("'", "''") + "'"


def sql_dec(value: Decimal, sql_type: str = THRESHOLD_T) -> str:
    return f"CAST({sql_str(format(value, 'f'))} AS {sql_type})"


def sql_dec_text(expr: str) -> str:
    """Exact decimal as a JSON string without trailing zeros ("43250.12", "5", "-0.5")."""
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


# --- Kafka ------------------------------------------------------------------------------------

def kafka_settings(args: argparse.Namespace, env: Mapping[str, str], output_var: str) -> KafkaSettings:
    """KafkaSettings from the environment with the command-line options laid over it.

    Every rule (host:port, topic names, protocol/mechanism/credentials) is kafka_settings.py's.
    """
    for name in ("bootstrap_servers", "trades_topic", "output_topic"):
        if not str(getattr(args, name)).strip():
            raise ConfigError(f"--{name.replace('_', '-')}: must not be empty")
    merged = {**env, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers,
              "KAFKA_TRADES_TOPIC": args.trades_topic, output_var: args.output_topic}
    return KafkaSettings.from_env(merged)


def kafka_settings_with_input(args: argparse.Namespace, env: Mapping[str, str], input_attr: str,
                              input_var: str, output_var: str) -> KafkaSettings:
    """KafkaSettings for a job whose input is not trades.raw (the quote job: `quotes.raw`).

    The input topic is checked by kafka_settings.py's topic rule (given in the trades slot,
    the one input slot KafkaSettings has); an error names the job's own option and variable.
    Read the input topic from args, not from the returned settings' trades_topic.
    """
    topic = str(getattr(args, input_attr)).strip()
    if not topic:
        raise ConfigError(f"--{input_attr.replace('_', '-')}: must not be empty")
    for name in ("bootstrap_servers", "output_topic"):
        if not str(getattr(args, name)).strip():
            raise ConfigError(f"--{name.replace('_', '-')}: must not be empty")
    merged = {**env, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap_servers,
              "KAFKA_TRADES_TOPIC": topic, output_var: args.output_topic}
    try:
        return KafkaSettings.from_env(merged)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("KAFKA_TRADES_TOPIC", input_var)) from None


def _jaas_quote(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')


def connector_properties(settings: KafkaSettings) -> dict[str, str]:
    """The Kafka SQL connector's `properties.*` options (bootstrap and security) for settings."""
    props = {"properties.bootstrap.servers": settings.bootstrap_servers,
             "properties.security.protocol": settings.security_protocol}
    ca_file = settings.ssl_ca_location
    if ca_file and settings.security_protocol in ("SSL", "SASL_SSL"):
        # The Java client reads a PEM CA bundle directly (no JKS truststore to build).
        props["properties.ssl.truststore.type"] = "PEM"
        props["properties.ssl.truststore.location"] = ca_file
    if settings.sasl_mechanism:
        password = _jaas_quote(settings.password)
        password_file = settings.password_file
        if password_file:
            # The SQL (and with it the job graph, the plan and the web UI) only names the file:
            # Kafka's DirectoryConfigProvider reads it on the JobManager and TaskManagers.
            props["properties.config.providers"] = "cmdir"
            props["properties.config.providers.cmdir.class"] = (
                f"{_SHADED_KAFKA}.common.config.provider.DirectoryConfigProvider")
            directory, name = os.path.split(os.path.abspath(password_file))
            password = f"${{cmdir:{directory}:{name}}}"
        props["properties.sasl.mechanism"] = settings.sasl_mechanism
        props["properties.sasl.jaas.config"] = (
            f'{_LOGIN_MODULES[settings.sasl_mechanism]} required '
            f'username="{_jaas_quote(settings.username)}" password="{password}";'
        )
    return props


# --- options ----------------------------------------------------------------------------------

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, and the epilog (environment-only variables) kept as written."""


class EnvDefaults(argparse.ArgumentParser):
    """argparse where each option's default comes from an environment variable if set."""

    def __init__(self, env: Mapping[str, str], **kw: object) -> None:
        super().__init__(formatter_class=_HelpFormatter, **kw)  # type: ignore[arg-type]
        self._env = env

    def opt(self, flag: str, var: str, default: object, help: str, **kw: object) -> None:
        value = self._env.get(var, "").strip()
        self.add_argument(flag, default=value if value else default,
                          help=f"{help} [env {var}]", **kw)  # type: ignore[arg-type]


def kafka_env_epilog() -> str:
    return ("Kafka security, from the environment only (same variables and rules as the services,\n"
            "see kafka_settings.py): " + ", ".join(_KAFKA_ENV_ONLY) + ".")


def add_common_options(p: EnvDefaults, prefix: str, job: str, output_var: str, output_default: str) -> None:
    p.opt("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", KafkaSettings.bootstrap_servers,
          "Kafka bootstrap servers")
    p.opt("--trades-topic", "KAFKA_TRADES_TOPIC", KafkaSettings.trades_topic, "input topic")
    p.opt("--output-topic", output_var, output_default, "alert topic")
    add_group_and_sink_options(p, prefix, job)
    p.opt("--max-out-of-orderness-ms", f"{prefix}_MAX_OUT_OF_ORDERNESS_MS", 1000,
          "watermark delay: trades later than this behind the newest seen are dropped", type=int)
    p.opt("--idle-timeout-ms", f"{prefix}_IDLE_TIMEOUT_MS", 3000,
          "a partition without trades for this long stops holding back the watermark", type=int)
    p.opt("--checkpoint-interval-ms", f"{prefix}_CHECKPOINT_INTERVAL_MS", 2000,
          "checkpoint interval (exactly-once alerts become visible at checkpoints)", type=int)
    p.opt("--parallelism", f"{prefix}_PARALLELISM", 0, "job parallelism (0 = cluster default)", type=int)
    p.add_argument("--explain", action="store_true", help="print the plan instead of submitting")
    p.epilog = kafka_env_epilog()


def add_group_and_sink_options(p: EnvDefaults, prefix: str, job: str) -> None:
    """Consumer group, startup mode and the sink's guarantee: every job has them."""
    # The jobs' consumer groups and transactional ids share one prefix, the one the Kafka ACLs
    # grant the Flink user (the Ansible bundle's cryptomon_flink_kafka_prefix).
    client_prefix = p._env.get("KAFKA_CLIENT_PREFIX", "").strip() or "cryptomon-flink-"
    p.opt("--group-id", f"{prefix}_GROUP_ID", f"{client_prefix}{job}",
          "Kafka consumer group (default: KAFKA_CLIENT_PREFIX + job name)")
    p.opt("--startup-mode", f"{prefix}_STARTUP_MODE", "group-offsets",
          "where a fresh start (no savepoint) reads from; group-offsets falls back to latest",
          choices=STARTUP_MODES)
    p.opt("--delivery-guarantee", f"{prefix}_DELIVERY_GUARANTEE", "at-least-once",
          "Kafka sink guarantee", choices=DELIVERY_GUARANTEES)
    p.opt("--transactional-id-prefix", f"{prefix}_TRANSACTIONAL_ID_PREFIX", f"{client_prefix}{job}",
          "Kafka transactional.id prefix (exactly-once; default KAFKA_CLIENT_PREFIX + job name); "
          "keep stable across upgrades")


def validate_common(args: argparse.Namespace) -> None:
    for name in ("max_out_of_orderness_ms", "idle_timeout_ms", "checkpoint_interval_ms", "parallelism"):
        if int(getattr(args, name)) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must not be negative")
    if int(args.checkpoint_interval_ms) < 100:
        raise ConfigError("--checkpoint-interval-ms: checkpointing is required (>= 100)")
    if int(args.idle_timeout_ms) < 1:
        raise ConfigError("--idle-timeout-ms: must be positive (a quiet partition would stall windows)")


# --- tables -----------------------------------------------------------------------------------

def with_options(options: Mapping[str, str]) -> str:
    return "WITH (\n  " + ",\n  ".join(f"{sql_str(k)} = {sql_str(v)}" for k, v in options.items()) + "\n)"


def json_source_options(args: argparse.Namespace, settings: KafkaSettings, topic: str,
                        scan: Mapping[str, str] | None = None) -> dict[str, str]:
    """A Kafka JSON source: the job's group, committed reads, and bad JSON skipped, not fatal.

    `scan`: more scan.* options, placed after the startup mode (the order the jobs' SQL had).
    """
    return {
        "connector": "kafka",
        "topic": topic,
        "properties.group.id": args.group_id,
        "properties.auto.offset.reset": "latest",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": args.startup_mode,
        **(scan or {}),
        "format": "json",
        "json.ignore-parse-errors": "true",
        "json.fail-on-missing-field": "false",
        **connector_properties(settings),
    }


def source_ddl(args: argparse.Namespace, settings: KafkaSettings) -> str:
    """trades.raw as a Kafka table with per-partition watermarks and idleness.

    Only the fields the jobs use are declared: the JSON reader skips the others (trade_id,
    side, raw_symbol) without building values for them. price/size arrive as exact decimal
    strings; TRY_CAST later turns garbage into NULL (row dropped) instead of failing the job.
    A trade without exchange_ts falls back to received_ts, and without both to epoch 0,
    which is simply late and dropped.
    """
    delay = Decimal(int(args.max_out_of_orderness_ms)) / 1000
    options = json_source_options(args, settings, settings.trades_topic,
                                  {"scan.watermark.idle-timeout": f"{int(args.idle_timeout_ms)} ms"})
    return f"""
CREATE TABLE trades (
  `exchange` STRING,
  `symbol` STRING,
  `price` STRING,
  `size` STRING,
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


def sink_ddl(name: str, columns: str, topic: str, args: argparse.Namespace, settings: KafkaSettings) -> str:
    """JSON alerts keyed by alert_id (raw UTF-8 key), so equal alerts land in one partition."""
    options = {
        "connector": "kafka",
        "topic": topic,
        "key.format": "raw",
        "key.fields": "alert_id",
        "value.format": "json",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": args.delivery_guarantee,
        **connector_properties(settings),
    }
    if args.delivery_guarantee == "exactly-once":
        options["sink.transactional-id-prefix"] = args.transactional_id_prefix
        # Flink's default (1 h) exceeds the broker's transaction.max.timeout.ms (15 min).
        options["properties.transaction.timeout.ms"] = "900000"
    return f"CREATE TABLE {name} (\n{columns}\n) {with_options(options)}"


# --- submission -------------------------------------------------------------------------------

def create_table_env(args: argparse.Namespace, pipeline_name: str):
    return create_stream_envs(args, pipeline_name)[1]


def create_stream_envs(args: argparse.Namespace, pipeline_name: str):
    """(StreamExecutionEnvironment, StreamTableEnvironment) with the jobs' common settings.

    A job without watermarks (no `idle_timeout_ms` in args) gets no source idleness setting.
    """
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(int(args.checkpoint_interval_ms), CheckpointingMode.EXACTLY_ONCE)
    if int(args.parallelism) > 0:
        env.set_parallelism(int(args.parallelism))
    # Between the window stages only a few rows flow (window results), so a watermark that
    # closes a window waits in a half-empty network buffer until the flusher runs: every 10 ms
    # instead of Flink's 100 ms per hop (three hops before the alert leaves).
    env.set_buffer_timeout(10)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    # Window bounds are rendered in UTC; epoch-aligned windows do not depend on it.
    conf.set("table.local-time-zone", "UTC")
    # The Ansible role names the job `<name>@<version>` with -Dpipeline.name and finds it by
    # that name: only fall back to our own name for manual submissions.
    if not conf.get("pipeline.name", ""):
        conf.set("pipeline.name", pipeline_name)
    # Same idleness for any source the planner does not push the watermark into.
    if getattr(args, "idle_timeout_ms", None) is not None:
        conf.set("table.exec.source.idle-timeout", f"{int(args.idle_timeout_ms)} ms")
    # The SQL operators do not keep references to their input rows: chained operators can
    # hand rows over without a deep copy (a tenth of the per-trade CPU in the profile).
    conf.set("pipeline.object-reuse", "true")
    # Keep the last checkpoint when the job is cancelled: a fallback restore point.
    conf.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    # Only for running without a cluster (python <job>.py --explain): a cluster already has
    # the Kafka connector in lib/.
    if os.environ.get("CRYPTOMON_FLINK_JARS"):
        conf.set("pipeline.jars", os.environ["CRYPTOMON_FLINK_JARS"])
    return env, t_env


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


def demo_argv(argv: Sequence[str]) -> list[str]:
    """Accept a bare `--demo` flag: argparse options of the jobs all take a value."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--demo" and (i + 1 == len(out) or out[i + 1].startswith("--")):
            out[i] = "--demo=true"
    return out
