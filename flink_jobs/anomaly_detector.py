"""cryptomon volume anomaly detector (PyFlink, Flink SQL only).

Reads trades from Kafka (`trades.raw`), aggregates 10 s tumbling event-time windows per
exchange and symbol (trade count, volume, notional, VWAP, min/max price) and writes one JSON
alert per window to `signals.alerts` when the window's volume

* exceeds the symbol's fixed threshold (`volume_threshold`), and/or
* is more than `--spike-factor` times the mean volume of the same exchange+symbol's
  non-empty windows in the preceding `--spike-lookback-windows` windows, given at least
  `--spike-min-windows` of them (`volume_spike`).

Submit with the shared module (the jobs are Flink SQL; no Python runs on the TaskManagers):

    flink run -d -py flink_jobs/anomaly_detector.py \
        -pyfs flink_jobs/flink_common.py,flink_jobs/kafka_settings.py [--option value ...]

Every option also reads an environment variable (option > env > default); `--help` lists
them. The pipeline is named `cryptomon-anomaly-detector`. docs/alerts.md documents the alert
schema; the README ("Flink jobs") the watermarks, the delivery guarantee and every setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from flink_common import (
    CLEAN_TRADES_VIEW,
    NOTIONAL_T,
    VOLUME_T,
    WINDOW_SECONDS,
    ConfigError,
    EnvDefaults,
    KafkaSettings,
    add_common_options,
    kafka_settings,
    parse_decimal,
    parse_thresholds,
    run_statements,
    sink_ddl,
    source_ddl,
    sql_dec,
    sql_dec_text,
    sql_epoch_ms,
    sql_interval_s,
    sql_iso,
    sql_str,
    sql_threshold_case,
    validate_common,
)

SCHEMA_VERSION = 1
JOB = "anomaly-detector"
PIPELINE_NAME = "cryptomon-anomaly-detector"
OUTPUT_VAR = "KAFKA_ALERTS_TOPIC"
# Base-asset units per 10 s window; a few times the busiest normal windows on Binance.
DEFAULT_THRESHOLDS = "BTC=50,ETH=500,SOL=5000"


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = EnvDefaults(env, prog="anomaly_detector.py", description=__doc__.split("\n\n")[0])
    add_common_options(p, "ANOMALY", JOB, OUTPUT_VAR, KafkaSettings.alerts_topic)
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
    args = p.parse_args(list(argv))
    validate_common(args)
    args.kafka = kafka_settings(args, env, OUTPUT_VAR)
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


def build_statements(args: argparse.Namespace) -> list[str]:
    settings: KafkaSettings = args.kafka
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
    ratio = sql_dec_text("CAST(volume / CAST(baseline_volume AS DECIMAL(22, 10)) AS DECIMAL(20, 2))")
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
       THEN {ratio} END,
  CONCAT(`exchange`, ' ', `symbol`, ' volume ', {sql_dec_text('volume')},
         CASE WHEN over_threshold THEN CONCAT(' > threshold ', {sql_dec_text('volume_threshold')}) ELSE '' END,
         CASE WHEN is_spike THEN CONCAT(' (', {ratio},
                                        'x the recent mean ', {sql_dec_text('baseline_volume')}, ')') ELSE '' END,
         ' in ', {sql_iso('window_start')}, '/', {sql_iso('window_end')},
         ', VWAP ', {sql_dec_text(vwap)}, ', ', CAST(trade_count AS STRING), ' trades')
FROM flagged
WHERE over_threshold OR is_spike"""
    sink = sink_ddl("anomaly_alerts", SINK_COLUMNS, settings.alerts_topic, args, settings)
    return [source_ddl(args, settings), CLEAN_TRADES_VIEW, sink, windows, with_history, flagged, insert]


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
