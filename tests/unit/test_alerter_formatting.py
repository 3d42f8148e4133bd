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


def test_anomaly_embed() -> None:
    payload = fmt.build_payload(ANOMALY)
    assert validate_payload(payload) is None
    embed = payload["embeds"][0]
    assert embed["title"] == "Volume anomaly: BTC-USDT on binance"
    assert embed["description"] == "volume above threshold"
    assert embed["color"] == fmt.COLOURS["volume_anomaly"]
    assert embed["timestamp"] == "2024-01-01T00:01:00.000Z"
    f = fields(embed)
    # Decimal strings stay exact, only grouped.
    assert f["Notional"] == "1,523,000.12" and f["VWAP"] == "43,260.1" and f["Trades"] == "120"
    assert f["Window"] == "2024-01-01 00:00:00–00:01:00 UTC"
    assert "a-1" in embed["footer"]["text"]
    assert payload["allowed_mentions"] == {"parse": []}


def test_arbitrage_embed_epoch_ms() -> None:
    embed = fmt.build_payload(ARB)["embeds"][0]
    assert embed["color"] == fmt.COLOURS["arbitrage"] != fmt.COLOURS["volume_anomaly"]
    assert "BTC" in embed["title"] and "binance" in embed["title"] and "coinbase" in embed["title"]
    assert embed["timestamp"] == "2024-01-01T00:00:10.000Z"
    f = fields(embed)
    assert f["Binance price"] == "43,250.1" and f["Coinbase price"] == "43,320.5"
    assert f["Spread (USD)"] == "70.4" and f["Spread (bps)"] == "16.3"
    assert "70.4 USD" in embed["description"]


def test_unknown_type_and_extra_fields_are_shown_generically() -> None:
    alert = {"alert_id": "x", "type": "funding_spike", "market": "ETH", "details": {"k": [1, 2]}}
    embed = fmt.build_payload(alert)["embeds"][0]
    assert embed["title"] == "Alert: funding_spike"
    assert embed["color"] == fmt.UNKNOWN_COLOUR
    assert fields(embed)["market"] == "ETH"
    assert json.loads(fields(embed)["details"]) == {"k": [1, 2]}
    extra = fmt.build_payload({**ANOMALY, "zscore": "4.2"})["embeds"][0]
    assert fields(extra)["zscore"] == "4.2"


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
    assert embed["description"].startswith("coinbase SOL-USDT volume")
    names = [f["name"] for f in embed["fields"]]
    assert "Threshold" in names and "alert_type" not in names and "window_start_ms" not in names

    arbitrage = {"alert_id": "arbitrage:BTC:1700000000000", "alert_type": "arbitrage", "asset": "BTC",
                 "window_start": "2023-11-14T22:13:20.000Z", "window_end": "2023-11-14T22:13:30.000Z",
                 "buy_exchange": "binance", "sell_exchange": "coinbase", "buy_price": "43050", "sell_price": "43120",
                 "spread_usd": "70", "spread_bps": "16.26", "binance_price": "43050", "coinbase_price": "43120"}
    embed = build_embed(arbitrage)
    assert embed["title"] == "Arbitrage: BTC buy on binance, sell on coinbase"
    assert build_embed({**arbitrage, "alert_type": None, "type": "arbitrage"})["title"] == embed["title"]
