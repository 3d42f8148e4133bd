"""Each venue's top-of-book channel, from payloads shaped like the official docs or captured frames
(tests/fixtures/exchange_payloads, the `_quotes_source` entry of each file says which): the
subscription, the acks, the parser, and what each venue's quirks do to the normalized quote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.bybit import BybitAdapter
from cryptomon.producer.coinbase import CoinbaseAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.kraken import KrakenAdapter
from cryptomon.producer.okx import OkxAdapter
from cryptomon.producer.quote import Quote

PAYLOADS = Path(__file__).resolve().parent.parent / "fixtures" / "exchange_payloads"
BN = json.loads((PAYLOADS / "binance.json").read_text())
CB = json.loads((PAYLOADS / "coinbase.json").read_text())
KR = json.loads((PAYLOADS / "kraken.json").read_text())
OK = json.loads((PAYLOADS / "okx.json").read_text())
BY = json.loads((PAYLOADS / "bybit.json").read_text())
RECV = 1_700_000_000_123
ON = {"PRODUCER_QUOTES": "true"}


def frame(obj: object) -> bytes:
    return json.dumps(obj).encode()


def sent(adapter) -> list:
    return [json.loads(m) if m.startswith("{") else m for m in adapter._outbox]


def one(adapter, payload: object) -> Quote:
    assert adapter.handle(frame(payload), RECV) == ()
    [q] = adapter.take_quotes()
    q.validate()
    return q


def counts(adapter) -> dict[str, int]:
    return {k: v for k, v in {**adapter.stats.as_dict(), **adapter.stats.quote_dict()}.items() if v}


# --- Binance bookTicker ----------------------------------------------------------------------

def binance(**env: str) -> BinanceAdapter:
    return BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BNBUSDT,BTCUSDT", **ON, **env}))


def test_binance_book_ticker_docs_payload_raw_and_combined():
    a = binance()
    q = one(a, BN["book_ticker"])  # the raw /ws form: unwrapped, no "e"
    assert q == Quote("binance", "BNB-USDT", "BNBUSDT", "25.35190000", "31.21000000", "25.36520000", "40.66000000",
                      None, RECV, 400900217)  # no event time in spot bookTicker: exchange_ts null
    q = one(a, BN["combined_book_ticker"])
    assert (q.symbol, q.bid, q.bid_size, q.ask, q.ask_size, q.sequence) == (
        "BTC-USDT", "16541.53000000", "3.41230000", "16541.54000000", "0.75600000", 72436194015)
    assert counts(a) == {"quotes": 2}


def test_binance_subscribes_both_streams_of_a_market_in_one_batch_and_checks_the_list():
    a = binance(BINANCE_STREAM_TYPE="aggTrade")
    a.subscribe_messages()
    assert sent(a) == [{"method": "SUBSCRIBE", "id": 1, "params": [
        "bnbusdt@aggTrade", "bnbusdt@bookTicker", "btcusdt@aggTrade", "btcusdt@bookTicker"]}]
    a = binance()
    a.subscribe_messages()
    a.handle(frame(BN["subscribe_ack"]), RECV)
    assert a.handle(frame(BN["list_subscriptions_quotes"]), RECV) == ()
    assert a.capacity_hint is None and a.reconnect_request is None and not a.pending_acks


def test_binance_a_dropped_book_ticker_stream_is_noticed():
    a = binance()
    a.subscribe_messages()
    a.handle(frame(BN["subscribe_ack"]), RECV)
    held = ["bnbusdt@trade", "btcusdt@bookTicker", "btcusdt@trade"]  # bnbusdt@bookTicker missing
    a.handle(frame({"result": held, "id": 2}), RECV)
    assert a.capacity_hint == 1 and a.reconnect_request is not None and a.stats.errors == 1


def test_binance_trades_still_flow_beside_quotes():
    a = binance()
    [t] = a.handle(frame(BN["combined_trade"]), RECV)
    assert t.trade_id == "3811478870" and a.take_quotes() == [] and a.stats.trades == 1


# --- Coinbase ticker -----------------------------------------------------------------------

def coinbase() -> CoinbaseAdapter:
    return CoinbaseAdapter(ProducerConfig.from_env("coinbase", {"COINBASE_PRODUCTS": "BTC-USD,ETH-USD", **ON}))


def test_coinbase_ticker_captured_payload():
    a = coinbase()
    q = one(a, CB["ticker"])
    assert q == Quote("coinbase", "BTC-USD", "BTC-USD", "77668.91", "0.20495031", "77668.92", "0.49546688",
                      1777125186170, RECV, 127113500279)
    assert a.stats.trades == 0  # the ticker is not a trade tape: trades come from matches only


def test_coinbase_first_ticker_without_time_has_a_null_exchange_ts():
    a = coinbase()
    q = one(a, CB["ticker_first"])
    assert q.exchange_ts is None and q.sequence == 127113500100
    assert one(a, CB["ticker"]).exchange_ts == 1777125186170


def test_coinbase_subscribes_ticker_with_matches_and_ticker_sequences_stay_out_of_the_gap_check():
    a = coinbase()
    a.subscribe_messages()
    assert sent(a) == [{"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
                        "channels": ["matches", "heartbeat", "ticker"]}]
    assert a.handle(frame(CB["subscriptions_ticker"]), RECV) == () and not a.pending_acks
    a.handle(frame(CB["match"]), RECV)                                          # sequence 50
    one(a, {**CB["ticker"], "sequence": 90})                                    # shared sequence space
    a.handle(frame({**CB["match"], "trade_id": 11, "sequence": 51}), RECV)
    assert a.stats.gaps == 0 and a.stats.trades == 2


def test_coinbase_late_ticker_is_dropped():
    a = coinbase()
    one(a, CB["ticker"])
    assert a.handle(frame({**CB["ticker"], "sequence": 127113500278, "time": "2026-04-25T13:53:06.100000Z"}),
                    RECV) == ()
    assert a.take_quotes() == [] and a.stats.quotes_out_of_order == 1


@pytest.mark.parametrize("change, counter", [
    ({"best_bid": "77668.92"}, "quotes_crossed"),
    ({"best_ask_size": "0"}, "quotes_invalid"),
    ({"best_bid": None}, "quotes_invalid"),
    ({"sequence": "12"}, "malformed"),
    ({"time": "yesterday"}, "malformed"),
    ({"product_id": "DOGE-USD"}, "unknown"),
])
def test_coinbase_bad_tickers_are_counted(change, counter):
    a = coinbase()
    assert a.handle(frame({**CB["ticker"], **change}), RECV) == ()
    assert a.take_quotes() == [] and counts(a) == {counter: 1}


# --- Kraken ticker --------------------------------------------------------------------------

def kraken(symbols: str = "BTC/USD,MATIC/USD") -> KrakenAdapter:
    return KrakenAdapter(ProducerConfig.from_env("kraken", {"KRAKEN_SYMBOLS": symbols, **ON}))


def test_kraken_subscribes_ticker_on_bbo_with_a_snapshot_acked_per_symbol_and_channel():
    a = kraken("BTC/USD")
    a.subscribe_messages()
    trade_sub, ticker_sub = sent(a)
    assert trade_sub["params"]["channel"] == "trade"
    assert ticker_sub == KR["ticker_subscribe"]
    assert set(a.pending_acks) == {"BTC/USD", ("ticker", "BTC/USD")}
    a.handle(frame(KR["ticker_subscribe_ack"]), RECV)
    assert set(a.pending_acks) == {"BTC/USD"}  # the trade ack is still owed
    a.handle(frame({**KR["subscribe_ack"], "result": {**KR["subscribe_ack"]["result"], "symbol": "BTC/USD"}}), RECV)
    assert a.pending_acks == {}


def test_kraken_ticker_numbers_keep_their_exact_digits():
    a = kraken()
    q = one(a, KR["ticker_update"])
    assert q == Quote("kraken", "BTC-USD", "BTC/USD", "105944.2", "2.5", "105944.3", "3.2", 1671960659123, RECV,
                      None)


def test_kraken_snapshot_is_the_current_book_and_timestamp_is_optional():
    a = kraken()
    q = one(a, KR["ticker_snapshot_no_timestamp"])
    assert (q.symbol, q.bid, q.bid_size, q.ask, q.exchange_ts, q.sequence) == (
        "MATIC-USD", "0.5147", "4067.24362343", "0.5148", None, None)


def test_kraken_orders_by_timestamp_when_it_has_one():
    a = kraken()
    one(a, KR["ticker_update"])
    older = {**KR["ticker_update"], "data": [{**KR["ticker_update"]["data"][0],
                                               "timestamp": "2022-12-25T09:30:59.000000Z"}]}
    assert a.handle(frame(older), RECV) == () and a.take_quotes() == [] and a.stats.quotes_out_of_order == 1


def test_kraken_refused_symbol_is_dropped_once_for_both_channels(caplog):
    a = kraken("BTC/USD,XBT/EUR")
    a.subscribe_messages()
    error = {"error": "Currency pair not supported BTC/EUR", "method": "subscribe", "success": False,
             "symbol": "BTC/EUR", "time_in": "2018-11-12T21:14:59.545897Z", "time_out": "2018-11-12T21:14:59.545901Z"}
    a.handle(frame(error), RECV)  # for the trade subscription
    a.handle(frame(error), RECV)  # for the ticker subscription: the same text, no channel named
    assert "BTC/EUR" not in a.by_raw and a.stats.rejected == 1 and a.stats.errors == 0
    assert set(a.pending_acks) == {"BTC/USD", ("ticker", "BTC/USD")}
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


@pytest.mark.parametrize("item, counter", [
    ({"bid": 105944.3}, "quotes_crossed"),
    ({"bid_qty": 0}, "quotes_invalid"),
    ({"ask_qty": -3.2}, "quotes_invalid"),
    ({"ask": "abc"}, "quotes_invalid"),
    ({"timestamp": "not a time"}, "malformed"),
    ({"symbol": "ETH/USD"}, "unknown"),
])
def test_kraken_bad_tickers_are_counted(item, counter):
    a = kraken()
    payload = {**KR["ticker_update"], "data": [{**KR["ticker_update"]["data"][0], **item}]}
    assert a.handle(frame(payload), RECV) == ()
    assert a.take_quotes() == [] and counts(a) == {counter: 1}


def test_kraken_ticker_without_quotes_is_unknown_as_before():
    a = KrakenAdapter(ProducerConfig.from_env("kraken", {"KRAKEN_SYMBOLS": "BTC/USD"}))
    a.subscribe_messages()
    assert len(a._outbox) == 1
    a.handle(frame(KR["ticker_update"]), RECV)
    assert counts(a) == {"unknown": 1}


# --- OKX bbo-tbt and tickers -----------------------------------------------------------------

def okx(**env: str) -> OkxAdapter:
    return OkxAdapter(ProducerConfig.from_env("okx", {"OKX_SYMBOLS": "BTC-USDT,ETH-USDT", **ON, **env}))


def test_okx_bbo_tbt_docs_payload():
    a = okx()
    q = one(a, OK["bbo_tbt"])
    assert q == Quote("okx", "BTC-USDT", "BTC-USDT", "36232.1", "0.00572212", "36232.2", "1.8826134",
                      1651826598363, RECV, 363996337)


def test_okx_subscribes_both_channels_per_instrument_acked_per_arg():
    a = okx()
    a.subscribe_messages()
    [req] = sent(a)
    assert req["args"] == [{"channel": "trades", "instId": "BTC-USDT"}, {"channel": "bbo-tbt", "instId": "BTC-USDT"},
                           {"channel": "trades", "instId": "ETH-USDT"}, {"channel": "bbo-tbt", "instId": "ETH-USDT"}]
    assert len(a.pending_acks) == 4
    a.handle(frame({**OK["bbo_tbt_subscribe_ack"], "id": req["id"]}), RECV)
    a.handle(frame({**OK["subscribe_ack"], "id": req["id"]}), RECV)
    assert set(a.pending_acks) == {"ETH-USDT", ("bbo-tbt", "ETH-USDT")}


def test_okx_unknown_instrument_refusal_resends_the_rest_with_both_channels():
    a = okx()
    a.subscribe_messages()
    a._outbox.clear()
    err = {"id": "1", "event": "error", "code": "60018",
           "msg": "Wrong URL or channel:bbo-tbt,instId:ETH-USDT doesn't exist.", "connId": "a4d3ae55"}
    a.handle(frame(err), RECV)
    assert "ETH-USDT" not in a.by_raw and a.stats.rejected == 1
    [again] = sent(a)
    assert again["args"] == [{"channel": "trades", "instId": "BTC-USDT"}, {"channel": "bbo-tbt", "instId": "BTC-USDT"}]
    assert set(a.pending_acks) == {"BTC-USDT", ("bbo-tbt", "BTC-USDT")}


def test_okx_seq_id_reset_after_maintenance_is_followed_by_its_later_ts():
    a = okx()
    one(a, OK["bbo_tbt"])
    later = {**OK["bbo_tbt"], "data": [{**OK["bbo_tbt"]["data"][0], "seqId": 5, "ts": "1651826700000"}]}
    assert one(a, later).sequence == 5 and a.stats.quotes_resequenced == 1
    resend = {**OK["bbo_tbt"], "data": [{**OK["bbo_tbt"]["data"][0], "seqId": 5, "ts": "1651826760000"}]}
    assert one(a, resend).sequence == 5  # the idle resend: same seqId, still the current book


def test_okx_tickers_channel_when_chosen():
    a = okx(OKX_QUOTE_CHANNEL="tickers")
    a.subscribe_messages()
    assert {arg["channel"] for arg in sent(a)[0]["args"]} == {"trades", "tickers"}
    q = one(a, OK["tickers"])
    assert q == Quote("okx", "BTC-USDT", "BTC-USDT", "8888.88", "5", "9999.99", "11", 1597026383085, RECV, None)
    # bbo-tbt pushes are not what was subscribed: unknown
    a.handle(frame(OK["bbo_tbt"]), RECV)
    assert a.take_quotes() == [] and a.stats.unknown == 1


@pytest.mark.parametrize("data, counter", [
    ({"bids": []}, "quotes_invalid"),                                     # an empty side
    ({"asks": [["36232.1", "1", "0", "1"]]}, "quotes_crossed"),           # locked
    ({"asks": [["36232.2", "0", "0", "0"]]}, "quotes_invalid"),
    ({"seqId": "363996337"}, "malformed"),
    ({"ts": "soon"}, "malformed"),
    ({"bids": [["36232.1"]]}, "malformed"),
])
def test_okx_bad_bbo_pushes_are_counted(data, counter):
    a = okx()
    payload = {**OK["bbo_tbt"], "data": [{**OK["bbo_tbt"]["data"][0], **data}]}
    assert a.handle(frame(payload), RECV) == ()
    assert a.take_quotes() == [] and counts(a) == {counter: 1}


def test_okx_push_for_another_instrument_is_unknown():
    a = okx()
    a.handle(frame({**OK["bbo_tbt"], "arg": {"channel": "bbo-tbt", "instId": "SOL-USDT"}}), RECV)
    assert counts(a) == {"unknown": 1}


# --- Bybit orderbook.1 --------------------------------------------------------------------------

def bybit() -> BybitAdapter:
    return BybitAdapter(ProducerConfig.from_env("bybit", {"BYBIT_SYMBOLS": "BTCUSDT,ETHUSDT", **ON}))


def test_bybit_orderbook_1_docs_payload_ts_number_or_string():
    a = bybit()
    q = one(a, BY["orderbook_1"])
    assert q == Quote("bybit", "BTC-USDT", "BTCUSDT", "42663.50", "0.910", "42663.60", "11.446", 1702645020909,
                      RECV, 2768099)
    q = one(a, BY["orderbook_1_ts_string"])
    assert (q.exchange_ts, q.sequence, q.bid) == (1772694601512, 2768100, "68011.20")


def test_bybit_three_second_resend_passes_and_a_restart_u_1_is_followed():
    a = bybit()
    one(a, BY["orderbook_1"])
    assert one(a, {**BY["orderbook_1"], "ts": 1702645023909}).sequence == 2768099  # unchanged book, same u
    restart = {**BY["orderbook_1"], "ts": 1702645090000, "data": {**BY["orderbook_1"]["data"], "u": 1}}
    assert one(a, restart).sequence == 1 and a.stats.quotes_resequenced == 1


def test_bybit_subscribe_refusal_naming_a_book_topic_drops_that_symbol():
    a = bybit()
    a.subscribe_messages()
    [req] = sent(a)
    assert req["args"] == ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.ETHUSDT", "orderbook.1.ETHUSDT"]
    a._outbox.clear()
    a.handle(frame({**BY["subscribe_error"], "ret_msg": "Invalid symbol :[orderbook.1.ETHUSDT]",
                    "req_id": req["req_id"]}), RECV)
    assert "ETHUSDT" not in a.by_raw and sent(a)[0]["args"] == ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"]


@pytest.mark.parametrize("change, data, counter", [
    ({}, {"b": []}, "quotes_invalid"),
    ({}, {"a": [["42663.40", "1"]]}, "quotes_crossed"),
    ({}, {"b": [["42663.50", "0"]]}, "quotes_invalid"),
    ({"type": "delta"}, {}, "unknown"),                 # spot level 1 sends snapshots only
    ({"ts": "later"}, {}, "malformed"),
    ({}, {"u": "2768099"}, "malformed"),
    ({}, {"s": "SOLUSDT"}, "unknown"),
])
def test_bybit_bad_books_are_counted(change, data, counter):
    a = bybit()
    payload = {**BY["orderbook_1"], **change, "data": {**BY["orderbook_1"]["data"], **data}}
    assert a.handle(frame(payload), RECV) == ()
    assert a.take_quotes() == [] and counts(a) == {counter: 1}
