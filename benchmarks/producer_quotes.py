"""Quote-path throughput of the exchange producer on one core, side by side with the trade path
(issue 14: >= 150,000 quotes/s per core).

  ~/.cache/cryptomon/venv/bin/python benchmarks/producer_quotes.py [--frames 300000] [--repeat 3]

What is measured: Binance combined-stream `bookTicker` frames, made up front by the replay
server's own encoder (three markets, every frame a new book with a higher update id, so none is
dropped) and held in memory, replayed at full speed through
  quotes:  BinanceAdapter.handle with PRODUCER_QUOTES on (parse, validate: positive decimals and
           bid < ask exactly; order by update id; normalize) -> flush_quotes after EVERY frame
           (no coalescing: each frame is one quote produced; in the service the flush comes once
           per socket read, which can only lower the work) -> KafkaSink.emit_quote (to_json +
           confluent-kafka produce, idempotent, acks=all, lz4) into the quotes topic, then flush;
  trades:  the trade path of benchmarks/producer_throughput.py on Binance aggTrade frames
           (BinanceAdapter.handle -> KafkaSink.emit), in the same run for comparison.
Each run is a child process pinned to ONE core (librdkafka's threads included), producing into
a real single-node Kafka broker started from the artifact cache (tests/harness.py) and stopped
at the end. "normalize only" repeats a run without Kafka (to_json and the key, not produced).
Rates are given two ways: per wall-clock second, and per CPU second of the run's process (all
its threads, librdkafka's included: what one core would do if the run had it to itself). On
the shared 2-core VM other work steals the pinned core, so the CPU rate is the steadier one.
"per venue" parses each venue's top-of-book frames (made by its replay server) through its own
adapter, normalize only: Kraken's ticker sends JSON numbers, parsed by the stdlib with exact
decimal text, so it is the slow one.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "services"))

import producer_throughput as trade_bench  # noqa: E402 - the trade side, reused as it is

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
VENUES = {  # exchange -> its own symbols, as its replay server and adapter write them
    "binance": ["BTCUSDT", "ETHUSDT", "BNBUSDT"],
    "coinbase": ["BTC-USD", "ETH-USD", "SOL-USD"],
    "kraken": ["BTC/USD", "ETH/USD", "SOL/USD"],
    "okx": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
    "bybit": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
}


# --- frames -------------------------------------------------------------------------------

def venue_frames(exchange: str, n: int) -> list[str]:
    """n top-of-book frames of `exchange`, written by its replay server's encoder."""
    from cryptomon.producer.registry import replay_class
    from cryptomon.replay import Market

    symbols = VENUES[exchange]
    markets = [Market(s, seed=1) for s in symbols]
    out = []
    with replay_class(exchange)(symbols, rate=0) as srv:
        for i in range(n):
            m = markets[i % len(markets)]
            m.make()
            q = m.quote()
            if exchange == "binance":
                from cryptomon.replay.binance import book_ticker_text

                out.append(book_ticker_text(f"{m.symbol.lower()}@bookTicker", m.symbol, q, True))
            elif exchange == "coinbase":
                from cryptomon.replay.coinbase import ticker_event

                out.append(json.dumps(ticker_event(m.symbol, q, m)))
            else:
                channel = {"kraken": "ticker", "okx": "bbo-tbt", "bybit": "orderbook.1"}[exchange]
                out.append(srv.encode_quote(channel, m.symbol, q, m))
    return out


def write_frames(path: Path, frames: list[str]) -> None:
    path.write_text("\n".join(frames) + "\n")


# --- the sides, each run in a child process ------------------------------------------------

def quote_adapter(exchange: str = "binance"):
    from cryptomon.producer.config import ProducerConfig
    from cryptomon.producer.registry import adapter_class

    cls = adapter_class(exchange)
    return cls(ProducerConfig.from_env(exchange, {cls.symbols_var: ",".join(VENUES[exchange]),
                                                  "PRODUCER_QUOTES": "true"}))


def side_quotes(frames: list[bytes], bootstrap: str | None, topic: str) -> dict:
    from cryptomon.kafka_settings import KafkaSettings
    from cryptomon.producer.base import now_ms
    from cryptomon.producer.fastjson import BACKEND
    from cryptomon.producer.sink import KafkaSink

    adapter = quote_adapter()
    handle, flush, pending = adapter.handle, adapter.flush_quotes, adapter.pending_quotes
    if bootstrap is None:
        def emit(q) -> None:
            q.to_json()
            q.key()
        sink = None
    else:
        sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap, trades_topic=topic + ".unused"), "bench-quotes",
                         quotes_topic=topic)
        emit = sink.emit_quote
    c0, t0 = time.process_time(), time.perf_counter()
    for f in frames:
        handle(f, now_ms())
        if pending:
            flush(emit)
    left = sink.close(120) if sink is not None else 0
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = adapter.stats
    return {"items": stats.quotes, "seconds": dt, "cpu_seconds": cpu, "undelivered": left,
            "failed": sink.failed if sink else 0,
            "dropped": stats.quotes_out_of_order + stats.quotes_crossed + stats.quotes_invalid + stats.malformed,
            "json": BACKEND}


def side_trades(frames: list[bytes], bootstrap: str | None, topic: str) -> dict:
    c0 = time.process_time()
    result = trade_bench.side_ours(frames, bootstrap, topic)
    result["cpu_seconds"] = time.process_time() - c0  # includes its setup, well under 1 % here
    result["items"] = result.pop("trades")
    return result


def side_venues(frames_dir: Path) -> dict:
    from cryptomon.producer.base import now_ms

    rates = {}
    for exchange in VENUES:
        frames = (frames_dir / f"{exchange}.jsonl").read_bytes().splitlines()
        adapter = quote_adapter(exchange)
        handle, take = adapter.handle, adapter.take_quotes
        for f in frames[:2000]:  # warm-up
            handle(f, now_ms())
            take()
        adapter = quote_adapter(exchange)
        handle, flush, pending = adapter.handle, adapter.flush_quotes, adapter.pending_quotes

        def emit(q) -> None:
            q.to_json()
            q.key()
        c0, t0 = time.process_time(), time.perf_counter()
        for f in frames:
            handle(f, now_ms())
            if pending:
                flush(emit)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        bad = {k: v for k, v in adapter.stats.quote_dict().items() if v and k != "quotes"}
        n = adapter.stats.quotes
        rates[exchange] = {"quotes": n, "rate": n / dt, "cpu_rate": n / cpu, "bad": bad}
    return rates


def child(args: argparse.Namespace) -> None:
    trade_bench.pin(args.cpu)
    if args.child == "venues":
        print(json.dumps(side_venues(Path(args.frames_file))))
        return
    frames = Path(args.frames_file).read_bytes().splitlines()  # bytes, as from the socket
    fn = side_quotes if args.child == "quotes" else side_trades
    fn(frames[: min(len(frames), 20_000)], None, args.topic)  # warm-up (imports, caches)
    result = fn(frames, args.bootstrap or None, args.topic)
    result["rate"] = result["items"] / result["seconds"]
    result["cpu_rate"] = result["items"] / result["cpu_seconds"]
    print(json.dumps(result))


# --- orchestration ------------------------------------------------------------------------

def run_child(kind: str, frames: Path, bootstrap: str | None, topic: str, cpu: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--frames-file", str(frames), "--topic", topic,
           "--cpu", str(cpu)]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["exit " + str(res.returncode)])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300_000, help="quote frames (and as many trade frames)")
    p.add_argument("--bootstrap", help="use this broker instead of starting one from the artifact cache")
    p.add_argument("--cpu", type=int, default=0, help="the core every run is pinned to")
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs per pipeline")
    p.add_argument("--child", choices=("quotes", "trades", "venues"), help=argparse.SUPPRESS)
    p.add_argument("--frames-file", help=argparse.SUPPRESS)
    p.add_argument("--topic", default="bench.quotes", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    import harness

    work = Path(tempfile.mkdtemp(prefix="cryptomon-bench-quotes-"))
    quote_frames, trade_frames = work / "quotes.jsonl", work / "trades.jsonl"
    write_frames(quote_frames, venue_frames("binance", args.frames))
    trade_bench.make_frames(args.frames, trade_frames)
    per_venue = max(10_000, args.frames // 5)
    for exchange in VENUES:
        write_frames(work / f"{exchange}.jsonl", venue_frames(exchange, per_venue))
    node = None
    bootstrap = args.bootstrap
    if not bootstrap:
        node = harness.start_kafka(work / "kafka")
        bootstrap = node.bootstrap
    runs: dict[str, list[dict]] = {}
    venues: list[dict] = []
    try:
        # Interleaved repeats: on a shared 2-core machine other work comes and goes.
        for _ in range(args.repeat):
            for kind, frames in (("quotes", quote_frames), ("trades", trade_frames)):
                topic = f"bench.{kind}.{time.time_ns()}"
                harness.create_topic(bootstrap, topic, partitions=3)
                runs.setdefault(f"{kind}+kafka", []).append(run_child(kind, frames, bootstrap, topic, args.cpu))
                runs.setdefault(kind, []).append(run_child(kind, frames, None, topic, args.cpu))
            venues.append(run_child("venues", work, None, "-", args.cpu))
    finally:
        if node:
            node.stop()
    report(args, runs, venues)
    bad = [r for r in runs.get("quotes+kafka", []) if "error" in r or r.get("undelivered") or r.get("failed")
           or r.get("dropped") or r.get("items") != args.frames]
    if bad:
        print(f"WARNING: the quote path did not deliver every quote: {bad}")
        return 1
    return 0


def report(args: argparse.Namespace, runs: dict[str, list[dict]], venues: list[dict]) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, load avg "
          f"{os.getloadavg()[0]:.2f}; {args.frames} Binance bookTicker and {args.frames} aggTrade frames, "
          f"pinned to core {args.cpu}")
    print("| pipeline | items | best /s (one core) | median /s | median per CPU second | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, label in (("quotes+kafka", "quotes: normalize + produce to Kafka"),
                        ("trades+kafka", "trades: normalize + produce to Kafka"),
                        ("quotes", "quotes: normalize only"),
                        ("trades", "trades: normalize only")):
        good = [r for r in runs.get(name, []) if "error" not in r]
        if not good:
            errors = [r["error"] for r in runs.get(name, []) if "error" in r]
            print(f"| {label} | - | - | not run: {errors[0] if errors else '?'} | - | 0 |")
            continue
        rates = sorted(r["rate"] for r in good)
        cpu = sorted(r["cpu_rate"] for r in good)
        extra = f" ({good[0]['json']})" if "json" in good[0] else ""
        print(f"| {label}{extra} | {good[0]['items']} | {rates[-1]:,.0f} | {rates[len(rates) // 2]:,.0f} "
              f"| {cpu[len(cpu) // 2]:,.0f} | {len(good)} |")
    good_venues = [v for v in venues if "error" not in v]
    if not good_venues:
        print(f"per venue: not run: {venues[0].get('error') if venues else '?'}")
        return
    print("\n| venue (quotes, normalize only) | quotes | best /s | median /s | median per CPU second | dropped |")
    print("|---|---:|---:|---:|---:|---|")
    for exchange in VENUES:
        rates = sorted(v[exchange]["rate"] for v in good_venues)
        cpu = sorted(v[exchange]["cpu_rate"] for v in good_venues)
        last = good_venues[-1][exchange]
        print(f"| {exchange} | {last['quotes']} | {rates[-1]:,.0f} | {rates[len(rates) // 2]:,.0f} "
              f"| {cpu[len(cpu) // 2]:,.0f} | {last['bad'] or 'none'} |")


if __name__ == "__main__":
    sys.exit(main())
