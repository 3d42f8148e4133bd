"""cryptomon cross-exchange arbitrage detector, N venues (PyFlink, Flink SQL only).

Reads trades from Kafka (`trades.raw`), aggregates 10 s tumbling event-time windows per
exchange and asset (VWAP, trade count, volume, last trade time) over every exchange that
appears in the topic (or only those in `--exchanges`), compares every ordered pair of
exchanges that traded the same asset in the same window, and writes at most one JSON alert
per asset and window to `signals.arbitrage`: the best venue to buy, the best venue to sell,
the gross spread in dollars and basis points, the net spread after both venues' taker fees,
and the venues seen. It alerts when the gross spread (default, `--trigger gross`) or the
net spread (`--trigger net`) exceeds the threshold: $50 by default, $0.1 in demo mode
(`--demo` or ARBITRAGE_DEMO_MODE=true).

USDT/USD policy: quotes listed in `--usd-quotes` (USD, USDT, USDC) are taken as US dollars
at par, with no conversion. A stablecoin off its peg therefore shows up as a spread on every
asset at once (documented in docs/alerts.md).

Stale venues never alert: a venue needs at least one trade in the window and its last trade
no more than `--max-side-age-ms` before the window end, otherwise it is left out of that
window's comparison.

Submit with the shared module (the job is Flink SQL; no Python runs on the TaskManagers):

    flink run -d -py flink_jobs/arbitrage_detector.py \\
        -pyfs flink_jobs/flink_common.py,flink_jobs/kafka_settings.py [--demo] [--option value ...]

The pipeline is named `cryptomon-arbitrage-detector`; `--help` lists every option and its
environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal

from flink_common import (
    CLEAN_TRADES_VIEW,
    DEFAULT_TAKER_FEES_BPS,
    NOTIONAL_T,
    VOLUME_T,
    WINDOW_SECONDS,
    ConfigError,
    EnvDefaults,
    KafkaSettings,
    add_common_options,
    kafka_settings,
    parse_bool,
    parse_decimal,
    parse_mapping,
    parse_thresholds,
    run_statements,
    sink_ddl,
    source_ddl,
    sql_dec,
    sql_dec_text,
    sql_epoch_ms,
    sql_iso,
    sql_str,
    sql_threshold_case,
    validate_common,
)
from flink_common import demo_argv as _demo_argv
from flink_common import parse_fee_bps as _fee

# 2: N venues; buy_*/sell_* evidence and fees instead of fixed binance_*/coinbase_* fields.
SCHEMA_VERSION = 2
JOB = "arbitrage-detector"
PIPELINE_NAME = "cryptomon-arbitrage-detector"
OUTPUT_VAR = "KAFKA_ARBITRAGE_TOPIC"
DEMO_THRESHOLD = Decimal("0.1")
TRIGGERS = ("gross", "net")
# For exchanges missing from the table (e.g. names a mock producer imitates).
DEFAULT_OTHER_FEE_BPS = Decimal("10")
FEE_T = "DECIMAL(8, 4)"  # bps with 4 decimals: 0.0001 bps resolution, up to 9999.9999
PRICE_OUT_T = "DECIMAL(24, 10)"  # VWAPs and spreads keep 10 decimals
BPS_T = "DECIMAL(20, 2)"


def parse_fees(text: str, what: str = "--taker-fees-bps") -> dict[str, Decimal]:
    """`kraken=26,okx=8` or JSON -> {exchange: bps}, laid over DEFAULT_TAKER_FEES_BPS."""
    fees = dict(DEFAULT_TAKER_FEES_BPS)
    for key, value in parse_mapping(text, what):
        name = str(key).strip().lower()
        if not name or not all(c.isalnum() or c in "._-" for c in name):
            raise ConfigError(f"{what}: {key!r} is not an exchange name")
        fees[name] = _fee(value, f"{what}[{name}]")
    return fees


def parse_exchanges(text: str, what: str = "--exchanges") -> list[str]:
    names = [e.strip().lower() for e in str(text).split(",") if e.strip()]
    for name in names:
        if not all(c.isalnum() or c in "._-" for c in name):
            raise ConfigError(f"{what}: {name!r} is not an exchange name")
    if str(text).strip() and len(set(names)) < 2:
        raise ConfigError(f"{what}: {text!r} names fewer than two exchanges (empty = every exchange)")
    return sorted(set(names))


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = EnvDefaults(env, prog="arbitrage_detector.py", description=__doc__.split("\n\n")[0])
    add_common_options(p, "ARBITRAGE", JOB, OUTPUT_VAR, KafkaSettings.arbitrage_topic)
    p.opt("--demo", "ARBITRAGE_DEMO_MODE", "false",
          "demo mode: every asset's threshold becomes $0.1 so alerts show up at once")
    p.opt("--spread-threshold-usd", "ARBITRAGE_SPREAD_THRESHOLD_USD", "50",
          "alert when the best pair's spread (see --trigger) exceeds this many dollars")
    p.opt("--thresholds", "ARBITRAGE_THRESHOLDS", "",
          "per-asset overrides in dollars: 'ETH=5,SOL=0.5' or JSON (ignored in demo mode)")
    p.opt("--trigger", "ARBITRAGE_TRIGGER", "gross",
          "which spread must exceed the threshold, and by which the best buy/sell pair is chosen: "
          "gross (VWAP difference) or net (after both taker fees)", choices=TRIGGERS)
    fees = ",".join(f"{k}={v}" for k, v in DEFAULT_TAKER_FEES_BPS.items())
    p.opt("--taker-fees-bps", "ARBITRAGE_TAKER_FEES_BPS", "",
          f"taker fee per exchange in basis points, 'kraken=26,okx=8' or JSON, laid over the built-in "
          f"lowest-tier fees {fees}")
    p.opt("--default-taker-fee-bps", "ARBITRAGE_DEFAULT_TAKER_FEE_BPS", str(DEFAULT_OTHER_FEE_BPS),
          "taker fee in basis points of an exchange not in the fee table")
    p.opt("--exchanges", "ARBITRAGE_EXCHANGES", "",
          "compare only these exchanges, 'binance,kraken,okx' (empty: every exchange in the topic)")
    p.opt("--usd-quotes", "ARBITRAGE_USD_QUOTES", "USD,USDT,USDC",
          "quote currencies counted as US dollars at par")
    p.opt("--max-side-age-ms", "ARBITRAGE_MAX_SIDE_AGE_MS", 5000,
          "a venue whose last trade in the window is older than this before the window end is left out",
          type=int)
    args = p.parse_args(list(argv))
    validate_common(args)
    args.kafka = kafka_settings(args, env, OUTPUT_VAR)
    # `--demo` alone (flag style) and `--demo true` both work.
    args.demo = parse_bool(args.demo, "--demo")
    args.spread_threshold_usd = parse_decimal(args.spread_threshold_usd, "--spread-threshold-usd")
    args.thresholds = parse_thresholds(args.thresholds, "--thresholds")
    if any("-" in k for k in args.thresholds):
        raise ConfigError("--thresholds: arbitrage thresholds are per asset (BTC), not per symbol")
    args.taker_fees_bps = parse_fees(args.taker_fees_bps)
    args.default_taker_fee_bps = _fee(args.default_taker_fee_bps, "--default-taker-fee-bps")
    args.exchanges = parse_exchanges(args.exchanges)
    quotes = [q.strip().upper() for q in str(args.usd_quotes).split(",") if q.strip()]
    if not quotes or not all(q.isalnum() for q in quotes):
        raise ConfigError(f"--usd-quotes: {args.usd_quotes!r} is not a list like USD,USDT")
    args.usd_quotes = quotes
    if not 0 < int(args.max_side_age_ms) <= WINDOW_SECONDS * 1000:
        raise ConfigError(f"--max-side-age-ms: must be in 1..{WINDOW_SECONDS * 1000}")
    return args


def alert_id_sql() -> str:
    """`arbitrage:<asset>:<window_start_ms>` - one alert per asset and window."""
    return f"CONCAT('arbitrage:', asset, ':', CAST({sql_epoch_ms('window_start')} AS STRING))"


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
  `net_spread_usd` STRING,
  `net_spread_bps` STRING,
  `buy_fee_bps` STRING,
  `sell_fee_bps` STRING,
  `threshold_usd` STRING,
  `trigger` STRING,
  `demo_mode` BOOLEAN,
  `venues` ARRAY<STRING>,
  `venue_count` BIGINT,
  `buy_trade_count` BIGINT,
  `buy_volume` STRING,
  `buy_last_trade_ms` BIGINT,
  `sell_trade_count` BIGINT,
  `sell_volume` STRING,
  `sell_last_trade_ms` BIGINT,
  `summary` STRING"""


def fee_case(exchange_col: str, fees: Mapping[str, Decimal], default: Decimal) -> str:
    whens = " ".join(f"WHEN {sql_str(e)} THEN {sql_dec(f, FEE_T)}" for e, f in sorted(fees.items()))
    return f"CASE {exchange_col} {whens} ELSE {sql_dec(default, FEE_T)} END"


def build_statements(args: argparse.Namespace) -> list[str]:
    settings: KafkaSettings = args.kafka
    quotes = ", ".join(sql_str(q) for q in args.usd_quotes)
    only = (f" AND `exchange` IN ({', '.join(sql_str(e) for e in args.exchanges)})"
            if args.exchanges else "")
    age = int(args.max_side_age_ms)
    # 1. Per exchange and asset and window: every USD-like quote of the asset counts (at par)
    # toward one VWAP, e.g. BTC-USDT and BTC-USDC on binance. A venue whose last trade is more
    # than max-side-age before the window end is dropped here, so it never takes part.
    sides = f"""
CREATE TEMPORARY VIEW sides AS
SELECT `exchange`, asset, window_start, window_end, trade_count, volume, vwap, last_ts,
  {fee_case('`exchange`', args.taker_fees_bps, args.default_taker_fee_bps)} AS fee_bps
FROM (
  SELECT `exchange`, asset, window_start, window_end,
    COUNT(*) AS trade_count,
    CAST(SUM(`size`) AS {VOLUME_T}) AS volume,
    CAST(CAST(SUM(`notional`) AS {NOTIONAL_T}) / CAST(SUM(`size`) AS DECIMAL(22, 10)) AS {PRICE_OUT_T}) AS vwap,
    MAX(ts_ms) AS last_ts
  FROM TABLE(TUMBLE(TABLE clean_trades, DESCRIPTOR(event_time), INTERVAL '{WINDOW_SECONDS}' SECOND))
  WHERE `quote` IN ({quotes}){only}
  GROUP BY `exchange`, asset, window_start, window_end
)
WHERE last_ts >= {sql_epoch_ms('window_end')} - {age}"""
    # 2. One row per asset and window with its fresh venues packed into an array (a cascaded
    # window aggregation: it fires once when the window closes and keeps no state after).
    asset_windows = """
CREATE TEMPORARY VIEW asset_windows AS
SELECT asset, window_start, window_end,
  ARRAY_AGG(ROW(`exchange`, vwap, fee_bps, trade_count, volume, last_ts)) AS sides,
  ARRAY_SORT(ARRAY_AGG(`exchange`)) AS venues, COUNT(*) AS venue_count
FROM sides
GROUP BY asset, window_start, window_end"""
    # 3. Every ordered pair of distinct venues of that array (the array unnested twice). Net =
    # what is left per unit after the taker fee on both legs: sell * (1 - fee) - buy * (1 + fee).
    net = (f"CAST(CAST(s.vwap * (10000 - s.fee_bps) - b.vwap * (10000 + b.fee_bps) AS DECIMAL(30, 14))"
           f" * CAST('0.0001' AS DECIMAL(5, 4)) AS {PRICE_OUT_T})")
    pairs = f"""
CREATE TEMPORARY VIEW pairs AS
SELECT w.asset, w.window_start, w.window_end, w.venues, w.venue_count,
  b.ex AS buy_exchange, b.vwap AS buy_price, b.fee_bps AS buy_fee_bps,
  b.cnt AS buy_count, b.vol AS buy_volume, b.last_ts AS buy_last,
  s.ex AS sell_exchange, s.vwap AS sell_price, s.fee_bps AS sell_fee_bps,
  s.cnt AS sell_count, s.vol AS sell_volume, s.last_ts AS sell_last,
  s.vwap - b.vwap AS spread,
  {net} AS net_spread
FROM asset_windows w
  CROSS JOIN UNNEST(w.sides) AS b (ex, vwap, fee_bps, cnt, vol, last_ts)
  CROSS JOIN UNNEST(w.sides) AS s (ex, vwap, fee_bps, cnt, vol, last_ts)
WHERE b.ex <> s.ex"""
    # 4. The best pair per asset and window (window Top-1): by the triggering spread, ties by
    # the other spread, then by name so replays pick the same pair.
    order = "spread DESC, net_spread DESC" if args.trigger == "gross" else "net_spread DESC, spread DESC"
    best = f"""
CREATE TEMPORARY VIEW best_pairs AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, asset
                               ORDER BY {order}, buy_exchange, sell_exchange) AS rn
  FROM pairs)
WHERE rn = 1"""
    if args.demo:
        threshold = sql_dec(DEMO_THRESHOLD)
    else:
        threshold = sql_threshold_case("asset", "asset", args.thresholds, args.spread_threshold_usd)
    candidates = f"""
CREATE TEMPORARY VIEW candidates AS
SELECT *, {threshold} AS threshold, {sql_epoch_ms('window_end')} AS window_end_ms
FROM best_pairs"""
    # bps are relative to the buy price (return on the dollar spent).
    def bps(expr: str) -> str:
        return f"CAST(CAST({expr} AS {PRICE_OUT_T}) * 10000 / CAST(buy_price AS {PRICE_OUT_T}) AS {BPS_T})"

    metric = "spread" if args.trigger == "gross" else "net_spread"
    spread, net_spread = sql_dec_text("spread"), sql_dec_text("net_spread")
    insert = f"""
INSERT INTO arbitrage_alerts
SELECT
  {alert_id_sql()} AS alert_id,
  'arbitrage' AS alert_type,
  {SCHEMA_VERSION} AS schema_version,
  {sql_str(JOB)} AS job,
  asset,
  {sql_iso('window_start')}, {sql_iso('window_end')},
  {sql_epoch_ms('window_start')}, window_end_ms,
  buy_exchange, {sql_dec_text('buy_price')},
  sell_exchange, {sql_dec_text('sell_price')},
  {spread}, {sql_dec_text(bps('spread'))},
  {net_spread}, {sql_dec_text(bps('net_spread'))},
  {sql_dec_text('buy_fee_bps')}, {sql_dec_text('sell_fee_bps')},
  {sql_dec_text('threshold')},
  {sql_str(args.trigger)},
  {'TRUE' if args.demo else 'FALSE'},
  venues, venue_count,
  buy_count, {sql_dec_text('buy_volume')}, buy_last,
  sell_count, {sql_dec_text('sell_volume')}, sell_last,
  CONCAT(asset, ': buy on ', buy_exchange, ' at ', {sql_dec_text('buy_price')},
         ', sell on ', sell_exchange, ' at ', {sql_dec_text('sell_price')},
         ', spread $', {spread}, ' (', {sql_dec_text(bps('spread'))}, ' bps), net $', {net_spread},
         ' (', {sql_dec_text(bps('net_spread'))}, ' bps) after fees, ',
         CAST(venue_count AS STRING), ' venues, in ', {sql_iso('window_start')}, '/', {sql_iso('window_end')})
FROM candidates
WHERE {metric} > threshold"""
    sink = sink_ddl("arbitrage_alerts", SINK_COLUMNS, settings.arbitrage_topic, args, settings)
    return [source_ddl(args, settings), CLEAN_TRADES_VIEW, sink, sides, asset_windows, pairs, best, candidates,
            insert]


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
