"""Top-of-book quotes (issue 14, point 1): the Quote schema, the ordering and validity rules every
venue's quotes go through, coalescing, the settings, the metrics, the sink and the mock feed.
The venues' own quote parsers are tested in test_producer_quote_parsers.py."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.producer import cli
from cryptomon.producer.backoff import Backoff
from cryptomon.producer.base import Stats
from cryptomon.producer.binance import BinanceAdapter
from cryptomon.producer.bybit import BybitAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.feed import Feed
from cryptomon.producer.metrics import QUOTE_COUNTERS, STATS_COUNTERS, ProducerCollector
from cryptomon.producer.mock import MockAdapter
from cryptomon.producer.quote import ACCEPT, OLDER, QUOTE_FIELDS, RESEQUENCED, Quote, QuoteOrder, crossed
from cryptomon.producer.registry import adapter_class, exchange_names
from cryptomon.producer.schema import SchemaError, Trade
from cryptomon.producer.sink import KafkaSink, StdoutSink
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
PAYLOADS = REPO / "tests" / "fixtures" / "exchange_payloads"
BN = json.loads((PAYLOADS / "binance.json").read_text())
RECV = 1_700_000_000_123
QUOTES_ON = {"PRODUCER_QUOTES": "true"}


def binance(**env: str) -> BinanceAdapter:
    return BinanceAdapter(ProducerConfig.from_env("binance", {"BINANCE_SYMBOLS": "BNBUSDT,BTCUSDT", **env}))


def book(u: int, b: str = "25.35190000", a: str = "25.36520000", s: str = "BNBUSDT",
         bq: str = "31.21000000", aq: str = "40.66000000") -> bytes:
    return json.dumps({"stream": f"{s.lower()}@bookTicker",
                       "data": {"u": u, "s": s, "b": b, "B": bq, "a": a, "A": aq}}).encode()


def sample() -> Quote:
    return Quote("binance", "BNB-USDT", "BNBUSDT", "25.35190000", "31.21000000", "25.36520000", "40.66000000",
                 None, RECV, 400900217)


# --- schema ----------------------------------------------------------------------------

def test_quote_json_is_exact_ordered_and_keyed_by_exchange_and_symbol():
    q = sample()
    text = q.to_json()
    assert text == ('{"exchange":"binance","symbol":"BNB-USDT","raw_symbol":"BNBUSDT","bid":"25.35190000",'
                    '"bid_size":"31.21000000","ask":"25.36520000","ask_size":"40.66000000","exchange_ts":null,'
                    f'"received_ts":{RECV},"sequence":400900217}}')
    assert list(json.loads(text)) == list(QUOTE_FIELDS)
    assert Quote.from_json(text) == q
    assert q.key() == b"binance:BNB-USDT"
    timed = Quote("kraken", "BTC-USD", "BTC/USD", "1.5", "2", "1.6", "3", 1672000000000, RECV, None)
    assert Quote.from_json(timed.to_json()) == timed
    assert json.loads(timed.to_json())["sequence"] is None


@pytest.mark.parametrize("change, problem", [
    ({"bid": "25.3652", "ask": "25.36520000"}, "crossed or locked"),  # locked: equal values
    ({"bid": "26", "ask": "25"}, "crossed or locked"),
    ({"bid_size": "0.000"}, "is zero"),
    ({"ask": "-1"}, "not a decimal"),
    ({"ask_size": "1e3"}, "not a decimal"),
    ({"exchange_ts": 0}, "exchange_ts"),
    ({"sequence": -1}, "sequence"),
    ({"symbol": "BNBUSDT"}, "BASE-QUOTE"),
])
def test_invalid_quotes_fail_validation(change, problem):
    data = {**sample().to_dict(), **change}
    with pytest.raises(SchemaError, match=problem):
        Quote.from_json(json.dumps(data))


def test_from_json_wants_exactly_the_schema_fields():
    data = sample().to_dict()
    del data["sequence"]
    with pytest.raises(SchemaError, match="fields"):
        Quote.from_json(json.dumps(data))


@pytest.mark.parametrize("bid, ask, expected", [
    ("1", "2", False), ("2", "1", True), ("1.0", "1", True), ("0.10", "0.1000", True),
    # Beyond a float's precision: equal as floats, ordered exactly by Decimal.
    ("0.12345678901234567890", "0.12345678901234567891", False),
    ("0.12345678901234567891", "0.12345678901234567890", True),
    ("99999999999999999.1", "99999999999999999.2", False),
])
def test_crossed_compares_decimal_strings_exactly(bid, ask, expected):
    assert crossed(bid, ask) is expected


# --- ordering ---------------------------------------------------------------------------

def test_order_by_sequence_equal_is_a_resend_not_older():
    o = QuoteOrder()
    assert o.check("X", 10, None) == ACCEPT
    assert o.check("X", 12, None) == ACCEPT
    assert o.check("X", 11, None) == OLDER       # late: dropped
    assert o.check("X", 12, None) == ACCEPT      # the same update again (Bybit/OKX resends)
    assert o.check("X", 13, None) == ACCEPT
    assert o.check("Y", 1, None) == ACCEPT       # per market


def test_order_same_sequence_with_an_earlier_time_is_older():
    o = QuoteOrder()
    assert o.check("X", 5, 1000) == ACCEPT
    assert o.check("X", 5, 999) == OLDER
    assert o.check("X", 5, 1000) == ACCEPT
    assert o.check("X", 6, 990) == ACCEPT        # a higher sequence wins over the clock


def test_order_by_time_when_the_venue_sends_no_sequence():
    o = QuoteOrder()
    assert o.check("X", None, 1000) == ACCEPT
    assert o.check("X", None, 999) == OLDER
    assert o.check("X", None, 1000) == ACCEPT
    assert o.check("X", None, None) == ACCEPT    # nothing to compare: kept
    assert o.marks["X"] == (None, 1000)          # the last known time stays the mark
    assert o.check("X", None, 999) == OLDER


def test_a_lower_sequence_with_a_later_time_is_a_renumbering():
    o = QuoteOrder()
    assert o.check("X", 2768099, 1000) == ACCEPT
    assert o.check("X", 1, 1001) == RESEQUENCED  # Bybit u=1 after a restart
    assert o.check("X", 2, 1002) == ACCEPT
    assert o.check("X", 1, 1002) == OLDER


def test_without_a_clock_a_renumbering_is_followed_after_three_in_a_row():
    o = QuoteOrder(confirmations=3)
    assert o.check("X", 10**12, None) == ACCEPT  # one bogus far-ahead id
    assert o.check("X", 100, None) == OLDER
    assert o.check("X", 101, None) == OLDER
    assert o.check("X", 102, None) == RESEQUENCED
    assert o.check("X", 103, None) == ACCEPT
    # A single stray late message is dropped and forgotten by the next good one.
    assert o.check("X", 50, None) == OLDER
    assert o.check("X", 104, None) == ACCEPT
    assert o.check("X", 51, None) == OLDER
    assert o.check("X", 52, None) == OLDER
    assert o.check("X", 105, None) == ACCEPT


# --- the base class's quote path, through Binance bookTicker frames ----------------------

def test_quotes_are_coalesced_per_market_within_one_read():
    a = binance(**QUOTES_ON)
    for u, bid in ((1, "25.1"), (2, "25.2"), (3, "25.3")):
        assert a.handle(book(u, b=bid), RECV) == ()
    assert a.handle(book(7, s="BTCUSDT", b="100", a="101"), RECV) == ()
    quotes = a.take_quotes()
    assert [(q.raw_symbol, q.bid, q.sequence) for q in quotes] == [("BNBUSDT", "25.3", 3), ("BTCUSDT", "100", 7)]
    assert (a.stats.quotes, a.stats.quotes_coalesced, a.stats.trades) == (2, 2, 0)
    assert a.take_quotes() == []                  # flushed
    a.handle(book(4), RECV)
    assert [q.sequence for q in a.take_quotes()] == [4]


@pytest.mark.parametrize("frame, counter", [
    (book(1, b="25.4", a="25.4"), "quotes_crossed"),          # locked
    (book(1, b="25.40", a="25.4"), "quotes_crossed"),         # locked, other digits
    (book(1, b="25.5", a="25.4"), "quotes_crossed"),          # crossed
    (book(1, bq="0.00000000"), "quotes_invalid"),             # zero size
    (book(1, aq="-1.0"), "quotes_invalid"),                   # negative size
    (book(1, b="0"), "quotes_invalid"),                       # zero price
    (book(1, a="NaN"), "quotes_invalid"),
    (book(1, a=""), "quotes_invalid"),
    (json.dumps({"stream": "bnbusdt@bookTicker", "data": {"u": 1, "s": "BNBUSDT", "b": 25.3, "B": "1",
                                                           "a": "26", "A": "1"}}).encode(), "quotes_invalid"),
    (json.dumps({"stream": "bnbusdt@bookTicker", "data": {"u": 1, "s": "BNBUSDT"}}).encode(), "malformed"),
    (json.dumps({"stream": "bnbusdt@bookTicker", "data": {"u": "1", "s": "BNBUSDT", "b": "1", "B": "1",
                                                           "a": "2", "A": "1"}}).encode(), "malformed"),
    (book(1, s="DOGEUSDT"), "unknown"),
])
def test_bad_quotes_are_counted_never_emitted(frame, counter):
    a = binance(**QUOTES_ON)
    assert a.handle(frame, RECV) == ()
    assert a.take_quotes() == []
    counts = {**a.stats.as_dict(), **a.stats.quote_dict()}
    assert counts[counter] == 1
    assert sum(counts.values()) == 1


def test_out_of_order_quotes_are_dropped_and_a_bad_book_does_not_move_the_mark():
    a = binance(**QUOTES_ON)
    a.handle(book(10, b="25.1"), RECV)
    a.handle(book(9, b="25.0"), RECV)                 # late
    a.handle(book(12, b="25.5", a="25.4"), RECV)      # crossed: dropped, the mark stays at 10
    a.handle(book(11, b="25.2"), RECV)                # newer than the last one let through
    assert [(q.sequence, q.bid) for q in a.take_quotes()] == [(11, "25.2")]
    assert (a.stats.quotes_out_of_order, a.stats.quotes_crossed, a.stats.quotes_coalesced) == (1, 1, 1)


def test_a_flood_of_bad_quotes_logs_a_line_not_a_flood(caplog):
    caplog.set_level(logging.WARNING)
    a = binance(**QUOTES_ON)
    for u in range(1, 500):
        a.handle(book(u, b="26", a="25"), RECV)
    assert a.stats.quotes_crossed == 499
    lines = [r for r in caplog.records if "crossed or locked" in r.getMessage()]
    assert len(lines) == 1 and "BNBUSDT" in lines[0].getMessage()


def test_quotes_off_changes_nothing():
    a = binance()
    assert not a.quotes_on
    a.subscribe_messages()
    assert list(a._outbox) == ['{"method": "SUBSCRIBE", "params": ["bnbusdt@trade", "btcusdt@trade"], "id": 1}']
    # A bookTicker frame nobody asked for is an unknown message, as it always was.
    assert a.handle(book(1), RECV) == ()
    assert a.stats.unknown == 1 and a.take_quotes() == [] and a.stats.quote_dict()["quotes"] == 0
    assert a.stats.line() == Stats().line().replace("unknown=0", "unknown=1")
    assert "quotes" not in a.stats.line()


# --- settings ------------------------------------------------------------------------------

def test_quote_settings_default_off_and_parsed_once():
    c = ProducerConfig.from_env("binance", {})
    assert (c.quotes.enabled, c.quotes.topic) == (False, "quotes.raw")
    for text in ("true", "TRUE", "1", "yes", "on", " true "):
        assert ProducerConfig.from_env("binance", {"PRODUCER_QUOTES": text}).quotes.enabled
    for text in ("false", "0", "no", "off", ""):
        assert not ProducerConfig.from_env("binance", {"PRODUCER_QUOTES": text}).quotes.enabled
    c = ProducerConfig.from_env("okx", {"PRODUCER_QUOTES": "true", "KAFKA_QUOTES_TOPIC": "q.top-of-book_1"})
    assert (c.quotes.enabled, c.quotes.topic) == (True, "q.top-of-book_1")


@pytest.mark.parametrize("env, message", [
    ({"PRODUCER_QUOTES": "maybe"}, "PRODUCER_QUOTES: 'maybe' is not true or false"),
    ({"PRODUCER_QUOTES": "ture"}, "PRODUCER_QUOTES: 'ture' is not true or false"),
    ({"KAFKA_QUOTES_TOPIC": "quotes raw"}, "KAFKA_QUOTES_TOPIC: 'quotes raw' is not a valid Kafka topic name"),
    ({"KAFKA_QUOTES_TOPIC": "q" * 250}, "KAFKA_QUOTES_TOPIC"),
    ({"KAFKA_QUOTES_TOPIC": ".."}, "KAFKA_QUOTES_TOPIC"),
    ({"KAFKA_QUOTES_TOPIC": "trades.raw"}, "KAFKA_QUOTES_TOPIC: 'trades.raw' is the trades topic too"),
    ({"KAFKA_TRADES_TOPIC": "md", "KAFKA_QUOTES_TOPIC": "md"}, "is the trades topic too"),
    ({"PRODUCER_QUOTES": "true", "OKX_QUOTE_CHANNEL": "books5"}, "OKX_QUOTE_CHANNEL: 'books5' is not bbo-tbt"),
])
def test_quote_settings_errors_name_the_variable(env, message):
    exchange = "okx" if "OKX_QUOTE_CHANNEL" in env else "binance"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ProducerConfig.from_env(exchange, env)


@pytest.mark.parametrize("exchange", exchange_names(real_only=True))
def test_every_exchange_has_a_quote_channel_that_doubles_its_streams(exchange):
    cls = adapter_class(exchange)
    assert cls.quote_channel and cls.describe()["quote_channel"] == cls.quote_channel
    off = ProducerConfig.from_env(exchange, {})
    on = ProducerConfig.from_env(exchange, QUOTES_ON)
    assert (cls.streams_per_market(off), cls.streams_per_market(on)) == (1, 2)
    # Sharding counts streams: with quotes, half the markets fit on one connection.
    assert Feed(on, cls).per_connection == Feed(off, cls).per_connection // 2


def test_bybit_subscribes_five_markets_per_request_of_ten_args():
    symbols = ",".join(f"S{i}USDT" for i in range(7))
    a = BybitAdapter(ProducerConfig.from_env("bybit", {"BYBIT_SYMBOLS": symbols, **QUOTES_ON}))
    a.subscribe_messages()
    requests = [json.loads(m) for m in a._outbox]
    assert [len(r["args"]) for r in requests] == [10, 4]
    assert requests[0]["args"][:2] == ["publicTrade.S0USDT", "orderbook.1.S0USDT"]


# --- metrics ------------------------------------------------------------------------------

def test_every_quote_counter_is_a_metric_with_a_distinct_name():
    assert set(QUOTE_COUNTERS) == set(Stats.QUOTE_FIELDS)
    names = [n for n, _ in QUOTE_COUNTERS.values()] + [n for n, _ in STATS_COUNTERS.values()]
    assert len(names) == len(set(names))


def scrape(adapter) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ProducerCollector("binance", adapter, None))
    return registry


def test_quote_counters_are_read_at_scrape_time_only_when_quotes_are_on():
    off = binance()
    assert scrape(off).get_sample_value("cryptomon_producer_quotes_total", {"exchange": "binance"}) is None
    a = binance(**QUOTES_ON)
    registry = scrape(a)
    value = lambda name: registry.get_sample_value(f"cryptomon_producer_{name}_total",  # noqa: E731
                                                   {"exchange": "binance"})
    assert value("quotes") == 0
    for frame in (book(1), book(2), book(1), book(3, b="26", a="25"), book(4, aq="0")):
        a.handle(frame, RECV)
    a.take_quotes()
    assert (value("quotes"), value("quotes_coalesced"), value("quotes_out_of_order"), value("quotes_crossed"),
            value("quotes_invalid"), value("quotes_resequenced")) == (1, 1, 1, 1, 1, 0)
    assert value("trades") == 0


# --- sinks --------------------------------------------------------------------------------

def test_kafka_sink_produces_quotes_to_their_own_topic_on_the_same_producer():
    sink = KafkaSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test", quotes_topic="quotes.raw")
    produced = []
    sink._produce = lambda topic, value, key: produced.append((topic, value, key))
    q = sample()
    sink.emit_quote(q)
    sink.emit_quote(q)
    assert produced == [("quotes.raw", q.to_json(), b"binance:BNB-USDT")] * 2
    mock_quote = Quote("coinbase", "BNB-USDT", "BNBUSDT", "1", "1", "2", "1", None, RECV, None)
    sink.emit_quote(mock_quote)  # another exchange, same symbol (the mock): its own key
    assert produced[-1][2] == b"coinbase:BNB-USDT"
    sink._producer.flush(0)
    plain = KafkaSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    with pytest.raises(ValueError, match="quotes are off"):
        plain.emit_quote(q)


class FakeMetadata:
    """list_topics() of a cluster where `present` topics exist (and more appear over time)."""

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[str] = []

    def list_topics(self, name: str, timeout: float) -> SimpleNamespace:
        self.asked.append(name)
        topics = {name: SimpleNamespace(error=None, partitions={0: SimpleNamespace(leader=1)})} \
            if name in self.present else {}
        return SimpleNamespace(topics=topics)


def test_kafka_sink_waits_for_the_quotes_topic_too(caplog):
    caplog.set_level(logging.INFO)
    sink = KafkaSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test", quotes_topic="quotes.raw")
    real, sink._producer = sink._producer, FakeMetadata({"trades.raw"})
    stop = threading.Event()
    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(sink.wait_ready(stop, Backoff(0.01, 0.02))))
    t.start()
    try:
        deadline = time.monotonic() + 5
        while sink._producer.asked.count("quotes.raw") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not done  # the trades topic alone is not enough
        sink._producer.present.add("quotes.raw")
        t.join(5)
    finally:
        stop.set()
        t.join(5)
        real.flush(0)
    assert done == [True]
    assert "topic quotes.raw does not exist" in caplog.text
    assert "Kafka ready: topic trades.raw with 1 partitions, topic quotes.raw with 1 partitions" in caplog.text


def test_kafka_sink_without_quotes_asks_for_the_trades_topic_only(caplog):
    caplog.set_level(logging.INFO)
    sink = KafkaSink(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    real, sink._producer = sink._producer, FakeMetadata({"trades.raw"})
    assert sink.wait_ready(threading.Event())
    real.flush(0)
    assert sink._producer.asked == ["trades.raw"]
    assert "Kafka ready: topic trades.raw with 1 partitions" in caplog.text


def test_stdout_sink_prints_quotes_as_json_lines():
    out = io.StringIO()
    StdoutSink(out).emit_quote(sample())
    assert Quote.from_json(out.getvalue().strip()) == sample()


# --- the mock feed --------------------------------------------------------------------------

def mock(**env: str) -> MockAdapter:
    return MockAdapter(ProducerConfig.from_env("mock", {"MOCK_SEED": "3", "MOCK_DIVERGE_BPS": "80", **env}))


def test_mock_quotes_surround_each_trade_and_show_the_divergence():
    m = mock(**QUOTES_ON)
    trades = m.next_trades(0.0)
    quotes = m.quotes_for(trades)
    assert len(quotes) == len(trades) == 4  # binance and coinbase, two symbols
    for t, q in zip(trades, quotes, strict=True):
        q.validate()
        assert (q.exchange, q.symbol, q.raw_symbol) == (t.exchange, t.symbol, t.raw_symbol)
        assert float(q.bid) < float(t.price) < float(q.ask)
    first, second = quotes[0], quotes[1]  # BTC-USDT on binance, then coinbase (80 bps higher)
    assert second.exchange == "coinbase" and float(second.bid) > float(first.ask)
    assert [q.sequence for q in m.quotes_for(m.next_trades(0.0))] == [q.sequence + 1 for q in quotes]


def test_mock_trades_are_the_same_with_quotes_on_or_off():
    def run(env: dict[str, str]) -> tuple[list, list]:
        m = mock(MOCK_RATE="1000", **env)
        trades, quotes = [], []
        stop = threading.Event()

        def emit(t):
            trades.append((t.price, t.size, t.side))
            if len(trades) >= 40:
                stop.set()
        m.run(emit, stop, quotes.append)
        return trades[:40], quotes

    off_trades, off_quotes = run({})
    on_trades, on_quotes = run(QUOTES_ON)
    assert off_trades == on_trades and off_quotes == []
    assert len(on_quotes) >= 36 and all(isinstance(q, Quote) for q in on_quotes)


# --- the command line ---------------------------------------------------------------------

def test_cli_bad_quote_setting_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYPTOMON_ENV_FILE", raising=False)
    monkeypatch.setenv("PRODUCER_QUOTES", "sometimes")
    assert cli.main(["mock", "--stdout"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cryptomon-producer: configuration error: PRODUCER_QUOTES: 'sometimes' is not true or false"]


@pytest.mark.timeout(60)
def test_cli_stdout_prints_quotes_beside_trades_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOCK_", "METRICS_", "KAFKA_", "CRYPTOMON_",
                                                                     "PRODUCER_"))}
    env.update(PYTHONPATH=str(REPO / "services"), MOCK_RATE="50", MOCK_EXCHANGES="binance,okx",
               MOCK_SYMBOLS="BTC-USDT", PRODUCER_QUOTES="true", PRODUCER_STATS_INTERVAL_S="600")
    proc = subprocess.Popen([sys.executable, "-m", "cryptomon.producer", "mock", "--stdout"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(40)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in lines]
    quotes = [Quote.from_json(line) for line, r in zip(lines, records, strict=True) if "bid" in r]
    trades = [Trade.from_json(line) for line, r in zip(lines, records, strict=True) if "trade_id" in r]
    assert len(quotes) + len(trades) == 40 and len(quotes) >= 16 and len(trades) >= 16
    assert {q.exchange for q in quotes} == {"binance", "okx"}
    assert "; quotes to stdout" in err and " quotes=" in err.splitlines()[-1]
