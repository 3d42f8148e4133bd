"""Mock feed: seeded random walks per symbol and exchange, at a configurable rate.

Each symbol has one shared walk (so exchanges track each other, as real markets do) plus a
small seeded per-exchange jitter. With MOCK_DIVERGE_BPS > 0 every exchange after the first
quotes that many basis points higher, always or in alternating windows of
MOCK_DIVERGE_PERIOD_S, so the arbitrage job has a spread to find. Prices are integer ticks
formatted as decimal strings: no float ever reaches a price.

With PRODUCER_QUOTES on, every trade comes with a top-of-book quote of its exchange and
symbol: bid and ask one step (about half a basis point) either side of the trade price, so
the divergence shows in the books too (an exchange MOCK_DIVERGE_BPS higher bids above the
first one's ask once the divergence exceeds the spread). Quote sizes come from their own
seeded generator: the trades are the same with quotes on or off.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any

from .base import Adapter, Emit, EmitQuote, now_ms
from .config import MockConfig, ProducerConfig
from .quote import Quote
from .schema import Trade

_START_PRICE = {"BTC": 6_000_000, "ETH": 300_000, "BNB": 60_000, "SOL": 15_000}  # in cents


def cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


class MockAdapter(Adapter):
    exchange = "mock"

    @classmethod
    def settings_from_env(cls, env: Mapping[str, str]) -> MockConfig:
        return MockConfig.from_env(env)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        from .registry import exchange_names

        return {"name": "mock", "kind": "mock", "imitates": list(exchange_names(real_only=True)),
                "vars": {"MOCK_EXCHANGES": "binance,coinbase", "MOCK_SYMBOLS": "BTC-USDT,ETH-USDT",
                         "MOCK_RATE": "5", "MOCK_SEED": "42", "MOCK_DIVERGE_BPS": "0",
                         "MOCK_DIVERGE_PERIOD_S": "0"},
                "stale_after_s": cls.default_stale_after_s}

    def __init__(self, config: ProducerConfig, clock: callable = time.monotonic) -> None:  # type: ignore[valid-type]
        super().__init__(config)
        self.mock = config.mock
        self._clock = clock
        seed = self.mock.seed
        self._walk = {s: random.Random(seed * 1_000_003 + zlib.crc32(s.encode())) for s in self.mock.symbols}
        self._price = {s: _START_PRICE.get(s.split("-")[0], 10_000) for s in self.mock.symbols}
        self._rng = {(e, s): random.Random(seed * 1_000_003 + zlib.crc32(f"{e}:{s}".encode()))
                     for e in self.mock.exchanges for s in self.mock.symbols}
        # Ids start at the start time in ms * 1000 so they keep rising across restarts.
        start_id = now_ms() * 1000
        self._next_id = dict.fromkeys(self._rng, start_id)
        self._quote_rng = {key: random.Random(seed * 1_000_033 + zlib.crc32(f"quote:{key[0]}:{key[1]}".encode()))
                           for key in self._rng}
        self._quote_seq = dict.fromkeys(self._rng, start_id)
        self._started = clock()

    def markets(self) -> list[str]:
        return [f"{e}:{s}" for e in self.mock.exchanges for s in self.mock.symbols]

    def diverged(self, elapsed: float) -> bool:
        period = self.mock.diverge_period_s
        return self.mock.diverge_bps > 0 and (period <= 0 or int(elapsed // period) % 2 == 0)

    def next_trades(self, elapsed: float | None = None) -> list[Trade]:
        """One trade per exchange for every symbol: one step of each walk."""
        if elapsed is None:
            elapsed = self._clock() - self._started
        out = []
        ts = now_ms()
        for symbol in self.mock.symbols:
            price = self._price[symbol]
            step = max(1, price // 20_000)  # about half a basis point per step
            price = max(step, price + self._walk[symbol].randint(-step, step))
            self._price[symbol] = price
            for i, exchange in enumerate(self.mock.exchanges):
                rng = self._rng[(exchange, symbol)]
                quote = price + rng.randint(-step, step)
                if i and self.diverged(elapsed):
                    quote += quote * int(self.mock.diverge_bps * 100) // 1_000_000
                quote = max(1, quote)
                tid = self._next_id[(exchange, symbol)]
                self._next_id[(exchange, symbol)] = tid + 1
                size = rng.randint(1, 2_000_000)
                out.append(Trade(exchange, symbol, symbol.replace("-", ""), str(tid), cents(quote),
                                 f"{size // 1_000_000}.{size % 1_000_000:06d}",
                                 "buy" if rng.random() < 0.5 else "sell", ts, ts))
        return out

    def quotes_for(self, trades: list[Trade]) -> list[Quote]:
        """The top of book around each trade of a round: one quote per exchange and symbol."""
        out = []
        for t in trades:
            price = int(t.price.replace(".", ""))  # cents (mock prices always have 2 decimals)
            step = max(1, price // 20_000)
            key = (t.exchange, t.symbol)
            rng = self._quote_rng[key]
            seq = self._quote_seq[key] = self._quote_seq[key] + 1
            bid_size, ask_size = rng.randint(1, 5_000_000), rng.randint(1, 5_000_000)
            out.append(Quote(t.exchange, t.symbol, t.raw_symbol, cents(max(1, price - step)),
                             f"{bid_size // 1_000_000}.{bid_size % 1_000_000:06d}", cents(price + step),
                             f"{ask_size // 1_000_000}.{ask_size % 1_000_000:06d}", t.exchange_ts, t.received_ts, seq))
        return out

    def run(self, emit: Emit, stop: threading.Event, emit_quote: EmitQuote | None = None) -> None:
        # One "round" = one trade per exchange and symbol; rounds are paced to MOCK_RATE per second.
        quote_to = (emit_quote or emit) if self.quotes_on else None
        interval = 1.0 / self.mock.rate
        next_round = self._clock()
        next_stats = next_round + self.config.stats_interval_s
        while not stop.is_set():
            now = self._clock()
            if now < next_round:
                stop.wait(min(next_round - now, 0.5))
                continue
            trades = self.next_trades(now - self._started)
            for trade in trades:
                self.stats.trades += 1
                emit(trade)
            if quote_to is not None:
                for quote in self.quotes_for(trades):
                    self.stats.quotes += 1
                    quote_to(quote)  # type: ignore[arg-type]
            self.note_trades(now)
            next_round += interval
            if now - next_round > 1.0:  # fell behind (e.g. suspended): do not burst to catch up
                next_round = now
            if now >= next_stats:
                self.log.info("stats %s", self.stats.line(self.quotes_on))
                next_stats = now + self.config.stats_interval_s
