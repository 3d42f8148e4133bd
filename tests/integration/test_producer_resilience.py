"""Adapters against local servers that speak each exchange's protocol: subscribe and ack,
pings, drops, shutdown notice, the connection-age cut, watchdog, error replies, limits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import websocket
from cryptomon.producer.base import WebSocketAdapter
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.coinbase import CoinbaseAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.schema import Trade
from cryptomon.replay.binance import BinanceReplay
from cryptomon.replay.coinbase import CoinbaseReplay

pytestmark = pytest.mark.integration

FAST = {"PRODUCER_BACKOFF_INITIAL_S": "0.05", "PRODUCER_BACKOFF_MAX_S": "0.2", "PRODUCER_ACK_TIMEOUT_S": "1"}


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


def binance(srv: BinanceReplay, symbols: str = "BTCUSDT", **env: str) -> BinanceAdapter:
    return BinanceAdapter(ProducerConfig.from_env("binance", {
        "BINANCE_SYMBOLS": symbols, "BINANCE_STREAM_URL": srv.url + "/stream", **FAST, **env}))


def coinbase(srv: CoinbaseReplay, products: str = "BTC-USD", **env: str) -> CoinbaseAdapter:
    return CoinbaseAdapter(ProducerConfig.from_env("coinbase", {
        "COINBASE_PRODUCTS": products, "COINBASE_STREAM_URL": srv.url, **FAST, **env}))


def test_binance_answers_pings_and_resubscribes_after_drop_and_shutdown(caplog):
    caplog.set_level(logging.INFO)
    with BinanceReplay(["BTCUSDT"], ping_interval=0.3, pong_timeout=1.0, replay_on_subscribe=1000) as srv:
        a = binance(srv)
        with running(a) as out:
            assert srv.wait_connections(1)
            srv.publish(5)
            wait_for(lambda: len(out) == 5, what="first trades")
            wait_for(lambda: srv.stats.pongs >= 3, what="pongs")
            srv.drop()
            srv.publish(5)
            wait_for(lambda: len(out) == 10, what="trades after drop")
            srv.shutdown_notice()
            wait_for(lambda: srv.stats.connections >= 3 and srv.ready_count() == 1, what="reconnect after shutdown")
            srv.publish(5)
            wait_for(lambda: len(out) == 15, what="trades after shutdown")
    assert [int(t.trade_id) for t in out] == sorted({int(t.trade_id) for t in out})  # once each, in order
    assert a.stats.duplicates >= 10  # the server replayed its tape on every resubscribe
    assert srv.stats.subscribes == 3 and srv.stats.pong_timeouts == 0 and srv.stats.rate_limit_closes == 0
    assert "reconnecting now: serverShutdown" in caplog.text


def test_server_enforces_pong_and_message_rate():
    """The fake itself must enforce Binance's limits, or the tests above prove nothing."""
    with BinanceReplay(["BTCUSDT"], ping_interval=0.1, pong_timeout=0.3) as srv:
        silent = websocket.create_connection(srv.url + "/stream", timeout=5)  # never reads: never pongs
        wait_for(lambda: srv.stats.pong_timeouts == 1, what="pong timeout")
        silent.close()
        chatty = websocket.create_connection(srv.url + "/stream", timeout=5)
        for i in range(6):
            chatty.send(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
        opcode, data = None, b""
        while opcode != websocket.ABNF.OPCODE_CLOSE:
            opcode, data = chatty.recv_data(control_frame=True)
        assert int.from_bytes(data[:2], "big") == 1008
        assert srv.stats.rate_limit_closes == 1


def test_binance_many_symbols_stay_under_the_message_limit():
    symbols = ",".join(f"C{i:03d}USDT" for i in range(450))  # 3 SUBSCRIBE messages
    with BinanceReplay(ping_interval=1.0) as srv:  # pongs count against the limit too
        a = binance(srv, symbols)
        with running(a) as out:
            wait_for(lambda: srv.stats.subscribes == 3 and not a.pending_acks, what="3 acks")
            srv.publish(1)
            wait_for(lambda: len(out) == 450, what="a trade per symbol")
            time.sleep(0.5)
    assert srv.stats.rate_limit_closes == 0 and srv.stats.connections == 1


def test_watchdog_reconnects_a_silent_feed_at_once(caplog):
    caplog.set_level(logging.INFO)
    with BinanceReplay(["BTCUSDT"]) as srv:
        a = binance(srv, PRODUCER_STALE_AFTER_S="0.3")
        with running(a):
            wait_for(lambda: srv.stats.connections >= 3, what="watchdog reconnects")
    assert "reconnecting now: watchdog: no data" in caplog.text
    assert "reconnecting in" not in caplog.text  # no backoff for a watchdog reconnect


def test_connection_age_cut_reconnects_at_once(caplog):
    caplog.set_level(logging.INFO)
    with BinanceReplay(["BTCUSDT"], rate=50, max_age=0.5) as srv:
        a = binance(srv)
        with running(a) as out:
            wait_for(lambda: srv.stats.connections >= 3 and len(out) > 20, what="cuts")
    assert "code 1001" in caplog.text and "reconnecting now" in caplog.text
    assert "reconnecting in" not in caplog.text
    ids = [int(t.trade_id) for t in out]
    assert ids == sorted(set(ids))


def test_client_side_max_age_and_backoff_when_exchange_is_down(caplog):
    caplog.set_level(logging.INFO)
    with BinanceReplay(["BTCUSDT"], rate=20) as srv:
        a = binance(srv, PRODUCER_MAX_CONNECTION_S="0.4")
        with running(a):
            wait_for(lambda: srv.stats.connections >= 2, what="proactive reconnect")
        url = srv.url
    assert "connection age reached" in caplog.text
    caplog.clear()
    a = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_STREAM_URL": url + "/stream", **FAST}))
    with running(a):
        wait_for(lambda: a.backoff.attempt >= 4, what="backoff attempts")
    assert "reconnecting in" in caplog.text and "connect to" in caplog.text


def test_binance_error_reply_then_recovery(caplog):
    with BinanceReplay(["BTCUSDT"], rate=50) as srv:
        srv.error_next_subscribes = 1
        a = binance(srv)
        with running(a) as out:
            wait_for(lambda: len(out) > 5, what="trades after the failed subscribe")
            srv.send_raw("not json")
            srv.send_raw(b"\x00\x01")
            srv.send_raw('{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}')
            n = len(out)
            wait_for(lambda: len(out) > n + 5, what="trades after bad frames")
    assert a.stats.errors == 1 and srv.stats.connections == 2
    assert a.stats.malformed == 2 and a.stats.unknown == 1


def test_coinbase_last_match_gaps_out_of_order_heartbeat(caplog):
    with CoinbaseReplay(["BTC-USD", "ETH-USD"], heartbeat_interval=0.1) as srv:
        srv.publish(3)
        a = coinbase(srv, "BTC-USD,ETH-USD", PRODUCER_STALE_AFTER_S="1")
        with running(a) as out:
            wait_for(lambda: len(out) == 2, what="last_match per product")
            srv.publish(3)
            wait_for(lambda: len(out) == 8, what="matches")
            srv.gap(4, "BTC-USD")
            srv.publish(1, "BTC-USD")
            wait_for(lambda: len(out) == 9, what="after gap")
            srv.out_of_order("BTC-USD", back=2)
            srv.drop()
            wait_for(lambda: srv.stats.connections == 2 and srv.ready_count() == 1, what="resubscribe")
            time.sleep(1.5)  # heartbeats alone keep the watchdog quiet
            srv.publish(1)
            wait_for(lambda: len(out) == 11, what="after reconnect")
    assert (a.stats.gaps, a.stats.missed, a.stats.out_of_order) == (1, 4, 1)
    assert a.stats.duplicates >= 2  # last_match after the reconnect
    assert srv.stats.connections == 2
    assert "sequence gap on BTC-USD" in caplog.text
    btc = [int(t.trade_id) for t in out if t.symbol == "BTC-USD"]
    assert btc == sorted(set(btc))


def test_coinbase_error_reply_and_subscribe_deadline():
    with CoinbaseReplay(["BTC-USD"], rate=50, subscribe_timeout=0.5) as srv:
        idle = websocket.create_connection(srv.url, timeout=5)
        msg = idle.recv()
        assert '"type": "error"' in msg
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            for _ in range(5):
                idle.recv()
        srv.error_next_subscribes = 1
        a = coinbase(srv)
        with running(a) as out:
            wait_for(lambda: len(out) > 5, what="trades after the error")
    # The error reply, then the server's own "no subscribe in time" error before it closes.
    assert a.stats.errors >= 1 and srv.stats.connections == 3


def test_a_server_that_never_answers_the_handshake_is_retried_not_fatal(caplog):
    """Accepts TCP and says nothing (or answers HTTP 429, as on a connection-rate limit)."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/stream"
        a = BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_STREAM_URL": url, **FAST}))
        a.connect_timeout_s = 0.3
        with running(a):
            wait_for(lambda: a.backoff.attempt >= 3, what="retries")
    assert "handshake with" in caplog.text and "timed out" in caplog.text
    with BinanceReplay(max_connects=(1, 60.0)) as srv:
        first = websocket.create_connection(srv.url + "/stream", timeout=5)  # uses the only attempt
        a = binance(srv)
        with running(a):
            wait_for(lambda: srv.stats.connect_rejects >= 2, what="refused handshakes")
        first.close()
    assert "429" in caplog.text and a.stats.connects == 0
