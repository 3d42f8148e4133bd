"""Parsing every message type of every exchange, and each exchange's REST symbol list, from
payloads shaped like the official docs (tests/fixtures/exchange_payloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptomon.producer.base import Reconnect
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.bybit import BybitAdapter
from cryptomon.producer.coinbase import CoinbaseAdapter, iso_to_ms
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.kraken import KrakenAdapter
from cryptomon.producer.okx import OkxAdapter
from cryptomon.producer.schema import Trade
from cryptomon.producer.symbols import Market

PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "exchange_payloads"
BN = json.loads((PAYLOADS / "binance.json").read_text())
CB = json.loads((PAYLOADS / "coinbase.json").read_text())
KR = json.loads((PAYLOADS / "kraken.json").read_text())
OK = json.loads((PAYLOADS / "okx.json").read_text())
BY = json.loads((PAYLOADS / "bybit.json").read_text())
RECV = 1_700_000_000_123


def binance(**env: str) -> BinanceAdapter:
    return BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BNBBTC,BTCUSDT", **env}))


def coinbase() -> CoinbaseAdapter:
    return CoinbaseAdapter(ProducerConfig.from_env("coinbase", {"COINBASE_PRODUCTS": "BTC-USD,ETH-USD"}))


def kraken(symbols: str = "MATIC/USD,BTC/USD") -> KrakenAdapter:
    return KrakenAdapter(ProducerConfig.from_env("kraken", {"KRAKEN_SYMBOLS": symbols}))


def okx(symbols: str = "BTC-USDT,ETH-USDT") -> OkxAdapter:
    return OkxAdapter(ProducerConfig.from_env("okx", {"OKX_SYMBOLS": symbols}))


def bybit(symbols: str = "BTCUSDT,ETHUSDT") -> BybitAdapter:
    return BybitAdapter(ProducerConfig.from_env("bybit", {"BYBIT_SYMBOLS": symbols}))


def sent(adapter) -> list[dict]:
    """The messages the adapter queued for sending, parsed."""
    return [json.loads(m) if m.startswith("{") else m for m in adapter._outbox]


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
    a.subscribe_messages()
    assert list(a._outbox) == ['{"method": "SUBSCRIBE", "params": ["bnbbtc@aggTrade", "btcusdt@aggTrade"], "id": 1}']


def test_binance_subscribe_ack_then_list_subscriptions_check():
    a = binance()
    a.subscribe_messages()
    assert sent(a) == [{"method": "SUBSCRIBE", "params": ["bnbbtc@trade", "btcusdt@trade"], "id": 1}]
    assert set(a.pending_acks) == {1}
    a._outbox.clear()
    assert a.handle(frame(BN["subscribe_ack"]), RECV) == ()
    # Every batch acknowledged: ask the server what it really holds.
    assert sent(a) == [{"method": "LIST_SUBSCRIPTIONS", "id": 2}] and set(a.pending_acks) == {2}
    assert a.handle(frame(BN["list_subscriptions"]), RECV) == ()
    assert a.pending_acks == {} and a.capacity_hint is None and a.reconnect_request is None


def test_binance_streams_dropped_above_the_limit_are_noticed():
    a = binance()
    a.subscribe_messages()
    a.handle(frame(BN["subscribe_ack"]), RECV)
    assert a.handle(frame({"result": ["bnbbtc@trade"], "id": 2}), RECV) == ()
    assert a.capacity_hint == 1 and a.reconnect_request is not None and a.stats.errors == 1


@pytest.mark.parametrize("reply", ["error", "error_nested"])
def test_binance_error_reply_is_counted_not_fatal(reply):
    a = binance()
    a.subscribe_messages()
    assert a.handle(frame(BN[reply]), RECV) == ()
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
    assert sent(a) == [{"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
                        "channels": ["matches", "heartbeat"]}]
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


def test_coinbase_invalid_product_error_drops_that_product_only(caplog):
    a = coinbase()
    a.subscribe_messages()
    error = {"type": "error", "message": "Failed to subscribe", "reason": "ETH-USD is not a valid product"}
    assert a.handle(frame(error), RECV) == ()
    assert a.rejected == {"ETH-USD": "ETH-USD is not a valid product"} and a.markets() == ["BTC-USD"]
    assert a.stats.rejected == 1 and a.stats.errors == 0
    assert "subscription to ETH-USD refused" in caplog.text


# --- Kraken ----------------------------------------------------------------------------

def test_kraken_subscribe_requests_snapshot_explicitly_acks_per_symbol():
    a = kraken()
    a.subscribe_messages()
    assert sent(a) == [{"method": "subscribe", "params": {"channel": "trade", "symbol": ["MATIC/USD", "BTC/USD"],
                                                          "snapshot": True}, "req_id": 1}]
    assert set(a.pending_acks) == {"MATIC/USD", "BTC/USD"}
    assert a.handle(frame(KR["subscribe_ack"]), RECV) == ()
    assert set(a.pending_acks) == {"BTC/USD"}


def test_kraken_update_numbers_keep_their_exact_digits_side_is_taker():
    a = kraken()
    trades = a.handle(frame(KR["update"]), RECV)
    assert [(t.trade_id, t.price, t.size, t.side) for t in trades] == [
        ("4665906", "0.5117", "40.0", "sell"), ("4665907", "0.5117", "0.3", "sell")]
    [btc] = a.handle(frame(KR["update_btc"]), RECV)
    assert btc == Trade("kraken", "BTC-USD", "BTC/USD", "10218208", "105944.2", "0.00027625", "buy",
                        iso_to_ms("2023-10-06T17:35:55.440295Z"), RECV)
    btc.validate()


def test_kraken_exponent_numbers_are_expanded_exactly():
    a = kraken()
    msg = {"channel": "trade", "type": "update", "data": [{**KR["update_btc"]["data"][0], "qty": "QTY"}]}
    text = json.dumps(msg).replace('"QTY"', "1e-05")
    [t] = a.handle(text.encode(), RECV)
    assert t.size == "0.00001"


def test_kraken_snapshot_first_subscribe_only_sets_the_mark_then_recovers_after_reconnect():
    a = kraken()
    assert not a.handle(frame(KR["snapshot"]), RECV)  # history: not produced
    assert a.dedupe.marks["MATIC/USD"] == 4665847
    assert len(a.handle(frame(KR["update"]), RECV)) == 2
    # After a reconnect the snapshot repeats what we have plus what we missed.
    again = {"channel": "trade", "type": "snapshot", "data": KR["update"]["data"] + [
        {**KR["update"]["data"][1], "trade_id": 4665908, "price": 0.5120}]}
    [missed] = a.handle(frame(again), RECV)
    assert (missed.trade_id, missed.price) == ("4665908", "0.512")
    assert a.stats.duplicates == 2


def test_kraken_heartbeat_status_pong_and_refused_symbol(caplog):
    a = kraken("MATIC/USD,XBT/USD")  # XBT/USD is accepted in config as BTC/USD
    assert a.markets() == ["MATIC-USD", "BTC-USD"]
    a.subscribe_messages()
    before = a.last_activity
    assert a.handle(frame(KR["heartbeat"]), RECV) == () and a.last_activity >= before
    assert a.handle(frame(KR["status"]), RECV) == () and a.system == "online"
    a._pong_deadline = 1.0
    assert a.handle(frame(KR["pong"]), RECV) == () and a._pong_deadline is None
    refused = {**KR["subscribe_error"], "symbol": "BTC/USD", "error": "Currency pair not supported BTC/USD"}
    assert a.handle(frame(refused), RECV) == ()
    assert "BTC/USD" in a.rejected and "BTC/USD" not in a.pending_acks and a.markets() == ["MATIC-USD"]
    assert "subscription to BTC/USD refused: Currency pair not supported" in caplog.text


@pytest.mark.parametrize("bad, counter", [
    (b"{nope", "malformed"),
    (b"[]", "malformed"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "side": "up"}]}).encode(), "malformed"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "price": "0.5"}]}).encode(), "trades"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "qty": -1}]}).encode(), "malformed"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "trade_id": "7"}]}).encode(), "malformed"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "timestamp": "now"}]}).encode(), "malformed"),
    (json.dumps({**KR["update"], "data": [{**KR["update"]["data"][0], "symbol": "DOGE/USD"}]}).encode(), "unknown"),
    (json.dumps({"channel": "book", "type": "update", "data": []}).encode(), "unknown"),
    (json.dumps({"channel": "trade", "type": "update", "data": {}}).encode(), "malformed"),
])
def test_kraken_bad_frames_are_counted(bad, counter):
    a = kraken()
    a.handle(bad, RECV)
    assert getattr(a.stats, counter) == 1


def test_kraken_asset_pairs_listing_uses_v2_names_and_online_pairs_only():
    assert KrakenAdapter.parse_listing(KR["asset_pairs"]) == [
        Market("BTC/USD", "BTC-USD"), Market("DOGE/USD", "DOGE-USD"), Market("ETH/USDT", "ETH-USDT")]
    with pytest.raises(ValueError):
        KrakenAdapter.parse_listing({"error": ["EGeneral:Temporary lockout"], "result": {}})


# --- OKX -------------------------------------------------------------------------------

def test_okx_trade_docs_payload():
    a = okx()
    [t] = a.handle(frame(OK["trades"]), RECV)
    assert t == Trade("okx", "BTC-USDT", "BTC-USDT", "130639474", "42219.9", "0.12060306", "buy", 1630048897897, RECV)
    t.validate()
    assert not a.handle(frame(OK["trades"]), RECV) and a.stats.duplicates == 1


def test_okx_subscribe_ack_ping_pong_and_notice():
    a = okx()
    a.subscribe_messages()
    assert sent(a) == [{"id": "1", "op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"},
                                                               {"channel": "trades", "instId": "ETH-USDT"}]}]
    assert a.handle(frame({**OK["subscribe_ack"], "id": "1"}), RECV) == ()
    assert set(a.pending_acks) == {"ETH-USDT"}
    assert a.keepalive_message() == "ping"  # text, not JSON
    a._pong_deadline = 1.0
    assert a.handle(b"pong", RECV) == () and a._pong_deadline is None
    assert a.handle(frame(OK["notice"]), RECV) == ()
    assert a.reconnect_request is not None and a.reconnect_request.immediate


def test_okx_unknown_instrument_is_dropped_and_the_rest_resent(caplog):
    a = okx("BTC-USDT,FOO-USDT,ETH-USDT")
    a.subscribe_messages()
    a._outbox.clear()
    assert a.handle(frame({**OK["error_unknown_instrument"], "id": "1"}), RECV) == ()
    assert a.rejected.keys() == {"FOO-USDT"} and a.stats.rejected == 1
    assert sent(a) == [{"id": "2", "op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"},
                                                               {"channel": "trades", "instId": "ETH-USDT"}]}]
    assert set(a.pending_acks) == {"BTC-USDT", "ETH-USDT"}
    assert "subscription to FOO-USDT refused: 60018" in caplog.text


def test_okx_error_naming_nothing_reconnects_with_backoff():
    a = okx()
    a.subscribe_messages()
    assert a.handle(frame({**OK["error"], "id": "1"}), RECV) == ()
    assert a.stats.errors == 1 and a.reconnect_request is not None and not a.reconnect_request.immediate


@pytest.mark.parametrize("bad, counter", [
    (b"pongg", "malformed"),
    (json.dumps({**OK["trades"], "data": [{**OK["trades"]["data"][0], "px": 42219.9}]}).encode(), "malformed"),
    (json.dumps({**OK["trades"], "data": [{**OK["trades"]["data"][0], "side": "BUY"}]}).encode(), "malformed"),
    (json.dumps({**OK["trades"], "data": [{**OK["trades"]["data"][0], "ts": "soon"}]}).encode(), "malformed"),
    (json.dumps({**OK["trades"], "data": [{**OK["trades"]["data"][0], "tradeId": "12a"}]}).encode(), "malformed"),
    (json.dumps({**OK["trades"], "data": [{**OK["trades"]["data"][0], "instId": "DOGE-USDT"}]}).encode(), "unknown"),
    (json.dumps({"arg": {"channel": "books", "instId": "BTC-USDT"}, "data": []}).encode(), "unknown"),
    (b'{"event":"login"}', "unknown"),
])
def test_okx_bad_frames_are_counted(bad, counter):
    a = okx()
    a.handle(bad, RECV)
    assert getattr(a.stats, counter) == 1 and a.stats.trades == 0


def test_okx_instruments_listing_live_spot_only():
    assert OkxAdapter.parse_listing(OK["instruments"]) == [Market("BTC-USDT", "BTC-USDT"),
                                                           Market("ETH-USDC", "ETH-USDC")]
    with pytest.raises(ValueError):
        OkxAdapter.parse_listing({"code": "50011", "msg": "Too Many Requests", "data": []})


# --- Bybit -----------------------------------------------------------------------------

def test_bybit_trades_docs_payload_taker_side_and_string_ids():
    a = bybit()
    trades = a.handle(frame(BY["trade"]), RECV)
    assert trades == [
        Trade("bybit", "BTC-USDT", "BTCUSDT", "2290000000090712222", "16578.50", "0.001", "buy", 1672304486865, RECV),
        Trade("bybit", "BTC-USDT", "BTCUSDT", "2290000000090712223", "16578.40", "0.020", "sell", 1672304486866, RECV)]
    for t in trades:
        t.validate()
    assert not a.handle(frame(BY["trade"]), RECV) and a.stats.duplicates == 2


def test_bybit_subscribe_in_batches_of_ten_ping_and_pong():
    symbols = ",".join(f"C{i:02d}USDT" for i in range(23))
    a = bybit(symbols)
    a.subscribe_messages()
    requests = sent(a)
    assert [len(r["args"]) for r in requests] == [10, 10, 3]
    assert requests[0]["args"][0] == "publicTrade.C00USDT" and set(a.pending_acks) == {"1", "2", "3"}
    assert a.handle(frame({**BY["subscribe_ack"], "req_id": "2"}), RECV) == ()
    assert set(a.pending_acks) == {"1", "3"}
    assert json.loads(a.keepalive_message())["op"] == "ping"
    a._pong_deadline = 1.0
    assert a.handle(frame(BY["pong"]), RECV) == () and a._pong_deadline is None


def test_bybit_invalid_symbol_dropped_rest_of_request_resent():
    a = bybit("BTCUSDT,NOPEUSDT,ETHUSDT")
    a.subscribe_messages()
    a._outbox.clear()
    assert a.handle(frame(BY["subscribe_error"]), RECV) == ()
    assert a.rejected.keys() == {"NOPEUSDT"}
    assert sent(a) == [{"req_id": "2", "op": "subscribe", "args": ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]}]
    assert set(a.pending_acks) == {"2"}
    assert a.handle(frame({**BY["args_error"], "req_id": "2"}), RECV) == ()
    assert a.stats.errors == 1 and a.reconnect_request is not None


@pytest.mark.parametrize("bad, counter", [
    (b"\x00", "malformed"),
    (json.dumps({**BY["trade"], "data": [{**BY["trade"]["data"][0], "S": "buy"}]}).encode(), "malformed"),
    (json.dumps({**BY["trade"], "data": [{**BY["trade"]["data"][0], "p": 16578.5}]}).encode(), "malformed"),
    (json.dumps({**BY["trade"], "data": [{**BY["trade"]["data"][0], "i": "a\"b"}]}).encode(), "malformed"),
    (json.dumps({**BY["trade"], "data": [{**BY["trade"]["data"][0], "T": "1672304486865"}]}).encode(), "malformed"),
    (json.dumps({**BY["trade"], "data": [{**BY["trade"]["data"][0], "s": "XRPUSDT"}]}).encode(), "unknown"),
    (json.dumps({**BY["trade"], "topic": "orderbook.1.BTCUSDT"}).encode(), "unknown"),
    (json.dumps({**BY["trade"], "data": {}}).encode(), "malformed"),
])
def test_bybit_bad_frames_are_counted(bad, counter):
    a = bybit()
    a.handle(bad, RECV)
    assert getattr(a.stats, counter) == 1 and a.stats.trades == 0


def test_bybit_instruments_listing_trading_only():
    assert BybitAdapter.parse_listing(BY["instruments"]) == [Market("BTCUSDT", "BTC-USDT"),
                                                             Market("ETHUSDC", "ETH-USDC")]


# --- REST symbol lists of Binance and Coinbase -----------------------------------------

def test_binance_exchange_info_listing_trading_only_with_its_base_quote_split():
    assert BinanceAdapter.parse_listing(BN["exchange_info"]) == [
        Market("ETHBTC", "ETH-BTC"), Market("BTCUSDT", "BTC-USDT"), Market("1000SATSFDUSD", "1000SATS-FDUSD")]


def test_coinbase_products_listing_online_only():
    assert CoinbaseAdapter.parse_listing(CB["products"]) == [Market("BTC-USD", "BTC-USD"), Market("ETH-EUR", "ETH-EUR")]


def test_binance_hot_path_survives_one_bogus_huge_id():
    """Issue 15, defect 5, through the inlined hot path: one absurd id must not make every
    later trade of the market a duplicate."""
    a = binance()
    assert len(a.handle(frame(BN["trade"]), RECV)) == 1
    assert len(a.handle(frame({**BN["trade"], "t": 2**62}), RECV)) == 1   # emitted once, logged
    later = [a.handle(frame({**BN["trade"], "t": 12345 + i}), RECV) for i in range(1, 6)]
    assert all(len(t) == 1 for t in later)
    assert a.dedupe.marks["BNBBTC"] == 12350 and a.stats.duplicates == 0
