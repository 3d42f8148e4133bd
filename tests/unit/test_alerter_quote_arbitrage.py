"""The alerter and `quote_arbitrage` alerts (docs/flink-jobs.md, schema 1): the opening's embed,
the closing's embed marked as its update, the fields each state needs, dedupe by alert_id."""

from __future__ import annotations

import json
import logging
import random
import string
from typing import Any

import pytest
from cryptomon.alerter import formatting as fmt
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import Delivered
from cryptomon.alerter.service import AlertProcessor, Outcome
from cryptomon.replay.discord import validate_payload

# One episode as the job writes it: AssetBook("BTC") with min net 5 bps, fees kraken 4 / binance 2
# bps, fed kraken 43010.4/43010.5 then binance 43080.1, 43095.3 (the peak) and 43011 (reverted).
OPEN = {
    "alert_id": "quote_arbitrage:BTC:kraken:binance:1800000000120:open", "alert_type": "quote_arbitrage",
    "schema_version": 1, "job": "quote-arbitrage", "episode_id": "quote_arbitrage:BTC:kraken:binance:1800000000120",
    "episode_state": "open", "close_reason": None, "asset": "BTC",
    "buy_exchange": "kraken", "buy_symbol": "BTC-USD", "buy_price": "43010.5", "buy_size": "0.25",
    "buy_fee_bps": "4", "buy_quote_ms": 1800000000000,
    "sell_exchange": "binance", "sell_symbol": "BTC-USDT", "sell_price": "43080.1", "sell_size": "0.5",
    "sell_fee_bps": "2", "sell_quote_ms": 1800000000120,
    "size": "0.25", "notional_usd": "10752.625", "gross_spread_usd": "69.6", "net_spread_usd": "43.77978",
    "net_spread_bps": "10.18", "net_profit_usd": "10.944945", "peak_net_spread_bps": "10.18",
    "peak_net_profit_usd": "10.944945", "peak_ms": 1800000000120, "opened_ms": 1800000000120, "closed_ms": None,
    "duration_ms": None, "event_ms": 1800000000120, "min_net_bps": "5", "min_profit_usd": "0",
    "min_notional_usd": "100", "demo_mode": False,
    "summary": "BTC: buy kraken BTC-USD at 43010.5, sell binance BTC-USDT at 43080.1, net 10.18 bps after fees, "
               "$10.944945 on 0.25 ($10752.625): opportunity open",
}
CLOSE = {
    **OPEN, "alert_id": "quote_arbitrage:BTC:kraken:binance:1800000000120:close", "episode_state": "close",
    "close_reason": "reverted", "buy_quote_ms": 1800000001500, "sell_price": "43011", "sell_quote_ms": 1800000002520,
    "gross_spread_usd": "0.5", "net_spread_usd": "-25.3064", "net_spread_bps": "-5.88", "net_profit_usd": "-6.3266",
    "peak_net_spread_bps": "13.71", "peak_net_profit_usd": "14.744185", "peak_ms": 1800000000900,
    "closed_ms": 1800000002520, "duration_ms": 2400, "event_ms": 1800000002520,
    "summary": "BTC: buy kraken BTC-USD at 43010.5, sell binance BTC-USDT at 43011, net -5.88 bps after fees, "
               "-$6.3266 on 0.25 ($10752.625): closed (reverted) after 2400 ms, peak 13.71 bps",
}
STALE_CLOSE = {**CLOSE, "close_reason": "stale", "duration_ms": 1881, "closed_ms": 1800000002001,
               "event_ms": 1800000002001}


def fields(embed: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


def embed_of(alert: dict) -> dict:
    payload = fmt.build_payload(alert)
    assert validate_payload(payload) is None, validate_payload(payload)
    return payload["embeds"][0]


# Bookkeeping kept out of the fields: ids, quote times, fees, symbols, thresholds.
BOOKKEEPING = ("episode", "alert", "_ms", "quote", "fee_", "buy fee", "sell fee", "symbol", "min_", "demo",
               "schema", "job", "summary")


def assert_glanceable(embed: dict) -> None:
    assert embed["title"] and embed["timestamp"]
    assert 3 <= len(embed["fields"]) <= 4
    for f in embed["fields"]:
        assert not any(word in f["name"].lower() for word in BOOKKEEPING), f
        assert len(f["value"]) <= 40, f
    values = [f["value"] for f in embed["fields"]]
    assert len(values) == len(set(values))
    assert "description" not in embed
    assert len(embed["footer"]["text"]) <= 140 and "_ms" not in embed["footer"]["text"]


# --- the embeds --------------------------------------------------------------------------------

def test_open_embed_says_what_where_and_how_much() -> None:
    embed = embed_of(OPEN)
    assert embed["title"] == "BTC arbitrage: buy kraken 43,010.5 → sell binance 43,080.1"
    # dollars to the cent for a person (the exact figures stay in Kafka), sizes exact
    assert fields(embed) == {"Net after fees": "10.18 bps", "Profit": "$10.94", "Size": "0.25 BTC",
                             "Notional": "$10,752.63"}
    assert embed["color"] == fmt.COLOURS["quote_arbitrage"]
    assert embed["color"] not in (fmt.COLOURS["arbitrage"], fmt.CLOSED_COLOUR, fmt.UNKNOWN_COLOUR)
    assert embed["timestamp"] == "2027-01-15T08:00:00.120Z"  # event_ms = opened_ms
    assert embed["footer"]["text"] == ("cryptomon · fees 4 + 2 bps · quotes 120 ms apart · "
                                       "alert quote_arbitrage:BTC:kraken:binance:1800000000120:open")
    assert_glanceable(embed)


def test_open_embed_in_demo_mode_says_so_in_the_footer_only() -> None:
    embed = embed_of({**OPEN, "demo_mode": True})
    assert "· demo mode ·" in embed["footer"]["text"]
    assert fields(embed) == fields(embed_of(OPEN))


def test_close_embed_is_marked_as_the_update_of_the_open_one() -> None:
    opened, closed = embed_of(OPEN), embed_of(CLOSE)
    # The same route, without the opening prices (the close carries the closing ones), after "Closed:".
    assert closed["title"] == "Closed: BTC arbitrage: buy kraken → sell binance"
    assert opened["title"].startswith("BTC arbitrage: buy kraken ") and " → sell binance " in opened["title"]
    assert closed["color"] == fmt.CLOSED_COLOUR != opened["color"]
    assert fields(closed) == {"Lasted": "2.4 s", "Peak net": "13.71 bps ($14.74)",
                              "Reason": "spread reverted, net -5.88 bps"}
    assert closed["timestamp"] == "2027-01-15T08:00:02.520Z"  # event_ms = closed_ms
    assert closed["footer"]["text"] == ("cryptomon · update of the 08:00:00 UTC alert · "
                                        "alert quote_arbitrage:BTC:kraken:binance:1800000000120:close")
    assert_glanceable(closed)


def test_stale_close_names_the_reason() -> None:
    embed = embed_of(STALE_CLOSE)
    assert fields(embed)["Reason"] == "stale quote (a side went silent)"
    assert fields(embed)["Lasted"] == "1.8 s"


@pytest.mark.parametrize("ms, shown", [
    (0, "0 ms"), (120, "120 ms"), (999, "999 ms"), (1000, "1.0 s"), (2400, "2.4 s"), (59_999, "59.9 s"),
    (60_000, "1m 00s"), (185_000, "3m 05s"), (7_440_000, "2h 04m"), (183_600_000, "2d 3h"), ("2400", "2.4 s"),
    (-5, "0 ms"), (None, "—"), ("soon", "soon"),
])
def test_duration_text(ms: Any, shown: str) -> None:
    assert fmt.duration_text(ms) == shown


def test_long_values_stay_within_discord_limits() -> None:
    rng = random.Random(7)
    for _ in range(30):
        alert = dict(rng.choice([OPEN, CLOSE]))
        for key in rng.sample(sorted(alert), 8):
            alert[key] = rng.choice([None, "", "".join(rng.choice(string.printable + "😀€") for _ in range(3000)),
                                     12, True, ["x"]])
        payload = fmt.build_payload(alert, username="cryptomon")
        assert validate_payload(payload) is None, validate_payload(payload)
        assert fmt.embed_size(payload["embeds"][0]) <= fmt.EMBED_TOTAL_MAX


# --- malformed alerts, dedupe --------------------------------------------------------------------

class FakeClient:
    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.on_wait = None

    def post(self, payload: dict[str, Any]) -> Delivered:
        self.posted.append(payload)
        return Delivered(message_id=str(len(self.posted)), attempts=1)


def processor() -> tuple[AlertProcessor, FakeClient]:
    client = FakeClient()
    # No age limit: the fixtures' data times lie in 2027.
    return AlertProcessor(client, SentIds(100), max_age_s=0), client  # type: ignore[arg-type]


def without(alert: dict, *keys: str) -> dict:
    return {k: v for k, v in alert.items() if k not in keys}


@pytest.mark.parametrize("alert, needs", [
    (without(OPEN, "net_spread_bps"), "net_spread_bps"),
    ({**OPEN, "size": None, "notional_usd": "lots"}, "size, notional_usd"),
    ({**OPEN, "buy_exchange": " ", "sell_price": "NaN"}, "buy_exchange, sell_price"),
    (without(OPEN, "episode_state"), "episode_state"),
    ({**OPEN, "episode_state": "opened"}, "episode_state"),
    ({**CLOSE, "close_reason": None}, "close_reason"),
    ({**CLOSE, "close_reason": "timeout"}, "close_reason"),
    (without(CLOSE, "duration_ms", "peak_net_spread_bps"), "duration_ms, peak_net_spread_bps"),
    ({"alert_type": "quote_arbitrage", "alert_id": "x"}, "asset, buy_exchange, sell_exchange, episode_state"),
])
def test_quote_arbitrage_missing_its_fields_is_malformed_logged_once_never_posted(alert, needs, caplog) -> None:
    proc, client = processor()
    with caplog.at_level(logging.INFO, logger="cryptomon.alerter"):
        assert proc.handle(json.dumps(alert), "signals.arbitrage[1]@9") is Outcome.MALFORMED
    assert client.posted == []
    assert proc.counts[Outcome.MALFORMED] == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "signals.arbitrage[1]@9" in message and f"a quote_arbitrage alert needs {needs} " in message


def test_a_close_needs_no_opening_numbers_and_an_open_no_closing_ones() -> None:
    # The close embed shows neither prices nor size; the open one neither duration nor reason.
    assert fmt.missing_fields(without(CLOSE, "buy_price", "sell_price", "size", "notional_usd")) == []
    assert fmt.missing_fields(OPEN) == [] and OPEN["duration_ms"] is None and OPEN["close_reason"] is None


def test_open_and_close_are_both_posted_once_each() -> None:
    proc, client = processor()
    outcomes = [proc.handle(json.dumps(a), f"signals.arbitrage[0]@{n}")
                for n, a in enumerate((OPEN, CLOSE, OPEN, CLOSE))]
    assert outcomes == [Outcome.DELIVERED, Outcome.DELIVERED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    titles = [p["embeds"][0]["title"] for p in client.posted]
    assert titles == ["BTC arbitrage: buy kraken 43,010.5 → sell binance 43,080.1",
                      "Closed: BTC arbitrage: buy kraken → sell binance"]


def test_age_limit_reads_the_event_time() -> None:
    """No window fields: the age is measured from event_ms, not from the Kafka timestamp."""
    closed_s = CLOSE["event_ms"] / 1000
    client = FakeClient()
    proc = AlertProcessor(client, SentIds(100), max_age_s=600, clock=lambda: closed_s + 601)  # type: ignore[arg-type]
    assert proc.handle(json.dumps(CLOSE), "x", kafka_ts_ms=int(closed_s * 1000) + 600_000) is Outcome.STALE
    proc = AlertProcessor(client, SentIds(100), max_age_s=600, clock=lambda: closed_s + 599)  # type: ignore[arg-type]
    assert proc.handle(json.dumps(CLOSE), "x", kafka_ts_ms=1) is Outcome.DELIVERED


def test_dollars_are_rounded_to_the_cent_for_people() -> None:
    assert fmt.dollars("10.944945") == "$10.94"
    assert fmt.dollars("10752.625") == "$10,752.63"  # half up
    assert fmt.dollars("-6.3266") == "-$6.33"
    assert fmt.dollars("5") == "$5.00"
    assert fmt.dollars(None) == "—"
