"""Symbol sets: explicit lists and whole-market patterns, their resolution against a REST
listing, the cache file, and the sharding of markets across connections."""

from __future__ import annotations

import json

import pytest
from cryptomon.kafka_settings import ConfigError
from cryptomon.producer.feed import plan_shards, replan
from cryptomon.producer.symbols import Market, SymbolSet, load_cache, matches, save_cache, split_concatenated

LISTING = [Market("BTCUSDT", "BTC-USDT"), Market("ETHUSDT", "ETH-USDT"), Market("ETHBTC", "ETH-BTC"),
           Market("SOLFDUSD", "SOL-FDUSD"), Market("USDCUSDT", "USDC-USDT")]


def parse(value: str | None) -> SymbolSet:
    return SymbolSet.parse("BINANCE_SYMBOLS", value, "BTCUSDT", split_concatenated)


@pytest.mark.parametrize("pattern, market, hit", [
    ("*USDT", Market("BTCUSDT", "BTC-USDT"), True),
    ("*USDT", Market("BTC/USDT", "BTC-USDT"), True),       # Kraken's wire symbol: same result
    ("*-USD", Market("BTC-USD", "BTC-USD"), True),
    ("*-USD", Market("BTC-USDT", "BTC-USDT"), False),      # the separator anchors the quote
    ("*/USD", Market("BTC/USD", "BTC-USD"), True),
    ("ETH*", Market("ETHBTC", "ETH-BTC"), True),
    ("BTC-*", Market("BTCUSDT", "BTC-USDT"), True),
    ("*USDC", Market("USDCUSDT", "USDC-USDT"), False),
])
def test_pattern_matching(pattern, market, hit):
    assert matches(pattern, market) is hit


def test_explicit_markets_and_patterns_resolve_together():
    s = parse("ETHBTC, *USDT, BTCUSDT")
    assert s.patterns == ("*USDT",) and [m.raw for m in s.markets] == ["ETHBTC", "BTCUSDT"]
    markets, empty = s.resolve(LISTING)
    assert [m.raw for m in markets] == ["BTCUSDT", "ETHBTC", "ETHUSDT", "USDCUSDT"]  # by symbol
    assert empty == []


def test_a_pattern_matching_nothing_is_reported():
    markets, empty = parse("*EUR,*FDUSD").resolve(LISTING)
    assert markets == [Market("SOLFDUSD", "SOL-FDUSD")] and empty == ["*EUR"]


def test_listing_split_wins_over_the_quote_heuristic():
    s = SymbolSet.parse("X", "USDCUSDT", "", lambda t: Market(t, "USDCUS-DT"))
    assert s.resolve(LISTING)[0] == [Market("USDCUSDT", "USDC-USDT")]


def test_unset_default_and_set_empty():
    assert parse(None).markets == (Market("BTCUSDT", "BTC-USDT"),)
    with pytest.raises(ConfigError, match="BINANCE_SYMBOLS: set but empty"):
        parse("")


def test_cache_roundtrip_and_bad_files(tmp_path, caplog):
    path = tmp_path / "state" / "symbols-binance.json"
    save_cache(path, "binance", LISTING)
    markets, fetched_at = load_cache(path, "binance")
    assert markets == LISTING and fetched_at > 0
    assert load_cache(path, "okx") is None and "it is for 'binance'" in caplog.text
    path.write_text("{half")
    assert load_cache(path, "binance") is None
    assert load_cache(tmp_path / "missing.json", "binance") is None
    path.write_text(json.dumps({"exchange": "binance", "markets": [["X", "not a symbol"]]}))
    assert load_cache(path, "binance") is None


def test_plan_shards_is_balanced_and_respects_the_cap():
    markets = [Market(f"C{i:03d}USDT", f"C{i:03d}-USDT") for i in range(450)]
    shards = plan_shards(markets, 200)
    assert [len(s) for s in shards] == [150, 150, 150]
    assert [m for s in shards for m in s] == markets
    assert [len(s) for s in plan_shards(markets, 1024)] == [450]
    assert plan_shards([], 200) == []


def test_replan_moves_only_what_changed():
    markets = [Market(f"C{i:03d}USDT", f"C{i:03d}-USDT") for i in range(300)]
    current = plan_shards(markets, 100)
    gone = markets[150]
    new = [Market("ZZZUSDT", "ZZZ-USDT"), Market("ZZYUSDT", "ZZY-USDT")]
    wanted = [m for m in markets if m != gone] + new
    shards = replan(current, wanted, 100)
    assert shards[0] == current[0] and shards[2] == current[2]   # untouched shards keep their markets
    assert gone not in shards[1] and new[0] in shards[1]          # freed room is filled first
    assert len(shards) == 4 and shards[3] == [new[1]]
    assert all(len(s) <= 100 for s in shards)
