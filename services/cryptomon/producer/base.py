"""The interface every exchange adapter implements, and the shared WebSocket connection loop.

`Adapter.run(emit, stop)` produces normalized trades until `stop` is set.

A WebSocket exchange is one `WebSocketAdapter` subclass in its own module. Its class
attributes describe the exchange (variable names, default URLs, REST symbol list, limits, the
replay server standing in for it); its methods speak the protocol (subscribe messages, frame
parser, keepalive). One instance is one connection ("shard") holding some markets; `Feed`
(feed.py) resolves the symbol set, shards it across as many instances as the exchange's
limits require and runs them. The base class owns connecting (through the process-wide
connection-attempt limiter), paced sending, resubscribing, the staleness watchdog, ack
deadlines, the connection-age cut, the frame-size cap, dedupe and capped exponential backoff
with jitter.

Top-of-book quotes (issue 14, off unless PRODUCER_QUOTES): an adapter names its channel
(`quote_channel`), subscribes it next to its trades when `self.quotes_on`, and its parser hands
each book state to `Adapter.quote()`, which validates (positive decimals, bid < ask), orders
(never older than the previous quote of that market) and coalesces it: the latest quote per
market waits until every frame of the current socket read is handled, then `flush_quotes`
emits it (`emit_quote`, the sink's quotes topic). The sharding counts
`len(markets) * streams_per_market()` streams.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from .backoff import Backoff
from .config import FeedSettings, ProducerConfig
from .dedupe import Deduper
from .quote import OLDER, POSITIVE_DECIMAL, Quote, QuoteOrder
from .schema import Trade
from .symbols import Market
from .transport import FrameTooLarge, TransportError, WSConnection

Emit = Callable[[Trade], None]
EmitQuote = Callable[[Quote], None]
_positive = POSITIVE_DECIMAL.fullmatch


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Stats:
    """Counters for the periodic one-line summary; every anomaly has its own counter."""

    FIELDS = ("trades", "duplicates", "malformed", "unknown", "errors", "gaps", "missed",
              "out_of_order", "rejected", "oversized", "connects", "reconnects")
    # Top-of-book quotes (only shown when quotes are on): emitted; replaced by a newer quote of
    # the same market from the same read; dropped as older than the last one; accepted after the
    # venue renumbered; dropped as crossed or locked (bid >= ask); dropped with a price or size
    # that is missing, zero, negative or not a decimal.
    QUOTE_FIELDS = ("quotes", "quotes_coalesced", "quotes_out_of_order", "quotes_resequenced",
                    "quotes_crossed", "quotes_invalid")

    def __init__(self) -> None:
        for name in self.FIELDS + self.QUOTE_FIELDS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def quote_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.QUOTE_FIELDS}

    def add(self, other: Stats) -> None:
        for name in self.FIELDS + self.QUOTE_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def line(self, quotes: bool = False) -> str:
        counts = {**self.as_dict(), **self.quote_dict()} if quotes else self.as_dict()
        return " ".join(f"{k}={v}" for k, v in counts.items())


class RateLimitedLog:
    """At most one line per key per interval, so a flood of bad frames cannot flood journald."""

    def __init__(self, log: logging.Logger, interval: float = 10.0) -> None:
        self._log = log
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        suffix = f" (+{skipped} similar suppressed)" if skipped else ""
        self._log.warning(msg + suffix, *args)


class Adapter(ABC):
    """A feed: run() emits normalized trades until stop is set."""

    exchange: ClassVar[str]
    default_stale_after_s: ClassVar[float] = 30.0

    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.log = logging.getLogger(f"cryptomon.producer.{self.exchange}")
        self.warn = RateLimitedLog(self.log)
        # When the trade count last grew (monotonic): noted off the hot path by note_trades.
        self._trades_seen = 0
        self._last_trade_at = time.monotonic()
        self.quotes_on = config.quotes.enabled
        self.quote_order = QuoteOrder()
        # raw symbol -> the latest quote of the current read, not yet emitted (flush_quotes).
        self.pending_quotes: dict[str, Quote] = {}

    @classmethod
    @abstractmethod
    def settings_from_env(cls, env: Mapping[str, str]) -> Any:
        """This adapter's own typed settings, from its own variables (ConfigError if invalid)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What Ansible and tests need to know, for `python -m cryptomon.producer.registry --json`."""
        return {"name": cls.exchange, "kind": "mock"}

    @abstractmethod
    def run(self, emit: Emit, stop: threading.Event, emit_quote: EmitQuote | None = None) -> None:
        """`emit_quote` receives the quotes when they are on (None: `emit` does)."""

    def markets(self) -> list[str]:
        """Normalized symbols this adapter produces (for the start-up log line)."""
        return []

    def note_trades(self, now: float) -> float:
        """Seconds since the trade count last grew (until the first trade: since start).

        Called a few times a second by the run loop and at every metrics scrape, never per
        trade: the hot path only increments stats.trades."""
        trades = self.stats.trades
        if trades != self._trades_seen:
            self._trades_seen = trades
            self._last_trade_at = now
        return max(0.0, now - self._last_trade_at)

    # --- top-of-book quotes: every venue's parser ends here ---------------------------------
    def quote(self, market: Market, bid: object, bid_size: object, ask: object, ask_size: object,
              exchange_ts: int | None, received_ms: int, sequence: int | None,
              frame: str | bytes) -> tuple[()]:
        """One book state from a venue's parser: checked, ordered and held as the market's
        latest until flush_quotes. Prices and sizes must be the venue's decimal strings (None
        where the parser found no valid one). Never raises; returns () for `handle`.

        This is the per-quote hot path: quote.crossed and the common case of QuoteOrder.check
        (a higher sequence, no drop streak) are inlined, with the same results."""
        if not (type(bid) is str and type(ask) is str and type(bid_size) is str and type(ask_size) is str
                and _positive(bid) and _positive(ask) and _positive(bid_size) and _positive(ask_size)):
            return self._bad("quotes_invalid", f"{market.raw}: a price or size is missing, zero, negative or "
                             "not a decimal", frame)
        b, a = float(bid), float(ask)  # only to order them: see quote.crossed
        if b >= a and (b > a or Decimal(bid) >= Decimal(ask)):
            return self._bad("quotes_crossed", f"{market.raw}: crossed or locked book (bid {bid} >= ask {ask})",
                             frame)
        raw = market.raw
        order = self.quote_order
        mark = order.marks.get(raw)
        if mark is not None and sequence is not None and mark[0] is not None and sequence > mark[0] \
                and not order.behind:
            order.marks[raw] = (sequence, mark[1] if exchange_ts is None else exchange_ts)
        else:
            verdict = order.check(raw, sequence, exchange_ts)
            if verdict == OLDER:
                return self._bad("quotes_out_of_order", f"{raw}: older than the last quote (sequence {sequence}, "
                                 f"time {exchange_ts}, last {order.marks.get(raw)})", frame)
            if verdict:
                self.stats.quotes_resequenced += 1
                self.warn.warning("quotes_resequenced", "%s: %s renumbered its quotes (sequence %s, time %s): "
                                  "following the new numbering", raw, self.exchange, sequence, exchange_ts)
        pending = self.pending_quotes
        if raw in pending:
            self.stats.quotes_coalesced += 1
        pending[raw] = Quote(self.exchange, market.symbol, raw, bid, bid_size, ask, ask_size, exchange_ts,
                             received_ms, sequence)
        return ()

    def flush_quotes(self, emit_quote: EmitQuote) -> None:
        """Emit the latest quote of each market from the read just handled (called once per
        socket read, never per frame: this is the coalescing)."""
        pending = self.pending_quotes
        self.stats.quotes += len(pending)
        try:
            for q in pending.values():
                emit_quote(q)
        finally:
            pending.clear()

    def take_quotes(self) -> list[Quote]:
        """The pending quotes, emitted into a list (tests and benchmarks)."""
        out: list[Quote] = []
        self.flush_quotes(out.append)
        return out

    def _bad(self, kind: str, what: str, frame: str | bytes) -> tuple[()]:
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        text = frame if isinstance(frame, str) else frame[:200].decode("utf-8", "replace")
        self.warn.warning(kind, "%s frame: %s: %.200s", kind, what, text)
        return ()


class Reconnect(Exception):
    """Raised inside a session to end it; `immediate` skips the backoff delay."""

    def __init__(self, reason: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.immediate = immediate


@dataclass(frozen=True)
class Limits:
    """An exchange's connection limits, as documented (or our conservative choice where the
    exchange documents none: see each adapter's docstring)."""

    streams_per_connection: int          # hard cap per connection
    default_streams_per_connection: int  # what a shard holds unless PRODUCER_STREAMS_PER_CONNECTION
    subscribe_batch: int                 # streams per subscribe message
    send_interval_s: float               # at least this long between our messages on one connection
    connect_attempts: int                # connection attempts per window, per IP (process-wide here)
    connect_window_s: float
    max_message_bytes: int = 4 << 20     # incoming message cap (issue 15, defect 6)


class ConnectLimiter:
    """Sliding window of connection attempts shared by every connection of the process, so a
    reconnect storm across shards never exceeds the exchange's per-IP attempt limit."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.waits = 0

    def acquire(self, stop: threading.Event, log: logging.Logger | None = None) -> bool:
        """Block until an attempt is allowed; False if stop was set first."""
        warned = False
        while not stop.is_set():
            with self._lock:
                now = self._clock()
                while self._times and now - self._times[0] >= self.window_s:
                    self._times.popleft()
                if len(self._times) < self.attempts:
                    self._times.append(now)
                    return True
                wait = self._times[0] + self.window_s - now
            if not warned and log is not None:
                self.waits += 1
                log.warning("connection attempt limit reached (%d per %.0f s): next attempt in %.1f s",
                            self.attempts, self.window_s, wait)
                warned = True
            stop.wait(min(max(wait, 0.01), 1.0))
        return False


class WebSocketAdapter(Adapter):
    """One connection of a WebSocket exchange; subclasses speak the exchange's protocol."""

    # --- the exchange, described (class attributes; see registry.describe) ------------------
    symbols_var: ClassVar[str]
    default_symbols: ClassVar[str]
    url_var: ClassVar[str]
    default_url: ClassVar[str]
    rest_var: ClassVar[str]
    default_rest_url: ClassVar[str]
    listing_path: ClassVar[str]           # REST path of the public symbol list
    replay_server: ClassVar[str]          # "module:Class" of the stand-in in cryptomon.replay
    replay_port: ClassVar[int]
    replay_path: ClassVar[str] = ""       # stream path on the replay server
    limits: ClassVar[Limits]
    settings_class: ClassVar[type[FeedSettings]] = FeedSettings
    stream_kinds: ClassVar[tuple[str, ...]] = ("trades",)
    # The top-of-book channel subscribed next to the trades when PRODUCER_QUOTES is on.
    quote_channel: ClassVar[str | None] = None
    extra_vars: ClassVar[dict[str, str]] = {}  # other variables of this exchange -> default
    # Keepalive: the client sends keepalive_message() every ping_interval_s (None: the server pings).
    ping_interval_s: ClassVar[float | None] = None
    pong_timeout_s: ClassVar[float] = 10.0
    recv_timeout: ClassVar[float] = 0.25
    # Markets each acknowledged key stands for (None: acks do not count markets), so an exchange
    # that answers only part of a connection's subscriptions reveals how many it keeps.
    markets_per_ack: ClassVar[int | None] = None
    connect_timeout_s: ClassVar[float] = 10.0  # TCP connect, TLS and the WebSocket handshake

    # --- protocol hooks ---------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def parse_symbol(text: str) -> Market:
        """An operator-written symbol -> Market (ValueError with a short reason if invalid)."""

    @classmethod
    @abstractmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        """The REST symbol list -> the markets that are trading now."""

    @abstractmethod
    def subscribe_messages(self) -> None:
        """Queue (self.queue) the subscribe messages for self.by_raw after each connect."""

    @abstractmethod
    def handle(self, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        """Parse one message; never raises: bad frames are counted and logged. Quotes go to
        self.quote(), not into the result."""

    def keepalive_message(self) -> str | None:
        return None

    def markets_changed(self) -> None:
        """self.by_raw was replaced or shrunk (for adapters that keep derived lookups)."""

    # --- settings ----------------------------------------------------------------------------
    @classmethod
    def settings_from_env(cls, env: Mapping[str, str]) -> FeedSettings:
        return cls.settings_class.from_env(cls, env)

    @classmethod
    def streams_per_market(cls, config: ProducerConfig) -> int:
        """Streams (subscriptions) one market takes on a connection: its trades, and its quotes
        when they are on."""
        quotes = config.quotes.enabled and cls.quote_channel is not None
        return max(1, len(cls.stream_kinds)) + (1 if quotes else 0)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.exchange, "kind": "websocket",
            "symbols_var": cls.symbols_var, "default_symbols": cls.default_symbols.split(","),
            "stream_url_var": cls.url_var, "default_stream_url": cls.default_url,
            "rest_url_var": cls.rest_var, "default_rest_url": cls.default_rest_url,
            "listing_path": cls.listing_path, "extra_vars": dict(cls.extra_vars),
            "replay_module": cls.replay_server.partition(":")[0], "replay_default_port": cls.replay_port,
            "replay_stream_path": cls.replay_path,
            "limits": {
                "streams_per_connection": cls.limits.streams_per_connection,
                "default_streams_per_connection": cls.limits.default_streams_per_connection,
                "connect_attempts": cls.limits.connect_attempts,
                "connect_window_s": cls.limits.connect_window_s,
                "max_message_bytes": cls.limits.max_message_bytes,
            },
            "stale_after_s": cls.default_stale_after_s,
            "quote_channel": cls.quote_channel,
        }

    # --- one connection -------------------------------------------------------------------
    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, *,
                 dedupe: Deduper | None = None, limiter: ConnectLimiter | None = None,
                 tag: str = "", limits: Limits | None = None, quote_order: QuoteOrder | None = None) -> None:
        super().__init__(config)
        self.quotes_on = config.quotes.enabled and self.quote_channel is not None
        if quote_order is not None:
            self.quote_order = quote_order  # shared by a Feed's connections, like the deduper
        feed = config.feed
        if markets is None:
            markets = feed.symbols.markets  # explicit symbols only; patterns need a Feed
        self.by_raw: dict[str, Market] = {m.raw: m for m in markets}
        self.limits_in_use = limits or self.limits
        self.dedupe = dedupe or Deduper(name=self.exchange)
        self.limiter = limiter
        self.tag = tag
        if tag:
            self.log = logging.getLogger(f"cryptomon.producer.{self.exchange}{tag}")
            self.warn = RateLimitedLog(self.log)
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.last_activity = time.monotonic()
        self.pending_acks: dict[object, float] = {}
        self.reconnect_request: Reconnect | None = None
        self.rejected: dict[str, str] = {}        # raw symbol -> the exchange's reason
        self.capacity_hint: int | None = None     # the exchange kept fewer streams than asked (the Feed clears it)
        self.connected = threading.Event()
        self._next_markets: dict[str, Market] | None = None
        self._outbox: deque[str] = deque()
        self._last_send = 0.0
        self._pong_deadline: float | None = None
        self._acks_asked = 0

    def market_list(self) -> list[Market]:
        return list(self.by_raw.values())

    def markets(self) -> list[str]:
        return [m.symbol for m in self.by_raw.values()]

    def url(self) -> str:
        return self.config.feed.stream_url

    def replace_markets(self, markets: Iterable[Market]) -> None:
        """From another thread (the Feed's refresh): resubscribe with these markets."""
        self._next_markets = {m.raw: m for m in markets}
        self.reconnect_request = Reconnect("symbol set changed", immediate=True)

    def queue(self, text: str, *ack_keys: object) -> None:
        """Send `text` when the pacing allows; each ack key must be answered in time."""
        position = len(self._outbox)
        self._outbox.append(text)
        self._acks_asked += len(ack_keys)
        deadline = (time.monotonic() + self.config.ack_timeout_s
                    + position * self.limits_in_use.send_interval_s)
        for key in ack_keys:
            self.pending_acks[key] = deadline

    def reject(self, raw: str, reason: str) -> None:
        """The exchange refused one market: go on without it, say so once, loudly."""
        market = self.by_raw.pop(raw, None)
        if market is None or raw in self.rejected:
            return
        self.markets_changed()
        self.rejected[raw] = reason
        self.stats.rejected += 1
        self.log.error("%s: subscription to %s refused: %s; continuing without it (until the next "
                       "symbol refresh or restart)", self.exchange, raw, reason)

    def on_connect(self) -> None:
        self.pending_acks.clear()
        self.reconnect_request = None
        self._outbox.clear()
        self._acks_asked = 0
        self._pong_deadline = None
        self.last_activity = time.monotonic()

    # --- loop ------------------------------------------------------------------------------
    def run(self, emit: Emit, stop: threading.Event, emit_quote: EmitQuote | None = None) -> None:
        self._emit_quote: EmitQuote = emit_quote or emit  # type: ignore[assignment]
        first = True
        while not stop.is_set():
            if self._next_markets is not None:
                self.by_raw, self._next_markets = self._next_markets, None
                self.markets_changed()
            if not self.by_raw:
                stop.wait(0.5)  # every market refused: wait for the next symbol set
                continue
            if not first:
                self.stats.reconnects += 1
            first = False
            try:
                self._session(emit, stop)
                return  # stop requested
            except Reconnect as exc:
                self.connected.clear()
                if stop.is_set():
                    return
                if exc.immediate:
                    self.backoff.reset()
                    self.log.info("reconnecting now: %s", exc.reason)
                    continue
                delay = self.backoff.next_delay()
                self.log.warning("reconnecting in %.1fs (attempt %d): %s", delay, self.backoff.attempt, exc.reason)
                stop.wait(delay)

    def _connect(self) -> WSConnection:
        url = self.url()
        try:
            ws = WSConnection(url, timeout=self.connect_timeout_s, max_size=self.limits_in_use.max_message_bytes)
        except TransportError as exc:
            raise Reconnect(exc.reason) from None
        ws.settimeout(self.recv_timeout)
        self.stats.connects += 1
        self.log.info("connected to %s (%d markets)", url, len(self.by_raw))
        return ws

    def _session(self, emit: Emit, stop: threading.Event) -> None:
        if self.limiter is not None and not self.limiter.acquire(stop, self.log):
            return
        ws = self._connect()
        opened = time.monotonic()
        trades_at_open = self.stats.trades
        healthy = False
        try:
            self.on_connect()
            self.subscribe_messages()
            stale_after = self.config.stale_after_s
            max_age = self.config.max_connection_s
            interval = self.limits_in_use.send_interval_s
            ping_every = self.ping_interval_s
            next_ping = opened + ping_every if ping_every else float("inf")
            pings_seen = 0
            handle = self.handle
            outbox = self._outbox
            pending_quotes = self.pending_quotes
            while not stop.is_set():
                now = time.monotonic()
                try:
                    if outbox and now - self._last_send >= interval:
                        ws.send_text(outbox.popleft())
                        self._last_send = now
                    messages = ws.receive()
                except FrameTooLarge as exc:
                    self.stats.oversized += 1
                    self.log.error("%s: %s; reconnecting", self.exchange, exc.reason)
                    raise Reconnect(exc.reason) from None
                except TransportError as exc:
                    if exc.close_code == 1008 and self.pending_acks:
                        # Closed for a policy reason while subscribing: ask the Feed for smaller shards.
                        self.capacity_hint = max(1, len(self.by_raw) // 2)
                    raise Reconnect(exc.reason, immediate=exc.clean and healthy) from None
                for data in messages:
                    try:
                        trades = handle(data, now_ms())
                    except Exception:  # a parser bug must not end the connection's thread
                        self.stats.malformed += 1
                        self.log.exception("failed to handle a frame: %.200r", bytes(data[:200]))
                        continue
                    for trade in trades:
                        emit(trade)
                if pending_quotes:
                    self.flush_quotes(self._emit_quote)
                now = time.monotonic()
                if ws.pings != pings_seen:  # the server's pings (answered by the transport) mean it is alive
                    pings_seen = ws.pings
                    self.last_activity = now
                if self.reconnect_request is not None:
                    raise self.reconnect_request
                if now - self.last_activity > stale_after:
                    raise Reconnect(f"watchdog: no data for {stale_after:.0f}s", immediate=True)
                if now - opened > max_age:
                    raise Reconnect(f"connection age reached {max_age:.0f}s", immediate=True)
                for key, deadline in self.pending_acks.items():
                    if now > deadline:
                        self._partial_acks()
                        raise Reconnect(f"subscription {key} not acknowledged in time")
                if now >= next_ping:
                    message = self.keepalive_message()
                    if message is not None:
                        outbox.appendleft(message)
                        if self._pong_deadline is None:
                            self._pong_deadline = now + self.pong_timeout_s
                    next_ping = now + ping_every  # type: ignore[operator]
                if self._pong_deadline is not None and now > self._pong_deadline:
                    raise Reconnect(f"no pong within {self.pong_timeout_s:.0f}s")
                # Healthy: trades flow, or every request is answered and the server is alive.
                if not healthy and (self.stats.trades > trades_at_open or (
                        not self.pending_acks and not outbox and self.last_activity > opened)):
                    healthy = True
                    self.connected.set()
                    self.backoff.reset()
        finally:
            self.connected.clear()
            ws.close()

    def _partial_acks(self) -> None:
        """Some subscriptions answered, the rest never: the exchange keeps only that many per
        connection. Say so once and ask the Feed for smaller shards."""
        if self.markets_per_ack is None:
            return
        kept = ((self._acks_asked - len(self.pending_acks)) * self.markets_per_ack
                // self.streams_per_market(self.config))
        if 0 < kept < len(self.by_raw):
            self.stats.errors += 1
            self.log.error("%s acknowledged only %d of %d subscriptions on this connection: it drops "
                           "subscriptions above its limit", self.exchange, kept, len(self.by_raw))
            self.capacity_hint = kept

    def pong(self) -> None:
        """The exchange answered our keepalive."""
        self._pong_deadline = None
        self.last_activity = time.monotonic()
