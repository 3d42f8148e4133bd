"""The dashboard's opportunities table (no Kafka, no browser): quote_arbitrage open and close
messages joined by episode_id, in either order or alone, open episodes first."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptomon.dashboard import state
from cryptomon.dashboard.state import (
    OPEN_CSS,
    OPPORTUNITY_COLUMNS,
    STALE_CSS,
    Episode,
    MarketState,
    join_episode,
    opportunity_table,
    order_episodes,
)

T = 1_800_000_000_000  # 2027-01-15 08:00:00 UTC


def message(state_: str, opened_ms: int = T, asset: str = "BTC", buy: tuple[str, str] = ("kraken", "43010.5"),
            sell: tuple[str, str] = ("binance", "43080.1"), **over: Any) -> dict[str, Any]:
    """A message shaped like the job's (every field of docs/flink-jobs.md, schema 1)."""
    episode = f"quote_arbitrage:{asset}:{buy[0]}:{sell[0]}:{opened_ms}"
    closing = state_ == "close"
    m = {
        "alert_id": f"{episode}:{state_}", "alert_type": "quote_arbitrage", "schema_version": 1,
        "job": "quote-arbitrage", "episode_id": episode, "episode_state": state_,
        "close_reason": "reverted" if closing else None, "asset": asset,
        "buy_exchange": buy[0], "buy_symbol": f"{asset}-USD", "buy_price": buy[1], "buy_size": "0.25",
        "buy_fee_bps": "4", "buy_quote_ms": opened_ms - 120,
        "sell_exchange": sell[0], "sell_symbol": f"{asset}-USDT", "sell_price": sell[1], "sell_size": "0.5",
        "sell_fee_bps": "2", "sell_quote_ms": opened_ms,
        "size": "0.25", "notional_usd": "10752.625", "gross_spread_usd": "69.6", "net_spread_usd": "43.77978",
        "net_spread_bps": "10.18", "net_profit_usd": "10.944945", "peak_net_spread_bps": "10.18",
        "peak_net_profit_usd": "10.944945", "peak_ms": opened_ms, "opened_ms": opened_ms,
        "closed_ms": opened_ms + 2400 if closing else None, "duration_ms": 2400 if closing else None,
        "event_ms": opened_ms + 2400 if closing else opened_ms, "min_net_bps": "5", "min_profit_usd": "0",
        "min_notional_usd": "100", "demo_mode": False, "summary": "…",
    }
    if closing:  # the numbers that closed it, and the episode's peak
        m.update(sell_price="43011", net_spread_bps="-5.88", net_profit_usd="-6.3266", peak_net_spread_bps="13.71",
                 peak_net_profit_usd="14.744185", peak_ms=opened_ms + 780)
    m.update(over)
    return m


def fed(*messages: dict[str, Any]) -> MarketState:
    s = MarketState()
    for m in messages:
        assert s.ingest("alerts", json.dumps(m).encode()), m
    return s


def table(s: MarketState, now_ms: int) -> state.StyledTable:
    snap = s.snapshot(now_ms=now_ms)
    assert snap.now_ms == now_ms
    return opportunity_table(snap.opportunities, snap.now_ms)


def test_an_open_episode_is_a_red_row_with_its_numbers() -> None:
    t = table(fed(message("open")), T + 2400)
    assert t.columns == OPPORTUNITY_COLUMNS == ("Asset", "Buy", "Sell", "Net bps", "Size", "Notional USD",
                                                "Opened (UTC)", "State")
    assert t.rows == (("BTC", "kraken 43010.5", "binance 43080.1", "10.18", "0.25", "10752.625", "08:00:00",
                       "open 2.4 s"),)
    assert set(t.styles[0]) == {OPEN_CSS}


def test_prices_and_sizes_lose_trailing_zeros_as_everywhere_on_the_page() -> None:
    m = message("open", buy=("kraken", "43010.50000"), sell=("okx", "43080.10"), size="0.2500",
                notional_usd="10752.6250", net_spread_bps="10.10")
    [row] = table(fed(m), T).rows
    assert row[1:6] == ("kraken 43010.5", "okx 43080.1", "10.1", "0.25", "10752.625")


@pytest.mark.parametrize("order", [("open", "close"), ("close", "open")])
def test_a_close_joins_its_open_in_either_order(order: tuple[str, str]) -> None:
    s = fed(*(message(o) for o in order))
    [episode] = s.snapshot(now_ms=T + 60_000).opportunities
    assert episode.closed and episode.open_seen
    t = opportunity_table([episode], T + 60_000)
    # The opening's prices (the close carries the closing ones), the peak net, how it ended.
    assert t.rows == (("BTC", "kraken 43010.5", "binance 43080.1", "13.71 peak", "0.25", "10752.625", "08:00:00",
                       "closed after 2.4 s (reverted)"),)
    assert set(t.styles[0]) == {STALE_CSS}
    assert len(s.snapshot().alerts) == 2  # both messages are in the alert history too


def test_a_close_whose_open_was_never_read_still_shows() -> None:
    """The open message lies before the dashboard's backfill, or expired from the topic."""
    s = fed(message("close", close_reason="stale", duration_ms=1881, closed_ms=T + 1881, event_ms=T + 1881))
    [episode] = s.snapshot().opportunities
    assert (episode.closed, episode.open_seen, episode.opened_ms) == (True, False, T)
    [row] = opportunity_table([episode], T + 5000).rows
    assert row == ("BTC", "kraken 43010.5", "binance 43011", "13.71 peak", "0.25", "10752.625", "08:00:00",
                   "closed after 1.8 s (stale); open not seen, prices at close")


def test_open_episodes_first_newest_first_then_the_recently_closed() -> None:
    s = fed(
        message("open", opened_ms=T + 1000, asset="ETH"),
        message("open", opened_ms=T, asset="SOL"), message("close", opened_ms=T, asset="SOL"),  # closed T+2400
        message("open", opened_ms=T + 5000, asset="BTC"),
        message("close", opened_ms=T - 60_000, asset="XRP"),  # closed long ago, open never read
        message("open", opened_ms=T + 3000, asset="ADA"), message("close", opened_ms=T + 3000, asset="ADA"),
    )
    snap = s.snapshot(now_ms=T + 10_000)
    assert [(e.asset, e.closed) for e in snap.opportunities] == [
        ("BTC", False), ("ETH", False), ("ADA", True), ("SOL", True), ("XRP", True)]
    assert [row[7] for row in opportunity_table(snap.opportunities, snap.now_ms).rows[:2]] == ["open 5.0 s",
                                                                                                "open 9.0 s"]


def test_only_the_most_recently_closed_are_listed() -> None:
    episodes = [join_episode(None, message("close", opened_ms=T + i, asset=f"A{i}")) for i in range(5)]
    opened = join_episode(message("open", opened_ms=T - 99), None)
    listed = order_episodes([*episodes, opened], closed_shown=2)
    assert [e.asset for e in listed] == ["BTC", "A4", "A3"]
    assert order_episodes([*episodes, opened], closed_shown=0) == [opened]


def test_replayed_messages_do_not_add_rows() -> None:
    s = fed(message("open"), message("open"), message("close"), message("close"), message("open"))
    assert len(s.snapshot().opportunities) == 1
    assert len(s.snapshot().alerts) == 2  # the history keeps each alert_id once


def test_the_oldest_episodes_are_forgotten_beyond_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "EPISODES_MAX", 3)
    s = fed(*(message("open", opened_ms=T + i) for i in range(5)))
    assert [e.opened_ms for e in s.snapshot().opportunities] == [T + 4, T + 3, T + 2]


@pytest.mark.parametrize("bad, problem", [
    ({"episode_id": None}, "episode_id"),
    ({"episode_state": "opened"}, "episode_state"),
    ({"net_spread_bps": None, "size": "lots"}, "net_spread_bps, size"),
])
def test_a_message_the_alerter_would_refuse_is_counted_not_shown(bad: dict, problem: str) -> None:
    s = MarketState()
    assert s.ingest("alerts", json.dumps(message("open", **bad)).encode()) is False
    assert state.quote_arbitrage_problem(message("open", **bad)) == f"a quote_arbitrage alert needs {problem}"
    close = message("close", close_reason="timeout")
    assert s.ingest("alerts", json.dumps(close).encode()) is False
    snap = s.snapshot()
    assert (snap.malformed, snap.opportunities, snap.alerts) == (2, [], [])


def test_alert_history_lines_for_both_states() -> None:
    s = fed(message("open"), message("close"))
    rows = {a["alert_id"].rsplit(":", 1)[1]: a for a in s.snapshot().alerts}
    assert rows["open"]["subject"] == rows["close"]["subject"] == "BTC: buy kraken, sell binance"
    assert rows["open"]["details"] == ("open: buy at 43010.5, sell at 43080.1, net 10.18 bps, 10.944945 USD on 0.25 "
                                       "(10752.625 USD)")
    assert rows["close"]["details"] == "closed (reverted) after 2.4 s, peak net 13.71 bps"
    # Each at its event time (event_ms): the close is the newer one.
    assert [a["alert_id"].rsplit(":", 1)[1] for a in s.snapshot().alerts] == ["close", "open"]
    assert rows["close"]["time"].isoformat() == "2027-01-15T08:00:02.400000+00:00"


def test_an_episode_needs_one_of_its_messages() -> None:
    with pytest.raises(ValueError, match="open or its close"):
        join_episode(None, None)
    assert isinstance(join_episode(message("open"), None), Episode)
