"""Local stand-ins for the exchanges: WebSocket servers speaking each exchange's market-data
protocol (one module per exchange, found through the producer's registry), with plausible
trades generated continuously (seeded random walks), the exchange's REST symbol list on the
same port, its limits enforced, and a scriptable fault mode (drops, shutdown notices, sequence
gaps, bad and oversized frames, error replies, ping/pong checks). Used by the integration
tests and deployed in the sandbox; stdlib only.

Top of book (issue 14): every market also has a best bid and ask, each venue serving it on its
own channel with its own message shapes. The book follows the trade walk (one step either side
of the last price, new sizes, a new update id at every trade) until a script or a test sets it
(`set_quote`, script step `{"do":"quote","symbol":…,"bid":…,"ask":…}`): a set book stays as it is
until released, so two servers can be made to disagree, e.g. one venue's ask below another's
bid. `{"do":"quote","symbol":…,"silent":true}` stops a market's quotes (a venue gone quiet).
The book is computed only when a client reads it: trade-only runs pay nothing for it.

Venues agree on a price the way real ones do: every market of an asset starts at the same
price and its walk is pulled back towards it (1/REVERSION_TRADES of the distance per trade), so
two venues' walks stay within a few basis points of each other (about 13 bps apart, one standard
deviation) instead of drifting apart without bound. Scripted opportunities (`Opportunity`,
`cryptomon-replay --opportunity-every`): for `for_s` seconds of every `every_s`, this venue's
books sit `bps` below its walk, so buying here at the ask and selling on another venue at its bid
clears both taker fees: what the quote arbitrage job is meant to find, now and then, in a
sandbox. Each venue takes its own phase (`offset_s`), so the venues never dip together.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

from .ws import OP_CLOSE, OP_PING, OP_TEXT, ConnectionClosed, WSConnection, WSServer

log = logging.getLogger("cryptomon.replay")

_START = {"BTC": 6_000_000, "ETH": 300_000, "BNB": 60_000, "SOL": 15_000}  # cents
# A walk moves back 1/REVERSION_TRADES of its distance from the start price per trade: its steps
# (up to 0.5 bps) then keep it within about 9 bps of the start (one standard deviation), the
# same for every venue of the asset, so venues disagree by about 13 bps, not without bound.
REVERSION_TRADES = 2000
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # what set_quote takes: a JSON number's text


def cents_text(cents: int, decimals: int) -> str:
    whole, frac = divmod(cents, 100)
    return f"{whole}.{frac:02d}{'0' * (decimals - 2)}" if decimals >= 2 else str(whole)


def units_text(units: int, decimals: int = 8) -> str:
    whole, frac = divmod(units, 100_000_000)
    return f"{whole}.{f'{frac:08d}'[:decimals]}" if decimals else str(whole)


@dataclass(slots=True, frozen=True)
class ReplayQuote:
    """One state of a market's top of book; prices and sizes as the decimal text sent."""

    bid: str
    bid_size: str
    ask: str
    ask_size: str
    update_id: int   # rises with every change of the book
    ts_ms: int       # when the book last changed


@dataclass(slots=True, frozen=True)
class Opportunity:
    """For `for_s` seconds of every `every_s` (wall clock, so venues in separate processes keep
    their phases apart), from `offset_s` on, this venue's books sit `bps` below its price walk."""

    every_s: float
    for_s: float
    bps: int
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.for_s < self.every_s:
            raise ValueError(f"an opportunity lasts {self.for_s} s of every {self.every_s} s: "
                             "it must last more than 0 s and less than its period")
        if not 0 < self.bps < 5000:
            raise ValueError(f"an opportunity of {self.bps} bps: must be 1..4999 bps")

    def active(self, now_s: float) -> bool:
        return (now_s - self.offset_s) % self.every_s < self.for_s


@dataclass(slots=True)
class ReplayTrade:
    trade_id: int
    sequence: int
    price_cents: int
    size_units: int        # 1e-8 of the base asset
    buyer_maker: bool      # True: the buyer was the maker, so the taker sold
    ts_ms: int

    def price(self, decimals: int) -> str:
        return cents_text(self.price_cents, decimals)

    def size(self, decimals: int = 8) -> str:
        return units_text(self.size_units, decimals)


class Market:
    """One symbol's trade tape: ids and sequence numbers rise by one per trade."""

    def __init__(self, symbol: str, seed: int, keep: int = 50_000) -> None:
        self.symbol = symbol
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(symbol.encode()))
        base = symbol.replace("/", "-").split("-")[0] if ("-" in symbol or "/" in symbol) else symbol[:3]
        self.price = _START.get(base, 10_000)
        self.anchor = self.price  # where every venue's walk of this asset starts, and is pulled back to
        self.next_id = 1_000_000 + self.rng.randint(0, 1000)
        self.sequence = 50_000_000 + self.rng.randint(0, 1000)
        self.tape: list[ReplayTrade] = []
        self.made = 0          # trades made (published) so far
        self.base = 0          # absolute index of tape[0]
        self.keep = keep
        # Top of book: its own generator, so the trades are the same with or without quotes.
        self.qrng = random.Random(seed * 7_000_003 + zlib.crc32(symbol.encode()))
        self.book_version = 0  # +1 per trade and per set/release: the update id's increment
        self.book_changed_ms = time.time_ns() // 1_000_000
        self.update_base = 10_000_000 + self.qrng.randint(0, 1000)
        self.pinned: ReplayQuote | None = None   # set by set_quote: not moved by trades
        self.quote_silent = False                # no quotes for this market (a venue gone quiet)
        self.shift_bps = 0                       # the book sits this far below the walk (an opportunity)
        self._quote: ReplayQuote | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.tape)

    def make(self) -> ReplayTrade:
        step = max(1, self.price // 20_000)
        pull = int((self.anchor - self.price) / REVERSION_TRADES)  # towards zero: symmetric either side
        self.price = max(step, self.price + self.rng.randint(-step, step) + pull)
        trade = ReplayTrade(self.next_id, self.sequence, self.price, self.rng.randint(1, 50_000_000),
                            self.rng.random() < 0.5, time.time_ns() // 1_000_000)
        self.next_id += 1
        self.sequence += 1
        self.made += 1
        self.book_version += 1
        self.book_changed_ms = trade.ts_ms
        self.tape.append(trade)
        if len(self.tape) > 2 * self.keep:
            drop = len(self.tape) - self.keep
            del self.tape[:drop]
            self.base += drop
        return trade

    def quote(self) -> ReplayQuote:
        """The current top of book (computed when asked, from the walk's price, unless set)."""
        if self.pinned is not None:
            return self.pinned
        update_id = self.update_base + self.book_version
        if self._quote is None or self._quote.update_id != update_id:
            mid = self.price * (10_000 - self.shift_bps) // 10_000
            half = max(1, mid // 40_000)  # about a quarter of a basis point
            self._quote = ReplayQuote(cents_text(max(1, mid - half), 2),
                                      units_text(self.qrng.randint(1, 500_000_000)),
                                      cents_text(mid + half, 2), units_text(self.qrng.randint(1, 500_000_000)),
                                      update_id, self.book_changed_ms)
        return self._quote

    def set_shift(self, bps: int) -> None:
        """Move the book (not the trades) `bps` below the walk; 0 puts it back. A new book state."""
        if bps != self.shift_bps:
            self.shift_bps = bps
            self.book_version += 1
            self.book_changed_ms = time.time_ns() // 1_000_000

    def set_quote(self, bid: str, ask: str, bid_size: str, ask_size: str) -> ReplayQuote:
        self.book_version += 1
        self.book_changed_ms = time.time_ns() // 1_000_000
        self.pinned = ReplayQuote(bid, bid_size, ask, ask_size, self.update_base + self.book_version,
                                  self.book_changed_ms)
        return self.pinned

    def release_quote(self) -> None:
        if self.pinned is not None:
            self.pinned = None
            self.book_version += 1
            self.book_changed_ms = time.time_ns() // 1_000_000

    def skip(self, n: int) -> None:
        """A gap: n trades happen that no client will ever see."""
        self.next_id += n
        self.sequence += n

    def since(self, index: int) -> tuple[list[ReplayTrade], int]:
        start = max(index, self.base) - self.base
        return self.tape[start:], self.end


@dataclass
class ServerStats:
    connections: int = 0
    subscribes: int = 0
    rate_limit_closes: int = 0
    pings: int = 0
    pongs: int = 0
    pong_timeouts: int = 0
    trades_sent: int = 0
    errors_sent: int = 0
    connect_rejects: int = 0   # handshakes refused by the connection-attempt limit
    oversized_sent: int = 0
    quotes_sent: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ReplayServer:
    """Shared machinery: markets, the trade generator thread, the REST symbol list, the
    connection-attempt limit, injections on live connections."""

    exchange = ""
    # REST path (without query) -> listing.<function> name; served on the WebSocket port.
    rest_paths: dict[str, str] = {}
    default_max_connects: tuple[int, float] | None = None  # (attempts, per seconds) per IP

    def __init__(self, symbols: list[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 rate: float = 0.0, seed: int = 7, replay_on_subscribe: int = 0, keep: int = 50_000,
                 max_connects: tuple[int, float] | None | bool = True, listing: Any = None,
                 opportunity: Opportunity | None = None) -> None:
        self.seed = seed
        self.opportunity = opportunity  # scripted books below the walk, now and then (None: never)
        self.rate = rate  # trades per second per market; 0 = only publish() makes trades
        self.replay_on_subscribe = replay_on_subscribe  # resend this many past trades per new subscription
        self.keep = keep  # trades kept per market (for replays and the tests' expectations)
        self.markets: dict[str, Market] = {}
        self.cond = threading.Condition()
        self.stats = ServerStats()
        self._stop = threading.Event()
        self.max_connects = self.default_max_connects if max_connects is True else (max_connects or None)
        self._attempts: deque[float] = deque()
        self._attempts_lock = threading.Lock()
        self.rest_failures = 0  # answer the next N REST requests with HTTP 500
        self.rest_requests = 0
        self._listing = listing  # the REST payload; None = the realistic default (replay.listing)
        self.server = WSServer(self._handle, host, port, http=self._http, admit=self._admit)
        for s in symbols or []:
            self.market(s)

    # --- REST symbol list and connection limits ----------------------------------------------
    def listing(self) -> Any:
        if self._listing is None and self.rest_paths:
            from . import listing

            self._listing = getattr(listing, next(iter(self.rest_paths.values())))()
        return self._listing

    def listed_symbols(self) -> set[str]:
        """Symbols the exchange knows (for errors on bad subscriptions): override per exchange."""
        return set()

    def known(self, symbol: str) -> bool:
        return symbol in self.markets or symbol in self._known()

    def _known(self) -> set[str]:
        cached = getattr(self, "_known_cache", None)
        if cached is None:
            cached = self._known_cache = self.listed_symbols()
        return cached

    def _http(self, path: str) -> tuple[int, bytes]:
        from .listing import body

        self.rest_requests += 1
        route = urlsplit(path).path.rstrip("/")
        if route == "/replay/stats":  # not an exchange endpoint: for benchmarks and operators
            # last_ids: the newest trade id made per market (ids rise by one per trade), so a
            # checker can tell which trades a producer must have delivered.
            last_ids = {sym: m.next_id - 1 for sym, m in list(self.markets.items()) if m.made}
            return 200, json.dumps({**asdict(self.stats), "made": self.made(),
                                    "markets": len(self.markets), "last_ids": last_ids}).encode()
        if route not in self.rest_paths:
            return 404, b'{"error":"not found"}'
        if self.rest_failures > 0:
            self.rest_failures -= 1
            return 500, b'{"error":"injected failure"}'
        return 200, body(self.listing())

    def _admit(self) -> bool:
        """Every attempt counts, refused ones too (as "connection attempts" on the exchanges)."""
        if self.max_connects is None:
            return True
        attempts, window = self.max_connects
        now = time.monotonic()
        with self._attempts_lock:
            while self._attempts and now - self._attempts[0] >= window:
                self._attempts.popleft()
            self._attempts.append(now)
            if len(self._attempts) > attempts:
                self.stats.connect_rejects += 1
                log.warning("%s: connection attempt limit (%d per %.0f s) exceeded: refused", self.exchange,
                            attempts, window)
                return False
        return True

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> Self:
        self.server.start()
        if self.rate > 0:
            threading.Thread(target=self._generate, name="replay-gen", daemon=True).start()
        if self.opportunity is not None:
            threading.Thread(target=self._opportunities, name="replay-opportunities", daemon=True).start()
        log.info("%s replay server on %s (rate %s/s per market)", self.exchange, self.url, self.rate)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- trades ------------------------------------------------------------------------
    def market(self, symbol: str) -> Market:
        with self.cond:
            m = self.markets.get(symbol)
            if m is None:
                m = self.markets[symbol] = Market(symbol, self.seed, keep=self.keep)
            return m

    def publish(self, n: int = 1, symbol: str | None = None) -> list[ReplayTrade]:
        """Make n trades on one market (or on every market) and wake the connections."""
        made = []
        with self.cond:
            targets = [self.markets[symbol]] if symbol else list(self.markets.values())
            for m in targets:
                made.extend(m.make() for _ in range(n))
            self.cond.notify_all()
        return made

    def made(self) -> int:
        """Trades made so far on every market."""
        with self.cond:
            return sum(m.made for m in self.markets.values())

    def gap(self, n: int, symbol: str | None = None) -> None:
        with self.cond:
            for m in [self.markets[symbol]] if symbol else list(self.markets.values()):
                m.skip(n)

    def _generate(self) -> None:
        owed: dict[str, float] = {}
        last = time.monotonic()
        while not self._stop.wait(0.02):
            now = time.monotonic()
            dt, last = now - last, now
            with self.cond:
                for sym, m in list(self.markets.items()):
                    owed[sym] = owed.get(sym, 0.0) + self.rate * dt
                    while owed[sym] >= 1:
                        m.make()
                        owed[sym] -= 1
                self.cond.notify_all()

    def apply_opportunity(self, now_s: float) -> bool:
        """Every market's book below its walk while the opportunity is on (markets that appear
        during one join it); returns whether it is on."""
        assert self.opportunity is not None
        on = self.opportunity.active(now_s)
        target = self.opportunity.bps if on else 0
        with self.cond:
            moved = [m for m in self.markets.values() if m.shift_bps != target]
            for m in moved:
                m.set_shift(target)
            if moved:
                self.cond.notify_all()
        if moved:
            log.info("%s: %s", self.exchange, f"books {target} bps below the walk (a scripted opportunity)"
                     if on else "books back on the walk")
        return on

    def _opportunities(self) -> None:
        while not self._stop.wait(0.05):
            self.apply_opportunity(time.time())

    # --- injections on every live connection -----------------------------------------------
    def connections(self) -> list[WSConnection]:
        return self.server.live()

    def drop(self) -> int:
        """Abrupt TCP drop, no close frame."""
        conns = self.connections()
        for c in conns:
            c.abort()
        return len(conns)

    def close_all(self, code: int = 1000, reason: str = "") -> int:
        conns = self.connections()
        for c in conns:
            c.close(code, reason)
        return len(conns)

    def send_oversized(self, nbytes: int) -> int:
        """One valid JSON text message of `nbytes` to every connection (a frame-size cap test)."""
        text = json.dumps({"padding": "x" * max(0, nbytes - 16)})
        self.stats.oversized_sent += 1
        return self.send_raw(text)

    def send_raw(self, text: str | bytes) -> int:
        conns = self.connections()
        for c in conns:
            try:
                if isinstance(text, bytes):
                    c.send_binary(text)
                else:
                    c.send_text(text)
            except Exception:  # noqa: BLE001 - a closing connection is fine here
                log.debug("send_raw to a closing connection")
        return len(conns)

    def wait_connections(self, n: int = 1, timeout: float = 10.0, subscribed: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_count(subscribed) >= n:
                return True
            time.sleep(0.02)
        return False

    def ready_count(self, subscribed: bool = True) -> int:
        return len(self.connections())

    def _handle(self, conn: WSConnection) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def run_script(self, steps: list[dict]) -> threading.Thread:
        """Timed injections: [{"at": 5, "do": "drop"}, {"every": 60, "do": "shutdown"}, ...]."""

        def loop() -> None:
            start = time.monotonic()
            due = [(float(s.get("at", s.get("every", 0))), s) for s in steps]
            while due and not self._stop.is_set():
                due.sort(key=lambda x: x[0])
                at, step = due.pop(0)
                if self._stop.wait(max(0.0, start + at - time.monotonic())):
                    return
                log.info("script: %s", step)
                try:
                    self.inject(step)
                except (KeyError, ValueError, TypeError) as exc:  # a typo in the script is not fatal
                    log.error("script: cannot run step %s: %s: %s", step, type(exc).__name__, exc)
                    continue
                if "every" in step:
                    due.append((at + float(step["every"]), step))

        t = threading.Thread(target=loop, name="replay-script", daemon=True)
        t.start()
        return t

    def inject(self, step: dict) -> None:
        action = step["do"]
        if action == "drop":
            self.drop()
        elif action == "close":
            self.close_all(int(step.get("code", 1000)), step.get("reason", ""))
        elif action == "raw":
            self.send_raw(step["text"])
        elif action == "gap":
            self.gap(int(step.get("n", 5)), step.get("symbol"))
        elif action == "oversized":
            self.send_oversized(int(step.get("bytes", 8 << 20)))
        elif action == "quote":
            self._quote_step(step)
        else:
            raise ValueError(f"unknown script action {action!r}")

    # --- top of book -------------------------------------------------------------------------
    def set_quote(self, symbol: str, bid: str, ask: str, bid_size: str = "1.00000000",
                  ask_size: str = "1.00000000") -> ReplayQuote:
        """Fix `symbol`'s best bid and ask (the venue's own symbol, e.g. BTCUSDT, BTC-USD,
        BTC/USD) until release_quote; pushed to every subscriber at once. Any number text is
        taken, crossed books and zero sizes included, so tests can send bad books too."""
        for name, value in (("bid", bid), ("ask", ask), ("bid_size", bid_size), ("ask_size", ask_size)):
            if not isinstance(value, str) or not _NUMBER.fullmatch(value):
                raise ValueError(f"{name} {value!r} is not a number as text (e.g. \"101.25\")")
        m = self.market(symbol)
        with self.cond:
            quote = m.set_quote(bid, ask, bid_size, ask_size)
            self.cond.notify_all()
        return quote

    def release_quote(self, symbol: str) -> None:
        """Back to the book that follows the trades."""
        with self.cond:
            self.markets[symbol].release_quote()
            self.cond.notify_all()

    def silence_quotes(self, symbol: str, silent: bool = True) -> None:
        """Stop (or resume) sending `symbol`'s quotes, resends included: a venue gone quiet."""
        with self.cond:
            self.market(symbol).quote_silent = silent
            self.cond.notify_all()

    def _quote_step(self, step: dict) -> None:
        symbol = step["symbol"]
        if not isinstance(symbol, str):
            raise ValueError(f"symbol {symbol!r} is not a string")
        if "silent" in step:
            self.silence_quotes(symbol, bool(step["silent"]))
        if step.get("release"):
            self.release_quote(symbol)
        elif "bid" in step or "ask" in step:
            self.set_quote(symbol, str(step["bid"]), str(step["ask"]), str(step.get("bid_size", "1.00000000")),
                           str(step.get("ask_size", "1.00000000")))


class Client:
    """One connection to a PubSubReplay server."""

    def __init__(self, ws: WSConnection) -> None:
        self.ws = ws
        self.subs: dict[str, int] = {}      # market -> next tape index
        self.opened = self.last_in = self.last_out = time.monotonic()
        self.incoming: deque[float] = deque()
        self.requests = 0
        self.chars = 0                      # subscribed topic characters (Bybit's per-connection cap)
        # (channel, market) -> [update id last sent, monotonic time it was sent]: top-of-book subscriptions
        self.quotes: dict[tuple[str, str], list[float]] = {}
        self.conn_id = f"{zlib.crc32(str(id(ws)).encode()):08x}"
        # Held from choosing what to send until it is sent, so acks and snapshots sent by the
        # reader never overtake (or get overtaken by) the writer's updates.
        self.order = threading.Lock()

    def send(self, obj: Any) -> None:
        self.ws.send_text(obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":")))
        self.last_out = time.monotonic()


class PubSubReplay(ReplayServer):
    """Shared protocol loop of the JSON subscribe/push exchanges (Kraken, OKX, Bybit): one
    reader and one writer thread per connection, the exchange module fills in the messages."""

    path = ""                                # the stream path, e.g. /v2
    heartbeat_interval: float | None = None  # server heartbeat when idle (Kraken)
    idle_timeout: float | None = None        # close when nothing moved either way for this long
    max_age: float | None = None
    max_incoming_per_s: int | None = None
    # Top-of-book channel -> seconds after which an unchanged book is sent again (Bybit: 3 s).
    quote_resend: dict[str, float] = {}

    def __init__(self, symbols: list[str] | None = None, *, idle_timeout: float | None = None,
                 heartbeat_interval: float | None = None, max_age: float | None = None,
                 ping_interval: float | None = None, **kw: Any) -> None:
        super().__init__(symbols, **kw)
        if idle_timeout is not None:
            self.idle_timeout = idle_timeout
        if heartbeat_interval is not None:
            self.heartbeat_interval = heartbeat_interval
        if max_age is not None:
            self.max_age = max_age
        self.ping_interval = ping_interval   # WebSocket ping frames from the server (none by default)
        self.subscribe_requests: list[Any] = []
        self.error_next_subscribes = 0       # refuse the next N subscribe requests
        self.ignore_next_subscribes = 0      # never answer the next N subscribe requests
        self.idle_closes = 0
        self.sent: set[tuple[str, int]] = set()  # (market, trade id) delivered to some client
        self._conns: dict[WSConnection, Client] = {}

    # --- hooks ----------------------------------------------------------------------------
    def on_open(self, conn: Client) -> None:
        """Greeting after the handshake (Kraken's status message)."""

    def on_text(self, conn: Client, data: bytes) -> None:
        raise NotImplementedError

    def encode(self, symbol: str, trades: list[ReplayTrade]) -> list[str]:
        raise NotImplementedError

    def heartbeat(self) -> str | None:
        return None

    def encode_quote(self, channel: str, symbol: str, quote: ReplayQuote, market: Market) -> str:
        """One top-of-book message in the venue's shape (quote venues override)."""
        raise NotImplementedError

    # --- helpers for the exchange modules -------------------------------------------------
    def ready_count(self, subscribed: bool = True) -> int:
        return sum(1 for c in list(self._conns.values()) if not c.ws.closed.is_set() and (c.subs or not subscribed))

    def clients(self) -> list[Client]:
        return [c for c in list(self._conns.values()) if not c.ws.closed.is_set()]

    def subscribe(self, conn: Client, symbol: str, snapshot: int = 0) -> list[ReplayTrade]:
        """Start `symbol` on `conn` at the tape's end; return the last `snapshot` trades."""
        m = self.market(symbol)
        with self.cond:
            if symbol not in conn.subs:
                conn.subs[symbol] = max(m.base, m.end - self.replay_on_subscribe)
            self.cond.notify_all()
            return m.tape[-snapshot:] if snapshot else []

    def subscribe_quote(self, conn: Client, channel: str, symbol: str) -> tuple[ReplayQuote, Market]:
        """Start `channel` for `symbol` on `conn`; the current book is returned for the venue's
        snapshot on subscribe (sent by the caller, after its ack) and counts as sent."""
        m = self.market(symbol)
        with self.cond:
            quote = m.quote()
            conn.quotes[(channel, symbol)] = [quote.update_id, time.monotonic()]
            return quote, m

    def _quote_batch(self, conn: Client, now: float) -> list[str]:
        """Every changed book (and every due resend) of `conn`'s quote subscriptions; cond held."""
        out = []
        for (channel, symbol), state in list(conn.quotes.items()):
            m = self.markets[symbol]
            if m.quote_silent:
                continue
            quote = m.quote()
            resend = self.quote_resend.get(channel)
            if quote.update_id != state[0] or (resend is not None and now - state[1] >= resend):
                out.append(self.encode_quote(channel, symbol, quote, m))
                state[0], state[1] = quote.update_id, now
        return out

    def error(self, conn: Client, obj: Any) -> None:
        self.stats.errors_sent += 1
        conn.send(obj)

    # --- protocol loop --------------------------------------------------------------------
    def _handle(self, ws: WSConnection) -> None:
        if ws.route.rstrip("/") != self.path.rstrip("/"):
            ws.close(1008, "unknown path")
            return
        conn = Client(ws)
        self.stats.connections += 1
        self._conns[ws] = conn
        with conn.order:
            self.on_open(conn)
        threading.Thread(target=self._writer, args=(conn,), daemon=True).start()
        try:
            while not ws.closed.is_set():
                opcode, data = ws.recv_message()
                now = time.monotonic()
                conn.last_in = now
                if self.max_incoming_per_s is not None:
                    conn.incoming.append(now)
                    while conn.incoming and now - conn.incoming[0] > 1.0:
                        conn.incoming.popleft()
                    if len(conn.incoming) > self.max_incoming_per_s:
                        self.stats.rate_limit_closes += 1
                        ws.close(1008, "Too many requests")
                        return
                if opcode == OP_CLOSE:
                    ws.close(1000)
                    return
                if opcode == OP_PING:
                    ws.pong(data)
                elif opcode == OP_TEXT:
                    with conn.order:
                        self.on_text(conn, data)
        finally:
            ws.abort()
            self._conns.pop(ws, None)
            with self.cond:
                self.cond.notify_all()

    def _writer(self, conn: Client) -> None:
        ws = conn.ws
        next_ping = conn.opened + (self.ping_interval or 1e12)
        try:
            while not ws.closed.is_set() and not self._stop.is_set():
                with self.cond:
                    self.cond.wait(0.05)
                batch: list[str] = []
                quotes: list[str] = []
                with conn.order:
                    with self.cond:
                        for symbol, index in list(conn.subs.items()):
                            trades, conn.subs[symbol] = self.markets[symbol].since(index)
                            if trades:
                                batch += self.encode(symbol, trades)
                                self.sent.update((symbol, t.trade_id) for t in trades)
                        if conn.quotes:
                            quotes = self._quote_batch(conn, time.monotonic())
                    now = time.monotonic()
                    if batch or quotes:
                        ws.send_frames(batch + quotes)
                        conn.last_out = now
                        self.stats.trades_sent += len(batch)
                        self.stats.quotes_sent += len(quotes)
                    elif (self.heartbeat_interval is not None and conn.subs
                          and now - conn.last_out >= self.heartbeat_interval):
                        beat = self.heartbeat()
                        if beat is not None:
                            conn.send(beat)
                if now >= next_ping:
                    ws.ping(b"replay")
                    self.stats.pings += 1
                    next_ping = now + (self.ping_interval or 1e12)
                if self.idle_timeout is not None and now - max(conn.last_in, conn.last_out) > self.idle_timeout:
                    self.idle_closes += 1
                    ws.close(1000, "idle")  # what the exchanges do: a plain close
                    return
                if self.max_age is not None and now - conn.opened > self.max_age:
                    ws.close(1001, "connection age limit")
                    return
        except ConnectionClosed:
            return


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_us(ms: int, salt: int = 0) -> str:
    """RFC 3339 with microseconds, as Kraken and Coinbase write trade times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}{salt % 1000:03d}Z"


Factory = Callable[..., ReplayServer]
