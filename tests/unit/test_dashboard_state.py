"""Dashboard data model (no Kafka, no browser): prices, spread policy, alert history, table text."""

from __future__ import annotations

import json
import random

import pytest
from cryptomon.dashboard.state import (
    ALERT_COLUMNS,
    MAX_COLUMN_PX,
    PRICE_COLUMNS,
    MarketState,
    alert_rows,
    column_widths,
    format_decimal,
    price_rows,
    split_symbol,
    text_px,
)

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


# --- issue 15, defect 10: the anomaly threshold, prices without trailing zeros, column widths -----

def test_anomaly_history_shows_the_threshold_the_job_emits() -> None:
    """The anomaly job writes `volume_threshold` (docs/alerts.md); the history showed `> ?`."""
    s = MarketState()
    job_alert = {"alert_id": "anomaly:binance:BNB-USDT:1", "alert_type": "volume_anomaly", "schema_version": 1,
                 "exchange": "binance", "symbol": "BNB-USDT", "window_end_ms": T0, "trade_count": 7,
                 "volume": "500.82", "vwap": "600.23", "volume_threshold": "150", "reasons": ["volume_threshold"]}
    spike_only = {**job_alert, "alert_id": "anomaly:binance:BNB-USDT:2", "volume_threshold": None,
                  "baseline_volume": "50", "spike_ratio": "10.02"}
    old_name = {**job_alert, "alert_id": "anomaly:binance:BNB-USDT:3", "threshold": "25"}
    del old_name["volume_threshold"]
    for alert in (job_alert, spike_only, old_name):
        assert s.ingest("alerts", json.dumps(alert).encode())
    details = {a["alert_id"][-1]: a["details"] for a in s.snapshot().alerts}
    assert details["1"] == "volume 500.82 > threshold 150, 7 trades, VWAP 600.23"
    assert details["2"] == "volume 500.82, 10.02x the recent mean 50, 7 trades, VWAP 600.23"
    assert details["3"].startswith("volume 500.82 > threshold 25,")
    assert all("?" not in d for d in details.values())


def test_arbitrage_history_shows_the_net_spread() -> None:
    s = MarketState()
    s.ingest("alerts", json.dumps({"alert_id": "b", "alert_type": "arbitrage", "schema_version": 2, "asset": "BTC",
                                   "buy_exchange": "kraken", "sell_exchange": "okx", "spread_usd": "300.0",
                                   "spread_bps": "69.77", "net_spread_usd": "-4.024", "net_spread_bps": "-0.94",
                                   "threshold_usd": "50", "window_end_ms": T0}).encode())
    [alert] = s.snapshot().alerts
    assert alert["details"] == "spread 300 USD (69.77 bps), net -4.024 USD (-0.94 bps) after fees, threshold 50 USD"


@pytest.mark.parametrize("raw, shown", [
    ("600.23000000", "600.23"), ("43000.00", "43000"), ("43000", "43000"), ("0.00001230", "0.0000123"),
    ("0.10000000", "0.1"), ("0E-8", "0"), ("1.5E+3", "1500"), ("12345678.12345678", "12345678.12345678"),
    ("", ""), ("n/a", "n/a"), (None, "None"), (7, "7"),
])
def test_format_decimal_drops_trailing_zeros_only(raw, shown) -> None:
    assert format_decimal(raw) == shown


def test_price_rows_are_formatted_and_columns_fit_their_content() -> None:
    s = MarketState()
    s.ingest("trades", trade("binance", "BNB-USDT", "600.23000000", T0 + 2500))
    s.ingest("trades", trade("coinbase", "SHIB-USD", "0.00001230", T0 + 1000))
    rows = price_rows(s.snapshot().prices)
    assert [(r["Exchange"], r["Symbol"], r["Price"], r["Size"]) for r in rows] == [
        ("binance", "BNB-USDT", "600.23", "0.1"), ("coinbase", "SHIB-USD", "0.0000123", "0.1")]
    assert rows[0]["Last trade (UTC)"] == "22:13:22.500" and rows[0]["Trades seen"] == "1"
    assert list(rows[0]) == [label for _, label in PRICE_COLUMNS]
    widths = column_widths(rows, PRICE_COLUMNS)
    for _, label in PRICE_COLUMNS:
        for text in (label, *(r[label] for r in rows)):
            # At least 7.3 px a character (measured in Streamlit's grid) plus the cell padding.
            assert widths[label] >= len(text) * 7.3 + 16, (label, text)
    assert text_px("BNB-USDT") > text_px("bnb-usdt")  # capitals are wider
    # One very long alert text does not make a column wider than the cap.
    alerts = alert_rows([{"time": None, "type": "x", "subject": "s", "details": "d" * 500, "alert_id": "i"}])
    assert column_widths(alerts, ALERT_COLUMNS)["Details"] == MAX_COLUMN_PX


def test_alert_rows_have_the_table_labels() -> None:
    s = MarketState()
    s.ingest("alerts", json.dumps({"alert_id": "a", "type": "volume_anomaly", "exchange": "binance",
                                   "symbol": "BTC-USDT", "window_end": T0, "volume": "35",
                                   "volume_threshold": "25"}).encode())
    [row] = alert_rows(s.snapshot().alerts)
    assert row == {"Window end": "2023-11-14 22:13:20 UTC", "Type": "volume_anomaly", "Subject": "BTC-USDT on binance",
                   "Details": "volume 35 > threshold 25, ? trades, VWAP ?", "Alert id": "a"}
