"""The one small interface every exchange adapter implements, and the shared WebSocket loop.

`Adapter.run(emit, stop)` produces normalized trades until `stop` is set. WebSocket exchanges
only describe their protocol (URL, subscribe messages, frame parser); `WebSocketAdapter` owns
connecting, resubscribing, pings, the staleness watchdog, the connection-age cut, dedupe and
capped exponential backoff with jitter.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import websocket

from .backoff import Backoff
from .config import ProducerConfig
from .dedupe import Deduper
from .schema import Trade

Emit = Callable[[Trade], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Stats:
    """Counters for the periodic one-line summary; every anomaly has its own counter."""

    FIELDS = ("trades", "duplicates", "malformed", "unknown", "errors", "gaps", "missed",
              "out_of_order", "connects", "reconnects")

    def __init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


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
    """An exchange feed: run() emits normalized trades until stop is set."""

    exchange: str

    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.log = logging.getLogger(f"cryptomon.producer.{self.exchange}")
        self.warn = RateLimitedLog(self.log)

    @abstractmethod
    def run(self, emit: Emit, stop: threading.Event) -> None: ...

    def markets(self) -> list[str]:
        """Normalized symbols this adapter produces (for the start-up log line)."""
        return []

    def _bad(self, kind: str, what: str, frame: str | bytes) -> Iterable[Trade]:
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


class WebSocketAdapter(Adapter):
    """Shared connect / subscribe / read loop; subclasses speak the exchange's protocol."""

    # Seconds between our own outgoing messages (Binance allows 5 incoming msg/s per connection).
    send_interval = 0.0
    recv_timeout = 0.25

    def __init__(self, config: ProducerConfig) -> None:
        super().__init__(config)
        self.dedupe = Deduper()
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.last_activity = time.monotonic()
        self.pending_acks: dict[object, float] = {}
        self.reconnect_request: Reconnect | None = None

    # --- protocol hooks -------------------------------------------------------------------
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def subscribe_messages(self) -> list[str]:
        """Messages to send after each connect; registers expected acks in pending_acks."""

    @abstractmethod
    def handle(self, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        """Parse one frame; never raises: bad frames are counted and logged."""

    def on_connect(self) -> None:
        self.pending_acks.clear()
        self.reconnect_request = None
        self.last_activity = time.monotonic()

    # --- loop ------------------------------------------------------------------------------
    def run(self, emit: Emit, stop: threading.Event) -> None:
        self._next_stats = time.monotonic() + self.config.stats_interval_s
        first = True
        while not stop.is_set():
            if not first:
                self.stats.reconnects += 1
            first = False
            try:
                self._session(emit, stop)
                return  # stop requested
            except Reconnect as exc:
                if stop.is_set():
                    return
                if exc.immediate:
                    self.backoff.reset()
                    self.log.info("reconnecting now: %s", exc.reason)
                    continue
                delay = self.backoff.next_delay()
                self.log.warning("reconnecting in %.1fs (attempt %d): %s", delay, self.backoff.attempt, exc.reason)
                stop.wait(delay)

    def _connect(self) -> websocket.WebSocket:
        url = self.url()
        try:
            ws = websocket.create_connection(url, timeout=10, skip_utf8_validation=True,
                                             enable_multithread=False)
        except (OSError, websocket.WebSocketException) as exc:
            raise Reconnect(f"connect to {url} failed: {exc.__class__.__name__}: {exc}") from None
        ws.settimeout(self.recv_timeout)
        self.stats.connects += 1
        self.log.info("connected to %s", url)
        return ws

    def _session(self, emit: Emit, stop: threading.Event) -> None:
        ws = self._connect()
        opened = time.monotonic()
        healthy = False
        try:
            self.on_connect()
            for i, message in enumerate(self.subscribe_messages()):
                if i and self.send_interval:
                    time.sleep(self.send_interval)
                ws.send(message)
            stale_after = self.config.stale_after_s
            max_age = self.config.max_connection_s
            handle = self.handle
            while not stop.is_set():
                try:
                    opcode, data = ws.recv_data()  # answers pings itself, inside recv
                except websocket.WebSocketTimeoutException:
                    opcode, data = 0, b""
                except (websocket.WebSocketConnectionClosedException, OSError) as exc:
                    raise Reconnect(f"connection lost: {exc.__class__.__name__}: {exc}") from None
                except websocket.WebSocketException as exc:
                    raise Reconnect(f"protocol error: {exc}") from None
                if opcode == websocket.ABNF.OPCODE_TEXT or opcode == websocket.ABNF.OPCODE_BINARY:
                    for trade in handle(data, now_ms()):
                        emit(trade)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                    reason = data[2:].decode("utf-8", "replace")
                    # A clean close after a healthy session is the scheduled cut (24 h): come back now.
                    clean = code in (1000, 1001) and healthy
                    raise Reconnect(f"server closed the connection (code {code} {reason!r})", immediate=clean)
                now = time.monotonic()
                if self.reconnect_request is not None:
                    raise self.reconnect_request
                if now - self.last_activity > stale_after:
                    raise Reconnect(f"watchdog: no data for {stale_after:.0f}s", immediate=True)
                if now - opened > max_age:
                    raise Reconnect(f"connection age reached {max_age:.0f}s", immediate=True)
                for key, deadline in self.pending_acks.items():
                    if now > deadline:
                        raise Reconnect(f"subscription {key} not acknowledged in time")
                if not healthy and self.stats.trades and self.last_activity > opened and not self.pending_acks:
                    healthy = True
                    self.backoff.reset()
                if now >= self._next_stats:
                    self.log.info("stats %s", self.stats.line())
                    self._next_stats = now + self.config.stats_interval_s
        finally:
            try:
                ws.close(timeout=1)
            except Exception as exc:  # noqa: BLE001 - the socket may already be gone
                self.log.debug("close: %s", exc)
