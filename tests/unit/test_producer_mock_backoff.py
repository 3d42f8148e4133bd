"""Mock feed (seeded walks, divergence), backoff and dedupe."""

from __future__ import annotations

import random
from decimal import Decimal

from cryptomon.producer.backoff import Backoff
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.dedupe import Deduper
from cryptomon.producer.mock import MockAdapter


def mock(**env: str) -> MockAdapter:
    return MockAdapter(ProducerConfig.from_env("mock", env), clock=lambda: 0.0)


def prices(adapter: MockAdapter, rounds: int, elapsed: float = 0.0) -> list[tuple[str, str, str]]:
    out = []
    for _ in range(rounds):
        out += [(t.exchange, t.symbol, t.price) for t in adapter.next_trades(elapsed)]
    return out


def test_mock_is_seeded_and_valid():
    a, b, c = mock(), mock(), mock(MOCK_SEED="43")
    pa = prices(a, 50)
    assert pa == prices(b, 50)
    assert pa != prices(c, 50)
    trades = a.next_trades(0.0)
    assert {(t.exchange, t.symbol) for t in trades} == {
        (e, s) for e in ("binance", "coinbase") for s in ("BTC-USDT", "ETH-USDT")}
    for t in trades:
        t.validate()
        assert t.raw_symbol == t.symbol.replace("-", "")
    ids = [int(t.trade_id) for t in a.next_trades(0.0) if t.exchange == "binance" and t.symbol == "BTC-USDT"]
    assert ids[0] > int(next(t.trade_id for t in trades if t.exchange == "binance" and t.symbol == "BTC-USDT"))


def spread_bps(adapter: MockAdapter, elapsed: float) -> float:
    trades = adapter.next_trades(elapsed)
    by = {(t.exchange, t.symbol): Decimal(t.price) for t in trades}
    a, b = by[("binance", "BTC-USDT")], by[("coinbase", "BTC-USDT")]
    return float((b - a) / a * 10_000)


def test_mock_divergence_in_basis_points():
    plain = [spread_bps(m, 0) for m in [mock()] for _ in range(200)]
    assert max(abs(s) for s in plain) < 5
    diverged = [spread_bps(m, 0) for m in [mock(MOCK_DIVERGE_BPS="50")] for _ in range(200)]
    assert min(diverged) > 40
    windows = mock(MOCK_DIVERGE_BPS="50", MOCK_DIVERGE_PERIOD_S="10")
    assert spread_bps(windows, 5.0) > 40 and abs(spread_bps(windows, 15.0)) < 5


def test_backoff_is_capped_exponential_with_jitter():
    b = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    ceilings = [min(8.0, 0.5 * 2**i) for i in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 10  # jittered
    b.reset()
    assert b.next_delay() <= 0.5


def test_deduper_integer_and_string_ids():
    d = Deduper(window=2)
    assert d.is_new("BTC-USD", 5) and not d.is_new("BTC-USD", 5) and not d.is_new("BTC-USD", 4)
    assert d.is_new("ETH-USD", 5)
    assert d.is_new("X", "a") and not d.is_new("X", "a") and d.is_new("X", "b") and d.is_new("X", "c")
    assert d.is_new("X", "a")  # fell out of the bounded window
