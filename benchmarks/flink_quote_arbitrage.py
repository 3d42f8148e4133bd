"""Throughput and quote-to-alert latency of the quote arbitrage job (real Kafka + Flink).

    ~/.cache/cryptomon/venv/bin/python benchmarks/flink_quote_arbitrage.py [--modes thread,process]
        [--coalesce-ms 20[,0,...]] [--exchanges 5] [--assets 50] [--quotes 5000000]
        [--latency-rate 50000] [--latency-seconds 60] [--skip-throughput] [--skip-latency] [--out FILE.json]

Data: `--exchanges` venues x `--assets` assets, quoted round-robin, every book half a basis point
either side of the asset's mid. Venue 0 of each asset jumps 100 bps up for 200 ms every 2 s
(assets take turns), which opens an episode on every pair (buy elsewhere, sell on venue 0)
and closes it on the way back: about 8 alerts per asset per 2 s. All fees are 10 bps, the
threshold 10 bps net, no minimum notional.

Throughput: `--quotes` quotes are loaded first, with received_ts in the future (the job counts a
quote from the future as age 0, so a backlog never turns stale), then the job starts from the
earliest offset. Rate = quotes through the job: records the source vertex (Kafka source + SQL
filter) has written, between its first and last reading of the REST API (refreshed every
second here) / the time between them (start-up not counted), and per CPU second of the
TaskManager (its JVM and, in process mode, its Python workers). The source cannot run ahead
of the rest by more than the network buffers, so this is the rate the whole job sustains.
`python_reads` is how many records the Python function read (with coalescing: one per market
and window).

Latency: the job runs live; one producer process sends `--latency-rate` quotes/s stamped with
the current time as received_ts. The alert topic uses LogAppendTime, so each alert's Kafka
timestamp is when the broker wrote it. Latency = that timestamp - the alert's event_ms (the
received_ts of the quote that opened or closed the episode), for open and reverted-close alerts.
With coalescing that quote is the newest of its window, so this measure leaves out the time an
earlier quote showing the same change waited in the window; `from_first_quote_ms` counts from
the first quote of venue 0 that showed the jump (open) or its end (close), as the producer
noted them: the delay a trader would see. Slow alerts (above the p95) are compared with the
checkpoints' [trigger, acknowledged] intervals from the REST API.

The machine this runs on may be shared: the load average before and after each run is in the
results, and the numbers are only as good as the CPU the job got.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import harness  # noqa: E402

JOB = REPO / "flink_jobs" / "quote_arbitrage.py"
PYFS = [REPO / "flink_jobs" / "flink_common.py", REPO / "flink_jobs" / "kafka_settings.py"]
VENUES = [("binance", "USDT"), ("coinbase", "USD"), ("kraken", "USD"), ("okx", "USDT"), ("bybit", "USDT")]
MIDS = [43000.0, 2300.0, 60.0, 0.6, 0.08, 0.4, 25.0, 15.0, 5.0, 70.0]


class Quotes:
    """The n-th quote of the data set at time ts_ms, as (key, JSON bytes)."""

    def __init__(self, exchanges: int, assets: int) -> None:
        self.venues = [VENUES[i] if i < len(VENUES) else (f"venue{i}", "USDT") for i in range(exchanges)]
        self.assets = [f"A{i:03d}" for i in range(assets)]
        self.exchanges = exchanges

    def venue_asset(self, n: int) -> tuple[int, int]:
        return n % self.exchanges, (n // self.exchanges) % len(self.assets)

    @staticmethod
    def jumped(a: int, ts_ms: int) -> bool:
        """Venue 0 of asset a is 100 bps up at ts_ms (200 ms of every 2 s, assets in turn)."""
        return (ts_ms // 200) % 10 == a % 10

    def make(self, n: int, ts_ms: int) -> tuple[bytes, bytes]:
        e, a = self.venue_asset(n)
        exchange, quote_ccy = self.venues[e]
        mid = MIDS[a % len(MIDS)] * (1 + a / 1000)
        if e == 0 and self.jumped(a, ts_ms):
            mid *= 1.01
        symbol = f"{self.assets[a]}-{quote_ccy}"
        bid, ask = mid * (1 - 0.00005), mid * (1 + 0.00005)
        value = (f'{{"exchange":"{exchange}","symbol":"{symbol}","raw_symbol":"{symbol}","bid":"{bid:.8f}",'
                 f'"bid_size":"1.5","ask":"{ask:.8f}","ask_size":"1.5","exchange_ts":null,'
                 f'"received_ts":{ts_ms},"sequence":{n}}}')
        return f"{exchange}:{symbol}".encode(), value.encode()


CHECKPOINT_INTERVAL_MS = [2000]  # --checkpoint-interval-ms of the benchmark


def job_args(bootstrap: str, quotes: str, out: str, startup: str, mode: str, coalesce_ms: int) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--quotes-topic", quotes, "--output-topic", out,
            "--group-id", f"bench-{out}", "--startup-mode", startup,
            "--checkpoint-interval-ms", str(CHECKPOINT_INTERVAL_MS[0]),
            "--taker-fees-bps", "binance=10,coinbase=10,kraken=10,okx=10,bybit=10",
            "--min-net-bps", "10", "--min-notional-usd", "0", "--python-execution-mode", mode,
            "--coalesce-ms", str(coalesce_ms)]


def submit(cluster: harness.FlinkCluster, args: list[str]) -> str:
    job_id = cluster.run_python_job(JOB, *args, pyfs=PYFS)
    cluster.wait_job_state(job_id, "RUNNING", timeout=240)
    return job_id


def new_topics(bootstrap: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    quotes, out = f"quotes.{suffix}", f"alerts.{suffix}"
    harness.create_topic(bootstrap, quotes, partitions=3)
    harness.create_topic(bootstrap, out, partitions=3, config={"message.timestamp.type": "LogAppendTime"})
    return quotes, out


def process_vertex_read(cluster: harness.FlinkCluster, job_id: str) -> int:
    for v in cluster.rest(f"/jobs/{job_id}")["vertices"]:
        if v["name"].startswith("quote-arbitrage"):
            return int(v["metrics"]["read-records"])
    raise RuntimeError("no quote-arbitrage vertex")


def source_vertex_written(cluster: harness.FlinkCluster, job_id: str) -> int:
    """Quotes through the job: what the source vertex (Kafka source and SQL filter) wrote."""
    vertices = cluster.rest(f"/jobs/{job_id}")["vertices"]
    source = next((v for v in vertices if "Source" in v["name"]), vertices[0])  # listed in topological order
    return int(source["metrics"]["write-records"])


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on (the name may hold spaces)


def taskmanager_cpu_s(workdir: Path) -> float:
    """CPU seconds used so far by the cluster's TaskManager JVM and its descendants (Python
    workers in process mode): on a shared machine the rate per CPU second is the stable number."""
    parents: dict[int, int] = {}
    roots = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        fields = _stat(int(proc.name))
        if fields is None:
            continue
        parents[int(proc.name)] = int(fields[1])
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"TaskManagerRunner" in cmd and str(workdir).encode() in cmd:
            roots.append(int(proc.name))
    total = 0.0
    for pid in parents:
        p = pid
        while p > 1 and p not in roots:
            p = parents.get(p, 0)
        if p in roots:
            fields = _stat(pid)
            if fields:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def throughput(cluster: harness.FlinkCluster, bootstrap: str, mode: str, coalesce_ms: int, n: int,
               data: Quotes) -> dict:
    quotes, out = new_topics(bootstrap)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 2_000_000})
    future = int(time.time() * 1000) + 3_600_000
    started = time.monotonic()
    for i in range(n):
        key, value = data.make(i, future + i // 50)  # 50 quotes per ms of "received" time
        while True:
            try:
                p.produce(quotes, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    load_s = time.monotonic() - started
    before = loadavg()
    job_id = submit(cluster, job_args(bootstrap, quotes, out, "earliest-offset", mode, coalesce_ms))
    # (time, quotes through the source, TaskManager CPU s) whenever the REST API's count moves
    # (equal readings between its refreshes are skipped).
    samples: list[tuple[float, int, float]] = []
    loads = []
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        through = source_vertex_written(cluster, job_id)
        if through and (not samples or through != samples[-1][1]):
            samples.append((time.monotonic(), through, taskmanager_cpu_s(cluster.workdir)))
            loads.append(os.getloadavg()[0])
        if through >= n:
            break
        time.sleep(0.25)
    time.sleep(3)  # the last windows, and a metrics refresh
    python_reads = process_vertex_read(cluster, job_id)
    cluster.cancel_all()
    (t0, r0, c0), (t1, r1, c1) = samples[0], samples[-1]
    rate = (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0
    per_cpu = (r1 - r0) / (c1 - c0) if c1 > c0 else 0.0
    alerts = len(harness.consume_all(bootstrap, out, timeout=30, idle=3))
    return {"mode": mode, "coalesce_ms": coalesce_ms, "quotes": n, "through": r1, "quotes_per_s": round(rate),
            "quotes_per_taskmanager_cpu_s": round(per_cpu), "taskmanager_cores_used": round((c1 - c0) / (t1 - t0), 2)
            if t1 > t0 else None, "measured_s": round(t1 - t0, 1), "samples": len(samples),
            "python_reads": python_reads, "load_s": round(load_s, 1), "alerts": alerts,
            "loadavg_before": before, "loadavg_1min_during_max": round(max(loads), 2) if loads else None,
            "loadavg_after": loadavg()}


def _produce_live(bootstrap: str, topic: str, rate: int, seconds: int, exchanges: int, assets: int,
                  sent: multiprocessing.Value, changes_file: str = "") -> None:  # type: ignore[valid-type]
    """`rate` quotes/s for `seconds`; with changes_file, [asset, "open"|"close", received_ts]
    of every first venue-0 quote after its jump began or ended, as JSON."""
    data = Quotes(exchanges, assets)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "queue.buffering.max.messages": 1_000_000})
    per_tick, tick = rate // 100, 0.01
    start = time.monotonic()
    n = 0
    state: dict[int, bool] = {}
    changes: list[tuple[str, str, int]] = []
    while time.monotonic() - start < seconds:
        now_ms = int(time.time() * 1000)
        for _ in range(per_tick):
            e, a = data.venue_asset(n)
            if e == 0:
                up = data.jumped(a, now_ms)
                if a in state and state[a] != up:
                    changes.append((data.assets[a], "open" if up else "close", now_ms))
                state[a] = up
            key, value = data.make(n, now_ms)
            try:
                p.produce(topic, key=key, value=value)
            except BufferError:
                p.poll(0.01)
            n += 1
        p.poll(0)
        nxt = start + (n // per_tick) * tick
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    p.flush(30)
    sent.value = n
    if changes_file:
        Path(changes_file).write_text(json.dumps(changes))


def percentiles(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    values = sorted(values)

    def pct(q: float) -> int:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {"count": len(values), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": values[-1],
            "mean": round(statistics.fmean(values), 1)}


def first_quote_delays(alerts: list[tuple[str, str, int, int]], changes: list[list]) -> list[int]:
    """Per alert (asset, kind, event_ms, broker_ms): broker_ms - the latest change of that kind
    of the asset's venue 0 at or before event_ms (the first quote that showed it)."""
    by_key: dict[tuple[str, str], list[int]] = {}
    for asset, kind, ts in changes:
        by_key.setdefault((asset, kind), []).append(ts)
    out = []
    for asset, kind, event_ms, broker_ms in alerts:
        earlier = [ts for ts in by_key.get((asset, kind), []) if ts <= event_ms]
        if earlier:
            out.append(broker_ms - max(earlier))
    return out


def checkpoint_overlap(cluster: harness.FlinkCluster, job_id: str, slow: list[tuple[int, int]],
                       span: tuple[int, int]) -> dict:
    """How many slow alerts' [event_ms, broker_ms] overlap a checkpoint's [trigger, last ack],
    against the share of the run's time under a checkpoint."""
    history = cluster.rest(f"/jobs/{job_id}/checkpoints").get("history", [])
    intervals = [(c["trigger_timestamp"], c.get("latest_ack_timestamp") or c["trigger_timestamp"])
                 for c in history if c.get("trigger_timestamp")]
    overlapping = sum(1 for a, b in slow if any(t0 <= b and a <= t1 for t0, t1 in intervals))
    run = max(1, span[1] - span[0])
    covered = sum(max(0, min(t1, span[1]) - max(t0, span[0])) for t0, t1 in intervals)
    durations = sorted(c.get("end_to_end_duration", 0) for c in history)
    return {"slow_alerts": len(slow), "slow_overlapping_a_checkpoint": overlapping,
            "checkpoints": len(intervals), "share_of_time_in_checkpoints": round(covered / run, 3),
            "checkpoint_duration_ms_median": durations[len(durations) // 2] if durations else None,
            "checkpoint_duration_ms_max": durations[-1] if durations else None}


def latency(cluster: harness.FlinkCluster, bootstrap: str, mode: str, coalesce_ms: int, rate: int, seconds: int,
            exchanges: int, assets: int) -> dict:
    quotes, out = new_topics(bootstrap)
    job_id = submit(cluster, job_args(bootstrap, quotes, out, "latest-offset", mode, coalesce_ms))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([out])
    # Warm up: a few seconds of quotes until the first alert shows the job reads and writes.
    sent = multiprocessing.Value("q", 0)
    warm = multiprocessing.Process(target=_produce_live, args=(bootstrap, quotes, 5000, 20, exchanges, assets, sent))
    warm.start()
    first = None
    deadline = time.monotonic() + 120
    while first is None and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            first = msg
    warm.join()
    before = loadavg()
    live_start_ms = int(time.time() * 1000)
    cpu_before = taskmanager_cpu_s(cluster.workdir)
    changes_file = str(cluster.workdir / f"changes-{uuid.uuid4().hex[:8]}.json")
    prod = multiprocessing.Process(target=_produce_live, args=(bootstrap, quotes, rate, seconds, exchanges, assets,
                                                               sent, changes_file))
    started = time.monotonic()
    prod.start()
    delays: dict[str, list[int]] = {"open": [], "reverted": [], "stale": []}
    timed: list[tuple[str, str, int, int]] = []  # (asset, open|close, event_ms, broker_ms), open and reverted
    loads = []
    next_load = 0.0
    while prod.is_alive() or time.monotonic() - started < seconds + 10:
        if time.monotonic() >= next_load:
            loads.append(os.getloadavg()[0])
            next_load = time.monotonic() + 1
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        alert = json.loads(msg.value())
        if alert["event_ms"] < live_start_ms:
            continue  # warm-up
        kind = "open" if alert["episode_state"] == "open" else alert["close_reason"]
        broker_ms = msg.timestamp()[1]
        delays[kind].append(broker_ms - alert["event_ms"])
        if kind in ("open", "reverted"):
            timed.append((alert["asset"], "open" if kind == "open" else "close", alert["event_ms"], broker_ms))
    prod.join()
    elapsed = time.monotonic() - started
    tm_cores = (taskmanager_cpu_s(cluster.workdir) - cpu_before) / elapsed
    after = loadavg()
    busy = cluster.rest(f"/jobs/{job_id}")["vertices"]
    changes = json.loads(Path(changes_file).read_text()) if Path(changes_file).exists() else []
    Path(changes_file).unlink(missing_ok=True)
    from_first = first_quote_delays(timed, changes)
    named = sorted(b - e for _, _, e, b in timed)
    p95 = named[int(0.95 * len(named))] if named else 0
    slow = [(e, b) for _, _, e, b in timed if b - e > p95]
    overlap = checkpoint_overlap(cluster, job_id, slow, (live_start_ms, int(time.time() * 1000)))
    cluster.cancel_all()
    c.close()
    return {"mode": mode, "coalesce_ms": coalesce_ms, "rate_target": rate, "sent": sent.value,
            "rate_sent": round(sent.value / seconds), "seconds": seconds, "elapsed": round(elapsed, 1),
            "open_and_reverted_ms": percentiles(delays["open"] + delays["reverted"]),
            "from_first_quote_ms": percentiles(from_first),
            "open_ms": percentiles(delays["open"]), "reverted_ms": percentiles(delays["reverted"]),
            "stale_close_after_expiry_ms": percentiles(delays["stale"]), "taskmanager_cores_used": round(tm_cores, 2),
            "checkpoint_interval_ms": CHECKPOINT_INTERVAL_MS[0], "slow_alerts_vs_checkpoints": overlap,
            "loadavg_before": before, "loadavg_1min_during_mean": round(statistics.fmean(loads), 2) if loads else None,
            "loadavg_1min_during_max": round(max(loads), 2) if loads else None, "loadavg_after": after,
            "vertices": [v["name"][:60] for v in busy]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="thread", help="python.execution-mode values to compare")
    ap.add_argument("--coalesce-ms", default="20", help="--coalesce-ms values of the job to compare, e.g. 20,0")
    ap.add_argument("--exchanges", type=int, default=5)
    ap.add_argument("--assets", type=int, default=50)
    ap.add_argument("--quotes", type=int, default=5_000_000)
    ap.add_argument("--latency-rate", type=int, default=50_000)
    ap.add_argument("--latency-seconds", type=int, default=60)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--checkpoint-interval-ms", type=int, default=2000, help="the job's checkpoint interval")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    CHECKPOINT_INTERVAL_MS[0] = a.checkpoint_interval_ms
    data = Quotes(a.exchanges, a.assets)
    work = Path(tempfile.mkdtemp(prefix="quote-bench-"))
    kafka = harness.start_kafka(work / "kafka")
    lib = work / "flink" / "lib"
    lib.mkdir(parents=True)
    jar = next((harness.flink_home() / "opt").glob("flink-python-*.jar"))
    (lib / jar.name).symlink_to(jar)  # thread mode: pemja from Flink's class loader (see the job)
    # Metrics in the REST API every second (default 10 s): more samples for the rate; a longer
    # checkpoint history for the comparison with slow alerts.
    cluster = harness.start_flink(work / "flink", extra_conf={
        "metrics": {"fetcher": {"update-interval": 1000}}, "web": {"checkpoints": {"history": 200}}})
    results: dict = {"cpus": os.cpu_count(), "exchanges": a.exchanges, "assets": a.assets,
                     "throughput": [], "latency": []}
    try:
        for mode in a.modes.split(","):
            for coalesce_ms in (int(ms) for ms in a.coalesce_ms.split(",")):
                if not a.skip_throughput:
                    r = throughput(cluster, kafka.bootstrap, mode, coalesce_ms, a.quotes, data)
                    print(json.dumps(r), flush=True)
                    results["throughput"].append(r)
                if not a.skip_latency:
                    r = latency(cluster, kafka.bootstrap, mode, coalesce_ms, a.latency_rate, a.latency_seconds,
                                a.exchanges, a.assets)
                    print(json.dumps(r), flush=True)
                    results["latency"].append(r)
    finally:
        cluster.stop()
        kafka.stop()
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
