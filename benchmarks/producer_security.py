"""Producer throughput into Kafka over SASL_SSL (the bundle's default) vs PLAINTEXT, in one run.

  ~/.cache/cryptomon/venv/bin/python benchmarks/producer_security.py [--trades 300000] [--repeats 3]

Two real single-node brokers start from the artifact cache (tests/harness.py): one PLAINTEXT,
one with the bundle's security model (SASL_SSL + SCRAM-SHA-512 for clients, TLS with client
certificates between nodes, ACLs). For each repeat, interleaved, a child process pinned to ONE
core (librdkafka's threads share it) pushes the same pre-built normalized trades through the
producer's real sink (cryptomon.producer.sink.KafkaSink: idempotent, acks=all, lz4) and waits
for every delivery, first into one broker, then into the other. Reported: trades/s per run,
the medians, and SASL_SSL/PLAINTEXT (target >= 0.7). The brokers run unpinned, on the other core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "services"))


def child(env: dict[str, str], trades: int, cpu: int) -> dict:
    """Runs in its own process: the producer's sink, pinned to one core."""
    os.sched_setaffinity(0, {cpu})
    import threading

    from cryptomon.kafka_settings import KafkaSettings
    from cryptomon.producer.schema import Trade
    from cryptomon.producer.sink import KafkaSink

    symbols = ["BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT"]
    batch = [Trade("binance", symbols[i % 4], symbols[i % 4].replace("-", ""), str(10_000_000 + i),
                   f"{43000 + (i % 500) / 100:.2f}", f"0.{i % 997 + 1:03d}", "buy" if i % 2 else "sell",
                   1_700_000_000_000 + i, 1_700_000_000_005 + i) for i in range(trades)]
    sink = KafkaSink(KafkaSettings.from_env(env), client_id="bench-security")
    if not sink.wait_ready(threading.Event()):
        raise SystemExit("Kafka not ready")
    sink.start_poller()
    t0 = time.perf_counter()
    emit = sink.emit
    for t in batch:
        emit(t)
    left = sink.close(120)
    elapsed = time.perf_counter() - t0
    return {"trades": trades, "seconds": elapsed, "per_s": trades / elapsed, "undelivered": left,
            "failed": sink.failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trades", type=int, default=300_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=0, help="core the producer is pinned to")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.trades, args.cpu)))
        return

    import harness

    work = Path(tempfile.mkdtemp(prefix="bench-security-"))
    plain = harness.start_kafka(work / "plain")
    secure = harness.start_kafka(work / "secure", secure=True)
    try:
        for node in (plain, secure):
            harness.create_topic_with(node, "bench.trades", partitions=6)
        # the producer user may write the topic, as the bundle's ACLs allow
        harness.allow_producer(secure, "bench.trades")
        envs = {"PLAINTEXT": {**plain.client_env(None), "KAFKA_TRADES_TOPIC": "bench.trades"},
                "SASL_SSL": {**secure.client_env("cryptomon-producer"), "KAFKA_TRADES_TOPIC": "bench.trades"}}
        runs: dict[str, list[dict]] = {k: [] for k in envs}
        for i in range(args.repeats):
            for name, env in envs.items():
                res = subprocess.run([sys.executable, __file__, "--trades", str(args.trades), "--cpu", str(args.cpu),
                                      "--child", json.dumps(env)], capture_output=True, text=True, check=False)
                if res.returncode != 0:
                    raise SystemExit(f"{name} run failed:\n{res.stderr[-3000:]}")
                out = json.loads(res.stdout.strip().splitlines()[-1])
                runs[name].append(out)
                print(f"repeat {i + 1} {name:9s} {out['per_s']:>10,.0f} trades/s "
                      f"({out['seconds']:.2f} s, undelivered {out['undelivered']}, failed {out['failed']})", flush=True)
        med = {k: statistics.median(r["per_s"] for r in v) for k, v in runs.items()}
        ratio = med["SASL_SSL"] / med["PLAINTEXT"]
        summary = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "trades_per_run": args.trades,
                   "median_trades_per_s": {k: round(v) for k, v in med.items()},
                   "ratio_sasl_ssl_over_plaintext": round(ratio, 3), "target": 0.7,
                   "all_delivered": all(r["undelivered"] == 0 and r["failed"] == 0 for v in runs.values() for r in v)}
        print(json.dumps(summary, indent=2))
    finally:
        plain.stop()
        secure.stop()


if __name__ == "__main__":
    main()
