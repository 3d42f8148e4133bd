"""Local stand-ins for the exchanges: WebSocket servers speaking Binance's and Coinbase's
market-data protocols, with plausible trades generated continuously (seeded random walks)
and a scriptable fault mode (drops, shutdown notices, sequence gaps, bad frames, error
replies, rate-limit enforcement, ping/pong checks). Used by the integration tests and
deployed in the sandbox; stdlib only.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Self

from .ws import WSConnection, WSServer

log = logging.getLogger("cryptomon.replay")

_START = {"BTC": 6_000_000, "ETH": 300_000, "BNB": 60_000, "SOL": 15_000}  # cents


@dataclass(slots=True)
class ReplayTrade:
    trade_id: int
    sequence: int
    price_cents: int
    size_units: int        # 1e-8 of the base asset
    buyer_maker: bool      # True: the buyer was the maker, so the taker sold
    ts_ms: int

    def price(self, decimals: int) -> str:
        whole, cents = divmod(self.price_cents, 100)
        return f"{whole}.{cents:02d}{'0' * (decimals - 2)}" if decimals >= 2 else str(whole)

    def size(self, decimals: int = 8) -> str:
        whole, frac = divmod(self.size_units, 100_000_000)
        text = f"{frac:08d}"[:decimals]
        return f"{whole}.{text}" if decimals else str(whole)


class Market:
    """One symbol's trade tape: ids and sequence numbers rise by one per trade."""

    def __init__(self, symbol: str, seed: int, keep: int = 50_000) -> None:
        self.symbol = symbol
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(symbol.encode()))
        self.price = _START.get(symbol.split("-")[0] if "-" in symbol else symbol[:3], 10_000)
        self.next_id = 1_000_000 + self.rng.randint(0, 1000)
        self.sequence = 50_000_000 + self.rng.randint(0, 1000)
        self.tape: list[ReplayTrade] = []
        self.base = 0          # absolute index of tape[0]
        self.keep = keep

    @property
    def end(self) -> int:
        return self.base + len(self.tape)

    def make(self) -> ReplayTrade:
        step = max(1, self.price // 20_000)
        self.price = max(step, self.price + self.rng.randint(-step, step))
        trade = ReplayTrade(self.next_id, self.sequence, self.price, self.rng.randint(1, 50_000_000),
                            self.rng.random() < 0.5, time.time_ns() // 1_000_000)
        self.next_id += 1
        self.sequence += 1
        self.tape.append(trade)
        if len(self.tape) > 2 * self.keep:
            drop = len(self.tape) - self.keep
            del self.tape[:drop]
            self.base += drop
        return trade

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
    extra: dict[str, int] = field(default_factory=dict)


class ReplayServer:
    """Shared machinery: markets, the trade generator thread, injections on live connections."""

    exchange = ""

    def __init__(self, symbols: list[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 rate: float = 0.0, seed: int = 7, replay_on_subscribe: int = 0) -> None:
        self.seed = seed
        self.rate = rate  # trades per second per market; 0 = only publish() makes trades
        self.replay_on_subscribe = replay_on_subscribe  # resend this many past trades per new subscription
        self.markets: dict[str, Market] = {}
        self.cond = threading.Condition()
        self.stats = ServerStats()
        self._stop = threading.Event()
        self.server = WSServer(self._handle, host, port)
        for s in symbols or []:
            self.market(s)

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
                m = self.markets[symbol] = Market(symbol, self.seed)
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
                self.inject(step)
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
        else:
            raise ValueError(f"unknown script action {action!r}")
