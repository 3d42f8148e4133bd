"""Both PyFlink jobs on the real Flink cluster against the real Kafka broker.

Each test runs one job through crafted trades in phases of event time: phase 1 and 2 while
the job runs, then stop-with-savepoint, phase 3 produced while the job is down, then a
resume from the savepoint. The alert topic must then hold exactly the expected alerts, once
each. Partition layout of trades.raw: 0 = binance, 1 = coinbase, 2 = never written (always
idle), so a quiet exchange and an empty partition both have to be handled by idleness. The
N-way arbitrage test has one partition per exchange (five) and an empty sixth.

Every job is submitted the way the Ansible role does it: the job file alone in a directory of
its own, its shared modules shipped with -pyfs (flink_common.py and the kafka_settings.py link).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import harness
import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "flink_jobs"
ANOMALY = JOBS / "anomaly_detector.py"
ARBITRAGE = JOBS / "arbitrage_detector.py"
PYFS = [JOBS / "flink_common.py", JOBS / "kafka_settings.py"]  # the link, as the docs' command has it
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
    symbol = "CLK-USD" if exchange == "coinbase" else "CLK-USDT"
    return [trade(exchange, symbol, w(k, 9_000), "1", "1") for k in range(first, last + 1)]


def produce(bootstrap: str | dict, topic: str, partition: int, trades: list[dict]) -> None:
    """Send to one partition in event-time order, except trades marked with send_at().

    bootstrap: the bootstrap servers, or a whole client configuration (a secure node's).
    """
    conf = {"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else bootstrap
    p = Producer({**conf, "enable.idempotence": True, "linger.ms": 0})
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

def submit(cluster: harness.FlinkCluster, script: Path, args: list[str], savepoint: str | None = None,
           env: dict[str, str] | None = None, flink_options: list[str] | None = None) -> str:
    """`flink run -d [-s savepoint] -pyfs <shared> -py <job> args`: what the Ansible role runs.

    The job file is copied alone into an empty directory, so its imports can only be served by
    the -pyfs files.
    """
    alone = Path(tempfile.mkdtemp(prefix="cryptomon-job-")) / script.name
    shutil.copy(script, alone)
    options = [*(["-s", savepoint] if savepoint else []), *(flink_options or [])]
    job_id = cluster.run_python_job(alone, *args, pyfs=PYFS, options=options, env=env)
    cluster.wait_job_state(job_id, "RUNNING")
    return job_id


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


def topics(bootstrap: str, partitions: int = 3) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    trades_topic, out_topic = f"trades.raw.{suffix}", f"alerts.{suffix}"
    harness.create_topic(bootstrap, trades_topic, partitions=partitions)
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


# --- arbitrage detector ------------------------------------------------------------------

# The job's built-in lowest-tier taker fees (bps); any other exchange pays 10.
FEES = {"binance": Decimal(10), "bybit": Decimal(10), "coinbase": Decimal(60), "kraken": Decimal(40),
        "okx": Decimal(10)}
OTHER_FEE = Decimal(10)
MAX_SIDE_AGE_MS = 5000
TEN = Decimal("1e-10")


def arbitrage(asset: str, k: int, venues: dict[str, list[tuple[str, str, int]]], threshold: str,
              demo: bool = False, trigger: str = "gross") -> dict:
    """The expected alert, computed independently from every venue's (price, size, ts) trades.

    Venues whose last trade lies more than MAX_SIDE_AGE_MS before the window end are dropped;
    every ordered pair of the rest is compared and the best one by the trigger's spread (ties:
    the other spread, then the names) is the alert's.
    """
    end = T0 + 10_000 * (k + 1)
    sides = {}
    for exchange, trades in venues.items():
        if max(t for *_, t in trades) < end - MAX_SIDE_AGE_MS:
            continue  # stale
        volume = sum(Decimal(s) for _, s, _ in trades)
        vwap = (sum(Decimal(p) * Decimal(s) for p, s, _ in trades) / volume).quantize(TEN, rounding=ROUND_HALF_UP)
        sides[exchange] = (vwap, len(trades), volume, max(t for *_, t in trades))
    assert len(sides) >= 2, f"{asset} W{k}: fewer than two fresh venues, no alert possible"

    def fee(exchange: str) -> Decimal:
        return FEES.get(exchange, OTHER_FEE)

    def spreads(buy: str, sell: str) -> tuple[Decimal, Decimal]:
        b, s = sides[buy][0], sides[sell][0]
        net = (s * (10000 - fee(sell)) - b * (10000 + fee(buy))) / 10000
        return s - b, net.quantize(TEN, rounding=ROUND_HALF_UP)

    pairs = [(b, s) for b in sides for s in sides if b != s]
    rank = 0 if trigger == "gross" else 1
    buy, sell = min(pairs, key=lambda p: (-spreads(*p)[rank], -spreads(*p)[1 - rank], p))
    spread, net = spreads(buy, sell)
    b, s = sides[buy], sides[sell]
    return {
        "alert_id": f"arbitrage:{asset}:{T0 + 10_000 * k}", "alert_type": "arbitrage", "schema_version": 2,
        "job": "arbitrage-detector", "asset": asset,
        "window_start": iso(T0 + 10_000 * k), "window_end": iso(end),
        "window_start_ms": T0 + 10_000 * k, "window_end_ms": end,
        "buy_exchange": buy, "buy_price": dec(str(b[0])), "sell_exchange": sell, "sell_price": dec(str(s[0])),
        "spread_usd": dec(str(spread)), "spread_bps": dec(str(spread * 10000 / b[0]), 2),
        "net_spread_usd": dec(str(net)), "net_spread_bps": dec(str(net * 10000 / b[0]), 2),
        "buy_fee_bps": dec(str(fee(buy))), "sell_fee_bps": dec(str(fee(sell))),
        "threshold_usd": threshold, "trigger": trigger, "demo_mode": demo,
        "venues": sorted(sides), "venue_count": len(sides),
        "buy_trade_count": b[1], "buy_volume": dec(str(b[2])), "buy_last_trade_ms": b[3],
        "sell_trade_count": s[1], "sell_volume": dec(str(s[2])), "sell_last_trade_ms": s[3],
    }


def trades_of(exchange: str, symbol: str, spec: list[tuple[str, str, int]]) -> list[dict]:
    return [trade(exchange, symbol, ts, price, size) for price, size, ts in spec]


def test_arbitrage_detector_exactly_once(kafka_bootstrap: str, flink_clean: harness.FlinkCluster) -> None:
    bootstrap, cluster = kafka_bootstrap, flink_clean
    trades_topic, out_topic = topics(bootstrap)
    # exactly-once: alerts are read with read_committed (harness.consume_all).
    args = common_args(bootstrap, trades_topic, out_topic, "exactly-once") + ["--thresholds", "ETH=5"]

    # Phase 1, produced before the job starts. Coinbase's last trade is in W2, binance goes
    # on to W5: W2 (and everything) only fires because the quiet coinbase partition and the
    # empty partition 2 turn idle.
    btc_b0 = [("43000", "1", w(0, 2000)), ("43100", "1", w(0, 8000)), ("43050", "2", w(0, 9700))]
    btc_c0 = [("43120", "2", w(0, 8500))]
    eth_b0_usdc = [("2000", "1", w(0, 3000))]
    eth_b0_usdt = [("2010", "3", w(0, 7000))]
    eth_c0 = [("2060", "1", w(0, 9000))]
    sol_b2, sol_c2 = [("200", "1", w(2, 7000))], [("120", "1", w(2, 6000))]
    binance1 = [
        *trades_of("binance", "BTC-USDT", btc_b0[:2]),
        # W0 trade read after a W1 trade, 500 ms behind: on time
        send_at(trade("binance", "BTC-USDT", btc_b0[2][2], *btc_b0[2][:2]), w(1, 300)),
        trade("binance", "SOL-USDT", w(1, 200), "150", "1"),  # W1: no coinbase side
        trade("binance", "BTC-EUR", w(0, 4000), "30000", "100"),  # not a USD quote: ignored
        *trades_of("binance", "ETH-USDC", eth_b0_usdc), *trades_of("binance", "ETH-USDT", eth_b0_usdt),
        trade("binance", "BTC-USDT", w(1, 6000), "43000", "1"),  # W1 spread exactly $50
        trade("binance", "BTC-USDT", w(2, 8000), "43000", "1"),  # W2 spread $80, coinbase stale
        trade("binance", "BTC-USDT", w(3, 5000), "44000", "1"),  # W3: coinbase silent
        *trades_of("binance", "SOL-USDT", sol_b2),
        *clock("binance", 0, 5),
    ]
    coinbase1 = [
        *trades_of("coinbase", "BTC-USD", btc_c0), *trades_of("coinbase", "ETH-USD", eth_c0),
        trade("coinbase", "BTC-USD", w(1, 7000), "42950", "1"),
        trade("coinbase", "BTC-USD", w(2, 4499), "42920", "1"),  # 5001 ms before W2's end: stale
        *trades_of("coinbase", "SOL-USD", sol_c2),
        *clock("coinbase", 0, 2),
    ]
    for batch in (binance1, coinbase1):
        assert max_disorder_ms(batch) < OUT_OF_ORDERNESS_MS
    expected = [
        arbitrage("BTC", 0, {"binance": btc_b0, "coinbase": btc_c0}, "50"),
        arbitrage("ETH", 0, {"binance": eth_b0_usdc + eth_b0_usdt, "coinbase": eth_c0}, "5"),
        arbitrage("SOL", 2, {"binance": sol_b2, "coinbase": sol_c2}, "50"),
    ]
    assert expected[0]["spread_usd"] == "70" and expected[1]["spread_bps"] == "261.52"
    # 43120 * (1 - 0.006) - 43050 * (1 + 0.001): coinbase's 60 bps eat the spread.
    assert expected[0]["net_spread_usd"] == "-231.77" and expected[0]["net_spread_bps"] == "-53.84"
    produce(bootstrap, trades_topic, BINANCE, binance1)
    produce(bootstrap, trades_topic, COINBASE, coinbase1)
    job = submit(cluster, ARBITRAGE, args)
    assert_alerts(read_alerts(bootstrap, out_topic, 3), expected)

    # Phase 2, live: a late binance trade for W1 that would lift its spread to $150 is
    # dropped. Binance stays inside W6, so the coinbase trades sent after it are on time.
    btc_b6 = [("43000", "1", w(6, 2000)), ("43000", "1", w(6, 8000))]
    btc_c6 = [("42900.5", "1", w(6, 7000))]
    eth_c8 = [("2100", "1", w(8, 6000))]  # W8's binance side arrives after the savepoint
    produce(bootstrap, trades_topic, BINANCE,
            [trade("binance", "BTC-USDT", w(1, 6500), "43200", "1"), *trades_of("binance", "BTC-USDT", btc_b6)])
    produce(bootstrap, trades_topic, COINBASE,
            [*trades_of("coinbase", "BTC-USD", btc_c6), *trades_of("coinbase", "ETH-USD", eth_c8),
             *clock("coinbase", 6, 8)])
    expected.append(arbitrage("BTC", 6, {"binance": btc_b6, "coinbase": btc_c6}, "50"))
    assert_alerts(read_alerts(bootstrap, out_topic, 4), expected)

    # Stop with a savepoint; phase 3 arrives meanwhile; resume. ETH W8 joins the coinbase
    # side kept in the savepoint (exactly 5 s before the window end: still fresh).
    savepoint = stop_with_savepoint(cluster, job)
    eth_b8 = [("2000", "1", w(8, 5000))]
    btc_b9, btc_c9 = [("43000", "1", w(9, 5000))], [("43060", "1", w(9, 6000))]
    produce(bootstrap, trades_topic, BINANCE,
            [*trades_of("binance", "ETH-USDT", eth_b8), *trades_of("binance", "BTC-USDT", btc_b9),
             *clock("binance", 9, 11)])
    produce(bootstrap, trades_topic, COINBASE, [*trades_of("coinbase", "BTC-USD", btc_c9), *clock("coinbase", 9, 11)])
    submit(cluster, ARBITRAGE, args, savepoint=savepoint)
    expected += [arbitrage("ETH", 8, {"binance": eth_b8, "coinbase": eth_c8}, "5"),
                 arbitrage("BTC", 9, {"binance": btc_b9, "coinbase": btc_c9}, "50")]
    read_alerts(bootstrap, out_topic, len(expected))
    final = read_all_alerts(bootstrap, out_topic)
    assert_alerts(final, expected)
    alert = by_id(final)["arbitrage:BTC:1700000000000"]
    assert alert["summary"] == ("BTC: buy on binance at 43050, sell on coinbase at 43120, spread $70 (16.26 bps), "
                                "net $-231.77 (-53.84 bps) after fees, 2 venues, "
                                "in 2023-11-14T22:13:20.000Z/2023-11-14T22:13:30.000Z")


def test_arbitrage_detector_demo_mode(kafka_bootstrap: str, flink_clean: harness.FlinkCluster) -> None:
    """ARBITRAGE_DEMO_MODE=true alone switches every asset to $0.1 (overrides ignored)."""
    bootstrap, cluster = kafka_bootstrap, flink_clean
    trades_topic, out_topic = topics(bootstrap)
    args = common_args(bootstrap, trades_topic, out_topic, "at-least-once")
    btc_b0, btc_c0 = [("43000", "1", w(0, 8000))], [("43000.15", "1", w(0, 8500))]
    eth_b2, eth_c2 = [("2000", "1", w(2, 8000))], [("2000.11", "2", w(2, 7000))]
    binance = [*trades_of("binance", "BTC-USDT", btc_b0),
               trade("binance", "BTC-USDT", w(1, 8000), "43000", "1"),  # W1: exactly $0.1
               trade("binance", "ETH-USDT", w(1, 8000), "2000", "1"),  # W1: $0.05
               *trades_of("binance", "ETH-USDT", eth_b2),
               trade("binance", "BTC-USDT", w(3, 8000), "43000", "1"),  # W3: $0.2, coinbase stale
               *clock("binance", 0, 5)]
    coinbase = [*trades_of("coinbase", "BTC-USD", btc_c0),
                trade("coinbase", "BTC-USD", w(1, 8000), "43000.1", "1"),
                trade("coinbase", "ETH-USD", w(1, 8000), "2000.05", "1"),
                *trades_of("coinbase", "ETH-USD", eth_c2),
                trade("coinbase", "BTC-USD", w(3, 1000), "43000.2", "1"),
                *clock("coinbase", 0, 5)]
    produce(bootstrap, trades_topic, BINANCE, binance)
    produce(bootstrap, trades_topic, COINBASE, coinbase)
    job = submit(cluster, ARBITRAGE, args, env={"ARBITRAGE_DEMO_MODE": "true", "ARBITRAGE_THRESHOLDS": "ETH=5"},
                 flink_options=["-Dpipeline.name=arbitrage_detector@0123456789ab"])
    # The Ansible role recognizes its jobs by the name it passes; the job must keep it.
    assert cluster.rest(f"/jobs/{job}")["name"] == "arbitrage_detector@0123456789ab"
    expected = [arbitrage("BTC", 0, {"binance": btc_b0, "coinbase": btc_c0}, "0.1", demo=True),
                arbitrage("ETH", 2, {"binance": eth_b2, "coinbase": eth_c2}, "0.1", demo=True)]
    read_alerts(bootstrap, out_topic, 2)
    assert_alerts(read_all_alerts(bootstrap, out_topic), expected)


VENUES = ("binance", "coinbase", "kraken", "okx", "bybit")  # partitions 0-4; partition 5 stays empty


def test_arbitrage_detector_n_way(kafka_bootstrap: str, flink_clean: harness.FlinkCluster) -> None:
    """Five exchanges and one the fee table does not know; gross and net trigger side by side.

    Both jobs read the same trades (at-least-once): the default job (gross trigger) and one
    with ARBITRAGE_TRIGGER=net. Every price below is a VWAP; fees are the built-in defaults.
    """
    bootstrap, cluster = kafka_bootstrap, flink_clean
    trades_topic, gross_topic = topics(bootstrap, partitions=len(VENUES) + 1)
    net_topic = f"{gross_topic}.net"
    harness.create_topic(bootstrap, net_topic, partitions=3)
    # W0 BTC, 5 venues: kraken 43000 is the cheapest fresh venue and okx 43300 the dearest, so
    # the widest spread (gross $300) is kraken -> okx. Coinbase would sell at 44000 but its last
    # trade is 6 s before the window end: stale, left out of the comparison and of `venues`.
    # bybit's only trade is exactly 5 s before the end: still fresh. After fees, binance (10 bps)
    # -> okx nets $163.65 while kraken (40 bps) -> okx nets only $84.70: the net job names binance.
    btc0 = {"binance": [("43050", "1", w(0, 3000)), ("43050", "1", w(0, 8000))],
            "coinbase": [("44000", "1", w(0, 4000))],
            "kraken": [("42990", "1", w(0, 6000)), ("43010", "1", w(0, 7000))],
            "okx": [("43300", "2", w(0, 9000))],
            "bybit": [("43100", "1", w(0, 5000))]}
    # W0 ETH, 3 venues: gross $6 (bybit -> kraken) passes the $5 override, but
    # kraken's 40 bps turn it into a net loss of $4.024: the gross job alerts and shows the net
    # spread negative; no pair nets anything, so the net job stays silent.
    eth0 = {"bybit": [("2000", "1", w(0, 7000))], "kraken": [("2006", "1", w(0, 8000))],
            "binance": [("2003", "1", w(0, 8500))]}
    # W0 SOL: coinbase is stale, okx alone cannot be compared: no alert despite the $60 gap.
    sol0 = {"okx": [("150", "1", w(0, 8000))], "coinbase": [("90", "1", w(0, 2000))]}
    # W1 BTC: exactly $50 (not above the threshold). W1 ETH: kraken -> mockx, an exchange that
    # is not in the fee table (10 bps): gross $100, net $89.90; both jobs alert.
    btc1 = {"bybit": [("43000", "1", w(1, 6000))], "binance": [("43050", "1", w(1, 7000))]}
    eth1 = {"kraken": [("2000", "1", w(1, 8000))], "mockx": [("2100", "1", w(1, 8000))]}

    quote = {"coinbase": "USD", "kraken": "USD", "mockx": "USD"}  # the others quote USDT
    per_partition: dict[str, list[dict]] = {v: clock(v, 0, 3) for v in VENUES}
    for asset, window in (("BTC", btc0), ("ETH", eth0), ("SOL", sol0), ("BTC", btc1), ("ETH", eth1)):
        for exchange, spec in window.items():
            # mockx shares bybit's partition: partitions are not exchanges to the job.
            per_partition["bybit" if exchange == "mockx" else exchange] += trades_of(
                exchange, f"{asset}-{quote.get(exchange, 'USDT')}", spec)
    for partition, exchange in enumerate(VENUES):
        produce(bootstrap, trades_topic, partition, per_partition[exchange])

    args = common_args(bootstrap, trades_topic, gross_topic, "at-least-once") + ["--thresholds", "ETH=5"]
    submit(cluster, ARBITRAGE, args)
    net_args = common_args(bootstrap, trades_topic, net_topic, "at-least-once") + ["--thresholds", "ETH=5"]
    net_args[net_args.index("--group-id") + 1] += ".net"
    submit(cluster, ARBITRAGE, net_args, env={"ARBITRAGE_TRIGGER": "net"})

    gross = [arbitrage("BTC", 0, btc0, "50"), arbitrage("ETH", 0, eth0, "5"), arbitrage("ETH", 1, eth1, "5")]
    assert (gross[0]["buy_exchange"], gross[0]["sell_exchange"], gross[0]["spread_usd"]) == ("kraken", "okx", "300")
    assert gross[0]["venues"] == ["binance", "bybit", "kraken", "okx"] and gross[0]["net_spread_usd"] == "84.7"
    assert gross[1]["net_spread_usd"] == "-4.024" and gross[1]["venue_count"] == 3
    net = [arbitrage("BTC", 0, btc0, "50", trigger="net"), arbitrage("ETH", 1, eth1, "5", trigger="net")]
    assert (net[0]["buy_exchange"], net[0]["net_spread_usd"]) == ("binance", "163.65")
    assert (net[1]["sell_exchange"], net[1]["sell_fee_bps"], net[1]["net_spread_usd"]) == ("mockx", "10", "89.9")

    read_alerts(bootstrap, gross_topic, len(gross))
    read_alerts(bootstrap, net_topic, len(net))
    final = read_all_alerts(bootstrap, gross_topic)
    assert_alerts(final, gross)
    assert_alerts(read_all_alerts(bootstrap, net_topic), net)
    assert by_id(final)[gross[0]["alert_id"]]["summary"] == (
        "BTC: buy on kraken at 43000, sell on okx at 43300, spread $300 (69.77 bps), net $84.7 (19.7 bps) "
        "after fees, 4 venues, in 2023-11-14T22:13:20.000Z/2023-11-14T22:13:30.000Z")


def test_jobs_reach_a_secure_kafka_with_a_password_file(kafka_secure: harness.KafkaNode,
                                                        flink_clean: harness.FlinkCluster,
                                                        tmp_path: Path) -> None:
    """SASL_SSL/SCRAM with the bundle's CA and the password in a file (what the role renders).

    The connector reads the CA as a PEM truststore and the password through Kafka's
    DirectoryConfigProvider, so the password itself appears nowhere in the job Flink holds.
    """
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic

    node, cluster = kafka_secure, flink_clean
    user = "cryptomon-admin"  # the ACLs of the service users are the kafka_admin tests' business
    conf = node.client_config(user)
    suffix = uuid.uuid4().hex[:8]
    trades_topic, out_topic = f"trades.raw.{suffix}", f"alerts.{suffix}"
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(t, 3, 1) for t in (trades_topic, out_topic)]).values():
        f.result(30)
    secret = tmp_path / "kafka-password"
    secret.write_text(node.users[user])
    env = {k: v for k, v in node.client_env(user).items() if k != "KAFKA_PASSWORD"}
    env["KAFKA_PASSWORD_FILE"] = str(secret)

    btc = [("43000", "4"), ("43100", "3")]
    produce(conf, trades_topic, BINANCE, [trade("binance", "BTC-USDT", w(0, 1000), *btc[0]),
                                          trade("binance", "BTC-USDT", w(0, 2000), *btc[1]), *clock("binance", 0, 2)])
    args = common_args(node.bootstrap, trades_topic, out_topic, "exactly-once") + ["--thresholds", "BTC=5"]
    job = submit(cluster, ANOMALY, args, env=env)
    for path in (f"/jobs/{job}/plan", f"/jobs/{job}/config"):
        assert node.users[user] not in json.dumps(cluster.rest(path)), path

    c = Consumer({**conf, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.subscribe([out_topic])
    alerts: list[dict] = []
    deadline = time.monotonic() + 120
    try:
        while not alerts and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                alerts.append(json.loads(msg.value()))
    finally:
        c.close()
    assert_alerts(alerts, [anomaly("binance", "BTC-USDT", 0, btc, ["volume_threshold"], "5")])
