"""OKX v5 public WebSocket stand-in: `/ws/v5/public`, `trades` channel, REST
`/api/v5/public/instruments`.

`subscribe` is acknowledged per arg (`{"id","event":"subscribe","arg","connId"}`); a request
naming an instrument it does not list is refused as a whole with code 60018 ("Wrong URL or
channel:trades,instId:… doesn't exist"), a malformed one with 60012, more than 480 subscribe
requests per connection and hour with 60014; more than 64 KB of request is refused too. The
text `ping` is answered with `pong`; a connection with nothing sent either way for 30 s is
closed (the server's 30 s rule); 3 connection attempts per second are admitted. Trades go out
one message per trade, every value a string, `side` the taker's. `notice()` sends the 64008
service-upgrade notice and closes the connections after a grace period.

Top of book: `bbo-tbt` (a 1-level snapshot right after the ack, then one per change, each with
`seqId` = the book's update id and `ts`; an unchanged book is sent again after 60 s, same
`seqId`, as OKX does when idle) and `tickers` (every value a string, no sequence; sent at once
on subscribe here, which OKX does not document, then per change).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from . import Client, Market, PubSubReplay, ReplayQuote, ReplayTrade, now_ms

MAX_REQUEST = 64 * 1024
REQUESTS_PER_HOUR = 480
CHANNELS = ("trades", "bbo-tbt", "tickers")


class OkxReplay(PubSubReplay):
    exchange = "okx"
    path = "/ws/v5/public"
    rest_paths = {"/api/v5/public/instruments": "okx"}
    idle_timeout = 30.0
    default_max_connects = (3, 1.0)
    quote_resend = {"bbo-tbt": 60.0}

    def __init__(self, symbols: list[str] | None = None, *, notice_grace: float = 1.0, **kw: Any) -> None:
        super().__init__(symbols, **kw)
        self.notice_grace = notice_grace
        self.pongs_sent = 0

    def listed_symbols(self) -> set[str]:
        return {i["instId"] for i in self.listing()["data"]}

    def encode(self, symbol: str, trades: list[ReplayTrade]) -> list[str]:
        head = f'{{"arg":{{"channel":"trades","instId":"{symbol}"}},"data":[{{"instId":"{symbol}","tradeId":"'
        return [f'{head}{t.trade_id}","px":"{t.price(2)}","sz":"{t.size(8)}","side":"'
                f'{"sell" if t.buyer_maker else "buy"}","ts":"{t.ts_ms}","count":"1","source":"0",'
                f'"seqId":{t.sequence}}}]}}' for t in trades]

    def encode_quote(self, channel: str, symbol: str, quote: ReplayQuote, market: Market) -> str:
        if channel == "bbo-tbt":
            return (f'{{"arg":{{"channel":"bbo-tbt","instId":"{symbol}"}},"data":[{{"asks":[["{quote.ask}",'
                    f'"{quote.ask_size}","0","3"]],"bids":[["{quote.bid}","{quote.bid_size}","0","2"]],'
                    f'"ts":"{now_ms()}","seqId":{quote.update_id}}}]}}')
        last = market.tape[-1] if market.tape else None
        last_px, last_sz = (last.price(2), last.size(8)) if last else (quote.ask, "0")
        return (f'{{"arg":{{"channel":"tickers","instId":"{symbol}"}},"data":[{{"instType":"SPOT",'
                f'"instId":"{symbol}","last":"{last_px}","lastSz":"{last_sz}","askPx":"{quote.ask}",'
                f'"askSz":"{quote.ask_size}","bidPx":"{quote.bid}","bidSz":"{quote.bid_size}","open24h":"{last_px}",'
                f'"high24h":"{last_px}","low24h":"{last_px}","volCcy24h":"0","vol24h":"{market.made}",'
                f'"sodUtc0":"{last_px}","sodUtc8":"{last_px}","ts":"{quote.ts_ms}"}}]}}')

    def notice(self) -> int:
        clients = self.clients()
        for c in clients:
            c.send({"event": "notice", "code": "64008",
                    "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                    "connId": c.conn_id})
            threading.Timer(self.notice_grace, c.ws.close, (1001, "service upgrade")).start()
        return len(clients)

    def inject(self, step: dict) -> None:
        if step["do"] == "notice":
            self.notice()
        else:
            super().inject(step)

    def _error(self, conn: Client, code: str, msg: str, req_id: object) -> None:
        body: dict[str, Any] = {"event": "error", "code": code, "msg": msg, "connId": conn.conn_id}
        if req_id is not None:
            body = {"id": req_id, **body}
        self.error(conn, body)

    def on_text(self, conn: Client, data: bytes) -> None:
        if data == b"ping":
            self.pongs_sent += 1
            return conn.send("pong")
        if len(data) > MAX_REQUEST:
            return self._error(conn, "60012", f"Invalid request: request larger than {MAX_REQUEST} bytes", None)
        try:
            req = json.loads(data)
        except ValueError:
            return self._error(conn, "60012", f"Invalid request: {data[:200].decode('utf-8', 'replace')}", None)
        if not isinstance(req, dict):
            return self._error(conn, "60012", f"Invalid request: {data[:200].decode('utf-8', 'replace')}", None)
        req_id, op, args = req.get("id"), req.get("op"), req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            return self._error(conn, "60012", f"Invalid request: {data[:200].decode('utf-8', 'replace')}", req_id)
        conn.requests += 1
        window = getattr(conn, "request_times", None)
        if window is None:
            window = conn.request_times = []  # type: ignore[attr-defined]
        now = time.monotonic()
        window[:] = [t for t in window if now - t < 3600] + [now]
        if len(window) > REQUESTS_PER_HOUR:
            return self._error(conn, "60014", "Requests too frequent.", req_id)
        self.subscribe_requests.append(req)
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in CHANNELS or not isinstance(inst, str) or not self.known(inst):
                return self._error(conn, "60018", f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. "
                                   "Please use the correct URL, channel and parameters referring to API document.",
                                   req_id)
        if op == "subscribe" and self.error_next_subscribes > 0:
            self.error_next_subscribes -= 1
            return self._error(conn, "60012", "Invalid request: injected failure", req_id)
        if op == "subscribe" and self.ignore_next_subscribes > 0:
            self.ignore_next_subscribes -= 1
            return None
        for arg in args:
            inst, channel = arg["instId"], arg["channel"]
            first: str | None = None
            if op == "subscribe":
                if channel == "trades":
                    self.subscribe(conn, inst)
                else:
                    quote, market = self.subscribe_quote(conn, channel, inst)
                    first = None if market.quote_silent else self.encode_quote(channel, inst, quote, market)
                self.stats.subscribes += 1
            elif channel == "trades":
                conn.subs.pop(inst, None)
            else:
                conn.quotes.pop((channel, inst), None)
            reply: dict[str, Any] = {"event": op, "arg": {"channel": channel, "instId": inst},
                                     "connId": conn.conn_id}
            conn.send({"id": req_id, **reply} if req_id is not None else reply)
            if first is not None:  # the snapshot on subscribe, after its ack
                conn.send(first)
                self.stats.quotes_sent += 1
        return None
