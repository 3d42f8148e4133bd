"""The real `cryptomon-producer` process against replay servers and a real Kafka broker:
every trade lands exactly once in the trades topic, through drops, shutdown notices, cuts,
gaps, bad frames and error replies; SIGTERM flushes and exits 0; Kafka down or a missing
topic at start means waiting, not crashing."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import harness
import pytest
from cryptomon.producer.registry import adapter_class, replay_class
from cryptomon.producer.schema import Trade
from cryptomon.replay.binance import BinanceReplay
from cryptomon.replay.coinbase import CoinbaseReplay

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "services"
FAST = {"PRODUCER_BACKOFF_INITIAL_S": "0.05", "PRODUCER_BACKOFF_MAX_S": "0.3", "PRODUCER_ACK_TIMEOUT_S": "1",
        "PRODUCER_STATS_INTERVAL_S": "1"}


class Producer:
    def __init__(self, tmp_path: Path, exchange: str, env: dict[str, str], *args: str) -> None:
        self.log_path = tmp_path / f"producer-{exchange}-{uuid.uuid4().hex[:6]}.log"
        self.out_path = self.log_path.with_suffix(".out")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(
            ("KAFKA_", "PRODUCER_", "BINANCE_", "COINBASE_", "KRAKEN_", "OKX_", "BYBIT_", "MOCK_"))}
        full_env.update({"PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1", **FAST, **env})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cryptomon.producer.cli", exchange, *args], cwd=tmp_path, env=full_env,
            stdout=self.out_path.open("wb"), stderr=self.log_path.open("wb"))

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in producer log:\n{self.log[-3000:]}")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def check_exactly_once(bootstrap: str, topic: str, expected: dict[tuple[str, int], Trade | None]) -> list[Trade]:
    """Every expected (key, trade id) once, nothing else; each key in one partition, in order."""
    msgs = harness.consume_all(bootstrap, topic, expected=None, timeout=60, idle=3)
    seen = collections.Counter()
    partitions: dict[str, set[int]] = collections.defaultdict(set)
    order: dict[str, list[int]] = collections.defaultdict(list)
    trades = []
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        t = Trade.from_json(m.value())
        key = m.key().decode()
        assert key == f"{t.exchange}:{t.symbol}"
        seen[(key, int(t.trade_id))] += 1
        partitions[key].add(m.partition())
        order[key].append(int(t.trade_id))
        trades.append(t)
    dupes = {k: n for k, n in seen.items() if n > 1}
    assert not dupes, f"duplicates in Kafka: {list(dupes)[:5]}"
    assert set(seen) == set(expected), (
        f"missing {sorted(set(expected) - set(seen))[:5]}, unexpected {sorted(set(seen) - set(expected))[:5]}")
    for key, ids in order.items():
        assert len(partitions[key]) == 1 and ids == sorted(ids), f"{key} not ordered in one partition"
    return trades


def test_binance_each_trade_exactly_once_through_faults(kafka_bootstrap, tmp_path):
    topic = f"trades.raw.bn-{uuid.uuid4().hex[:6]}"
    harness.create_topic(kafka_bootstrap, topic, partitions=3)
    with BinanceReplay(["BTCUSDT", "ETHUSDT", "BNBUSDT"], ping_interval=1.0, pong_timeout=5,
                       replay_on_subscribe=100_000) as srv:
        p = Producer(tmp_path, "binance", {
            "BINANCE_SYMBOLS": "BTCUSDT,ETHUSDT,BNBUSDT", "BINANCE_STREAM_URL": srv.url + "/stream",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TRADES_TOPIC": topic})
        try:
            assert srv.wait_connections(1, 60), p.log
            published = srv.publish(200)
            srv.drop()                                   # network failure: no close frame
            published += srv.publish(100)                # happens while we are away
            assert srv.wait_connections(1, 30)
            srv.send_raw("{oops")                        # bad frames: counted, never fatal
            srv.send_raw(b"\x00binary")
            srv.send_raw('{"stream":"btcusdt@depth","data":{"e":"depthUpdate"}}')
            srv.send_raw('{"code":3,"msg":"Invalid JSON"}')
            published += srv.publish(100)
            srv.shutdown_notice()                        # reconnect at once
            published += srv.publish(100)
            p.wait_log("reconnecting now: serverShutdown")
            assert srv.wait_connections(1, 30)
            srv.close_all(1001, "24h connection limit")  # the 24 h cut
            published += srv.publish(100)
            harness.consume_all(kafka_bootstrap, topic, expected=len(published), timeout=60)
            time.sleep(1.0)
            assert p.terminate() == 0, p.log
        finally:
            p.kill()
        pongs, rate_closes = srv.stats.pongs, srv.stats.rate_limit_closes
    expected = {(f"binance:{t_sym}", t.trade_id): None for t_sym, t in
                [(sym, t) for sym in ("BTC-USDT", "ETH-USDT", "BNB-USDT") for t in []]}
    by_symbol = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT", "BNBUSDT": "BNB-USDT"}
    # publish() returns trades market by market; map them back through the server's tapes.
    for raw, norm in by_symbol.items():
        for t in srv.markets[raw].tape:
            expected[(f"binance:{norm}", t.trade_id)] = None
    assert len(expected) == len(published) == 1800
    trades = check_exactly_once(kafka_bootstrap, topic, expected)
    tape = {(raw, t.trade_id): t for raw in by_symbol for t in srv.markets[raw].tape}
    for t in trades[:50]:
        src = tape[(t.raw_symbol, int(t.trade_id))]
        assert (t.price, t.size) == (src.price(8), src.size(8))
        assert t.side == ("sell" if src.buyer_maker else "buy")
    log = p.log
    assert "malformed frame" in log and "unknown frame" in log and "error reply" in log
    assert re.search(r"stopped: trades=1800 .*malformed=2 unknown=1 errors=1 .*undelivered=0", log), log[-2000:]
    assert "delivery failures=0" in log
    assert pongs >= 1 and rate_closes == 0


def test_coinbase_each_trade_exactly_once_with_gaps_and_last_match(kafka_bootstrap, tmp_path):
    topic = f"trades.raw.cb-{uuid.uuid4().hex[:6]}"
    harness.create_topic(kafka_bootstrap, topic, partitions=3)

    def delivered() -> None:  # wait until Kafka holds every trade the server has sent so far
        harness.consume_all(kafka_bootstrap, topic, expected=len(srv.sent), timeout=60)

    with CoinbaseReplay(["BTC-USD", "ETH-USD"], heartbeat_interval=0.2) as srv:
        srv.publish(5)
        srv.error_next_subscribes = 1  # first subscribe fails: error, then reconnect with backoff
        p = Producer(tmp_path, "coinbase", {
            "COINBASE_PRODUCTS": "BTC-USD,ETH-USD", "COINBASE_STREAM_URL": srv.url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TRADES_TOPIC": topic})
        try:
            assert srv.wait_connections(1, 60), p.log
            srv.publish(100)
            srv.gap(7, "BTC-USD")          # 7 trades nobody sees: a gap, never in Kafka
            srv.publish(100)
            delivered()                    # so the late copy below really comes after the original
            srv.out_of_order("ETH-USD", back=5)
            time.sleep(0.5)
            srv.drop()
            srv.publish(50)                # made while we are away: lost, except each last_match
            assert srv.wait_connections(1, 30)
            srv.send_raw('{"type":"ticker","product_id":"BTC-USD"}')
            srv.send_raw("[]")
            srv.publish(50)
            delivered()
            time.sleep(1.0)
            assert p.terminate() == 0, p.log
        finally:
            p.kill()
    expected = {(f"coinbase:{sym}", tid): None for sym, tid in srv.sent}
    # Two connections each began with a last_match per product; the first one's were new trades.
    assert len(expected) == 2 * 1 + 2 * 200 + 2 * 1 + 2 * 50
    trades = check_exactly_once(kafka_bootstrap, topic, expected)
    tape = {(sym, t.trade_id): t for sym, m in srv.markets.items() for t in m.tape}
    for t in trades[:50]:
        src = tape[(t.symbol, int(t.trade_id))]
        assert t.side == ("sell" if src.buyer_maker else "buy")  # maker bought -> taker sold
        assert (t.price, t.size) == (src.price(2), src.size(8))
    log = p.log
    assert "sequence gap on BTC-USD" in log and "out-of-order match on ETH-USD" in log
    assert "injected failure" in log
    # Gaps: the injected one on BTC-USD, plus one per product across the reconnect.
    assert re.search(rf"stopped: trades={len(expected)} .*malformed=1 unknown=1 errors=\d+ gaps=3 .*out_of_order=1",
                     log), log[-2000:]


def test_missing_topic_then_sigterm_flushes_everything(kafka_bootstrap, tmp_path):
    topic = f"trades.raw.mock-{uuid.uuid4().hex[:6]}"
    p = Producer(tmp_path, "mock", {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TRADES_TOPIC": topic,
                                    "MOCK_RATE": "500", "MOCK_DIVERGE_BPS": "30"})
    try:
        p.wait_log(rf"topic {re.escape(topic)} does not exist.*retrying in")
        assert p.proc.poll() is None
        harness.create_topic(kafka_bootstrap, topic, partitions=3)
        p.wait_log("Kafka ready")
        time.sleep(2)
        assert p.terminate() == 0, p.log
    finally:
        p.kill()
    produced = int(re.search(r"produced=(\d+) undelivered=0", p.log).group(1))
    assert produced > 1000
    msgs = harness.consume_all(kafka_bootstrap, topic, expected=produced, timeout=60)
    assert len(msgs) == produced  # everything handed to the producer before SIGTERM was delivered
    keys = collections.Counter(m.key().decode() for m in msgs)
    assert set(keys) == {f"{e}:{s}" for e in ("binance", "coinbase") for s in ("BTC-USDT", "ETH-USDT")}


def test_kafka_unreachable_at_start_waits_and_exits_cleanly(tmp_path):
    port = harness.free_port()
    p = Producer(tmp_path, "mock", {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    try:
        p.wait_log(rf"Kafka not reachable at 127.0.0.1:{port}.*retrying in", timeout=60)
        p.wait_log(r"retrying in.*\n.*retrying in", timeout=60)  # keeps trying
        assert p.terminate() == 0, p.log
    finally:
        p.kill()
    assert "Traceback" not in p.log


def test_stdout_mode_prints_normalized_json_lines(tmp_path):
    with BinanceReplay(["BTCUSDT"], rate=200) as srv:
        p = Producer(tmp_path, "binance", {"BINANCE_SYMBOLS": "BTCUSDT", "BINANCE_STREAM_URL": srv.url + "/stream",
                                           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "--stdout")
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and p.out_path.read_text().count("\n") < 50:
                time.sleep(0.1)
            assert p.terminate() == 0, p.log
        finally:
            p.kill()
    lines = p.out_path.read_text().splitlines()
    assert len(lines) >= 50
    trades = [Trade.from_json(line) for line in lines]
    assert {t.symbol for t in trades} == {"BTC-USDT"}
    assert json.loads(lines[0])["exchange"] == "binance"
    assert "Kafka" not in p.log  # never touched the broker


BYBIT_ID_BASE = 2_290_000_000_000_000_000


def wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def trade_key(t: Trade) -> tuple[str, int]:
    """(raw symbol, the replay tape's trade id) of a produced trade."""
    tid = int(t.trade_id)
    return t.raw_symbol, tid - BYBIT_ID_BASE if t.exchange == "bybit" else tid


def run_faults(exchange: str, srv, delivered: Callable[[int], None]) -> None:
    """Live trades, an abrupt drop with trades made while away, bad frames, more trades.
    `delivered(n)` waits until the server has sent at least n trades and the producer has
    passed on everything the server sent."""
    live = srv.publish(50)
    delivered(len(live))
    srv.drop()
    srv.publish(20)  # made while away: Kraken's snapshot recovers them; OKX and Bybit may replay or lose them
    assert srv.wait_connections(1, 30)
    srv.send_raw("{not json")
    srv.send_raw(b"\x00binary")
    last = srv.publish(30)
    delivered(len(live) + len(last))


def new_exchange_env(exchange: str, srv) -> tuple[dict[str, str], list[str]]:
    cls = adapter_class(exchange)
    raws = [cls.parse_symbol(s).raw for s in cls.default_symbols.split(",")]
    return {cls.symbols_var: cls.default_symbols, cls.url_var: srv.url + cls.replay_path,
            cls.rest_var: srv.url.replace("ws://", "http://")}, raws


@pytest.mark.parametrize("exchange", ["kraken", "okx", "bybit"])
def test_new_exchanges_stdout_prints_exactly_the_expected_trades(exchange, tmp_path):
    """`cryptomon-producer kraken|okx|bybit --stdout`: every trade the server delivered (and, for
    Kraken, the ones its snapshot recovers after the drop) exactly once, nothing else."""
    with replay_class(exchange)(replay_on_subscribe=0 if exchange == "kraken" else 1000) as srv:
        env, raws = new_exchange_env(exchange, srv)
        for raw in raws:
            srv.market(raw)
        srv.publish(5)  # history before we connect (Kraken's first snapshot: skipped)
        p = Producer(tmp_path, exchange, {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "--stdout")

        def lines() -> list[str]:
            return p.out_path.read_text().splitlines()

        def delivered(at_least: int) -> None:
            wait(lambda: len(srv.sent) >= at_least, "the server to send")
            wait(lambda: len({trade_key(Trade.from_json(x)) for x in lines()}) >= len(srv.sent), "stdout")

        try:
            assert srv.wait_connections(1, 60), p.log
            time.sleep(0.5)  # acknowledged
            run_faults(exchange, srv, delivered)
            time.sleep(1.0)
            assert p.terminate() == 0, p.log
        finally:
            p.kill()
    trades = [Trade.from_json(x) for x in lines()]
    keys = [trade_key(t) for t in trades]
    assert len(keys) == len(set(keys)), "duplicates on stdout"
    assert set(keys) == srv.sent, (sorted(srv.sent - set(keys))[:5], sorted(set(keys) - srv.sent)[:5], p.log[-3000:])
    assert len(keys) >= 2 * 80
    assert {t.exchange for t in trades} == {exchange} and {t.raw_symbol for t in trades} == set(raws)
    tape = {(sym, t.trade_id): t for sym, m in srv.markets.items() for t in m.tape}
    for t in trades:
        src = tape[trade_key(t)]
        assert t.side == ("sell" if src.buyer_maker else "buy")
        assert t.price == src.price(2)
    assert re.search(r"stopped: trades=\d+ duplicates=\d+ malformed=2 ", p.log), p.log[-2000:]


@pytest.mark.parametrize("exchange", ["kraken", "okx", "bybit"])
def test_new_exchanges_each_trade_exactly_once_in_kafka(exchange, kafka_bootstrap, tmp_path):
    topic = f"trades.raw.{exchange}-{uuid.uuid4().hex[:6]}"
    harness.create_topic(kafka_bootstrap, topic, partitions=3)
    with replay_class(exchange)(replay_on_subscribe=0 if exchange == "kraken" else 1000) as srv:
        env, raws = new_exchange_env(exchange, srv)
        for raw in raws:
            srv.market(raw)

        def delivered(at_least: int) -> None:
            wait(lambda: len(srv.sent) >= at_least, "the server to send")
            harness.consume_all(kafka_bootstrap, topic, expected=len(srv.sent), timeout=60)

        p = Producer(tmp_path, exchange, {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                                          "KAFKA_TRADES_TOPIC": topic})
        try:
            assert srv.wait_connections(1, 60), p.log
            time.sleep(0.5)
            run_faults(exchange, srv, delivered)
            time.sleep(1.0)
            assert p.terminate() == 0, p.log
        finally:
            p.kill()
    cls = adapter_class(exchange)
    symbol_of = {raw: cls.parse_symbol(raw).symbol for raw in raws}
    expected = {(f"{exchange}:{symbol_of[raw]}", tid + (BYBIT_ID_BASE if exchange == "bybit" else 0)): None
                for raw, tid in srv.sent}
    try:
        trades = check_exactly_once(kafka_bootstrap, topic, expected)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nproducer log:\n{p.log[-4000:]}") from None
    assert len(trades) >= 160 and "delivery failures=0" in p.log
