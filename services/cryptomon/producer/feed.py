"""A whole exchange feed: the symbol set resolved, sharded across connections, refreshed.

Explicit symbol lists are used as given. A pattern (`BINANCE_SYMBOLS=*USDT`) is resolved
against the exchange's public REST symbol list (trading markets only) at start and every
PRODUCER_SYMBOLS_REFRESH_S (a day). The resolved list is cached in a file; when the list cannot
be fetched at start, the producer retries with backoff, and with a cache it starts on the cached
list at once and says so. Markets are split into shards of at most
PRODUCER_STREAMS_PER_CONNECTION streams (never above the exchange's own limit), one connection
each; a refresh only reconnects the shards whose markets changed. All connections share one
connection-attempt limiter, one deduper and one quote order (quotes never go back in time
when a market moves to another connection).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

from cryptomon.kafka_settings import ConfigError

from .backoff import Backoff
from .base import Adapter, ConnectLimiter, Emit, EmitQuote, Limits, Stats, WebSocketAdapter
from .config import FeedSettings, ProducerConfig
from .dedupe import Deduper
from .symbols import ListingError, Market, fetch_listing, load_cache, save_cache

log = logging.getLogger("cryptomon.producer.feed")


class FeedError(ConfigError):
    """The symbol set resolves to nothing: a configuration problem, exit 2."""


def plan_shards(markets: list[Market], per_connection: int) -> list[list[Market]]:
    """Balanced contiguous chunks: 450 markets at 200 per connection -> 150, 150, 150."""
    if not markets:
        return []
    n = math.ceil(len(markets) / per_connection)
    size, extra = divmod(len(markets), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(markets[start:end])
        start = end
    return out


def replan(current: list[list[Market]], wanted: list[Market], per_connection: int) -> list[list[Market]]:
    """Keep each shard's surviving markets where they are; fill free room, then new shards.
    So a daily refresh that adds or removes a few markets reconnects only the shards touched."""
    keep = {m.raw for m in wanted}
    by_raw = {m.raw: m for m in wanted}
    shards = [[by_raw[m.raw] for m in shard if m.raw in keep] for shard in current]
    placed = {m.raw for shard in shards for m in shard}
    added = [m for m in wanted if m.raw not in placed]
    for shard in shards:
        while added and len(shard) < per_connection:
            shard.append(added.pop(0))
    shards += plan_shards(added, per_connection)
    return shards


class Feed(Adapter):
    """Every connection of one exchange, as one Adapter for the CLI."""

    def __init__(self, config: ProducerConfig, adapter_cls: type[WebSocketAdapter], *,
                 limits: Limits | None = None) -> None:
        self.exchange = adapter_cls.exchange  # type: ignore[misc]  # the logger name needs it first
        super().__init__(config)
        self.cls = adapter_cls
        self.quotes_on = config.quotes.enabled and adapter_cls.quote_channel is not None
        self.settings: FeedSettings = config.feed
        self.feed_limits = limits or adapter_cls.limits
        kinds = adapter_cls.streams_per_market(config)
        per_streams = min(self.settings.streams_per_connection, self.feed_limits.streams_per_connection)
        self.per_connection = max(1, per_streams // kinds)  # markets per connection
        self.limiter = ConnectLimiter(self.feed_limits.connect_attempts, self.feed_limits.connect_window_s)
        self.dedupe = Deduper(name=self.exchange)
        self.shards: list[WebSocketAdapter] = []
        self.threads: list[threading.Thread] = []
        self.resolved: list[Market] = []
        self.source = "configuration"   # where the symbol list came from: configuration, rest, cache
        self._emit: Emit | None = None
        self._emit_quote: EmitQuote | None = None
        self._stop: threading.Event | None = None
        self._failure: BaseException | None = None  # what ended a connection's thread
        self._retry = Backoff(1.0, 300.0)

    # Stats: this object's own counters plus every shard's.
    @property  # type: ignore[override]
    def stats(self) -> Stats:
        total = Stats()
        total.add(self._own)
        for shard in self.shards:
            total.add(shard.stats)
        return total

    @stats.setter
    def stats(self, value: Stats) -> None:
        self._own = value

    @classmethod
    def settings_from_env(cls, env: Any) -> Any:  # pragma: no cover - the adapter class reads them
        raise NotImplementedError

    def markets(self) -> list[str]:
        if self.resolved:
            return [m.symbol for m in self.resolved]
        return [m.symbol for m in self.settings.symbols.markets] + list(self.settings.symbols.patterns)

    def connections(self) -> int:
        return sum(1 for s in self.shards if s.connected.is_set())

    # --- the symbol set ---------------------------------------------------------------------
    def listing_url(self) -> str:
        return self.settings.rest_url + self.cls.listing_path

    def _fetch(self) -> list[Market]:
        markets = fetch_listing(self.listing_url(), self.cls.parse_listing)
        if self.settings.symbols_cache is not None:
            save_cache(self.settings.symbols_cache, self.exchange, markets)
        return markets

    def _resolve(self, listing: list[Market]) -> list[Market]:
        symbols = self.settings.symbols
        markets, empty = symbols.resolve(listing)
        for pattern in empty:
            self.log.warning("%s: pattern %r matches none of the %d trading markets", symbols.variable,
                             pattern, len(listing))
        return markets

    def initial_markets(self, stop: threading.Event) -> list[Market] | None:
        """The markets to start with, or None if stop was set while waiting for the REST list."""
        symbols = self.settings.symbols
        if not symbols.patterns:
            return list(symbols.markets)
        cached = None
        if self.settings.symbols_cache is not None:
            cached = load_cache(self.settings.symbols_cache, self.exchange)
        while not stop.is_set():
            try:
                listing = self._fetch()
            except ListingError as exc:
                delay = self._retry.next_delay()
                if cached is not None:
                    markets, fetched_at = cached
                    when = datetime.fromtimestamp(fetched_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
                    self.log.warning("%s: symbol list unavailable (%s); starting on the cached list %s "
                                     "(%d markets, fetched %s), retrying the exchange in %.0fs",
                                     self.exchange, exc, self.settings.symbols_cache, len(markets), when, delay)
                    self.source = "cache"
                    self._next_refresh = time.monotonic() + delay
                    return self._nonempty(self._resolve(markets), len(markets))
                self.log.error("%s: symbol list unavailable (%s); no cached list%s; retrying in %.1fs",
                               self.exchange, exc,
                               f" at {self.settings.symbols_cache}" if self.settings.symbols_cache else
                               " (set PRODUCER_SYMBOLS_CACHE or run under systemd with a StateDirectory)",
                               delay)
                stop.wait(delay)
                continue
            self._retry.reset()
            self.source = "rest"
            self._next_refresh = time.monotonic() + self.settings.refresh_s
            markets = self._nonempty(self._resolve(listing), len(listing))
            self.log.info("%s: %s resolved to %d markets from %s", self.exchange, symbols.describe(),
                          len(markets), self.listing_url())
            return markets
        return None

    def _nonempty(self, markets: list[Market], listed: int) -> list[Market]:
        if not markets:
            raise FeedError(f"{self.settings.symbols.variable}: {self.settings.symbols.describe()!r} matches "
                            f"none of the {listed} trading markets of {self.exchange}")
        return markets

    def refresh(self) -> None:
        """Fetch the list again; reshard the connections whose markets changed."""
        try:
            listing = self._fetch()
        except ListingError as exc:
            delay = self._retry.next_delay()
            self.log.warning("%s: symbol refresh failed (%s); keeping %d markets, retrying in %.0fs",
                             self.exchange, exc, len(self.resolved), delay)
            self._next_refresh = time.monotonic() + delay
            return
        self._retry.reset()
        self._next_refresh = time.monotonic() + self.settings.refresh_s
        if self.source == "cache":
            self.log.info("%s: symbol list fetched again; leaving the cached list", self.exchange)
        self.source = "rest"
        markets = self._resolve(listing)
        if not markets:
            self.log.error("%s: %s now matches no trading market; keeping the %d markets in use",
                           self.settings.symbols.variable, self.settings.symbols.describe(), len(self.resolved))
            return
        old = {m.raw for m in self.resolved}
        new = {m.raw for m in markets}
        if old == new:
            self.log.info("%s: symbol list refreshed, unchanged (%d markets)", self.exchange, len(markets))
            return
        added, removed = sorted(new - old), sorted(old - new)
        self.log.info("%s: symbol set changed: +%d %.200s -%d %.200s", self.exchange, len(added),
                      ",".join(added), len(removed), ",".join(removed))
        self._assign(markets, replan([s.market_list() for s in self.shards], markets, self.per_connection))

    # --- shards -----------------------------------------------------------------------------
    def _assign(self, markets: list[Market], plan: list[list[Market]]) -> None:
        self.resolved = markets
        for i, part in enumerate(plan):
            if i < len(self.shards):
                shard = self.shards[i]
                if {m.raw for m in part} != {m.raw for m in shard.market_list()} or shard.rejected:
                    shard.rejected.clear()
                    shard.replace_markets(part)
            else:
                self._start_shard(part)
        for shard in self.shards[len(plan):]:
            if shard.market_list():
                shard.replace_markets([])
        for i, shard in enumerate(self.shards):
            shard.tag = f"#{i + 1}"
        self.log.info("%s: %d markets on %d connection(s) of at most %d", self.exchange, len(markets),
                      len(plan), self.per_connection)

    def _start_shard(self, markets: list[Market]) -> None:
        assert self._emit is not None and self._stop is not None
        tag = f"#{len(self.shards) + 1}"
        shard = self.cls(self.config, markets, dedupe=self.dedupe, limiter=self.limiter, tag=tag,
                         limits=self.feed_limits, quote_order=self.quote_order)
        self.shards.append(shard)
        t = threading.Thread(target=self._run_shard, args=(shard,), name=f"{self.exchange}{tag}", daemon=True)
        self.threads.append(t)
        t.start()

    def _run_shard(self, shard: WebSocketAdapter) -> None:
        assert self._emit is not None and self._stop is not None
        try:
            shard.run(self._emit, self._stop, self._emit_quote)
        except BaseException as exc:  # a fatal sink error (Kafka, a closed stdout): stop everything
            if self._failure is None:
                self._failure = exc
            self._stop.set()

    def _check_capacity(self) -> None:
        hints = [s.capacity_hint for s in self.shards if s.capacity_hint is not None]
        if not hints:
            return
        for s in self.shards:
            s.capacity_hint = None
        kept = min(hints)
        if kept >= self.per_connection:
            return
        self.per_connection = kept
        plan = plan_shards(self.resolved, kept)
        self.log.error("%s: the exchange kept only %d streams on one connection: lowering streams per "
                       "connection to %d and resharding onto %d connections", self.exchange, kept, kept, len(plan))
        self._assign(self.resolved, plan)

    # --- run --------------------------------------------------------------------------------
    def run(self, emit: Emit, stop: threading.Event, emit_quote: EmitQuote | None = None) -> None:
        self._emit, self._stop, self._emit_quote = emit, stop, emit_quote
        self._next_refresh = float("inf")
        markets = self.initial_markets(stop)
        if markets is None:
            return
        self._assign(markets, plan_shards(markets, self.per_connection))
        patterns = bool(self.settings.symbols.patterns)
        next_stats = time.monotonic() + self.config.stats_interval_s
        try:
            while not stop.wait(0.2):
                self._check_capacity()
                now = time.monotonic()
                self.note_trades(now)  # the last trade's age for /metrics, to within this tick
                if patterns and now >= self._next_refresh:
                    self.refresh()
                if now >= next_stats:
                    self.log.info("stats %s connections=%d/%d markets=%d", self.stats.line(self.quotes_on),
                                  self.connections(),
                                  sum(1 for s in self.shards if s.market_list()), len(self.resolved))
                    next_stats = now + self.config.stats_interval_s
        finally:
            for t in self.threads:
                t.join(10)
        if self._failure is not None:
            raise self._failure
