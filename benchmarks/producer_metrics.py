"""What the producer's /metrics costs its hot path: normalize + produce on one core, metrics off
and on, alternating in one run.

  ~/.cache/cryptomon/venv/bin/python benchmarks/producer_metrics.py [--trades 1000000] [--repeat 6]

The pipeline is producer_throughput.py's: Binance combined-stream `aggTrade` frames generated up
front by the replay server's encoder and held in memory, replayed at full speed through
BinanceAdapter.handle -> KafkaSink.emit (idempotent, acks=all, lz4) and flushed, in a child
process pinned to ONE core (librdkafka's threads included), into a real single-node broker
started from the artifact cache (tests/harness.py), a new topic per run. In both modes the
sink's poller thread runs, as in the service.

"on" adds everything METRICS_PORT adds to a producer: librdkafka statistics every
--stats-interval s (default 1 s; the service uses 10 s) parsed into the latency summary, the
metrics HTTP server inside the producer process, and a scraper in this (parent) process asking
for /metrics every --scrape-interval s (default 0.25 s; Prometheus usually scrapes every 15 to
30 s). Both intervals are far shorter than in service, so the measured cost is an upper bound.
The runs alternate (off, on, on, off, ...) so that other load on a shared machine hits both
modes alike, after one uncounted warm-up run; the ratio is on/off of the median rates
(target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from producer_throughput import SYMBOLS, make_frames, pin  # noqa: E402

# --- the producer side, in a child process ---------------------------------------------------

def run_producer(frames: list[bytes], bootstrap: str, topic: str, metrics: bool, stats_interval: float) -> dict:
    sys.path.insert(0, str(REPO / "services"))
    from cryptomon.kafka_settings import KafkaSettings
    from cryptomon.metrics import new_registry, serve
    from cryptomon.producer.base import now_ms
    from cryptomon.producer.binance import BinanceAdapter
    from cryptomon.producer.config import ProducerConfig
    from cryptomon.producer.metrics import KafkaLatency, ProducerCollector
    from cryptomon.producer.sink import KafkaSink

    env = {"BINANCE_SYMBOLS": ",".join(SYMBOLS), "BINANCE_STREAM_TYPE": "aggTrade"}
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", env))
    latency = KafkaLatency() if metrics else None
    documents: list[str] = []

    def on_stats(document: str) -> None:
        documents[:] = [document]  # the last one, to time its parsing afterwards
        latency.update(document)

    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap, trades_topic=topic), "bench-metrics",
                     on_stats=on_stats if latency is not None else None, stats_interval_s=stats_interval)
    sink.start_poller()
    server = None
    registry = new_registry()
    if metrics:
        registry.register(ProducerCollector("binance", adapter, sink, latency))
        server = serve(registry, "127.0.0.1", 0)
    # The parent scrapes this port while the frames run (0: nothing to scrape).
    print(f"PORT {server.port if server else 0}", flush=True)
    handle, emit = adapter.handle, sink.emit
    t0 = time.perf_counter()
    for f in frames:
        for t in handle(f, now_ms()):
            emit(t)
    left = sink.close(120)
    seconds = time.perf_counter() - t0
    result = {"trades": adapter.stats.trades, "seconds": seconds, "rate": adapter.stats.trades / seconds,
              "undelivered": left, "failed": sink.failed, "stats_documents": latency.documents if latency else 0}
    if server is not None:
        server.close()
        result.update(unit_costs(registry, latency, documents))
    return result


def unit_costs(registry, latency, documents: list[str]) -> dict:
    """CPU seconds of one scrape (collect + text exposition) and of parsing one statistics
    document, timed in this process after the run: what the rates above cannot resolve."""
    from prometheus_client import generate_latest

    n = 200
    t0 = time.process_time()
    for _ in range(n):
        generate_latest(registry)
    scrape = (time.process_time() - t0) / n
    parse = 0.0
    if documents:
        t0 = time.process_time()
        for _ in range(n):
            latency.update(documents[0])
        parse = (time.process_time() - t0) / n
    return {"scrape_cpu_s": scrape, "stats_cpu_s": parse, "stats_bytes": len(documents[0]) if documents else 0}


def child(args: argparse.Namespace) -> None:
    pin(args.cpu)
    frames = Path(args.frames).read_bytes().splitlines()
    sys.path.insert(0, str(REPO / "services"))
    from cryptomon.producer.base import now_ms
    from cryptomon.producer.binance import BinanceAdapter
    from cryptomon.producer.config import ProducerConfig

    # Warm-up without Kafka (imports, caches), as producer_throughput.py does.
    warm = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": ",".join(SYMBOLS),
                                                               "BINANCE_STREAM_TYPE": "aggTrade"}))
    for f in frames[:20_000]:
        for t in warm.handle(f, now_ms()):
            t.to_json()
    print(json.dumps(run_producer(frames, args.bootstrap, args.topic, args.mode == "on", args.stats_interval)))


# --- orchestration -----------------------------------------------------------------------------

class Scraper(threading.Thread):
    """Asks for /metrics every `interval` s until stopped; keeps the count and the last page."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = f"http://127.0.0.1:{port}/metrics", interval
        self.stop = threading.Event()
        self.scrapes, self.errors, self.last = 0, 0, ""

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    self.last = resp.read().decode()
                self.scrapes += 1
            except OSError:
                self.errors += 1


def run_mode(mode: str, frames: Path, bootstrap: str, topic: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--frames", str(frames), "--bootstrap", bootstrap,
           "--topic", topic, "--cpu", str(args.cpu), "--stats-interval", str(args.stats_interval)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    scraper = None
    if len(first) == 2 and first[0] == "PORT" and first[1] != "0":
        scraper = Scraper(int(first[1]), args.scrape_interval)
        scraper.start()
    out, err = proc.communicate(timeout=900)
    if scraper is not None:
        scraper.stop.set()
        scraper.join()
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    result = json.loads(out.strip().splitlines()[-1])
    if scraper is not None:
        result.update(scrapes=scraper.scrapes, scrape_errors=scraper.errors, page=scraper.last)
    return result


def latency_lines(page: str) -> list[str]:
    """The summary's p99 and count lines of the last scrape, to show the statistics arrived."""
    return [line for line in page.splitlines()
            if line.startswith("cryptomon_producer_kafka_latency_seconds_count{")
            or line.startswith("cryptomon_producer_kafka_latency_seconds{") and 'quantile="0.99"' in line]


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> int:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load avg {os.getloadavg()[0]:.2f}; {args.trades} Binance aggTrade frames, pinned to core {args.cpu}; "
          f"metrics on: statistics every {args.stats_interval:g} s, a scrape every {args.scrape_interval:g} s")
    bad = [r for rs in runs.values() for r in rs if "error" in r]
    if bad:
        print(f"ERROR: {bad[0]['error']}")
        return 1
    print("| repeat | metrics off trades/s | metrics on trades/s | on/off | scrapes (on) | statistics documents (on) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, (off, on) in enumerate(zip(runs["off"], runs["on"], strict=True), 1):
        print(f"| {i} | {off['rate']:,.0f} | {on['rate']:,.0f} | {on['rate'] / off['rate']:.3f} | "
              f"{on.get('scrapes', 0)} | {on['stats_documents']} |")
    med_off = statistics.median(r["rate"] for r in runs["off"])
    med_on = statistics.median(r["rate"] for r in runs["on"])
    ratio = med_on / med_off
    print(f"| median | {med_off:,.0f} | {med_on:,.0f} | **{ratio:.3f}** | | |")
    scrape = statistics.median(r["scrape_cpu_s"] for r in runs["on"])
    parse = statistics.median(r["stats_cpu_s"] for r in runs["on"])
    size = runs["on"][-1]["stats_bytes"]

    def share(scrape_every: float, stats_every: float) -> float:
        return scrape / scrape_every + parse / stats_every

    print(f"CPU per scrape (collect + exposition, standard process metrics included): {scrape * 1e3:.2f} ms; "
          f"per statistics document ({size:,} bytes): {parse * 1e3:.2f} ms")
    print(f"share of one core: {share(args.scrape_interval, args.stats_interval):.3%} at this run's intervals, "
          f"{share(15.0, 10.0):.4%} in service (a scrape every 15 s, statistics every 10 s)")
    lines = latency_lines(runs["on"][-1].get("page", ""))
    if lines:
        print("last scrape of the last 'on' run, p99 and count per stage:")
        for line in lines:
            print("  " + re.sub(r'exchange="binance",', "", line))
    undelivered = [r for rs in runs.values() for r in rs
                   if r.get("undelivered") or r.get("failed") or r.get("trades") != args.trades]
    if undelivered:
        print(f"WARNING: not every trade was delivered: {undelivered}")
        return 1
    if not any(r.get("scrapes") for r in runs["on"]) or not any(r["stats_documents"] for r in runs["on"]):
        print("WARNING: no scrape or no statistics document reached the 'on' runs: the cost was not measured")
        return 1
    print(f"on/off = {ratio:.3f} (target >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trades", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=6, help="runs per mode, alternating")
    p.add_argument("--bootstrap", help="use this broker instead of starting one from the artifact cache")
    p.add_argument("--cpu", type=int, default=0, help="the core the producer is pinned to")
    p.add_argument("--stats-interval", type=float, default=1.0, help="librdkafka statistics interval (on)")
    p.add_argument("--scrape-interval", type=float, default=0.25, help="seconds between scrapes (on)")
    p.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    p.add_argument("--frames", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return 0

    sys.path.insert(0, str(REPO / "tests"))
    import harness

    work = Path(tempfile.mkdtemp(prefix="cryptomon-bench-metrics-"))
    frames = work / "frames.jsonl"
    make_frames(args.trades, frames)
    node = None
    bootstrap = args.bootstrap
    if not bootstrap:
        node = harness.start_kafka(work / "kafka")
        bootstrap = node.bootstrap
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        # One run not counted: the broker's JIT and page cache warm up on it.
        harness.create_topic(bootstrap, "bench.metrics.warmup", partitions=3)
        run_mode("on", frames, bootstrap, "bench.metrics.warmup", args)
        for i in range(args.repeat):
            for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
                topic = f"bench.metrics.{mode}.{time.time_ns()}"
                harness.create_topic(bootstrap, topic, partitions=3)
                runs[mode].append(run_mode(mode, frames, bootstrap, topic, args))
                print(f"run {i + 1} {mode}: {runs[mode][-1].get('rate', runs[mode][-1].get('error'))}",
                      file=sys.stderr, flush=True)
    finally:
        if node:
            node.stop()
    return report(runs, args)


if __name__ == "__main__":
    sys.exit(main())
