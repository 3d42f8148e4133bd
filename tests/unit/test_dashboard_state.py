"""Dashboard data model (no Kafka, no browser): prices, the spread matrix and its policy, alert history,
table text and colours."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal

import pytest
from cryptomon.dashboard.state import (
    ALERT_COLUMNS,
    DEFAULT_STALE_AFTER_MS,
    LEVEL_CSS,
    MAX_COLUMN_PX,
    MISSING,
    PRICE_COLUMNS,
    STALE_CSS,
    SUMMARY_COLUMNS,
    AssetSpread,
    Level,
    MarketState,
    SpreadMatrix,
    SpreadPolicy,
    VenuePrice,
    alert_rows,
    best_spread_points,
    build_matrix,
    column_widths,
    format_age,
    format_decimal,
    markdown_escape,
    matrix_table,
    pick_buy_sell,
    policy_caption,
    price_rows,
    split_symbol,
    summary_table,
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


def test_chart_spread_treats_usdt_as_usd_and_ignores_other_quotes() -> None:
    s = MarketState()
    s.ingest("trades", trade("binance", "BTC-USDT", "43250", T0))
    s.ingest("trades", trade("coinbase", "BTC-USD", "43320", T0 + 10))
    s.ingest("trades", trade("coinbase", "ETH-EUR", "2000", T0))
    s.ingest("trades", trade("binance", "ETH-USDT", "2250", T0))
    snap = s.snapshot(now_ms=T0 + 1000)
    assert [(p["asset"], p["spread_usd"], p["buy"], p["sell"]) for p in snap.spreads] == [
        ("BTC", 70.0, "binance", "coinbase")]
    # bps of the buy price, as the arbitrage job computes them.
    assert snap.spreads[0]["spread_bps"] == pytest.approx(16.18)
    assert "USDT" in policy_caption(snap.policy)


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


# --- issue 13, point 5: the spread matrix over any number of exchanges ----------------------------

NOW = T0 + 10_000  # "now" for the matrix tests: trades at T0 are 10 s old


def market(*trades: tuple[str, str, str, int], policy: SpreadPolicy | None = None) -> MarketState:
    """A state fed with (exchange, symbol, price, age in ms at NOW) trades."""
    s = MarketState(policy)
    for exchange, symbol, price, age in trades:
        assert s.ingest("trades", trade(exchange, symbol, price, NOW - age))
    return s


def row(matrix: SpreadMatrix, asset: str) -> AssetSpread:
    return next(a for a in matrix.assets if a.asset == asset)


FIVE_VENUES = (("binance", "BTC-USDT", "43250.10000000", 1000), ("coinbase", "BTC-USD", "43320.50", 2000),
               ("kraken", "BTC-USD", "43280.0", 500), ("okx", "BTC-USDC", "43260", 1500),
               ("mock-bybit", "BTC-USDT", "43300", 800))


def test_matrix_has_a_column_per_exchange_and_compares_them_all() -> None:
    matrix = market(*FIVE_VENUES, ("coinbase", "ETH-EUR", "2000", 0), ("kraken", "ETH-BTC", "0.05", 0),
                    ("binance", "ETH-USDT", "2250", 0)).snapshot(now_ms=NOW).matrix
    assert matrix.exchanges == ("binance", "coinbase", "kraken", "mock-bybit", "okx")
    # ETH only in USDT (EUR and BTC quotes are not dollars): a row of one venue, no spread.
    assert [a.asset for a in matrix.assets] == ["BTC", "ETH"]
    btc = row(matrix, "BTC")
    assert (btc.buy.exchange, btc.sell.exchange) == ("binance", "coinbase")
    assert btc.spread_usd == Decimal("70.40") and btc.spread_bps == Decimal("16.28")  # of the buy price
    assert btc.fresh_venues == ("binance", "coinbase", "kraken", "mock-bybit", "okx")
    deviations = {ex: (c.deviation_usd, c.deviation_bps) for ex, c in btc.cells.items()}
    assert deviations == {"binance": (0, 0), "coinbase": (Decimal("70.40"), Decimal("16.28")),
                          "kraken": (Decimal("29.90"), Decimal("6.91")), "okx": (Decimal("9.90"), Decimal("2.29")),
                          "mock-bybit": (Decimal("49.90"), Decimal("11.54"))}
    eth = row(matrix, "ETH")
    assert eth.buy.exchange == "binance" and eth.sell is None and eth.spread_usd is None
    assert eth.level is Level.NONE and set(eth.cells) == {"binance"}


def test_usd_usdt_usdc_are_one_asset_and_the_newest_trade_of_a_venue_counts() -> None:
    s = market(("binance", "BTC-USDT", "43000", 3000), ("binance", "BTC-USDC", "43100", 1000),
               ("binance", "BTC-USDT", "42000", 9000), ("coinbase", "btc-usd", "43150", 500))
    btc = row(s.snapshot(now_ms=NOW).matrix, "BTC")
    assert btc.cells["binance"].venue.symbol == "BTC-USDC" and btc.cells["binance"].venue.price == 43100
    assert btc.spread_usd == 50 and btc.cells["coinbase"].venue.symbol == "BTC-USD"


def test_stale_prices_are_shown_but_never_count_for_the_spread() -> None:
    limit = DEFAULT_STALE_AFTER_MS
    s = market(("binance", "BTC-USDT", "43250", 1000), ("coinbase", "BTC-USD", "43300", limit),  # just fresh
               ("kraken", "BTC-USD", "40000", limit + 1),  # cheapest of all, but stale
               ("okx", "BTC-USDT", "49000", 3_600_000),  # dearest of all, but stale
               ("kraken", "ETH-USD", "2250", limit + 5000), ("okx", "ETH-USDT", "2260", limit + 1))
    matrix = s.snapshot(now_ms=NOW).matrix
    btc = row(matrix, "BTC")
    assert (btc.buy.exchange, btc.sell.exchange, btc.spread_usd) == ("binance", "coinbase", 50)
    assert btc.stale_venues == ("kraken", "okx") and btc.fresh_venues == ("binance", "coinbase")
    assert btc.cells["kraken"].stale and btc.cells["kraken"].deviation_usd is None
    assert btc.cells["okx"].age_ms == 3_600_000
    eth = row(matrix, "ETH")  # nothing fresh: no buy, no sell, no colour
    assert eth.buy is None and eth.sell is None and eth.level is Level.NONE
    table = matrix_table(matrix)
    assert table.cell(0, "kraken") == "40000 USD · stale, 1m old" and table.style(0, "kraken") == STALE_CSS
    assert table.cell(0, "okx") == "49000 USDT · stale, 1h old"
    assert table.cell(1, "okx") == "2260 USDT · stale, 1m old" and table.style(1, "okx") == STALE_CSS
    assert table.cell(1, "binance") == MISSING and table.style(1, "binance") == ""


def test_a_shorter_staleness_limit_greys_more() -> None:
    s = market(("binance", "BTC-USDT", "43250", 1000), ("coinbase", "BTC-USD", "43300", 6000),
               policy=SpreadPolicy(stale_after_ms=5000))
    btc = row(s.snapshot(now_ms=NOW).matrix, "BTC")
    assert btc.stale_venues == ("coinbase",) and btc.spread_usd is None
    # A trade stamped a little ahead of our clock is fresh, not negative-aged.
    s.ingest("trades", trade("kraken", "BTC-USD", "43290", NOW + 700))
    btc = row(s.snapshot(now_ms=NOW).matrix, "BTC")
    assert btc.cells["kraken"].age_ms == 0 and btc.spread_usd == 40


@pytest.mark.parametrize("spread, level", [
    ("0", Level.CALM), ("24.99", Level.CALM), ("25", Level.NEAR), ("49.99", Level.NEAR), ("50", Level.ALERT),
    ("500", Level.ALERT),
])
def test_colour_is_the_best_spread_against_the_threshold(spread: str, level: Level) -> None:
    s = market(("binance", "BTC-USDT", "43000", 0), ("kraken", "BTC-USD", str(43000 + Decimal(spread)), 0))
    matrix = s.snapshot(now_ms=NOW).matrix
    assert row(matrix, "BTC").level is level
    table = matrix_table(matrix)
    # The asset and every fresh cell carry the asset's colour, whichever venue it is.
    assert {table.style(0, c) for c in table.columns} == {LEVEL_CSS[level]}


def test_per_asset_thresholds_and_the_colours_in_both_tables() -> None:
    policy = SpreadPolicy(threshold_usd=Decimal(50), thresholds=(("ETH", Decimal(5)), ("SOL", Decimal("0.5"))))
    s = market(("binance", "BTC-USDT", "43000", 0), ("kraken", "BTC-USD", "43030", 0),  # 30 of 50: amber
               ("binance", "ETH-USDT", "2250", 0), ("okx", "ETH-USDT", "2255.5", 0),  # 5.5 of 5: red
               ("kraken", "SOL-USD", "101.5", 0), ("okx", "SOL-USDT", "101.52", 0),  # 0.02 of 0.5: green
               policy=policy)
    matrix = s.snapshot(now_ms=NOW).matrix
    assert [(a.asset, a.threshold_usd, a.level) for a in matrix.assets] == [
        ("BTC", 50, Level.NEAR), ("ETH", 5, Level.ALERT), ("SOL", Decimal("0.5"), Level.CALM)]
    summary = summary_table(matrix)
    assert summary.columns == SUMMARY_COLUMNS
    assert summary.rows[1] == ("ETH", "binance 2250 → okx 2255.5", "5.5", "24.44", "5", "2 fresh: binance, okx")
    assert [summary.style(i, "Spread USD") for i in range(3)] == [LEVEL_CSS[lv] for lv in
                                                                  (Level.NEAR, Level.ALERT, Level.CALM)]
    assert summary.style(0, "Venues seen") == ""
    caption = policy_caption(policy)
    assert "50 USD (ETH 5, SOL 0.5)" in caption and "1m" in caption and "USDT" in caption


def test_equal_prices_pick_venues_by_name_so_the_page_does_not_flicker() -> None:
    for order in (("okx", "binance", "kraken"), ("kraken", "okx", "binance")):
        s = market(*((ex, "BTC-USDT", "43000", 0) for ex in order))
        btc = row(s.snapshot(now_ms=NOW).matrix, "BTC")
        assert (btc.buy.exchange, btc.sell.exchange, btc.spread_usd, btc.level) == ("binance", "kraken", 0, Level.CALM)
    assert pick_buy_sell([]) == (None, None)
    assert pick_buy_sell([(Decimal(2), "b"), (Decimal(3), "c"), (Decimal(3), "a")]) == (
        (Decimal(2), "b"), (Decimal(3), "a"))


def test_matrix_text_is_exact_and_without_trailing_zeros() -> None:
    s = market(*FIVE_VENUES, ("binance", "SHIB-USDT", "0.00001230", 0), ("kraken", "SHIB-USD", "0.0000124000", 0),
               ("okx", "DOGE-USDT", "0.10000000", 0))
    table = matrix_table(s.snapshot(now_ms=NOW).matrix)
    assert table.columns == ("Asset", "binance", "coinbase", "kraken", "mock-bybit", "okx")
    assert [r[0] for r in table.rows] == ["BTC", "DOGE", "SHIB"]
    assert table.rows[0][1:] == ("43250.1 USDT · cheapest", "43320.5 USD · +70.4 (+16.28 bps)",
                                 "43280 USD · +29.9 (+6.91 bps)", "43300 USDT · +49.9 (+11.54 bps)",
                                 "43260 USDC · +9.9 (+2.29 bps)")
    assert table.cell(1, "okx") == "0.1 USDT · only fresh venue" and table.style(1, "okx") == ""
    assert table.cell(2, "kraken") == "0.0000124 USD · +0.0000001 (+81.3 bps)"
    summary = summary_table(s.snapshot(now_ms=NOW).matrix)
    assert summary.rows[0][:4] == ("BTC", "binance 43250.1 → coinbase 43320.5", "70.4", "16.28")
    assert summary.rows[1][1:4] == ("needs two fresh venues (only okx)", MISSING, MISSING)
    assert not re.search(r"\d[eE][-+]?\d", " ".join(" ".join(r) for r in table.rows))  # no exponent notation


def test_compared_exchanges_can_be_limited() -> None:
    policy = SpreadPolicy(exchanges=("binance", "kraken"))
    s = market(*FIVE_VENUES, policy=policy)
    snap = s.snapshot(now_ms=NOW)
    assert snap.matrix.exchanges == ("binance", "kraken")
    assert row(snap.matrix, "BTC").spread_usd == Decimal("29.90")
    assert {p["exchange"] for p in snap.prices} == {"binance", "coinbase", "kraken", "mock-bybit", "okx"}


def test_build_matrix_is_pure_and_takes_the_newest_price_per_venue() -> None:
    prices = [VenuePrice("kraken", "BTC", "BTC-USD", Decimal(43000), NOW - 100),
              VenuePrice("kraken", "BTC", "BTC-USD", Decimal(42000), NOW - 200),  # older: ignored
              VenuePrice("okx", "BTC", "BTC-USDT", Decimal(43010), NOW)]
    matrix = build_matrix(prices, NOW, SpreadPolicy())
    assert row(matrix, "BTC").cells["kraken"].venue.price == 43000
    assert build_matrix(reversed(prices), NOW, SpreadPolicy()) == matrix
    assert build_matrix([], NOW, SpreadPolicy()) == SpreadMatrix((), (), DEFAULT_STALE_AFTER_MS)


@pytest.mark.parametrize("kwargs, problem", [
    ({"stale_after_ms": 0}, "stale_after_ms"), ({"threshold_usd": Decimal(0)}, "threshold of default"),
    ({"thresholds": (("ETH", Decimal(-1)),)}, "threshold of ETH"), ({"threshold_usd": Decimal("NaN")}, "default"),
])
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SpreadPolicy(**kwargs)


def test_chart_takes_the_best_of_every_fresh_venue_per_second() -> None:
    s = MarketState(SpreadPolicy(stale_after_ms=5000))
    for i in range(20):
        ts = T0 + i * 1000
        s.ingest("trades", trade("binance", "BTC-USDT", f"{43000 + i}", ts))
        s.ingest("trades", trade("coinbase", "BTC-USD", "43050", ts + 100))
        if i < 5:  # kraken stops trading after 5 s and drops out 5 s later
            s.ingest("trades", trade("kraken", "BTC-USD", "43100", ts + 200))
    points = s.snapshot(now_ms=T0 + 20_000).spreads
    assert len(points) == 20
    by_second = {int(p["time"].timestamp()) - T0 // 1000: (p["spread_usd"], p["buy"], p["sell"]) for p in points}
    assert by_second[0] == (100.0, "binance", "kraken")
    assert by_second[9] == (91.0, "binance", "kraken")  # kraken's last trade 4.8 s before coinbase's
    assert by_second[10] == (40.0, "binance", "coinbase")  # 5.8 s: stale
    assert by_second[19] == (31.0, "binance", "coinbase")


def test_chart_points_start_late_but_carry_the_earlier_prices() -> None:
    series = {("binance", "BTC"): {100: (Decimal(10), 100_000), 105: (Decimal(11), 105_000)},
              ("okx", "BTC"): {101: (Decimal(12), 101_000)}, ("okx", "ETH"): {101: (Decimal(1), 101_000)}}
    points = best_spread_points(series, 60_000, since_s=105)
    assert [(p["asset"], p["spread_usd"], p["spread_bps"]) for p in points] == [("BTC", 1.0, 909.09)]
    assert len(best_spread_points(series, 60_000)) == 2  # seconds 101 and 105 (100: okx not yet)
    assert best_spread_points(series, 3000, since_s=105) == []  # okx 4 s behind: stale


@pytest.mark.parametrize("ms, shown", [
    (0, "0s"), (999, "0s"), (45_000, "45s"), (60_000, "1m"), (125_000, "2m 05s"), (3_600_000, "1h"),
    (11_040_000, "3h 04m"), (86_400_000, "1d"), (183_600_000, "2d 3h"), (-5, "0s"),
])
def test_format_age(ms: int, shown: str) -> None:
    assert format_age(ms) == shown


@pytest.mark.parametrize("text, escaped", [
    ("43250.1 USDT · cheapest", "43250\\.1 USDT · cheapest"), ("mock_x_", "mock\\_x\\_"),
    ("$5 and $6", "\\$5 and \\$6"),
    ("*a* [b](c) `d` ~e~ <i> | #", "\\*a\\* \\[b\\]\\(c\\) \\`d\\` \\~e\\~ \\<i\\> \\| \\#"),
    ("binance → okx", "binance → okx"),
])
def test_markdown_escape(text: str, escaped: str) -> None:
    assert markdown_escape(text) == escaped
