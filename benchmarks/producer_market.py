"""Whole-market benchmark: one `cryptomon-producer binance` process holding every Binance USDT pair
(BINANCE_SYMBOLS=*USDT, resolved from the replay server's exchangeInfo: 517 markets, three
connections of at most 200 streams) at a sustained trade rate into a real Kafka broker; its CPU
and memory.

  ~/.cache/cryptomon/venv/bin/python benchmarks/producer_market.py [--rate 110] [--seconds 60]

What runs, each as its own process on this machine:
  - a single-node Kafka 4 broker from the artifact cache (tests/harness.py), topic with 3 partitions;
  - the Binance replay server (`python -m cryptomon.replay binance`) making --rate trades per second
    on every market it is asked for, with Binance's limits enforced (1024 streams and 5 incoming
    messages per second per connection, 300 connection attempts per 5 minutes);
  - the producer exactly as systemd runs it (`python -m cryptomon.producer.cli binance`).
After a warm-up, the measurement window compares the trades the server made with the offsets
the broker holds (what was produced, acks=all), and reads the producer's CPU time (all its
threads, librdkafka's included) and resident memory from /proc. Nothing is pinned: the number
is what one process does on this 2-core machine shared with the broker and the server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "services"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime of every thread


def memory_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return rss, peak


def offsets(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/replay/stats", timeout=10) as r:
        return json.load(r)


def server_made(port: int) -> int:
    return server_stats(port)["made"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=110.0, help="trades per second per market (517 markets)")
    p.add_argument("--warmup", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    p.add_argument("--bootstrap", help="use this broker instead of starting one from the artifact cache")
    args = p.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    import harness

    work = Path(tempfile.mkdtemp(prefix="cryptomon-bench-market-"))
    node = None
    bootstrap = args.bootstrap
    if not bootstrap:
        node = harness.start_kafka(work / "kafka")
        bootstrap = node.bootstrap
    topic = f"bench.market.{time.time_ns()}"
    harness.create_topic(bootstrap, topic, partitions=3)
    port = harness.free_port()
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "cryptomon.replay", "binance", "--port", str(port),
                               "--rate", str(args.rate), "--keep", "500"], env=env,
                              stdout=subprocess.PIPE, stderr=(work / "replay.log").open("wb"))
    server.stdout.readline()  # "listening on …"
    producer_log = work / "producer.log"
    producer = subprocess.Popen(
        [sys.executable, "-m", "cryptomon.producer.cli", "binance"], cwd=work, stdout=subprocess.DEVNULL,
        stderr=producer_log.open("wb"),
        env={**env, "BINANCE_SYMBOLS": "*USDT", "BINANCE_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
             "BINANCE_REST_URL": f"http://127.0.0.1:{port}", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
             "KAFKA_TRADES_TOPIC": topic, "PRODUCER_STATS_INTERVAL_S": "10"})
    result: dict = {}
    try:
        deadline = time.monotonic() + 60
        while "subscribed to" not in producer_log.read_text():
            if time.monotonic() > deadline or producer.poll() is not None:
                raise RuntimeError(f"producer did not subscribe:\n{producer_log.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(args.warmup)
        c0, s0, k0, m0, t0 = (cpu_seconds(producer.pid), cpu_seconds(server.pid), offsets(bootstrap, topic),
                              server_made(port), time.monotonic())
        rss_max = 0.0
        while time.monotonic() - t0 < args.seconds:
            rss_max = max(rss_max, memory_mb(producer.pid)[0])
            time.sleep(1.0)
        c1, s1, k1, m1, t1 = (cpu_seconds(producer.pid), cpu_seconds(server.pid), offsets(bootstrap, topic),
                              server_made(port), time.monotonic())
        rss, peak = memory_mb(producer.pid)
        dt = t1 - t0
        log = producer_log.read_text()
        shards = re.search(r"(\d+) markets on (\d+) connection", log)
        result = {
            "markets": int(shards.group(1)), "connections": int(shards.group(2)),
            "offered_per_s": (m1 - m0) / dt, "produced_per_s": (k1 - k0) / dt,
            "producer_cpu_cores": (c1 - c0) / dt, "server_cpu_cores": (s1 - s0) / dt,
            "producer_rss_mb": rss, "producer_rss_max_mb": max(rss_max, rss), "producer_peak_mb": peak,
        }
        producer.send_signal(signal.SIGTERM)
        code = producer.wait(60)
        log = producer_log.read_text()
        stopped = re.search(r"stopped: .*", log)
        result["exit_code"] = code
        result["stopped"] = stopped.group(0) if stopped else log[-500:]
        stats = server_stats(port)
        result["limit_hits"] = stats["rate_limit_closes"] + stats["connect_rejects"] + stats["pong_timeouts"]
    finally:
        for proc in (producer, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if node:
            node.stop()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load avg {os.getloadavg()[0]:.2f}; --rate {args.rate:g} per market, {args.seconds:g} s window")
    print("| markets | connections | offered trades/s | produced to Kafka trades/s | producer CPU (cores) "
          "| producer RSS (MB, max) | replay server CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {result['markets']} | {result['connections']} | {result['offered_per_s']:,.0f} | "
          f"{result['produced_per_s']:,.0f} | {result['producer_cpu_cores']:.2f} | "
          f"{result['producer_rss_mb']:.0f} ({result['producer_rss_max_mb']:.0f}) | {result['server_cpu_cores']:.2f} |")
    print(f"producer exit {result['exit_code']}: {result['stopped']}")
    print(f"server-side limit hits (rate-limit closes, refused connects, pong timeouts): {result['limit_hits']}")
    ok = (result["exit_code"] == 0 and result["produced_per_s"] >= 0.98 * result["offered_per_s"]
          and "undelivered=0" in result["stopped"] and result["limit_hits"] == 0)
    if not ok:
        print("WARNING: the producer did not keep up, lost deliveries or hit a limit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
