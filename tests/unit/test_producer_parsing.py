"""Parsing every Binance and Coinbase message type from payloads shaped like the official docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptomon.producer.base import Reconnect
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.coinbase import CoinbaseAdapter, iso_to_ms
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.schema import Trade

PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "exchange_payloads"
BN = json.loads((PAYLOADS / "binance.json").read_text())
CB = json.loads((PAYLOADS / "coinbase.json").read_text())
RECV = 1_700_000_000_123


def binance(**env: str) -> BinanceAdapter:
    return BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BNBBTC,BTCUSDT", **env}))


def coinbase() -> CoinbaseAdapter:
    return CoinbaseAdapter(ProducerConfig.from_env("coinbase", {"COINBASE_PRODUCTS": "BTC-USD,ETH-USD"}))


def frame(obj: object) -> bytes:
    return json.dumps(obj).encode()  # websocket-client hands text frames over as bytes


# --- Binance ---------------------------------------------------------------------------

def test_binance_raw_trade_docs_payload():
    a = binance()
    [t] = a.handle(frame(BN["trade"]), RECV)
    assert t == Trade("binance", "BNB-BTC", "BNBBTC", "12345", "0.001", "100", "sell", 1672515782136, RECV)
    t.validate()


def test_binance_combined_trade_keeps_decimal_strings_exactly():
    a = binance()
    [t] = a.handle(json.dumps(BN["combined_trade"]), RECV)  # str frames work too
    assert (t.symbol, t.raw_symbol, t.trade_id) == ("BTC-USDT", "BTCUSDT", "3811478870")
    assert (t.price, t.size) == ("16541.53000000", "0.00120000")  # trailing zeros kept
    assert t.side == "buy"  # m=false: the buyer was the taker
    assert t.exchange_ts == 1672515782134  # trade time T, not event time E


def test_binance_agg_trade_uses_aggregate_id():
    a = binance(BINANCE_STREAM_TYPE="aggTrade")
    [t] = a.handle(frame({"stream": "bnbbtc@aggTrade", "data": BN["aggTrade"]}), RECV)
    assert (t.trade_id, t.side, t.price, t.size) == ("12345", "sell", "0.001", "100")
    assert a.subscribe_messages() == ['{"method": "SUBSCRIBE", "params": ["bnbbtc@aggTrade", "btcusdt@aggTrade"], "id": 1}']


def test_binance_subscribe_ack_clears_pending():
    a = binance()
    msgs = a.subscribe_messages()
    assert json.loads(msgs[0]) == {"method": "SUBSCRIBE", "params": ["bnbbtc@trade", "btcusdt@trade"], "id": 1}
    assert set(a.pending_acks) == {1}
    assert a.handle(frame(BN["subscribe_ack"]), RECV) == ()
    assert a.pending_acks == {}


def test_binance_error_reply_is_counted_not_fatal():
    a = binance()
    a.subscribe_messages()
    assert a.handle(frame(BN["error"]), RECV) == ()
    assert a.stats.errors == 1
    assert 1 in a.pending_acks  # not an ack: the session ends in a reconnect with backoff


@pytest.mark.parametrize("wrapped", [True, False])
def test_binance_server_shutdown_requests_immediate_reconnect(wrapped):
    a = binance()
    msg = {"stream": "serverShutdown", "data": BN["server_shutdown"]} if wrapped else BN["server_shutdown"]
    assert a.handle(frame(msg), RECV) == ()
    assert isinstance(a.reconnect_request, Reconnect)
    assert a.reconnect_request.immediate and "serverShutdown" in a.reconnect_request.reason


@pytest.mark.parametrize("bad, counter", [
    (b"{not json", "malformed"),
    (b"\xff\xfe", "malformed"),
    (b"[1,2]", "malformed"),
    (b'{"stream":"x","data":[1]}', "malformed"),
    (json.dumps({**BN["trade"], "p": 0.001}).encode(), "malformed"),       # a float, not a string
    (json.dumps({**BN["trade"], "p": "1e-3"}).encode(), "malformed"),      # exponent
    (json.dumps({**BN["trade"], "q": "-100"}).encode(), "malformed"),
    (json.dumps({**BN["trade"], "p": "0.000"}).encode(), "malformed"),     # zero price
    (json.dumps({**BN["trade"], "t": "12345"}).encode(), "malformed"),
    (json.dumps({**BN["trade"], "m": "true"}).encode(), "malformed"),
    (json.dumps({k: v for k, v in BN["trade"].items() if k != "T"}).encode(), "malformed"),
    (json.dumps({**BN["trade"], "s": "DOGEUSDT"}).encode(), "unknown"),
    (json.dumps({**BN["trade"], "e": "kline"}).encode(), "unknown"),
    (b'{"something":"else"}', "unknown"),
])
def test_binance_bad_frames_are_counted(bad, counter):
    a = binance()
    assert a.handle(bad, RECV) == ()
    assert getattr(a.stats, counter) == 1
    assert a.stats.trades == 0


def test_binance_duplicate_trade_ids_are_dropped_per_symbol():
    a = binance()
    first = a.handle(frame(BN["trade"]), RECV)
    assert len(first) == 1
    assert a.handle(frame(BN["trade"]), RECV + 5) == ()  # replayed after a reconnect
    assert a.handle(frame({**BN["trade"], "t": 12000}), RECV) == ()  # older than the newest seen
    assert len(a.handle(frame({**BN["trade"], "t": 12346}), RECV)) == 1
    other = a.handle(frame({**BN["trade"], "s": "BTCUSDT"}), RECV)  # same id, other market
    assert len(other) == 1
    assert a.stats.duplicates == 2


# --- Coinbase --------------------------------------------------------------------------

def test_coinbase_match_docs_payload_side_is_maker_side():
    a = coinbase()
    [t] = a.handle(frame(CB["match"]), RECV)
    # "side":"sell" is the MAKER's side: the taker bought.
    assert t == Trade("coinbase", "BTC-USD", "BTC-USD", "10", "400.23", "5.23512", "buy",
                      iso_to_ms("2014-11-07T08:19:27.028459Z"), RECV)
    assert t.exchange_ts == 1415348367028


def test_coinbase_last_match_counts_once_across_reconnects():
    a2 = coinbase()
    [lm] = a2.handle(frame(CB["last_match"]), RECV)
    assert lm.side == "sell"  # maker bought
    [m] = a2.handle(frame(CB["match"]), RECV)
    # After a reconnect the server starts with last_match = the trade we already have.
    assert a2.handle(frame({**CB["match"], "type": "last_match"}), RECV) == ()
    assert a2.stats.duplicates == 1 and a2.stats.out_of_order == 0 and a2.stats.gaps == 0
    assert m.trade_id == "10"


def test_coinbase_sequence_gap_and_out_of_order_are_counted():
    a = coinbase()
    a.handle(frame(CB["match"]), RECV)  # sequence 50
    [t] = a.handle(frame({**CB["match"], "trade_id": 14, "sequence": 54}), RECV)
    assert (a.stats.gaps, a.stats.missed) == (1, 3)
    assert t.trade_id == "14"
    assert a.handle(frame({**CB["match"], "trade_id": 12, "sequence": 52}), RECV) == ()
    assert a.stats.out_of_order == 1
    assert a.sequence["BTC-USD"] == 54
    # Sequences are per product: another product starts its own count.
    a.handle(frame({**CB["match"], "product_id": "ETH-USD", "sequence": 7}), RECV)
    assert a.stats.gaps == 1


def test_coinbase_heartbeat_subscriptions_and_error():
    a = coinbase()
    a.subscribe_messages()
    assert json.loads(a.subscribe_messages()[0]) == {
        "type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches", "heartbeat"]}
    before = a.last_activity
    assert a.handle(frame(CB["heartbeat"]), RECV) == ()
    assert a.last_activity >= before
    assert a.handle(frame(CB["subscriptions"]), RECV) == ()
    assert a.pending_acks == {}
    assert a.handle(frame(CB["error"]), RECV) == ()
    assert a.stats.errors == 1


@pytest.mark.parametrize("bad, counter", [
    (b"nope", "malformed"),
    (b'"text"', "malformed"),
    (json.dumps({**CB["match"], "side": "up"}).encode(), "malformed"),
    (json.dumps({**CB["match"], "time": "yesterday"}).encode(), "malformed"),
    (json.dumps({**CB["match"], "price": 400.23}).encode(), "malformed"),
    (json.dumps({**CB["match"], "size": "NaN"}).encode(), "malformed"),
    (json.dumps({k: v for k, v in CB["match"].items() if k != "sequence"}).encode(), "malformed"),
    (json.dumps({**CB["match"], "product_id": "DOGE-USD"}).encode(), "unknown"),
    (json.dumps({**CB["heartbeat"], "product_id": "DOGE-USD"}).encode(), "unknown"),
    (b'{"type":"ticker","product_id":"BTC-USD"}', "unknown"),
])
def test_coinbase_bad_frames_are_counted(bad, counter):
    a = coinbase()
    assert a.handle(bad, RECV) == ()
    assert getattr(a.stats, counter) == 1


@pytest.mark.parametrize("text, ms", [
    ("2014-11-07T08:19:27.028459Z", 1415348367028),
    ("2014-11-07T08:19:27Z", 1415348367000),
    ("2024-02-29T23:59:59.999999999Z", 1709251199999),  # nanoseconds: truncated, never rounded up
    ("1970-01-01T00:00:00.001Z", 1),
])
def test_iso_to_ms_is_exact(text, ms):
    assert iso_to_ms(text) == ms
