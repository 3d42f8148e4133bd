"""Dedupe across reconnects, bounded (issue 15, defect 5): one huge bogus or re-based trade id
must not make every later trade of the market a duplicate forever."""

from __future__ import annotations

import logging

from cryptomon.producer.dedupe import Deduper


def test_replays_at_or_below_the_mark_are_duplicates():
    d = Deduper()
    assert [d.is_new("BTC", i) for i in (10, 11, 12)] == [True, True, True]
    assert [d.is_new("BTC", i) for i in (12, 11, 5)] == [False, False, False]
    assert d.is_new("ETH", 11)  # marks are per market
    assert d.is_new("BTC", 13)


def test_one_huge_bogus_id_does_not_swallow_later_trades(caplog):
    caplog.set_level(logging.WARNING)
    d = Deduper(max_jump=1000, confirmations=3, name="binance")
    assert d.is_new("BTC", 100)
    assert d.is_new("BTC", 2**62)           # emitted once (it might be real) and logged
    assert not d.is_new("BTC", 2**62)       # a replay of it is still a duplicate
    assert all(d.is_new("BTC", i) for i in range(101, 111))  # the old fix failed here: all "duplicates"
    assert d.marks["BTC"] == 110 and d.strays == 1
    assert "is far from the mark 100" in caplog.text and "were strays" in caplog.text


def test_a_rebased_id_range_moves_the_mark_after_confirmations(caplog):
    caplog.set_level(logging.WARNING)
    d = Deduper(max_jump=1000, confirmations=3, name="okx")
    assert d.is_new("BTC", 5_000)
    # The exchange restarts its ids far below (or far above) the mark: the new range is real.
    assert [d.is_new("BTC", i) for i in (7, 8, 9)] == [True, True, True]
    assert d.marks["BTC"] == 9 and d.rebased == 1
    assert not d.is_new("BTC", 8)           # duplicates in the new range are caught again
    assert d.is_new("BTC", 10)
    assert "re-based: mark moved from 5000 to 9 after 3 confirmations" in caplog.text


def test_far_ids_must_agree_to_count_as_confirmations():
    d = Deduper(max_jump=1000, confirmations=3)
    d.is_new("X", 100)
    assert d.is_new("X", 10**9) and d.is_new("X", 10**12)  # two unrelated strays
    assert d.marks["X"] == 100
    assert d.is_new("X", 10**12 + 1) and d.marks["X"] == 100  # only two agree so far
    assert d.is_new("X", 10**12 + 2) and d.marks["X"] == 10**12 + 2


def test_a_long_outage_gap_is_not_lost():
    """Ids after a gap larger than max_jump (hours away) are produced, and the mark follows."""
    d = Deduper(max_jump=1000, confirmations=3)
    d.is_new("X", 1)
    assert all(d.is_new("X", i) for i in range(50_000, 50_010))
    assert d.marks["X"] == 50_009
    assert not d.is_new("X", 50_001)


def test_string_ids_use_a_bounded_recent_set():
    d = Deduper(window=3)
    assert [d.is_new("X", s) for s in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert d.is_new("X", "a")  # fell out of the window
    assert len(d._recent) == 3


def test_seed_sets_the_mark_only_once():
    d = Deduper()
    d.seed("X", 50)
    d.seed("X", 10)
    assert d.marks["X"] == 50 and not d.is_new("X", 49) and d.is_new("X", 51)


def test_no_dead_high_water_api_and_no_duplicate_counter():
    """Housekeeping (issue 15): the adapters' Stats count duplicates, the Deduper does not."""
    d = Deduper()
    assert not hasattr(d, "high_water") and not hasattr(d, "duplicates")
