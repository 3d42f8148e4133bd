"""Kraken, OKX and Bybit adapters against local servers speaking each protocol: acks and refused
subscriptions, snapshots, keepalive rules, abrupt drops with resubscribe, replays deduplicated,
malformed and oversized frames (every exchange, issue 15 defect 6)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from cryptomon.producer.base import WebSocketAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.registry import adapter_class, exchange_names, replay_class
from cryptomon.producer.schema import Trade
from cryptomon.replay.bybit import BybitReplay
from cryptomon.replay.kraken import KrakenReplay
from cryptomon.replay.okx import OkxReplay

pytestmark = pytest.mark.integration

FAST = {"PRODUCER_BACKOFF_INITIAL_S": "0.05", "PRODUCER_BACKOFF_MAX_S": "0.2", "PRODUCER_ACK_TIMEOUT_S": "2"}


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running(adapter: WebSocketAdapter) -> Iterator[list[Trade]]:
    out: list[Trade] = []
    stop = threading.Event()
    t = threading.Thread(target=adapter.run, args=(out.append, stop), daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive(), "adapter did not stop"


def adapter(exchange: str, srv, symbols: str, **env: str) -> WebSocketAdapter:
    cls = adapter_class(exchange)
    config = ProducerConfig.from_env(exchange, {cls.symbols_var: symbols, cls.url_var: srv.url + cls.replay_path,
                                                **FAST, **env})
    return cls(config)


def ids(trades: list[Trade], symbol: str) -> list[int]:
    return [int(t.trade_id) for t in trades if t.symbol == symbol]


def test_kraken_snapshot_skipped_first_then_recovers_missed_trades_after_a_drop(caplog):
    caplog.set_level(logging.INFO)
    with KrakenReplay(["BTC/USD", "ETH/USD"], heartbeat_interval=0.2) as srv:
        history = srv.publish(5)  # before we start: history in the first snapshot, skipped
        time.sleep(0.01)
        a = adapter("kraken", srv, "XBT/USD,ETH/USD", PRODUCER_STALE_AFTER_S="1",
                    PRODUCER_BACKOFF_INITIAL_S="1", PRODUCER_BACKOFF_MAX_S="1")
        with running(a) as out:
            wait_for(lambda: srv.ready_count() == 1 and not a.pending_acks, what="subscribed")
            live = srv.publish(10)
            wait_for(lambda: len(out) == 20, what="live trades")
            srv.drop()                      # abrupt: no close frame; we come back after ~0.5-1 s
            missed = srv.publish(10)        # made while away: the next snapshot carries them
            wait_for(lambda: srv.stats.connections == 2 and srv.ready_count() == 1, what="resubscribed")
            wait_for(lambda: len(out) == 40, what="missed trades from the snapshot")
            time.sleep(1.5)                 # heartbeats alone keep the 1 s watchdog quiet
            srv.send_raw("{not json")
            srv.send_raw('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"}]}')
            after = srv.publish(3)
            wait_for(lambda: len(out) == 46, what="trades after bad frames")
    assert srv.stats.connections == 2  # no watchdog reconnect during the quiet time
    assert len(history) == 10 and len(live + missed + after) == 46
    # Everything after the history, the 20 made while we were away included, exactly once.
    expected = {(sym, t.trade_id) for sym, m in srv.markets.items() for t in m.tape[5:]}
    got = {(t.raw_symbol, int(t.trade_id)) for t in out}
    assert got == expected, (sorted(got - expected), sorted(expected - got))
    assert srv.sent == expected, (sorted(srv.sent - expected), sorted(expected - srv.sent))
    assert len(out) == len(expected)
    for sym in ("BTC-USD", "ETH-USD"):
        assert ids(out, sym) == sorted(set(ids(out, sym)))
    assert a.stats.duplicates >= 20  # the second snapshot repeated trades we had
    assert a.stats.malformed == 2
    assert {t.raw_symbol for t in out} == {"BTC/USD", "ETH/USD"}  # XBT/USD was configured as BTC/USD


def test_kraken_refused_symbol_one_line_others_continue(caplog):
    with KrakenReplay(["BTC/USD"], rate=50) as srv:
        a = adapter("kraken", srv, "BTC/USD,FOO/USD")
        with running(a) as out:
            wait_for(lambda: len(out) > 10, what="BTC/USD trades")
    assert a.rejected == {"FOO/USD": "Currency pair not supported FOO/USD"}
    assert caplog.text.count("subscription to FOO/USD refused") == 1
    assert srv.stats.connections == 1 and {t.symbol for t in out} == {"BTC-USD"}


def test_okx_ping_keeps_a_quiet_connection_the_server_cuts_one_without(caplog):
    caplog.set_level(logging.INFO)
    with OkxReplay(["BTC-USDT"], idle_timeout=1.0) as srv:
        quiet = adapter("okx", srv, "BTC-USDT", PRODUCER_STALE_AFTER_S="5")
        quiet.ping_interval_s = 0.3
        with running(quiet) as out:
            wait_for(lambda: srv.ready_count() == 1, what="subscribed")
            # No trades at all: only ping/pong moves. At least 2.5 idle windows and 5 pongs
            # (a loaded machine may ping less often than every 0.3 s; the rule is about gaps).
            quiet_since = time.monotonic()
            wait_for(lambda: time.monotonic() - quiet_since >= 2.5 and srv.pongs_sent >= 5, what="5 pongs")
            assert srv.idle_closes == 0 and srv.stats.connections == 1
            srv.publish(3)
            wait_for(lambda: len(out) == 3, what="trades")
        silent = adapter("okx", srv, "BTC-USDT", PRODUCER_STALE_AFTER_S="30")
        silent.ping_interval_s = None       # breaks the OKX rule: the server must cut it
        with running(silent):
            wait_for(lambda: srv.idle_closes >= 1, what="the server's 30 s rule (1 s here)")


def test_okx_notice_unknown_instrument_drop_and_replay_dedupe(caplog):
    caplog.set_level(logging.INFO)
    with OkxReplay(["BTC-USDT", "ETH-USDT"], replay_on_subscribe=1000, notice_grace=0.5) as srv:
        a = adapter("okx", srv, "BTC-USDT,NOPE-USDT,ETH-USDT")
        with running(a) as out:
            wait_for(lambda: srv.ready_count() == 1 and not a.pending_acks, what="subscribed")
            srv.publish(20)
            wait_for(lambda: len(out) == 40, what="trades")
            srv.notice()                    # 64008: reconnect now, before the server closes
            wait_for(lambda: srv.stats.connections >= 2 and srv.ready_count() == 1, what="reconnect on notice")
            srv.publish(5)
            wait_for(lambda: len(out) == 50, what="after notice")
            srv.drop()
            wait_for(lambda: srv.stats.connections >= 3 and srv.ready_count() == 1, what="reconnect after drop")
            srv.send_raw('{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT"}]}')
            srv.publish(5)
            wait_for(lambda: len(out) == 60, what="after drop")
    assert "notice 64008" in caplog.text and "reconnecting now: notice 64008" in caplog.text
    assert a.rejected.keys() == {"NOPE-USDT"} and caplog.text.count("subscription to NOPE-USDT refused") == 1
    assert a.stats.duplicates >= 80       # the server replayed its tape on each resubscribe
    assert {(t.symbol, int(t.trade_id)) for t in out} == srv.sent
    assert len(out) == len(srv.sent) == 60 and a.stats.malformed == 1


def test_bybit_batches_of_ten_ping_rule_replays_deduplicated(caplog):
    symbols = [f"{b}USDT" for b in ("BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "AVAX", "SHIB",
                                    "DOT", "LINK", "TON", "POL", "BCH", "LTC", "NEAR", "UNI", "ICP", "APT",
                                    "PEPE", "ETC", "FET")]
    with BybitReplay(symbols, idle_timeout=1.0, replay_on_subscribe=1000) as srv:
        a = adapter("bybit", srv, ",".join(symbols) + ",NOPEUSDT", PRODUCER_STALE_AFTER_S="5")
        a.ping_interval_s = 0.3
        with running(a) as out:
            wait_for(lambda: srv.ready_count() == 1 and not a.pending_acks, what="subscribed")
            time.sleep(1.5)               # quiet: the pings keep the connection
            srv.publish(4)
            wait_for(lambda: len(out) == 4 * 23, what="trades")
            srv.drop()
            wait_for(lambda: srv.stats.connections == 2 and srv.ready_count() == 1, what="resubscribed")
            srv.publish(2)
            wait_for(lambda: len(out) == 6 * 23, what="trades after the drop")
    sizes = [len(r["args"]) for r in srv.subscribe_requests]
    assert max(sizes) <= 10  # the server refuses more than 10 args per request
    assert srv.stats.errors_sent == 1  # NOPEUSDT refused once, not asked for again after the drop
    assert srv.idle_closes == 0 and srv.pongs_sent >= 3
    assert a.rejected.keys() == {"NOPEUSDT"} and a.stats.duplicates >= 4 * 23
    assert {(t.raw_symbol, int(t.trade_id) - 2_290_000_000_000_000_000) for t in out} == srv.sent
    assert len(out) == len(srv.sent)


@pytest.mark.parametrize("exchange", exchange_names(real_only=True))
def test_oversized_frame_is_refused_logged_and_reconnected(exchange, caplog):
    """Issue 15, defect 6: a frame above the exchange's cap (a few MB) ends the connection with
    one error line; the producer reconnects and goes on."""
    cls = adapter_class(exchange)
    symbol = cls.default_symbols.split(",")[0]
    srv_symbol = cls.parse_symbol(symbol).raw
    with replay_class(exchange)([srv_symbol], rate=20) as srv:
        a = adapter(exchange, srv, symbol)
        with running(a) as out:
            wait_for(lambda: len(out) > 3, what="first trades")
            srv.send_oversized(cls.limits.max_message_bytes + 1024)
            wait_for(lambda: a.stats.oversized == 1, what="oversized frame refused")
            n = len(out)
            wait_for(lambda: len(out) > n + 3 and srv.stats.connections >= 2, what="trades after reconnect")
    assert f"incoming message larger than {cls.limits.max_message_bytes} bytes" in caplog.text
    ids_ = [int(t.trade_id) for t in out]
    assert len(ids_) == len(set(ids_))
