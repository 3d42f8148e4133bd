"""Bybit v5 public spot WebSocket stand-in: `/v5/public/spot`, `publicTrade.<symbol>`, REST
`/v5/market/instruments-info`.

One reply per subscribe request: `{"success":true,"ret_msg":"subscribe",…}`; refused as a
whole with "args size >10" (more than 10 args), "Invalid symbol :[publicTrade.X]" (a symbol it
does not list), a topic-length message past 21,000 characters of args per connection, or
"error:…" for a malformed request. `{"op":"ping"}` gets the spot pong
`{"success":true,"ret_msg":"pong","op":"ping",…}`; a connection with no ping and no data for
`idle_timeout` (10 minutes on the real server) is closed; 500 connection attempts per 5 minutes
are admitted. Trades of a market are batched in one message (`type` always "snapshot"),
ascending, `S` the taker's side, `i` a 19-digit numeric string.

Top of book: `orderbook.1.<symbol>` topics (level 1, snapshots only): a snapshot after the
subscribe reply, then one per change with `u` = the book's update id, `ts` the push time and
`cts` the time the book changed; an unchanged book is sent again every 3 s with the same `u`,
as Bybit does.
"""

from __future__ import annotations

import json
from typing import Any

from . import Client, Market, PubSubReplay, ReplayQuote, ReplayTrade, now_ms

MAX_ARGS = 10
MAX_CHARS = 21_000
_ID_BASE = 2_290_000_000_000_000_000
TRADE = "publicTrade."
BOOK = "orderbook.1."


class BybitReplay(PubSubReplay):
    exchange = "bybit"
    path = "/v5/public/spot"
    rest_paths = {"/v5/market/instruments-info": "bybit"}
    idle_timeout = 600.0
    default_max_connects = (500, 300.0)
    quote_resend = {"orderbook.1": 3.0}

    def __init__(self, symbols: list[str] | None = None, **kw: Any) -> None:
        super().__init__(symbols, **kw)
        self.pongs_sent = 0

    def listed_symbols(self) -> set[str]:
        return {s["symbol"] for s in self.listing()["result"]["list"]}

    def encode(self, symbol: str, trades: list[ReplayTrade]) -> list[str]:
        out = []
        for i in range(0, len(trades), 1024):
            items = ",".join(
                f'{{"T":{t.ts_ms},"s":"{symbol}","S":"{"Sell" if t.buyer_maker else "Buy"}","v":"{t.size(6)}",'
                f'"p":"{t.price(2)}","i":"{_ID_BASE + t.trade_id}","BT":false,"RPI":false,"seq":{t.sequence}}}'
                for t in trades[i:i + 1024])
            out.append(f'{{"topic":"publicTrade.{symbol}","ts":{now_ms()},"type":"snapshot","data":[{items}]}}')
        return out

    def encode_quote(self, channel: str, symbol: str, quote: ReplayQuote, market: Market) -> str:
        return (f'{{"topic":"orderbook.1.{symbol}","ts":{now_ms()},"type":"snapshot","data":{{"s":"{symbol}",'
                f'"b":[["{quote.bid}","{quote.bid_size}"]],"a":[["{quote.ask}","{quote.ask_size}"]],'
                f'"u":{quote.update_id},"seq":{market.sequence}}},"cts":{quote.ts_ms}}}')

    def _reply(self, conn: Client, op: str, req_id: object, success: bool, ret_msg: str) -> None:
        body = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id,
                "req_id": "" if req_id is None else req_id, "op": op}
        if success:
            conn.send(body)
        else:
            self.error(conn, body)

    def on_text(self, conn: Client, data: bytes) -> None:
        try:
            req = json.loads(data)
        except ValueError:
            return self._reply(conn, "", None, False, "error:request not json")
        if not isinstance(req, dict):
            return self._reply(conn, "", None, False, "error:request not json")
        op, req_id, args = req.get("op"), req.get("req_id"), req.get("args")
        if op == "ping":
            self.pongs_sent += 1
            return self._reply(conn, "ping", req_id, True, "pong")
        if op not in ("subscribe", "unsubscribe"):
            return self._reply(conn, str(op), req_id, False, f"error:handler not found,op:{op}")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return self._reply(conn, op, req_id, False, "error:args invalid")
        self.subscribe_requests.append(req)
        if len(args) > MAX_ARGS:
            return self._reply(conn, op, req_id, False, f"args size >{MAX_ARGS}")
        bad = [a for a in args if not (a.startswith((TRADE, BOOK)) and self.known(_symbol(a)))]
        if bad:
            return self._reply(conn, op, req_id, False, f"Invalid symbol :[{','.join(bad)}]")
        if op == "unsubscribe":
            for a in args:
                held = conn.subs if a.startswith(TRADE) else conn.quotes
                key = _symbol(a) if a.startswith(TRADE) else ("orderbook.1", _symbol(a))
                if held.pop(key, None) is not None:  # type: ignore[call-overload]
                    conn.chars -= len(a)
            return self._reply(conn, op, req_id, True, "unsubscribe")
        new = [a for a in args if (_symbol(a) not in conn.subs if a.startswith(TRADE)
                                   else ("orderbook.1", _symbol(a)) not in conn.quotes)]
        if conn.chars + sum(len(a) for a in new) > MAX_CHARS:
            return self._reply(conn, op, req_id, False,
                               f"error:topics on this connection exceed {MAX_CHARS} characters")
        if self.error_next_subscribes > 0:
            self.error_next_subscribes -= 1
            return self._reply(conn, op, req_id, False, "error:injected failure")
        if self.ignore_next_subscribes > 0:
            self.ignore_next_subscribes -= 1
            return None
        snapshots = []
        for a in new:
            if a.startswith(TRADE):
                self.subscribe(conn, _symbol(a))
            else:
                quote, market = self.subscribe_quote(conn, "orderbook.1", _symbol(a))
                if not market.quote_silent:
                    snapshots.append(self.encode_quote("orderbook.1", _symbol(a), quote, market))
            conn.chars += len(a)
        self.stats.subscribes += 1
        self._reply(conn, op, req_id, True, "subscribe")
        for text in snapshots:  # the book's snapshot, after the reply
            conn.send(text)
            self.stats.quotes_sent += 1
        return None


def _symbol(topic: str) -> str:
    return topic[len(TRADE):] if topic.startswith(TRADE) else topic[len(BOOK):]
