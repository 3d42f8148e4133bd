"""Dashboard data model (no Kafka, no browser): prices, spread policy, alert history."""

from __future__ import annotations

import json
import random

import pytest
from cryptomon.dashboard.state import MarketState, split_symbol

T0 = 1_700_000_000_000


def trade(exchange: str, symbol: str, price: str, ts: int) -> bytes:
    return json.dumps({"exchange": exchange, "symbol": symbol, "raw_symbol": symbol.replace("-", ""),
                       "trade_id": str(ts), "price": price, "size": "0.1", "side": "buy",
                       "exchange_ts": ts, "received_ts": ts + 5}).encode()


@pytest.mark.parametrize("symbol, expected", [
    ("BTC-USDT", ("BTC", "USDT")), ("BTC-USD", ("BTC", "USD")), ("eth/usd", ("ETH", "USD")),
    ("BTCUSDT", ("BTC", "USDT")), ("ETHUSD", ("ETH", "USD")), ("WEIRD", ("WEIRD", "")),
])
def test_split_symbol(symbol: str, expected: tuple[str, str]) -> None:
    assert split_symbol(symbol) == expected


def test_latest_price_per_exchange_and_symbol() -> None:
    s = MarketState()
    s.ingest("trades", trade("binance", "BTC-USDT", "43250.10", T0 + 2000))
    s.ingest("trades", trade("binance", "BTC-USDT", "43000.00", T0 + 1000))  # late arrival, older
    s.ingest("trades", trade("coinbase", "BTC-USD", "43320.50", T0 + 1500))
    prices = {(p["exchange"], p["symbol"]): p for p in s.snapshot().prices}
    assert prices[("binance", "BTC-USDT")]["price"] == "43250.10"  # exact string, newest by time
    assert prices[("binance", "BTC-USDT")]["trades"] == 2
    assert prices[("coinbase", "BTC-USD")]["price"] == "43320.50"


def test_spread_treats_usdt_as_usd_and_ignores_other_quotes() -> None:
    s = MarketState(("binance", "coinbase"))
    s.ingest("trades", trade("binance", "BTC-USDT", "43250", T0))
    s.ingest("trades", trade("coinbase", "BTC-USD", "43320", T0 + 10))
    s.ingest("trades", trade("coinbase", "ETH-EUR", "2000", T0))
    s.ingest("trades", trade("binance", "ETH-USDT", "2250", T0))
    snap = s.snapshot()
    assert [(p["asset"], p["spread_usd"]) for p in snap.spreads] == [("BTC", 70.0)]
    assert snap.spreads[0]["spread_bps"] == pytest.approx(70 / 43285 * 10000)
    assert "USDT" in snap.spread_label and "coinbase − binance" in snap.spread_label


def test_spread_does_not_depend_on_arrival_order() -> None:
    records = []
    for i in range(120):
        records.append(trade("binance", "BTC-USDT", f"{43000 + i}", T0 + i * 500))
        records.append(trade("coinbase", "BTC-USD", f"{43050 + 2 * i}", T0 + i * 500 + 100))
    in_order = MarketState()
    for r in records:
        in_order.ingest("trades", r)
    shuffled = MarketState()
    # Two partitions read one after the other, as a backfill does.
    for r in sorted(records, key=lambda r: (b"coinbase" in r, random.random())):
        shuffled.ingest("trades", r)
    assert in_order.snapshot().spreads == shuffled.snapshot().spreads
    assert len(in_order.snapshot().spreads) == 60  # one point per second


def test_stale_prices_are_not_paired() -> None:
    s = MarketState()
    s.ingest("trades", trade("binance", "BTC-USDT", "43250", T0))
    s.ingest("trades", trade("coinbase", "BTC-USD", "43320", T0 + 120_000))
    assert s.snapshot().spreads == []


def test_alert_history_dedupes_and_sorts_newest_first() -> None:
    s = MarketState()
    s.ingest("alerts", json.dumps({"alert_id": "a", "type": "volume_anomaly", "exchange": "binance",
                                   "symbol": "BTC-USDT", "window_end": T0, "volume": "35", "threshold": "25"}).encode())
    s.ingest("alerts", json.dumps({"alert_id": "b", "type": "arbitrage", "asset": "BTC", "spread_usd": "70.4",
                                   "window_end": "2023-11-14T22:20:00Z", "buy_exchange": "binance",
                                   "sell_exchange": "coinbase"}).encode())
    s.ingest("alerts", json.dumps({"alert_id": "a", "type": "volume_anomaly"}).encode())
    s.ingest("alerts", json.dumps({"alert_id": "c", "type": "mystery", "foo": "bar",
                                   "window_end": T0 - 1000}).encode())
    alerts = s.snapshot().alerts
    assert [a["alert_id"] for a in alerts] == ["b", "a", "c"]
    assert alerts[0]["subject"] == "BTC: buy binance, sell coinbase"
    assert alerts[1]["subject"] == "BTC-USDT on binance"
    assert alerts[2]["details"] == "foo=bar"


def test_bad_records_are_counted_not_raised() -> None:
    s = MarketState()
    for raw in (b"{", b"[]", None, b'{"exchange":"x"}', b'{"exchange":"x","symbol":"A-USD","price":"abc"}',
                b'{"exchange":"x","symbol":"A-USD","price":"-1"}', b"\xff"):
        assert s.ingest("trades", raw) is False
    assert s.ingest("alerts", b"nope") is False
    snap = s.snapshot()
    assert snap.malformed == 8 and snap.prices == [] and not s.has_data
