"""Throughput and alert latency of the two PyFlink jobs on this machine (real Kafka + Flink).

    ~/.cache/cryptomon/venv/bin/python benchmarks/flink_bench.py [--jobs anomaly,arbitrage]
        [--exchanges 5] [--assets 50] [--trades 3000000] [--parallelism 1]
        [--latency-seconds 90] [--latency-rate 100000] [--guarantees at-least-once,exactly-once]
        [--out benchmarks/flink_results.json]

Data: `--exchanges` venues (binance, coinbase, kraken, okx, bybit, ...) x `--assets` assets,
each venue quoting its own price (a few bps apart, so every asset has a spread above the
demo threshold on every pair of venues), 10,000 trades per second of event time for the
throughput set. The jobs run with thresholds that make every window alert: the anomaly job
one alert per venue and symbol, the arbitrage job (demo mode, N-way) one per asset.

Throughput: N trades are loaded into trades.raw first, then the job starts from the earliest
offset. The alert topic uses LogAppendTime, so the broker stamps when each window's alerts
were written; trades/s = trades whose windows closed between the first and the last alerted
window / wall time between those alerts. Startup is therefore not counted, and the job must
keep up the whole way.

Latency: the job runs live; a producer writes trades stamped with the current time at
`--latency-rate` trades/s for `--latency-seconds`; a read_committed consumer notes when each
alert becomes readable. Delay = that time - window_end_ms (the window's end in event time).
Exactly-once is measured separately because its alerts only become readable when the
checkpoint that contains them completes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import harness  # noqa: E402

JOBS = {"anomaly": REPO / "flink_jobs" / "anomaly_detector.py",
        "arbitrage": REPO / "flink_jobs" / "arbitrage_detector.py"}
PYFS = [REPO / "flink_jobs" / "flink_common.py", REPO / "flink_jobs" / "kafka_settings.py"]
# (venue, quote) in the order --exchanges takes them; more than five get synthetic names.
VENUES = [("binance", "USDT"), ("coinbase", "USD"), ("kraken", "USD"), ("okx", "USDT"), ("bybit", "USDT")]
ASSETS = {"BTC": 43000.0, "ETH": 2300.0, "SOL": 60.0, "XRP": 0.6, "DOGE": 0.08, "ADA": 0.4, "AVAX": 25.0,
          "LINK": 15.0, "DOT": 5.0, "LTC": 70.0, "BCH": 230.0, "TRX": 0.1, "MATIC": 0.8, "TON": 2.3,
          "SHIB": 0.00001, "UNI": 6.0, "ATOM": 9.0, "XLM": 0.12, "ETC": 20.0, "FIL": 5.0, "APT": 8.0,
          "ARB": 1.1, "OP": 2.0, "NEAR": 2.0, "ICP": 5.0, "HBAR": 0.07, "VET": 0.03, "INJ": 25.0,
          "AAVE": 100.0, "MKR": 1500.0, "GRT": 0.15, "ALGO": 0.18, "SAND": 0.45, "MANA": 0.45,
          "AXS": 7.0, "EGLD": 55.0, "XTZ": 0.9, "THETA": 1.0, "FTM": 0.4, "RUNE": 5.0, "SNX": 3.0,
          "CRV": 0.6, "LDO": 2.5, "IMX": 2.0, "SUI": 0.6, "SEI": 0.5, "TIA": 10.0, "PEPE": 0.000001,
          "WIF": 2.0, "JUP": 0.5}
EVENT_RATE = 10_000  # trades per second of event time in the throughput data set


class Trades:
    """Normalized trades of every (venue, asset) key in turn, as the producers write them.

    The JSON is built from a per-key prefix and pre-drawn noise, so one Python process can
    feed the broker well above 100k trades/s.
    """

    def __init__(self, exchanges: int, assets: int, seed: int) -> None:
        venues = VENUES + [(f"venue{i}", "USDT") for i in range(len(VENUES), exchanges)]
        names = list(ASSETS) + [f"X{i}" for i in range(len(ASSETS), assets)]
        self.keys = []
        for v, (venue, quote) in enumerate(venues[:exchanges]):
            for asset in names[:assets]:
                price = ASSETS.get(asset, 1.0) * (1 + 0.0005 * v) + 0.2 * v  # > $0.1 apart
                symbol = f"{asset}-{quote}"
                prefix = (f'{{"exchange":"{venue}","symbol":"{symbol}","raw_symbol":"{asset}{quote}",'
                          f'"trade_id":"').encode()
                self.keys.append((f"{venue}:{symbol}".encode(), prefix, price))
        rnd = random.Random(seed)
        self.noise = [(1 + rnd.uniform(-0.0005, 0.0005), rnd.uniform(0.001, 2)) for _ in range(10_007)]

    def make(self, i: int, ts: int) -> tuple[bytes, bytes]:
        key, prefix, price = self.keys[i % len(self.keys)]
        mult, size = self.noise[i % len(self.noise)]
        side = "buy" if i % 2 else "sell"
        return key, prefix + (f'{i}","price":"{price * mult:.12f}","size":"{size:.6f}","side":"{side}",'
                              f'"exchange_ts":{ts},"received_ts":{ts + 20}}}').encode()


def job_args(job: str, bootstrap: str, trades: str, out: str, guarantee: str, startup: str,
             parallelism: int) -> list[str]:
    args = ["--bootstrap-servers", bootstrap, "--trades-topic", trades, "--output-topic", out,
            "--group-id", f"bench-{out}", "--startup-mode", startup, "--delivery-guarantee", guarantee,
            "--transactional-id-prefix", f"bench-{out}", "--parallelism", str(parallelism)]
    if job == "anomaly":  # every window of every key alerts
        return args + ["--thresholds", "", "--default-threshold", "0.000001"]
    return args + ["--demo=true"]


def submit(cluster: harness.FlinkCluster, job: str, args: list[str]) -> str:
    job_id = cluster.run_python_job(JOBS[job], *args, pyfs=PYFS)
    cluster.wait_job_state(job_id, "RUNNING")
    return job_id


def new_topics(bootstrap: str, partitions: int) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    trades, out = f"bench.trades.{suffix}", f"bench.alerts.{suffix}"
    harness.create_topic(bootstrap, trades, partitions=partitions)
    harness.create_topic(bootstrap, out, partitions=3, config={"message.timestamp.type": "LogAppendTime"})
    return trades, out


def load(bootstrap: str, topic: str, n: int, t0: int, data: Trades) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 2_000_000})
    start = time.monotonic()
    for i in range(n):
        key, value = data.make(i, t0 + i * 1000 // EVENT_RATE)
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(120)
    return n / (time.monotonic() - start)


def throughput(cluster: harness.FlinkCluster, bootstrap: str, job: str, n: int, parallelism: int,
               data: Trades) -> dict:
    trades, out = new_topics(bootstrap, partitions=4)
    t0 = 1_700_000_000_000
    load_rate = load(bootstrap, trades, n, t0, data)
    job_id = submit(cluster, job, job_args(job, bootstrap, trades, out, "at-least-once", "earliest-offset",
                                           parallelism))
    # The last window that fires: its end must be at least the watermark delay (1 s) behind
    # the newest trade.
    max_ts = t0 + (n - 1) * 1000 // EVENT_RATE
    last_window_end = t0 + (max_ts - 1000 - t0) // 10_000 * 10_000
    first_seen: dict[int, int] = {}
    alerts = 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"b-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([out])
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and last_window_end not in first_seen:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            end = json.loads(msg.value())["window_end_ms"]
            first_seen.setdefault(end, msg.timestamp()[1])
            alerts += 1
    finally:
        c.close()
        cluster.cancel_all()
    ends = sorted(first_seen)
    assert len(ends) >= 3, f"too few windows alerted: {ends}"
    first, last = ends[0], ends[-1]
    wall_s = (first_seen[last] - first_seen[first]) / 1000
    processed = (last - first) / 1000 * EVENT_RATE
    return {"job": job, "parallelism": parallelism, "keys": len(data.keys), "trades_loaded": n,
            "load_rate": round(load_rate), "alerts": alerts, "windows_measured": len(ends) - 1,
            "trades_measured": int(processed), "wall_s": round(wall_s, 2), "trades_per_s": round(processed / wall_s),
            "job_id": job_id}


def latency(cluster: harness.FlinkCluster, bootstrap: str, job: str, guarantee: str, seconds: int,
            rate: int, parallelism: int, data: Trades) -> dict:
    trades, out = new_topics(bootstrap, partitions=3)
    submit(cluster, job, job_args(job, bootstrap, trades, out, guarantee, "earliest-offset", parallelism))
    delays: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"l-{uuid.uuid4()}",
                      "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                      "fetch.wait.max.ms": 10})
        c.subscribe([out])
        while not stop.is_set():
            msg = c.poll(0.1)
            if msg is None or msg.error():
                continue
            seen = int(time.time() * 1000)
            delays.append(seen - json.loads(msg.value())["window_end_ms"])
        c.close()

    reader = threading.Thread(target=consume)
    reader.start()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4",
                  "queue.buffering.max.messages": 2_000_000})
    start = time.time()
    i = 0
    while time.time() - start < seconds:
        # Paced: each 10 ms slice sends its share, stamped with the current wall clock.
        target = int((time.time() - start) * rate)
        now_ms = int(time.time() * 1000)
        while i < target:
            key, value = data.make(i, now_ms)
            p.produce(trades, key=key, value=value)
            i += 1
        p.poll(0)
        time.sleep(0.01)
    produced_per_s = i / (time.time() - start)
    p.flush(30)
    time.sleep(6)  # let the last full windows close and be read
    stop.set()
    reader.join()
    cluster.cancel_all()
    # The first window is partial (the job started mid-window) - keep it: it is still an
    # alert whose delay counts. Windows still open at the end never alert.
    delays.sort()
    q = statistics.quantiles(delays, n=100, method="inclusive") if len(delays) > 1 else delays * 99
    return {"job": job, "guarantee": guarantee, "keys": len(data.keys), "rate": rate,
            "produced_per_s": round(produced_per_s), "seconds": seconds, "alerts": len(delays),
            "p50_ms": round(q[49]), "p99_ms": round(q[98]), "max_ms": max(delays)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="anomaly,arbitrage")
    ap.add_argument("--exchanges", type=int, default=5)
    ap.add_argument("--assets", type=int, default=50)
    ap.add_argument("--trades", type=int, default=3_000_000)
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--latency-seconds", type=int, default=90)
    ap.add_argument("--latency-rate", type=int, default=100_000, help="live trades/s")
    ap.add_argument("--guarantees", default="at-least-once,exactly-once")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "flink_results.json"))
    a = ap.parse_args()
    # SIGTERM must still stop the Kafka and Flink processes this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="cryptomon-flink-bench-"))
    kafka = harness.start_kafka(work / "kafka")
    cluster = harness.start_flink(work / "flink")
    data = Trades(a.exchanges, a.assets, seed=1)
    results: dict = {"machine": {"cpus": os.cpu_count()}, "command": " ".join(sys.argv[1:]),
                     "throughput": [], "latency": []}
    try:
        for job in a.jobs.split(","):
            if not a.skip_throughput:
                r = throughput(cluster, kafka.bootstrap, job, a.trades, a.parallelism, data)
                print(json.dumps(r), flush=True)
                results["throughput"].append(r)
            if not a.skip_latency:
                for guarantee in a.guarantees.split(","):
                    r = latency(cluster, kafka.bootstrap, job, guarantee, a.latency_seconds, a.latency_rate,
                                a.parallelism, data)
                    print(json.dumps(r), flush=True)
                    results["latency"].append(r)
    finally:
        cluster.stop()
        kafka.stop()
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
