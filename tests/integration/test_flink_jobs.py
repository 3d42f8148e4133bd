"""Both PyFlink jobs on the real Flink cluster against the real Kafka broker.

Each test runs one job through crafted trades in phases of event time: phase 1 and 2 while
the job runs, then stop-with-savepoint, phase 3 produced while the job is down, then a
resume from the savepoint. The alert topic must then hold exactly the expected alerts, once
each. Partition layout of trades.raw: 0 = binance, 1 = coinbase, 2 = never written (always
idle), so a quiet exchange and an empty partition both have to be handled by idleness.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import harness
import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANOMALY = REPO / "flink_jobs" / "anomaly_detector.py"
ARBITRAGE = REPO / "flink_jobs" / "arbitrage_detector.py"
T0 = 1_700_000_000_000  # a multiple of 10 s: window k is [T0 + 10 s * k, T0 + 10 s * (k + 1))
BINANCE, COINBASE = 0, 1  # partitions of trades.raw
OUT_OF_ORDERNESS_MS = 1000


def w(k: int, offset_ms: int = 500) -> int:
    return T0 + 10_000 * k + offset_ms


def trade(exchange: str, symbol: str, ts: int, price: str, size: str) -> dict:
    return {"exchange": exchange, "symbol": symbol, "raw_symbol": symbol.replace("-", ""),
            "trade_id": str(uuid.uuid4()), "price": price, "size": size, "side": "buy",
            "exchange_ts": ts, "received_ts": ts + 30}


def clock(exchange: str, first: int, last: int) -> list[dict]:
    """One tiny constant-volume trade per window: drives the watermark, never alerts."""
    symbol = "CLK-USDT" if exchange == "binance" else "CLK-USD"
    return [trade(exchange, symbol, w(k, 9_000), "1", "1") for k in range(first, last + 1)]


def produce(bootstrap: str, topic: str, partition: int, trades: list[dict]) -> None:
    """Send to one partition in event-time order, except trades marked with send_at()."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for t in in_send_order(trades):
        t = {k: v for k, v in t.items() if k != "_send_at"}
        p.produce(topic, key=f"{t['exchange']}:{t['symbol']}".encode(), value=json.dumps(t).encode(),
                  partition=partition)
    assert p.flush(30) == 0


def send_at(t: dict, ms: int) -> dict:
    """Mark a trade to be sent as if it arrived at event time `ms` (out of order)."""
    return {**t, "_send_at": ms}


def in_send_order(trades: list[dict]) -> list[dict]:
    return sorted(trades, key=lambda t: t.get("_send_at", t["exchange_ts"]))


def max_disorder_ms(trades: list[dict]) -> int:
    high, worst = -1, 0
    for t in in_send_order(trades):
        worst = max(worst, high - t["exchange_ts"])
        high = max(high, t["exchange_ts"])
    return worst


def dec(text: str, places: int | None = None) -> str:
    """Decimal string as the jobs write it: HALF_UP to `places`, no trailing zeros."""
    d = Decimal(text)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    s = format(d.normalize(), "f")
    return s


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


# --- job control -------------------------------------------------------------------------

def submit(cluster: harness.FlinkCluster, script: Path, args: list[str], savepoint: str | None = None) -> str:
    """`flink run -d [-s savepoint] -py <job> args`: the command the Ansible role runs."""
    cmd = [str(harness.flink_home() / "bin" / "flink"), "run", "-m", cluster.rest_url.removeprefix("http://"),
           "-pyexec", sys.executable, "-pyclientexec", sys.executable, "-d"]
    if savepoint:
        cmd += ["-s", savepoint]
    cmd += ["-py", str(script), *args]
    res = subprocess.run(cmd, check=False, env=cluster.env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, f"flink run failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    job_ids = [line.split()[-1] for line in res.stdout.splitlines() if "JobID" in line]
    assert job_ids, res.stdout[-3000:]
    cluster.wait_job_state(job_ids[-1], "RUNNING")
    return job_ids[-1]


def stop_with_savepoint(cluster: harness.FlinkCluster, job_id: str) -> str:
    target = f"file://{cluster.workdir}/savepoints"
    trigger = cluster.rest(f"/jobs/{job_id}/stop", "POST", {"drain": False, "targetDirectory": target})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = cluster.rest(f"/jobs/{job_id}/savepoints/{trigger['request-id']}")
        if status["status"]["id"] == "COMPLETED":
            op = status["operation"]
            assert "location" in op, f"savepoint failed: {json.dumps(op)[:3000]}"
            cluster.wait_job_state(job_id, "FINISHED")
            return op["location"]
        time.sleep(1)
    raise AssertionError("stop-with-savepoint did not complete in 120 s")


def topics(bootstrap: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    trades_topic, out_topic = f"trades.raw.{suffix}", f"alerts.{suffix}"
    harness.create_topic(bootstrap, trades_topic, partitions=3)
    harness.create_topic(bootstrap, out_topic, partitions=3)
    return trades_topic, out_topic


def common_args(bootstrap: str, trades_topic: str, out_topic: str, guarantee: str) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--trades-topic", trades_topic, "--output-topic", out_topic,
            "--group-id", f"g-{out_topic}", "--startup-mode", "earliest-offset",
            "--delivery-guarantee", guarantee, "--transactional-id-prefix", f"tx-{out_topic}",
            "--max-out-of-orderness-ms", str(OUT_OF_ORDERNESS_MS), "--idle-timeout-ms", "1000",
            "--checkpoint-interval-ms", "1000"]


def read_alerts(bootstrap: str, topic: str, expected: int) -> list[dict]:
    msgs = harness.consume_all(bootstrap, topic, expected=expected, timeout=120)
    assert len(msgs) >= expected, f"only {len(msgs)} of {expected} alerts: {[m.value() for m in msgs]}"
    out = []
    for m in msgs:
        alert = json.loads(m.value())
        assert m.key().decode() == alert["alert_id"], "Kafka key must be the alert_id"
        out.append(alert)
    return out


def read_all_alerts(bootstrap: str, topic: str) -> list[dict]:
    """Everything in the topic once nothing new arrived for a while (catches extra alerts)."""
    return [json.loads(m.value()) for m in harness.consume_all(bootstrap, topic, timeout=60, idle=5)]


def by_id(alerts: list[dict]) -> dict[str, dict]:
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)), f"duplicate alert_ids: {sorted(ids)}"
    return {a["alert_id"]: a for a in alerts}


def assert_alerts(actual: list[dict], expected: list[dict]) -> None:
    """Exactly the expected alerts: same ids, and every listed field equal."""
    got = by_id(actual)
    want = {e["alert_id"]: e for e in expected}
    assert sorted(got) == sorted(want)
    for alert_id, exp in want.items():
        sub = {k: got[alert_id].get(k) for k in exp}
        assert sub == exp, alert_id


# --- anomaly detector --------------------------------------------------------------------

def anomaly(exchange: str, symbol: str, k: int, trades: list[tuple[str, str]], reasons: list[str],
            threshold: str | None, baseline: str | None = None, baseline_windows: int = 0,
            ratio: str | None = None) -> dict:
    """The expected alert for window k, computed from the (price, size) list independently."""
    volume = sum(Decimal(s) for _, s in trades)
    notional = sum(Decimal(p) * Decimal(s) for p, s in trades)
    return {
        "alert_id": f"anomaly:{exchange}:{symbol}:{T0 + 10_000 * k}",
        "alert_type": "volume_anomaly", "schema_version": 1, "job": "anomaly-detector",
        "exchange": exchange, "symbol": symbol,
        "window_start": iso(T0 + 10_000 * k), "window_end": iso(T0 + 10_000 * (k + 1)),
        "window_start_ms": T0 + 10_000 * k, "window_end_ms": T0 + 10_000 * (k + 1),
        "trade_count": len(trades), "volume": dec(str(volume)), "notional": dec(str(notional)),
        "vwap": dec(str(notional / volume), 10),
        "min_price": dec(min((p for p, _ in trades), key=Decimal)),
        "max_price": dec(max((p for p, _ in trades), key=Decimal)),
        "reasons": reasons, "volume_threshold": threshold, "baseline_volume": baseline,
        "baseline_windows": baseline_windows, "spike_ratio": ratio,
    }


def sized(exchange: str, symbol: str, k: int, sizes: list[str], price: str = "100") -> list[dict]:
    """Trades of one window, spread over its first 8 s."""
    return [trade(exchange, symbol, w(k, 1000 + 8000 * i // max(len(sizes), 1)), price, s)
            for i, s in enumerate(sizes)]


def test_anomaly_detector(kafka_bootstrap: str, flink_clean: harness.FlinkCluster) -> None:
    bootstrap, cluster = kafka_bootstrap, flink_clean
    trades_topic, out_topic = topics(bootstrap)
    args = common_args(bootstrap, trades_topic, out_topic, "at-least-once") + [
        "--thresholds", "BTC=10,ETH-USD=100", "--spike-factor", "5",
        "--spike-lookback-windows", "6", "--spike-min-windows", "3"]

    # Phase 1, produced before the job starts (every partition with data is read before the
    # empty partition 2 turns idle and lets the watermark move) - binance (partition 0):
    # BTC-USDT W0 arrives out of order (within the bound) and exceeds 10; W1 is exactly 10
    # (not "exceeds"). ETH-USDT (no fixed threshold) spikes in W4: 15 vs a mean of 1.5 over 4
    # windows. SOL-USDT jumps 50x in W2 but has only 2 baseline windows (< 3): no alert.
    btc_w0 = [("43000", "4"), ("43100", "5"), ("42900", "3")]
    eth = {0: "1", 1: "2", 2: "1", 3: "2", 4: "15", 5: "9", 6: "3", 7: "3"}
    binance1 = [
        trade("binance", "BTC-USDT", w(0, 1000), *btc_w0[0]),
        # read 900 ms after its event time: out of order, within the bound
        send_at(trade("binance", "BTC-USDT", w(0, 5000), *btc_w0[1]), w(0, 5900)),
        # W0 trade read after a W1 trade (700 ms behind): W0 must not have fired yet
        send_at(trade("binance", "BTC-USDT", w(0, 9500), *btc_w0[2]), w(1, 300)),
        trade("binance", "SOL-USDT", w(0, 9_100), "20", "1"),
        trade("binance", "SOL-USDT", w(1, 200), "20", "1"),
        *sized("binance", "BTC-USDT", 1, ["6", "4"], "43000"),
        *sized("binance", "SOL-USDT", 2, ["50"], "20"),
        *clock("binance", 0, 7),
    ]
    for k, size in eth.items():
        binance1 += sized("binance", "ETH-USDT", k, [size], "2000")
    # Coinbase (partition 1) goes quiet after W3: binance W4-W6 must fire anyway.
    btc_usd_w0 = [("43050", "7"), ("43060", "4")]
    coinbase1 = [
        send_at(trade("coinbase", "BTC-USD", w(0, 1500), *btc_usd_w0[0]), w(0, 2100)),
        trade("coinbase", "BTC-USD", w(0, 2000), *btc_usd_w0[1]),
        *sized("coinbase", "ETH-USD", 2, ["60", "40"], "2001.5"),
        *sized("coinbase", "ETH-USD", 3, ["100.5"], "2002.25"),
        *clock("coinbase", 0, 3),
    ]
    # The crafted disorder itself stays within the bound (late trades come in phase 2).
    for batch in (binance1, coinbase1):
        assert 0 < max_disorder_ms(batch) < OUT_OF_ORDERNESS_MS
    expected1 = [
        anomaly("binance", "BTC-USDT", 0, btc_w0, ["volume_threshold"], "10"),
        anomaly("binance", "ETH-USDT", 4, [("2000", "15")], ["volume_spike"], None, "1.5", 4, "10"),
        anomaly("coinbase", "BTC-USD", 0, btc_usd_w0, ["volume_threshold"], "10"),
        anomaly("coinbase", "ETH-USD", 3, [("2002.25", "100.5")], ["volume_threshold"], "100", "100", 1, "1.01"),
    ]

    produce(bootstrap, trades_topic, BINANCE, binance1)
    produce(bootstrap, trades_topic, COINBASE, coinbase1)
    job = submit(cluster, ANOMALY, args)
    assert_alerts(read_alerts(bootstrap, out_topic, 4), expected1)

    # Phase 2, live. Only one partition moves forward per live phase: a partition that was
    # idle and wakes up behind the watermark loses its trades as late, by design, so the
    # test never lets the other partition run ahead. Partition 0 gets a late 5 for
    # BTC-USDT W1 (exactly 10): W1 fired long ago, so it is dropped and W1 still does not
    # alert. Coinbase wakes up; ETH-USD W9 (150) alerts, which also proves the watermark
    # passed W9 after the late trade was read.
    binance2 = [trade("binance", "BTC-USDT", w(1, 3000), "43000", "5")]
    coinbase2 = [*sized("coinbase", "BTC-USD", 7, ["2"], "43000"), *sized("coinbase", "BTC-USD", 8, ["2"], "43000"),
                 *sized("coinbase", "BTC-USD", 9, ["2"], "43000"), *sized("coinbase", "ETH-USD", 9, ["150"], "2000"),
                 *clock("coinbase", 7, 10)]
    produce(bootstrap, trades_topic, BINANCE, binance2)
    produce(bootstrap, trades_topic, COINBASE, coinbase2)
    expected2 = expected1 + [
        anomaly("coinbase", "ETH-USD", 9, [("2000", "150")], ["volume_threshold"], "100", "100.5", 1, "1.49"),
    ]
    assert_alerts(read_alerts(bootstrap, out_topic, 5), expected2)

    # Stop with a savepoint; phase 3 arrives while the job is down; resume from the savepoint.
    savepoint = stop_with_savepoint(cluster, job)
    # ETH-USDT W11: 40 vs the mean 5 of W5, W6, W7 (9, 3, 3) - history restored from the
    # savepoint. BTC-USD W10: 20 > 10 and 10x its mean of 2: both reasons.
    binance3 = [*sized("binance", "BTC-USDT", 11, ["10", "20"], "43000"),
                *sized("binance", "ETH-USDT", 11, ["40"], "2000"), *clock("binance", 11, 13)]
    coinbase3 = [*sized("coinbase", "BTC-USD", 10, ["20"], "43000"), *clock("coinbase", 11, 13)]
    produce(bootstrap, trades_topic, BINANCE, binance3)
    produce(bootstrap, trades_topic, COINBASE, coinbase3)
    submit(cluster, ANOMALY, args, savepoint=savepoint)
    expected3 = expected2 + [
        anomaly("binance", "BTC-USDT", 11, [("43000", "10"), ("43000", "20")], ["volume_threshold"], "10"),
        anomaly("binance", "ETH-USDT", 11, [("2000", "40")], ["volume_spike"], None, "5", 3, "8"),
        anomaly("coinbase", "BTC-USD", 10, [("43000", "20")], ["volume_threshold", "volume_spike"], "10",
                "2", 3, "10"),
    ]
    read_alerts(bootstrap, out_topic, len(expected3))
    assert_alerts(read_all_alerts(bootstrap, out_topic), expected3)
