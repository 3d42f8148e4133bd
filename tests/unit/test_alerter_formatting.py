"""Embeds: content per alert type, and Discord's limits hold for any input."""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime

import pytest
from cryptomon.alerter import formatting as fmt
from cryptomon.replay.discord import validate_payload

ANOMALY = {
    "alert_id": "a-1", "type": "volume_anomaly", "exchange": "binance", "symbol": "BTC-USDT",
    "window_start": "2024-01-01T00:00:00Z", "window_end": "2024-01-01T00:01:00Z", "trade_count": 120,
    "volume": "35.2", "notional": "1523000.12", "vwap": "43260.1", "min_price": "43200",
    "max_price": "43300", "threshold": "25", "reason": "volume above threshold",
}
ARB = {
    "alert_id": "b-1", "type": "arbitrage", "asset": "BTC", "window_start": 1704067200000,
    "window_end": 1704067210000, "binance_price": "43250.1", "coinbase_price": "43320.5",
    "spread_usd": "70.4", "spread_bps": "16.3", "buy_exchange": "binance", "sell_exchange": "coinbase",
    "threshold_usd": "50",
}


def fields(embed: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


# Evidence and bookkeeping that must never be an embed field (issue 15, defect 11).
BOOKKEEPING = ("_ms", "trade_count", "demo_mode", "venues", "schema_version", "job", "fee_bps", "notional",
               "vwap", "volume_", "summary", "Trades", "binance_price", "coinbase_price")


def assert_glanceable(embed: dict) -> None:
    """Title, 3-5 numbers, a timestamp; nothing said twice; bookkeeping only in the short footer."""
    assert embed["title"] and embed["timestamp"]
    assert 3 <= len(embed["fields"]) <= 5
    for f in embed["fields"]:
        assert not any(word.lower() in f["name"].lower() for word in BOOKKEEPING), f
        assert f["value"] not in ("True", "False") and not f["value"].startswith(("[", "{")), f
    values = [f["value"] for f in embed["fields"]]
    assert len(values) == len(set(values))
    assert len(embed["footer"]["text"]) <= 120 and "_ms" not in embed["footer"]["text"]


def test_anomaly_embed() -> None:
    payload = fmt.build_payload(ANOMALY)
    assert validate_payload(payload) is None
    embed = payload["embeds"][0]
    assert embed["title"] == "Volume anomaly: BTC-USDT on binance"
    assert "description" not in embed
    assert embed["color"] == fmt.COLOURS["volume_anomaly"]
    assert embed["timestamp"] == "2024-01-01T00:01:00.000Z"
    # Decimal strings stay exact, only grouped.
    assert fields(embed) == {"Volume": "35.2", "Threshold": "25", "Window": "2024-01-01 00:00:00–00:01:00 UTC"}
    assert embed["footer"]["text"] == "cryptomon · alert a-1"
    assert payload["allowed_mentions"] == {"parse": []}
    assert_glanceable(embed)


def test_arbitrage_embed_epoch_ms() -> None:
    embed = fmt.build_payload(ARB)["embeds"][0]
    assert embed["color"] == fmt.COLOURS["arbitrage"] != fmt.COLOURS["volume_anomaly"]
    assert embed["title"] == "Arbitrage: BTC buy on binance, sell on coinbase"
    assert embed["timestamp"] == "2024-01-01T00:00:10.000Z"
    assert fields(embed) == {"Buy": "binance @ 43,250.1", "Sell": "coinbase @ 43,320.5",
                             "Gross spread": "$70.4 (16.3 bps)"}
    assert embed["footer"]["text"] == "cryptomon · threshold $50 · alert b-1"
    assert_glanceable(embed)


SCHEMA_2 = {  # docs/alerts.md, verbatim
    "alert_id": "arbitrage:BTC:1700000000000", "alert_type": "arbitrage", "schema_version": 2,
    "job": "arbitrage-detector", "asset": "BTC", "window_start": "2023-11-14T22:13:20.000Z",
    "window_end": "2023-11-14T22:13:30.000Z", "window_start_ms": 1700000000000, "window_end_ms": 1700000010000,
    "buy_exchange": "kraken", "buy_price": "43000", "sell_exchange": "okx", "sell_price": "43300",
    "spread_usd": "300", "spread_bps": "69.77", "net_spread_usd": "-84.7", "net_spread_bps": "-19.7",
    "buy_fee_bps": "40", "sell_fee_bps": "10", "threshold_usd": "50", "trigger": "gross", "demo_mode": True,
    "venues": ["binance", "bybit", "kraken", "okx"], "venue_count": 4, "buy_trade_count": 2, "buy_volume": "2",
    "buy_last_trade_ms": 1700000007000, "sell_trade_count": 1, "sell_volume": "2",
    "sell_last_trade_ms": 1700000009000, "summary": "BTC: buy on kraken at 43000, sell on okx at 43300, ...",
}
SCHEMA_1 = {  # what the job wrote before schema 2: buy/sell price and the same prices per venue again
    "alert_id": "arbitrage:ETH:1700000000000", "alert_type": "arbitrage", "schema_version": 1, "asset": "ETH",
    "window_start": "2023-11-14T22:13:20.000Z", "window_end": "2023-11-14T22:13:30.000Z",
    "buy_exchange": "binance", "buy_price": "2000.5", "sell_exchange": "coinbase", "sell_price": "2003",
    "spread_usd": "2.5", "spread_bps": "12.5", "threshold_usd": "0.1", "demo_mode": True,
    "binance_price": "2000.5", "binance_trade_count": 12, "binance_volume": "3", "binance_last_trade_ms": 1,
    "coinbase_price": "2003", "coinbase_trade_count": 4, "coinbase_volume": "1", "coinbase_last_trade_ms": 2,
}


def test_arbitrage_schema_2_reads_at_a_glance() -> None:
    embed = fmt.build_payload(SCHEMA_2)["embeds"][0]
    assert "description" not in embed
    assert fields(embed) == {"Buy": "kraken @ 43,000", "Sell": "okx @ 43,300", "Gross spread": "$300 (69.77 bps)",
                             "Net spread (after fees)": "-$84.7 (-19.7 bps)"}
    assert embed["footer"]["text"] == ("cryptomon · 4 venues · threshold $50 gross · demo mode · "
                                       "alert arbitrage:BTC:1700000000000")
    assert embed["timestamp"] == "2023-11-14T22:13:30.000Z"
    assert_glanceable(embed)


def test_arbitrage_schema_1_shows_each_price_once() -> None:
    embed = fmt.build_payload(SCHEMA_1)["embeds"][0]
    assert fields(embed) == {"Buy": "binance @ 2,000.5", "Sell": "coinbase @ 2,003", "Gross spread": "$2.5 (12.5 bps)"}
    assert "demo mode" in embed["footer"]["text"]
    assert_glanceable(embed)


def test_anomaly_spike_without_threshold() -> None:
    alert = {"alert_id": "s", "alert_type": "volume_anomaly", "exchange": "okx", "symbol": "SOL-USDT",
             "volume": "500.82", "volume_threshold": None, "baseline_volume": "50", "spike_ratio": "10.02",
             "trade_count": 40, "window_end_ms": 1700000010000}
    embed = fmt.build_payload(alert)["embeds"][0]
    assert fields(embed) == {"Volume": "500.82", "Threshold": "none", "Spike": "10.02× mean 50"}
    assert embed["timestamp"] == "2023-11-14T22:13:30.000Z"


def test_unknown_type_is_shown_generically_known_types_drop_extra_fields() -> None:
    alert = {"alert_id": "x", "type": "funding_spike", "market": "ETH", "details": {"k": [1, 2]}}
    embed = fmt.build_payload(alert)["embeds"][0]
    assert embed["title"] == "Alert: funding_spike"
    assert embed["color"] == fmt.UNKNOWN_COLOUR
    assert fields(embed)["market"] == "ETH"
    assert json.loads(fields(embed)["details"]) == {"k": [1, 2]}
    extra = fmt.build_payload({**ANOMALY, "zscore": "4.2"})["embeds"][0]
    assert "zscore" not in fields(extra)


@pytest.mark.parametrize("value, expected", [
    ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T01:00:00+01:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
    (1704067200000, datetime(2024, 1, 1, tzinfo=UTC)),
    ("1704067200000", datetime(2024, 1, 1, tzinfo=UTC)),
    (1704067200, datetime(2024, 1, 1, tzinfo=UTC)),
    ("garbage", None), (None, None), (True, None), ([], None),
])
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert fmt.parse_time(value) == expected


def test_truncate_counts_utf16_and_marks_the_cut() -> None:
    assert fmt.truncate("abc", 3) == "abc"
    assert fmt.truncate("abcd", 3) == "ab…"
    emoji = "😀" * 10  # 20 UTF-16 units
    cut = fmt.truncate(emoji, 7)
    assert fmt.ulen(cut) <= 7 and cut.endswith("…")


def _huge(rng: random.Random, n: int) -> str:
    alphabet = string.ascii_letters + "€😀\n @"
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.mark.parametrize("seed", range(12))
def test_any_alert_stays_within_discord_limits(seed: int) -> None:
    rng = random.Random(seed)
    alert: dict = {
        "alert_id": _huge(rng, rng.choice([5, 3000])),
        "type": rng.choice(["volume_anomaly", "arbitrage", _huge(rng, 500)]),
        "symbol": _huge(rng, rng.choice([8, 400])), "exchange": _huge(rng, rng.choice([7, 300])),
        "asset": _huge(rng, rng.choice([3, 300])), "reason": _huge(rng, rng.choice([10, 9000])),
        "window_start": rng.choice([1704067200000, "bad", None]),
    }
    for i in range(rng.choice([0, 5, 60])):
        alert[f"extra_{i}_{_huge(rng, rng.choice([3, 300]))}"] = _huge(rng, rng.choice([5, 2000]))
    for i in range(rng.choice([0, 3])):
        alert[f"ex{i}_price"] = _huge(rng, 1500)
    payload = fmt.build_payload(alert, username=_huge(rng, rng.choice([5, 200])))
    assert validate_payload(payload) is None, validate_payload(payload)
    embed = payload["embeds"][0]
    assert fmt.embed_size(embed) <= fmt.EMBED_TOTAL_MAX
    assert len(embed["fields"]) <= fmt.FIELDS_MAX
    fallback = fmt.fallback_payload(alert)
    assert validate_payload(fallback) is None


def test_too_many_fields_says_so() -> None:
    alert = {"alert_id": "f", "type": "x", **{f"k{i:02d}": "v" for i in range(40)}}
    embed = fmt.build_payload(alert)["embeds"][0]
    assert len(embed["fields"]) == fmt.FIELDS_MAX
    assert "more fields not shown" in embed["fields"][-1]["value"]


def test_empty_values_become_dashes() -> None:
    embed = fmt.build_payload({"alert_id": "e", "type": "x", "note": "", "n": None})["embeds"][0]
    assert fields(embed) == {"note": "—", "n": "—"}
    assert validate_payload(fmt.build_payload({"alert_id": "e", "type": "x", "note": ""})) is None


def test_validator_rejects_what_discord_rejects() -> None:
    """The fake server's validator (used above as the oracle) does catch each limit."""
    def first_error(payload: dict) -> str:
        return json.dumps(validate_payload(payload))

    assert "BASE_TYPE_MAX_LENGTH" in first_error({"content": "x" * 2001})
    assert "MAX_EMBED_SIZE_EXCEEDED" in first_error({"embeds": [{"description": "x" * 4000},
                                                                {"description": "x" * 2001}]})
    assert "fields" in first_error({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]})
    assert "value" in first_error({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]})
    assert "BASE_TYPE_REQUIRED" in first_error({"embeds": [{"fields": [{"name": "n", "value": ""}]}]})
    assert "title" in first_error({"embeds": [{"title": "t" * 257}]})
    assert "footer" in first_error({"embeds": [{"footer": {"text": "f" * 2049}}]})
    assert "embeds" in first_error({"embeds": [{}] * 11})
    assert validate_payload({"embeds": [{"title": "t" * 256, "description": "d" * 4096}]}) is None


def test_alerts_shaped_like_the_flink_jobs_output_get_their_own_embeds():
    """The jobs write `alert_type` (README, alert schema); the alerter must not treat them as unknown."""
    from cryptomon.alerter.formatting import build_embed

    anomaly = {"alert_id": "anomaly:coinbase:SOL-USDT:1795240300000", "alert_type": "volume_anomaly",
               "schema_version": 1, "job": "anomaly-detector", "exchange": "coinbase", "symbol": "SOL-USDT",
               "window_start": "2026-11-21T05:51:40.000Z", "window_end": "2026-11-21T05:51:50.000Z",
               "window_start_ms": 1795240300000, "window_end_ms": 1795240310000, "trade_count": 378,
               "volume": "374.290189", "volume_threshold": "150", "reasons": ["volume_threshold"],
               "summary": "coinbase SOL-USDT volume 374.290189 > threshold 150"}
    embed = build_embed(anomaly)
    assert embed["title"] == "Volume anomaly: SOL-USDT on coinbase"
    assert fields(embed) == {"Volume": "374.290189", "Threshold": "150", "Window": "2026-11-21 05:51:40–05:51:50 UTC"}

    arbitrage = {"alert_id": "arbitrage:BTC:1700000000000", "alert_type": "arbitrage", "asset": "BTC",
                 "window_start": "2023-11-14T22:13:20.000Z", "window_end": "2023-11-14T22:13:30.000Z",
                 "buy_exchange": "binance", "sell_exchange": "coinbase", "buy_price": "43050", "sell_price": "43120",
                 "spread_usd": "70", "spread_bps": "16.26", "binance_price": "43050", "coinbase_price": "43120"}
    embed = build_embed(arbitrage)
    assert embed["title"] == "Arbitrage: BTC buy on binance, sell on coinbase"
    assert build_embed({**arbitrage, "alert_type": None, "type": "arbitrage"})["title"] == embed["title"]
