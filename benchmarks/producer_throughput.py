"""Normalize-and-produce throughput of the exchange producer, trades/s on one core, against
cryptofeed's normalization of the very same frames, side by side in one run.

  ~/.cache/cryptomon/venv/bin/python benchmarks/producer_throughput.py [--trades 300000]

What is measured: Binance combined-stream `aggTrade` frames (cryptofeed's Binance feed only
handles aggTrade), generated up front by the replay server's own encoder and held in memory,
are replayed at full speed through
  ours:       BinanceAdapter.handle (parse, validate, dedupe, normalize) -> KafkaSink.emit
              (to_json + confluent-kafka produce, idempotent, acks=all, lz4), then flush;
  cryptofeed: Binance.message_handler (its parse + Trade normalization) -> a callback that
              serializes Trade.to_dict(numeric_type=str) with json.dumps and produces with
              the same confluent-kafka settings, then flush.
Each side runs in its own process pinned to ONE core (os.sched_setaffinity before the Kafka
client starts, so librdkafka's threads share that core too) and produces into a real
single-node Kafka broker started from the artifact cache (tests/harness.py), into its own
topic. "normalize only" repeats the run without Kafka. The cryptofeed side runs in a separate
venv (benchmarks/setup_cryptofeed_venv.sh); if that is missing the run reports why.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon"))
BENCH_VENV = Path(os.environ.get("CRYPTOMON_BENCH_VENV", CACHE / "venv-bench"))
SYMBOLS = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT", "BNBUSDT": "BNB-USDT"}
PRODUCER_CONF = {"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 20,
                 "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000,
                 "queue.buffering.max.kbytes": 262_144}


def make_frames(n: int, path: Path) -> None:
    sys.path.insert(0, str(REPO / "services"))
    from cryptomon.replay import Market
    from cryptomon.replay.binance import trade_event

    markets = [Market(s, seed=1) for s in SYMBOLS]
    with path.open("w") as f:
        for i in range(n):
            m = markets[i % len(markets)]
            event = trade_event(m.symbol, m.make(), "aggTrade")
            f.write(json.dumps({"stream": f"{m.symbol.lower()}@aggTrade", "data": event}, separators=(",", ":")))
            f.write("\n")


def pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


# --- the two sides, each run in a child process ----------------------------------------

def side_ours(frames: list[bytes], bootstrap: str | None, topic: str) -> dict:
    sys.path.insert(0, str(REPO / "services"))
    from cryptomon.kafka_settings import KafkaSettings
    from cryptomon.producer.base import now_ms
    from cryptomon.producer.binance import BinanceAdapter
    from cryptomon.producer.config import ProducerConfig
    from cryptomon.producer.fastjson import BACKEND
    from cryptomon.producer.sink import KafkaSink

    env = {"BINANCE_SYMBOLS": ",".join(SYMBOLS), "BINANCE_STREAM_TYPE": "aggTrade"}
    adapter = BinanceAdapter(ProducerConfig.from_env("binance", env))
    handle = adapter.handle
    if bootstrap is None:
        t0 = time.perf_counter()
        n = 0
        for f in frames:
            for t in handle(f, now_ms()):
                t.to_json()
                t.key()
                n += 1
        return {"trades": n, "seconds": time.perf_counter() - t0, "json": BACKEND}
    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap, trades_topic=topic), "bench-ours")
    emit = sink.emit
    t0 = time.perf_counter()
    for f in frames:
        for t in handle(f, now_ms()):
            emit(t)
    left = sink.close(120)
    dt = time.perf_counter() - t0
    return {"trades": adapter.stats.trades, "seconds": dt, "undelivered": left, "failed": sink.failed, "json": BACKEND}


def side_cryptofeed(frames: list[bytes], bootstrap: str | None, topic: str) -> dict:
    import asyncio
    import importlib.metadata

    from cryptofeed.defines import TRADES
    from cryptofeed.exchanges import Binance
    from cryptofeed.symbols import Symbols

    # No network here: seed cryptofeed's symbol cache instead of its REST exchangeInfo call.
    Symbols.set(Binance.id, {v: k for k, v in SYMBOLS.items()}, {"tick_size": {}, "instrument_type": {}})
    dumps = json.dumps
    produced = 0
    if bootstrap is None:
        async def cb(t, ts):
            nonlocal produced
            dumps(t.to_dict(numeric_type=str))
            f"{t.exchange}:{t.symbol}".encode()
            produced += 1
        producer = None
    else:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONF, "client.id": "bench-cryptofeed"})
        produce = producer.produce
        poll = producer.poll

        async def cb(t, ts):
            nonlocal produced
            value = dumps(t.to_dict(numeric_type=str))
            key = f"{t.exchange}:{t.symbol}".encode()
            try:
                produce(topic, value, key)
            except BufferError:
                poll(0.1)
                produce(topic, value, key)
            produced += 1
    feed = Binance(symbols=list(SYMBOLS.values()), channels=[TRADES], callbacks={TRADES: cb})
    handler = feed.message_handler

    async def run() -> None:
        for f in frames:
            await handler(f, None, time.time())

    loop = asyncio.new_event_loop()
    t0 = time.perf_counter()
    loop.run_until_complete(run())
    left = producer.flush(120) if producer is not None else 0
    dt = time.perf_counter() - t0
    return {"trades": produced, "seconds": dt, "undelivered": left,
            "version": importlib.metadata.version("cryptofeed")}


def child(args: argparse.Namespace) -> None:
    pin(args.cpu)
    # cryptofeed's handler takes str (it calls json.loads itself); ours gets bytes, as from websocket-client.
    raw = Path(args.frames).read_bytes().splitlines()
    frames: list = raw if args.side == "ours" else [f.decode() for f in raw]
    fn = side_ours if args.side == "ours" else side_cryptofeed
    fn(frames[: min(len(frames), 20_000)], None, args.topic)  # warm-up (imports, caches)
    result = fn(frames, args.bootstrap or None, args.topic)
    result["rate"] = result["trades"] / result["seconds"]
    print(json.dumps(result))


# --- orchestration ----------------------------------------------------------------------

def run_side(side: str, python: str, frames: Path, bootstrap: str | None, topic: str, cpu: int) -> dict:
    cmd = [python, __file__, "--child", side, "--frames", str(frames), "--topic", topic, "--cpu", str(cpu)]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["exit " + str(res.returncode)])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trades", type=int, default=300_000)
    p.add_argument("--bootstrap", help="use this broker instead of starting one from the artifact cache")
    p.add_argument("--cpu", type=int, default=0, help="the core both sides are pinned to")
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs per side")
    p.add_argument("--child", choices=("ours", "cryptofeed"), help=argparse.SUPPRESS)
    p.add_argument("--frames", help=argparse.SUPPRESS)
    p.add_argument("--topic", default="bench.trades", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.side = args.child
        child(args)
        return 0

    sys.path.insert(0, str(REPO / "tests"))
    import harness

    work = Path(tempfile.mkdtemp(prefix="cryptomon-bench-"))
    frames = work / "frames.jsonl"
    make_frames(args.trades, frames)
    node = None
    bootstrap = args.bootstrap
    if not bootstrap:
        node = harness.start_kafka(work / "kafka")
        bootstrap = node.bootstrap
    bench_py = BENCH_VENV / "bin" / "python"
    runs: dict[str, list[dict]] = {}
    try:
        # Interleaved repeats: on a shared 2-core machine other work comes and goes, so each
        # side gets the same chances; the table shows the best and the median run.
        for _ in range(args.repeat):
            for side, python in (("ours", sys.executable), ("cryptofeed", str(bench_py))):
                if side == "cryptofeed" and not bench_py.exists():
                    err = {"error": f"{bench_py} missing: run benchmarks/setup_cryptofeed_venv.sh"}
                    runs.setdefault(f"{side}+kafka", []).append(err)
                    runs.setdefault(side, []).append(err)
                    continue
                topic = f"bench.{side}.{time.time_ns()}"
                harness.create_topic(bootstrap, topic, partitions=3)
                runs.setdefault(f"{side}+kafka", []).append(run_side(side, python, frames, bootstrap, topic, args.cpu))
                runs.setdefault(side, []).append(run_side(side, python, frames, None, topic, args.cpu))
    finally:
        if node:
            node.stop()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load avg {os.getloadavg()[0]:.2f}; {args.trades} Binance aggTrade frames, pinned to core {args.cpu}")
    print("| pipeline | trades | best trades/s (one core) | median trades/s | runs |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("ours+kafka", "cryptomon: normalize + produce to Kafka"),
                        ("cryptofeed+kafka", "cryptofeed: normalize + produce to Kafka"),
                        ("ours", "cryptomon: normalize only"),
                        ("cryptofeed", "cryptofeed: normalize only")):
        rs = runs.get(name, [])
        good = [r for r in rs if "error" not in r]
        if not good:
            print(f"| {label} | - | - | not run: {rs[0]['error'] if rs else '?'} | 0 |")
            continue
        r = good[0]
        extra = f" ({r['json']})" if "json" in r else f" (cryptofeed {r.get('version')})" if "version" in r else ""
        rates = sorted(x["rate"] for x in good)
        print(f"| {label}{extra} | {r['trades']} | {rates[-1]:,.0f} | {rates[len(rates) // 2]:,.0f} | {len(good)} |")
    bad = [r for r in runs.get("ours+kafka", []) if r.get("undelivered") or r.get("failed")
           or r.get("trades") != args.trades]
    if bad:
        print(f"WARNING: our side did not deliver everything: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
