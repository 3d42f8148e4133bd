"""The quote arbitrage job on a real Flink cluster against the real Kafka broker.

Quotes are produced live, stamped with the current time as received_ts (the job measures a
quote's age in processing time), in a scripted order: an opportunity that opens, widens and
narrows without a second message, and closes on reversal; one that closes because both venues
go silent (only the job's processing-time timer can see that); a spread that is positive
before fees and not after; a crossed, a locked and a zero-size book; a quote older than the
one held for its market; a non-USD market; a line that is not JSON. The alert topic must then
hold exactly the four messages of the two episodes, every field compared with values computed
here, and the job's drop counters must show each bad quote. That scenario runs with
`--coalesce-ms 0` (every quote reaches the Python function): it depends on each quote being
looked at on its own, which windows of processing time cannot promise on a busy machine (two
quotes sent 50 ms apart can be read in one fetch).

The coalescing (the default, 20 ms windows) has a scenario of its own whose outcome does not
depend on where the window bounds fall: a burst of quotes of one market, among them a late
one (lower sequence) that would open a large opportunity, then a newer one that opens a
smaller one. Exactly that smaller one must be alerted, and every quote must be accounted for:
either read by the Python function or counted in `quotesCoalesced`.

The cluster has flink-python in lib/ (not only in opt/): the job runs its Python in thread
mode (embedded in the TaskManager JVM), and pemja, its bridge, can be loaded once per JVM only
on Java 17, so it has to come from Flink's own class loader, not from each job's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import harness
import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "flink_jobs"
JOB = JOBS / "quote_arbitrage.py"
PYFS = [JOBS / "flink_common.py", JOBS / "kafka_settings.py"]
FEES = {"binance": Decimal(10), "coinbase": Decimal(20), "kraken": Decimal(10)}
MAX_AGE_MS = 2000


@pytest.fixture(scope="module")
def flink_py(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.FlinkCluster]:
    """A Flink cluster like the session one, with flink-python in lib/ (what thread mode needs)."""
    workdir = tmp_path_factory.mktemp("flink-py")
    lib = workdir / "lib"
    lib.mkdir()
    jar = next((harness.flink_home() / "opt").glob("flink-python-*.jar"))
    (lib / jar.name).symlink_to(jar)
    cluster = harness.start_flink(workdir)
    yield cluster
    cluster.cancel_all()
    cluster.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


class Quotes:
    """Sends quotes one by one (flushed: the scripted order is the order they reach Kafka)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
        self.sent = 0

    def send(self, exchange: str, symbol: str, bid: str, ask: str, bid_size: str = "5", ask_size: str = "5",
             exchange_ts: int | None = None, sequence: int | None = None, flush: bool = True) -> dict:
        quote = {"exchange": exchange, "symbol": symbol, "raw_symbol": symbol.replace("-", ""), "bid": bid,
                 "bid_size": bid_size, "ask": ask, "ask_size": ask_size, "exchange_ts": exchange_ts,
                 "received_ts": now_ms(), "sequence": sequence}
        self.raw(f"{exchange}:{symbol}", json.dumps(quote).encode(), flush)
        return quote

    def raw(self, key: str, value: bytes, flush: bool = True) -> None:
        self.producer.produce(self.topic, key=key.encode(), value=value)
        self.sent += 1
        if flush:
            assert self.producer.flush(30) == 0


def dec(value: Decimal, places: int | None = None) -> str:
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return format(value.normalize(), "f")


def expected_fields(asset: str, buy: dict, sell: dict) -> dict:
    """What an alert says about buying at `buy`'s ask and selling at `sell`'s bid, computed here."""
    ask, bid = Decimal(buy["ask"]), Decimal(sell["bid"])
    fee_buy, fee_sell = FEES[buy["exchange"]], FEES[sell["exchange"]]
    net = bid * (1 - fee_sell / 10000) - ask * (1 + fee_buy / 10000)
    size = min(Decimal(buy["ask_size"]), Decimal(sell["bid_size"]))
    return {
        "asset": asset, "buy_exchange": buy["exchange"], "buy_symbol": buy["symbol"], "buy_price": buy["ask"],
        "buy_size": buy["ask_size"], "buy_fee_bps": dec(fee_buy), "buy_quote_ms": buy["received_ts"],
        "sell_exchange": sell["exchange"], "sell_symbol": sell["symbol"], "sell_price": sell["bid"],
        "sell_size": sell["bid_size"], "sell_fee_bps": dec(fee_sell), "sell_quote_ms": sell["received_ts"],
        "size": dec(size), "notional_usd": dec(size * ask, 10), "gross_spread_usd": dec(bid - ask),
        "net_spread_usd": dec(net, 10), "net_spread_bps": dec(net * 10000 / ask, 2),
        "net_profit_usd": dec(net * size, 10),
    }


def net_bps(buy: dict, sell: dict) -> str:
    return expected_fields("-", buy, sell)["net_spread_bps"]


def submit(cluster: harness.FlinkCluster, args: list[str]) -> str:
    """As the Ansible role does: the job file alone in a directory, the shared modules by -pyfs."""
    alone = Path(tempfile.mkdtemp(prefix="cryptomon-job-")) / JOB.name
    shutil.copy(JOB, alone)
    job_id = cluster.run_python_job(alone, *args, pyfs=PYFS)
    cluster.wait_job_state(job_id, "RUNNING")
    return job_id


def wait_until_live(bootstrap: str, topic: str, quotes: Quotes) -> None:
    """Open episodes on the WARM asset until one reaches the alert topic: the job reads and
    writes, and the scripted quotes after this arrive well within their max age."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        quotes.send("binance", "WARM-USDT", "99", "100")
        quotes.send("kraken", "WARM-USD", "110", "111")
        if harness.consume_all(bootstrap, topic, timeout=3, idle=1):
            return
        quotes.send("kraken", "WARM-USD", "90", "91")  # close it, so the next round opens again
    raise AssertionError("no WARM alert within 180 s: the job does not process quotes")


def drop_counters(cluster: harness.FlinkCluster, job_id: str,
                  names: tuple[str, ...] = ("quotesCrossed", "quotesBadSize", "quotesMalformed",
                                            "quotesOutOfOrder")) -> dict[str, int]:
    """The job's drop counters from the REST API (which refreshes its metrics every 10 s)."""
    for vertex in cluster.rest(f"/jobs/{job_id}")["vertices"]:
        ids = [m["id"] for m in cluster.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/metrics")
               if m["id"].rsplit(".", 1)[-1] in names]
        if ids:
            values = cluster.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/metrics?get={','.join(ids)}")
            return {v["id"].rsplit(".", 1)[-1]: int(v["value"]) for v in values}
    return {}


def wait_for_counters(cluster: harness.FlinkCluster, job_id: str, expected: dict[str, int]) -> None:
    deadline = time.monotonic() + 40
    seen = drop_counters(cluster, job_id)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(2)
        seen = drop_counters(cluster, job_id)
    assert seen == expected


def start_job(bootstrap: str, cluster: harness.FlinkCluster, *extra: str) -> tuple[str, str, Quotes]:
    """(job id, alert topic, a quote sender) of a new job on new topics."""
    suffix = uuid.uuid4().hex[:8]
    quotes_topic, out_topic = f"quotes.raw.{suffix}", f"arbitrage.{suffix}"
    harness.create_topic(bootstrap, quotes_topic, partitions=3)
    harness.create_topic(bootstrap, out_topic, partitions=3)
    job_id = submit(cluster, [
        "--bootstrap-servers", bootstrap, "--quotes-topic", quotes_topic, "--output-topic", out_topic,
        "--group-id", f"g-{suffix}", "--startup-mode", "earliest-offset", "--checkpoint-interval-ms", "1000",
        "--taker-fees-bps", ",".join(f"{k}={v}" for k, v in FEES.items()),
        "--min-net-bps", "10", "--min-notional-usd", "100", "--max-quote-age-ms", str(MAX_AGE_MS), *extra])
    return job_id, out_topic, Quotes(bootstrap, quotes_topic)


def test_quote_arbitrage_episodes(kafka_bootstrap: str, flink_py: harness.FlinkCluster) -> None:
    bootstrap, cluster = kafka_bootstrap, flink_py
    # Every quote on its own (see the module docstring); coalescing: the next test.
    job_id, out_topic, q = start_job(bootstrap, cluster, "--coalesce-ms", "0")
    wait_until_live(bootstrap, out_topic, q)

    # BTC: opens at 19.9 bps net (buy binance at 100 + 10 bps, sell coinbase at 100.5 - 20 bps),
    # widens to 39.86 and narrows to 29.88 bps without a message, closes at 9.92 bps (<= 10).
    btc_buy = q.send("binance", "BTC-USDT", "99.9", "100", ask_size="5")
    btc_open = q.send("coinbase", "BTC-USD", "100.5", "100.6", bid_size="3")
    btc_peak = q.send("coinbase", "BTC-USD", "100.7", "100.8", bid_size="3")
    btc_still = q.send("coinbase", "BTC-USD", "100.6", "100.8", bid_size="3")
    btc_close = q.send("coinbase", "BTC-USD", "100.4", "100.8", bid_size="3")
    assert [net_bps(btc_buy, s) for s in (btc_open, btc_peak, btc_still, btc_close)] == \
        ["19.9", "39.86", "29.88", "9.92"]

    # ETH: opens at 29.95 bps, then both venues go silent: closed as stale by the timer, at
    # the moment the older quote passed its max age.
    eth_buy = q.send("binance", "ETH-USDT", "1999", "2000", ask_size="1")
    eth_sell = q.send("kraken", "ETH-USD", "2010", "2011", bid_size="1")

    # SOL: 25 and 35 bps before fees, below zero and 4.93 bps after (30 bps of fees): nothing.
    sol_buy = q.send("binance", "SOL-USDT", "99.9", "100")
    sol_25 = q.send("coinbase", "SOL-USD", "100.25", "100.3")
    sol_35 = q.send("coinbase", "SOL-USD", "100.35", "100.4")
    assert (net_bps(sol_buy, sol_25), net_bps(sol_buy, sol_35)) == ("-5.05", "4.93")

    # XRP: coinbase's book crossed, locked, and with a zero size (each would be ~190 bps): nothing.
    q.send("binance", "XRP-USDT", "0.999", "1", bid_size="1000", ask_size="1000")
    q.send("coinbase", "XRP-USD", "1.02", "1.01", bid_size="1000", ask_size="1000")
    q.send("coinbase", "XRP-USD", "1.02", "1.02", bid_size="1000", ask_size="1000")
    q.send("coinbase", "XRP-USD", "1.02", "1.03", bid_size="0", ask_size="1000")

    # DOGE: a quote older than coinbase's held one (lower sequence, earlier exchange time) that
    # would be 1000 bps: dropped.
    t = now_ms()
    q.send("binance", "DOGE-USDT", "0.0999", "0.1", bid_size="10000", ask_size="10000", exchange_ts=t, sequence=10)
    q.send("coinbase", "DOGE-USD", "0.0998", "0.0999", bid_size="10000", ask_size="10000", exchange_ts=t,
           sequence=100)
    q.send("coinbase", "DOGE-USD", "0.11", "0.111", bid_size="10000", ask_size="10000", exchange_ts=t - 1,
           sequence=99)

    # A euro market is not a dollar market, and a line that is not JSON is skipped.
    q.send("binance", "LTC-USDT", "99.9", "100")
    q.send("coinbase", "LTC-EUR", "200", "201")
    q.raw("coinbase:LTC-USD", b"{not json")

    time.sleep(MAX_AGE_MS / 1000 + 3)  # the ETH timer, plus room
    alerts = [json.loads(m.value()) for m in harness.consume_all(bootstrap, out_topic, timeout=60, idle=5)]
    scripted = [a for a in alerts if a["asset"] != "WARM"]
    by_id = {a["alert_id"]: a for a in scripted}
    assert len(by_id) == len(scripted), f"an alert_id twice: {sorted(a['alert_id'] for a in scripted)}"

    btc_episode = f"quote_arbitrage:BTC:binance:coinbase:{btc_open['received_ts']}"
    eth_opened = eth_sell["received_ts"]
    eth_episode = f"quote_arbitrage:ETH:binance:kraken:{eth_opened}"
    eth_closed = min(eth_buy["received_ts"], eth_sell["received_ts"]) + MAX_AGE_MS + 1
    thresholds = {"min_net_bps": "10", "min_profit_usd": "0", "min_notional_usd": "100", "demo_mode": False,
                  "alert_type": "quote_arbitrage", "schema_version": 1, "job": "quote-arbitrage"}
    expected = {
        f"{btc_episode}:open": {
            **expected_fields("BTC", btc_buy, btc_open), **thresholds, "episode_id": btc_episode,
            "episode_state": "open", "close_reason": None, "opened_ms": btc_open["received_ts"],
            "closed_ms": None, "duration_ms": None, "event_ms": btc_open["received_ts"],
            "peak_net_spread_bps": "19.9", "peak_ms": btc_open["received_ts"]},
        f"{btc_episode}:close": {
            **expected_fields("BTC", btc_buy, btc_close), **thresholds, "episode_id": btc_episode,
            "episode_state": "close", "close_reason": "reverted", "opened_ms": btc_open["received_ts"],
            "closed_ms": btc_close["received_ts"], "event_ms": btc_close["received_ts"],
            "duration_ms": btc_close["received_ts"] - btc_open["received_ts"],
            "peak_net_spread_bps": "39.86", "peak_net_profit_usd": "1.1958", "peak_ms": btc_peak["received_ts"]},
        f"{eth_episode}:open": {
            **expected_fields("ETH", eth_buy, eth_sell), **thresholds, "episode_id": eth_episode,
            "episode_state": "open", "close_reason": None, "opened_ms": eth_opened, "closed_ms": None},
        f"{eth_episode}:close": {
            # The last numbers seen while it was open: the same quotes.
            **expected_fields("ETH", eth_buy, eth_sell), **thresholds, "episode_id": eth_episode,
            "episode_state": "close", "close_reason": "stale", "opened_ms": eth_opened,
            "closed_ms": eth_closed, "duration_ms": eth_closed - eth_opened, "event_ms": eth_closed,
            "peak_net_spread_bps": "29.95"},
    }
    assert sorted(by_id) == sorted(expected), json.dumps(scripted, indent=1)[:6000]
    for alert_id, want in expected.items():
        got = {k: by_id[alert_id].get(k) for k in want}
        assert got == want, alert_id
        assert "alert_id" in by_id[alert_id] and by_id[alert_id]["summary"].startswith(alert_id.split(":")[1])
    assert by_id[f"{btc_episode}:close"]["summary"].endswith(
        f"closed (reverted) after {btc_close['received_ts'] - btc_open['received_ts']} ms, peak 39.86 bps")

    wait_for_counters(cluster, job_id, {"quotesCrossed": 2, "quotesBadSize": 1, "quotesMalformed": 0,
                                        "quotesOutOfOrder": 1})
    assert cluster.rest(f"/jobs/{job_id}")["state"] == "RUNNING"
    cluster.rest(f"/jobs/{job_id}", method="PATCH")  # cancel: the next test has its own job


def python_reads(cluster: harness.FlinkCluster, job_id: str) -> int:
    """Records the Python function has read (REST API, refreshed every 10 s)."""
    for vertex in cluster.rest(f"/jobs/{job_id}")["vertices"]:
        if vertex["name"].startswith("quote-arbitrage"):
            return int(vertex["metrics"]["read-records"])
    raise AssertionError("no quote-arbitrage vertex")


def test_coalescing_keeps_the_newest_quote_and_accounts_for_every_quote(
        kafka_bootstrap: str, flink_py: harness.FlinkCluster) -> None:
    bootstrap, cluster = kafka_bootstrap, flink_py
    job_id, out_topic, q = start_job(bootstrap, cluster)  # the default: 20 ms windows
    wait_until_live(bootstrap, out_topic, q)

    # ADA: binance sells at 1; coinbase sends a burst of 200 quotes without a net opportunity
    # (sequence 1..200, bid 0.995: buying coinbase at 0.996 and selling binance at 0.999 nets
    # 0.09 bps), then a late quote (sequence 150) that would net 469 bps, then sequence 201 at
    # 169.6 bps. Wherever the 20 ms windows cut the burst, the late quote is either replaced in
    # its window by a newer one or reaches the book after sequence 200 and is dropped as out
    # of order; sequence 201 is the newest of its window, and the last: it opens, alone.
    buy = q.send("binance", "ADA-USDT", "0.999", "1", bid_size="1000", ask_size="1000", sequence=1)
    for seq in range(1, 201):
        q.send("coinbase", "ADA-USD", "0.995", "0.996", bid_size="1000", ask_size="1000", sequence=seq,
               flush=False)
    q.send("coinbase", "ADA-USD", "1.05", "1.06", bid_size="1000", ask_size="1000", sequence=150, flush=False)
    sell = q.send("coinbase", "ADA-USD", "1.02", "1.03", bid_size="1000", ask_size="1000", sequence=201)
    assert net_bps(buy, sell) == "169.6"
    late = {**sell, "bid": "1.05", "sequence": 150}
    assert net_bps(buy, late) == "469"

    alerts = [json.loads(m.value()) for m in harness.consume_all(bootstrap, out_topic, timeout=60, idle=5)]
    ada = [a for a in alerts if a["asset"] == "ADA"]
    episode = f"quote_arbitrage:ADA:binance:coinbase:{sell['received_ts']}"
    # One episode, opened by sequence 201, closed as stale once the quotes stop (2 s later).
    assert [(a["alert_id"], a["close_reason"]) for a in ada] == [(f"{episode}:open", None),
                                                                 (f"{episode}:close", "stale")], \
        json.dumps(ada, indent=1)[:4000]
    assert {k: ada[0][k] for k in ("sell_price", "sell_quote_ms", "net_spread_bps", "opened_ms")} == \
        {"sell_price": "1.02", "sell_quote_ms": sell["received_ts"], "net_spread_bps": "169.6",
         "opened_ms": sell["received_ts"]}
    assert ada[1]["peak_net_spread_bps"] == "169.6"  # the late 469 bps quote was never used

    # Every quote sent is accounted for: read by Python, or replaced in its window and counted.
    # The function hands the count it has added up to the Flink counter at most every 100 ms,
    # when a quote arrives: one more quote, of another market, long after the burst.
    q.send("kraken", "XLM-USD", "0.099", "0.1")
    deadline = time.monotonic() + 40
    while True:
        counters = drop_counters(cluster, job_id, ("quotesCoalesced", "quotesOutOfOrder", "quotesCrossed"))
        read = python_reads(cluster, job_id)
        if read + counters.get("quotesCoalesced", 0) == q.sent or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert read + counters["quotesCoalesced"] == q.sent, (read, counters, q.sent)
    # The burst was mostly read in a few windows: most of it never reached Python.
    assert counters["quotesCoalesced"] >= 100, counters
    assert counters["quotesOutOfOrder"] <= 1 and counters["quotesCrossed"] == 0, counters
    assert cluster.rest(f"/jobs/{job_id}")["state"] == "RUNNING"
