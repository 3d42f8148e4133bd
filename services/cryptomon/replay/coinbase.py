"""Coinbase Exchange market-data stand-in: `matches` and `heartbeat` channels.

A client must subscribe within `subscribe_timeout` seconds or is disconnected. The reply is a
`subscriptions` message; bad requests get `{"type":"error","message":…,"reason":…}`. Each
product starts with `last_match` (the latest trade, which the client may already have), then
`match` messages whose `sequence` rises by one per product; `gap()` skips sequence numbers
and trades that no client ever sees. `side` is the MAKER's side, as on the real feed.

`ticker` (top of book): right after the `subscriptions` reply, the current ticker per product
without `side`, `time`, `trade_id` and `last_size` (as a first ticker was captured), then a
full ticker per change of the book; `sequence` is the product's sequence (shared with
`matches`, so it does not rise with a book set by a script). The real ticker fires on trades
only; here it fires on every change, so a book set by a script reaches the clients at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

from . import Market, ReplayQuote, ReplayServer, ReplayTrade
from .ws import OP_CLOSE, OP_PING, OP_TEXT, ConnectionClosed, WSConnection

CHANNELS = ("matches", "heartbeat", "ticker")


def iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}{(ms * 7) % 1000:03d}Z"


def match_event(product: str, t: ReplayTrade, kind: str = "match") -> dict:
    return {
        "type": kind, "trade_id": t.trade_id, "maker_order_id": str(uuid.UUID(int=t.sequence * 2 + 1)),
        "taker_order_id": str(uuid.UUID(int=t.sequence * 2)), "side": "buy" if t.buyer_maker else "sell",
        "size": t.size(8), "price": t.price(2), "product_id": product, "sequence": t.sequence,
        "time": iso(t.ts_ms),
    }


def ticker_event(product: str, q: ReplayQuote, m: Market, first: bool = False) -> dict:
    event: dict = {"type": "ticker", "sequence": m.sequence - 1, "product_id": product}
    last = m.tape[-1] if m.tape else None
    price = last.price(2) if last else q.ask
    event.update({"price": price, "open_24h": price, "volume_24h": f"{m.made}.00000000", "low_24h": price,
                  "high_24h": price, "volume_30d": f"{m.made}.00000000", "best_bid": q.bid,
                  "best_bid_size": q.bid_size, "best_ask": q.ask, "best_ask_size": q.ask_size})
    if not first:
        event.update({"side": "sell" if last and last.buyer_maker else "buy", "time": iso(q.ts_ms),
                      "trade_id": last.trade_id if last else m.next_id - 1,
                      "last_size": last.size(8) if last else "0.00000000"})
    return event


class _Conn:
    def __init__(self, ws: WSConnection) -> None:
        self.ws = ws
        self.matches: dict[str, int] = {}   # product -> next tape index
        self.tickers: dict[str, int] = {}   # product -> book update id last sent
        self.heartbeat: set[str] = set()
        self.subscribed = threading.Event()
        self.opened = time.monotonic()
        # Held from choosing what to send until it is sent, so the request thread's
        # last_match and the writer's matches never overtake each other.
        self.order = threading.Lock()


class CoinbaseReplay(ReplayServer):
    exchange = "coinbase"
    rest_paths = {"/products": "coinbase"}

    def __init__(self, products: list[str] | None = None, *, subscribe_timeout: float = 5.0,
                 heartbeat_interval: float = 1.0, ping_interval: float | None = 0.0,
                 max_age: float | None = None, **kw: object) -> None:
        # max_age: accepted for a uniform CLI; Coinbase documents no connection lifetime.
        super().__init__([p.upper() for p in products or []], **kw)  # type: ignore[arg-type]
        self.subscribe_timeout = subscribe_timeout
        self.heartbeat_interval = heartbeat_interval
        self.ping_interval = ping_interval or 0.0
        self.error_next_subscribes = 0
        self.subscribe_requests: list[dict] = []
        self.sent: set[tuple[str, int]] = set()  # (product, trade id) delivered to some client
        self._conns: dict[WSConnection, _Conn] = {}

    def listed_symbols(self) -> set[str]:
        return {p["id"] for p in self.listing()}

    def ready_count(self, subscribed: bool = True) -> int:
        return sum(1 for c in list(self._conns.values())
                   if not c.ws.closed.is_set() and (c.subscribed.is_set() or not subscribed))

    def out_of_order(self, product: str, back: int = 3) -> int:
        """Resend an older match with its old sequence number (a late, out-of-order message)."""
        m = self.markets[product]
        if len(m.tape) <= back:
            return 0
        return self.send_raw(json.dumps(match_event(product, m.tape[-1 - back])))

    def _handle(self, ws: WSConnection) -> None:
        conn = _Conn(ws)
        self.stats.connections += 1
        self._conns[ws] = conn
        threading.Thread(target=self._writer, args=(conn,), daemon=True).start()
        try:
            while not ws.closed.is_set():
                opcode, data = ws.recv_message()
                if opcode == OP_CLOSE:
                    ws.close(1000)
                    return
                if opcode == OP_PING:
                    ws.pong(data)
                elif opcode == OP_TEXT:
                    self._request(conn, data)
        finally:
            ws.abort()
            self._conns.pop(ws, None)

    def _error(self, conn: _Conn, message: str, reason: str) -> None:
        self.stats.errors_sent += 1
        conn.ws.send_text(json.dumps({"type": "error", "message": message, "reason": reason}))

    def _request(self, conn: _Conn, data: bytes) -> None:
        try:
            req = json.loads(data)
        except ValueError:
            return self._error(conn, "Failed to parse message", "malformed JSON")
        if not isinstance(req, dict) or req.get("type") not in ("subscribe", "unsubscribe"):
            got = req.get("type") if isinstance(req, dict) else req
            return self._error(conn, "Failed to subscribe", f"unknown type {got!r}")
        self.subscribe_requests.append(req)
        default_products = req.get("product_ids", [])
        wanted: list[tuple[str, list[str]]] = []
        for ch in req.get("channels", []):
            if isinstance(ch, str):
                wanted.append((ch, default_products))
            elif isinstance(ch, dict):
                wanted.append((ch.get("name", ""), ch.get("product_ids", default_products)))
        for name, products in wanted:
            if name not in CHANNELS:
                return self._error(conn, "Failed to subscribe", f"{name} is not a valid channel")
            for p in products:
                base, sep, quote = str(p).partition("-")
                if not (sep and base.isalnum() and quote.isalnum() and p == p.upper()):
                    return self._error(conn, "Failed to subscribe", f"{p} is not a valid product")
        if not wanted:
            return self._error(conn, "Failed to subscribe", "no channels")
        if req["type"] == "subscribe" and self.error_next_subscribes > 0:
            self.error_next_subscribes -= 1
            return self._error(conn, "Failed to subscribe", "injected failure")
        # Well-formed but unknown products: an error naming each, then the others subscribed
        # (the order captured from the real feed).
        unknown = sorted({str(p) for _, products in wanted for p in products if not self.known(str(p))})
        for p in unknown:
            self._error(conn, "Failed to subscribe", f"{p} is not a valid product")
        wanted = [(name, [p for p in products if str(p) not in unknown]) for name, products in wanted]
        with conn.order:
            self._apply(conn, req, wanted)
        with self.cond:
            self.cond.notify_all()
        return None

    def _apply(self, conn: _Conn, req: dict, wanted: list[tuple[str, list[str]]]) -> None:
        last_matches = []
        first_tickers = []
        with self.cond:
            for name, products in wanted:
                for p in products:
                    m = self.market(p)
                    if req["type"] == "unsubscribe":
                        if name == "ticker":
                            conn.tickers.pop(p, None)
                        else:
                            conn.matches.pop(p, None) if name == "matches" else conn.heartbeat.discard(p)
                    elif name == "heartbeat":
                        conn.heartbeat.add(p)
                    elif name == "ticker":
                        if p not in conn.tickers:
                            quote = m.quote()
                            conn.tickers[p] = quote.update_id
                            if not m.quote_silent:
                                first_tickers.append(ticker_event(p, quote, m, first=True))
                    elif p not in conn.matches:
                        if not m.tape:
                            m.make()
                        last_matches.append(match_event(p, m.tape[-1], "last_match"))
                        conn.matches[p] = max(m.base, m.end - self.replay_on_subscribe)
        channels = [{"name": "matches", "product_ids": sorted(conn.matches)},
                    {"name": "heartbeat", "product_ids": sorted(conn.heartbeat)}]
        if conn.tickers:
            channels.append({"name": "ticker", "product_ids": sorted(conn.tickers)})
        conn.ws.send_text(json.dumps({"type": "subscriptions", "channels": channels}))
        for event in last_matches:
            conn.ws.send_text(json.dumps(event))
            self.sent.add((event["product_id"], event["trade_id"]))
        for event in first_tickers:
            conn.ws.send_text(json.dumps(event))
            self.stats.quotes_sent += 1
        self.stats.subscribes += 1
        conn.subscribed.set()

    def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        next_beat = time.monotonic() + self.heartbeat_interval
        next_ping = time.monotonic() + (self.ping_interval or 1e12)
        try:
            while not ws.closed.is_set() and not self._stop.is_set():
                if not conn.subscribed.is_set() and time.monotonic() - conn.opened > self.subscribe_timeout:
                    self._error(conn, "Failed to subscribe", "no subscribe message received in time")
                    ws.close(1008, "subscribe timeout")
                    return
                batch: list[str] = []
                tickers: list[str] = []
                ids: list[tuple[str, int]] = []
                now = time.monotonic()
                with self.cond:
                    self.cond.wait(0.05)
                conn.order.acquire()
                with self.cond:
                    for product, index in list(conn.matches.items()):
                        trades, conn.matches[product] = self.markets[product].since(index)
                        batch += [json.dumps(match_event(product, t)) for t in trades]
                        ids += [(product, t.trade_id) for t in trades]
                    for product, sent in list(conn.tickers.items()):
                        m = self.markets[product]
                        quote = m.quote()
                        if quote.update_id != sent and not m.quote_silent:
                            tickers.append(json.dumps(ticker_event(product, quote, m)))
                            conn.tickers[product] = quote.update_id
                    if now >= next_beat:
                        for product in sorted(conn.heartbeat):
                            m = self.market(product)
                            batch.append(json.dumps({
                                "type": "heartbeat", "sequence": m.sequence - 1, "last_trade_id": m.next_id - 1,
                                "product_id": product, "time": iso(time.time_ns() // 1_000_000)}))
                        next_beat = now + self.heartbeat_interval
                try:
                    if batch or tickers:
                        ws.send_frames(batch + tickers)
                        self.stats.trades_sent += len(batch)
                        self.stats.quotes_sent += len(tickers)
                        self.sent.update(ids)
                finally:
                    conn.order.release()
                if now >= next_ping:
                    ws.ping(b"cb")
                    self.stats.pings += 1
                    next_ping = now + self.ping_interval
        except ConnectionClosed:
            return
