"""Binance spot market-stream stand-in: /stream (combined, wrapped frames) and /ws (raw), and
the REST symbol list GET /api/v3/exchangeInfo on the same port.

Speaks SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS with `{"result":…,"id":…}` replies and
`{"code":…,"msg":…}` errors, and enforces the documented limits: 5 incoming messages per
second (pings, pongs and control messages count; more closes with 1008), 1024 streams per
connection (more closes with 1008, or with `over_limit="drop"` the streams above the limit are
silently not subscribed), 300 connection attempts per 5 minutes (more are refused with HTTP
429). It pings every `ping_interval` and closes connections that do not pong within
`pong_timeout`, cuts connections at `max_age` and can announce `serverShutdown`. Subscribing
to an unknown symbol is not an error, as on the real server.

`<symbol>@bookTicker` (top of book): `{"u","s","b","B","a","A"}`, strings, no event time, `u`
the book's update id; pushed on every change. One difference from the real stream, for tests:
the current book is also sent once right after subscribing, so a book fixed by `set_quote`
reaches clients that subscribe later (Binance documents no snapshot; its books change
constantly).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque

from . import Market, ReplayQuote, ReplayServer, ReplayTrade
from .ws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ConnectionClosed, WSConnection

STREAM_TYPES = ("trade", "aggTrade")
BOOK_TICKER = "bookTicker"


def book_ticker_text(stream: str, symbol: str, q: ReplayQuote, combined: bool) -> str:
    body = (f'{{"u":{q.update_id},"s":"{symbol}","b":"{q.bid}","B":"{q.bid_size}","a":"{q.ask}",'
            f'"A":"{q.ask_size}"}}')
    return f'{{"stream":"{stream}","data":{body}}}' if combined else body


def trade_text(stream: str, symbol: str, t: ReplayTrade, kind: str, combined: bool, now: int) -> str:
    """The JSON text of one event, formatted directly (json.dumps per trade would make the
    replay server, not the producer, the bottleneck of the throughput benchmark)."""
    m = "true" if t.buyer_maker else "false"
    if kind == "aggTrade":
        body = (f'{{"e":"aggTrade","E":{now},"s":"{symbol}","a":{t.trade_id},"p":"{t.price(8)}",'
                f'"q":"{t.size(8)}","f":{t.trade_id},"l":{t.trade_id},"T":{t.ts_ms},"m":{m},"M":true}}')
    else:
        body = (f'{{"e":"trade","E":{now},"s":"{symbol}","t":{t.trade_id},"p":"{t.price(8)}",'
                f'"q":"{t.size(8)}","T":{t.ts_ms},"m":{m},"M":true}}')
    return f'{{"stream":"{stream}","data":{body}}}' if combined else body


def trade_event(symbol: str, t: ReplayTrade, kind: str = "trade") -> dict:
    now = time.time_ns() // 1_000_000
    if kind == "aggTrade":
        return {"e": "aggTrade", "E": now, "s": symbol, "a": t.trade_id, "p": t.price(8), "q": t.size(8),
                "f": t.trade_id, "l": t.trade_id, "T": t.ts_ms, "m": t.buyer_maker, "M": True}
    return {"e": "trade", "E": now, "s": symbol, "t": t.trade_id, "p": t.price(8), "q": t.size(8),
            "T": t.ts_ms, "m": t.buyer_maker, "M": True}


class _Conn:
    def __init__(self, ws: WSConnection, combined: bool) -> None:
        self.ws = ws
        self.combined = combined
        self.subs: dict[str, int] = {}     # stream name -> next tape index
        self.books: dict[str, int] = {}    # bookTicker stream name -> update id last sent (-1: none yet)
        self.incoming: deque[float] = deque()
        self.pong_wait: dict[bytes, float] = {}  # outstanding ping payload -> pong deadline
        self.opened = time.monotonic()


class BinanceReplay(ReplayServer):
    exchange = "binance"
    rest_paths = {"/api/v3/exchangeInfo": "binance"}
    default_max_connects = (300, 300.0)

    def __init__(self, symbols: list[str] | None = None, *, ping_interval: float | None = 20.0,
                 pong_timeout: float = 60.0, max_age: float | None = 86_400.0, max_incoming_per_s: int = 5,
                 max_streams: int = 1024, over_limit: str = "close", shutdown_grace: float = 1.0,
                 **kw: object) -> None:
        super().__init__([s.upper() for s in symbols or []], **kw)  # type: ignore[arg-type]
        self.ping_interval = ping_interval or 20.0
        self.pong_timeout = pong_timeout
        self.max_age = max_age or 86_400.0
        self.max_incoming = max_incoming_per_s
        self.max_streams = max_streams
        if over_limit not in ("close", "drop"):
            raise ValueError("over_limit is close or drop")
        self.over_limit = over_limit
        self.streams_dropped = 0
        self.shutdown_grace = shutdown_grace
        self.error_next_subscribes = 0     # answer the next N SUBSCRIBEs with an error
        self.ignore_next_subscribes = 0    # never acknowledge the next N SUBSCRIBEs
        self.subscribe_requests: list[dict] = []
        self._conns: dict[WSConnection, _Conn] = {}

    def ready_count(self, subscribed: bool = True) -> int:
        return sum(1 for c in list(self._conns.values())
                   if not c.ws.closed.is_set() and (c.subs or c.books or not subscribed))

    # --- injections ---------------------------------------------------------------------
    def shutdown_notice(self) -> int:
        """Send serverShutdown to every connection and close them after the grace period."""
        conns = [c for c in list(self._conns.values()) if not c.ws.closed.is_set()]
        for c in conns:
            event = {"e": "serverShutdown", "E": time.time_ns() // 1_000_000}
            try:
                c.ws.send_text(json.dumps({"stream": "serverShutdown", "data": event} if c.combined else event))
            except ConnectionClosed:
                continue
            threading.Timer(self.shutdown_grace, c.ws.close, (1001, "server shutdown")).start()
        return len(conns)

    def inject(self, step: dict) -> None:
        if step["do"] == "shutdown":
            self.shutdown_notice()
        elif step["do"] == "cut":
            self.close_all(1001, "24h connection limit")
        else:
            super().inject(step)

    # --- protocol -----------------------------------------------------------------------
    def _handle(self, ws: WSConnection) -> None:
        route = ws.route.rstrip("/")
        combined = route == "/stream"
        if not combined and not (route == "/ws" or route.startswith("/ws/")):
            ws.close(1008, "unknown path")
            return
        conn = _Conn(ws, combined)
        self.stats.connections += 1
        self._conns[ws] = conn
        initial = []
        if combined:
            for value in ws.query.get("streams", []):
                initial += [s for s in value.split("/") if s]
        elif route.startswith("/ws/"):
            initial.append(route[4:])
        for stream in initial:
            self._subscribe_stream(conn, stream)
        writer = threading.Thread(target=self._writer, args=(conn,), daemon=True)
        writer.start()
        try:
            self._reader(conn)
        finally:
            ws.abort()
            self._conns.pop(ws, None)
            with self.cond:
                self.cond.notify_all()

    def _reader(self, conn: _Conn) -> None:
        ws = conn.ws
        while not ws.closed.is_set():
            opcode, data = ws.recv_message()
            now = time.monotonic()
            conn.incoming.append(now)
            while conn.incoming and now - conn.incoming[0] > 1.0:
                conn.incoming.popleft()
            if len(conn.incoming) > self.max_incoming:
                self.stats.rate_limit_closes += 1
                ws.close(1008, "Too many requests")
                return
            if opcode == OP_CLOSE:
                ws.close(1000)
                return
            if opcode == OP_PING:
                ws.pong(data)
            elif opcode == OP_PONG:
                if conn.pong_wait.pop(data, None) is not None:
                    self.stats.pongs += 1
            elif opcode == OP_TEXT:
                self._request(conn, data)
            else:
                self._error(conn, 3, "Invalid JSON: binary frames are not supported", None)

    def _error(self, conn: _Conn, code: int, msg: str, req_id: object) -> None:
        self.stats.errors_sent += 1
        reply = {"code": code, "msg": msg}
        if req_id is not None:
            reply["id"] = req_id
        conn.ws.send_text(json.dumps(reply))

    def _request(self, conn: _Conn, data: bytes) -> None:
        try:
            req = json.loads(data)
        except ValueError as exc:
            return self._error(conn, 3, f"Invalid JSON: {exc}", None)
        if not isinstance(req, dict):
            return self._error(conn, 3, "Invalid JSON: expected an object", None)
        req_id, method, params = req.get("id"), req.get("method"), req.get("params", [])
        if not isinstance(req_id, int | str) or isinstance(req_id, bool):
            return self._error(conn, 2, "Invalid request: request ID must be an unsigned integer", None)
        if method == "SUBSCRIBE" or method == "UNSUBSCRIBE":
            self.subscribe_requests.append(req)
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return self._error(conn, 2, "Invalid request: property name must be a valid stream", req_id)
            bad = [p for p in params if not self._valid_stream(p)]
            if bad:
                return self._error(conn, 2, f"Invalid request: unknown stream {bad[0]}", req_id)
            if method == "SUBSCRIBE":
                if self.error_next_subscribes > 0:
                    self.error_next_subscribes -= 1
                    return self._error(conn, 2, "Invalid request: injected failure", req_id)
                if self.ignore_next_subscribes > 0:
                    self.ignore_next_subscribes -= 1
                    return None
                new = [p for p in dict.fromkeys(params) if p not in conn.subs and p not in conn.books]
                room = self.max_streams - len(conn.subs) - len(conn.books)
                if len(new) > room:
                    if self.over_limit == "close":
                        self.stats.rate_limit_closes += 1
                        conn.ws.close(1008, "Too many streams")
                        return None
                    self.streams_dropped += len(new) - max(room, 0)
                    new = new[:max(room, 0)]
                self.stats.subscribes += 1
                for p in new:
                    self._subscribe_stream(conn, p)
            else:
                for p in params:
                    conn.subs.pop(p, None)
                    conn.books.pop(p, None)
            conn.ws.send_text(json.dumps({"result": None, "id": req_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            conn.ws.send_text(json.dumps({"result": sorted([*conn.subs, *conn.books]), "id": req_id}))
        else:
            self._error(conn, 2, f"Invalid request: unknown method {method!r}", req_id)
        return None

    @staticmethod
    def _valid_stream(stream: str) -> bool:
        symbol, _, kind = stream.partition("@")
        return (kind in STREAM_TYPES or kind == BOOK_TICKER) and symbol.isalnum() and symbol == symbol.lower()

    def _subscribe_stream(self, conn: _Conn, stream: str) -> None:
        if not self._valid_stream(stream):
            return
        market: Market = self.market(stream.partition("@")[0].upper())
        with self.cond:
            if stream.endswith("@" + BOOK_TICKER):
                conn.books[stream] = -1  # the writer sends the current book first
            else:
                conn.subs[stream] = max(market.base, market.end - self.replay_on_subscribe)
            self.cond.notify_all()

    def _books(self, conn: _Conn) -> list[str]:
        """bookTicker events for every changed book of `conn` (cond held)."""
        out = []
        for stream, sent in list(conn.books.items()):
            upper = stream.partition("@")[0].upper()
            market = self.markets[upper]
            if market.quote_silent:
                continue
            quote = market.quote()
            if quote.update_id != sent:
                out.append(book_ticker_text(stream, upper, quote, conn.combined))
                conn.books[stream] = quote.update_id
        return out

    def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        next_ping = time.monotonic() + self.ping_interval
        try:
            while not ws.closed.is_set() and not self._stop.is_set():
                batch: list[str] = []
                books: list[str] = []
                with self.cond:
                    self.cond.wait(0.05)
                    now_ms = time.time_ns() // 1_000_000
                    for stream, index in list(conn.subs.items()):
                        symbol, _, kind = stream.partition("@")
                        upper = symbol.upper()
                        trades, conn.subs[stream] = self.markets[upper].since(index)
                        batch += [trade_text(stream, upper, t, kind, conn.combined, now_ms) for t in trades]
                    if conn.books:
                        books = self._books(conn)
                if batch or books:
                    ws.send_frames(batch + books)
                    self.stats.trades_sent += len(batch)
                    self.stats.quotes_sent += len(books)
                now = time.monotonic()
                if now >= next_ping:
                    payload = os.urandom(8)
                    conn.pong_wait[payload] = now + self.pong_timeout
                    ws.ping(payload)
                    self.stats.pings += 1
                    next_ping = now + self.ping_interval
                if conn.pong_wait and now > min(conn.pong_wait.values()):
                    self.stats.pong_timeouts += 1
                    ws.close(1008, "pong timeout")
                    return
                if now - conn.opened > self.max_age:
                    ws.close(1001, "24h connection limit")
                    return
        except ConnectionClosed:
            return
