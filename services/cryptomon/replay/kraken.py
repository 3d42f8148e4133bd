"""Kraken spot WebSocket v2 stand-in: `/v2`, `trade` channel, REST `/0/public/AssetPairs`.

On connect it pushes the `status` message. `subscribe` is answered per symbol (`success` true,
or false with "Currency pair not supported <symbol>" for a symbol it does not list, e.g. the
v1 name XBT/USD); `snapshot` (default true, as on docs.kraken.com) sends the last 50 trades as
one `type:"snapshot"` message before the updates. Updates batch every new trade of a market
in one message; price and qty are JSON numbers, written from the exact decimal digits. A
`{"channel":"heartbeat"}` goes out about once a second when nothing else flows, `ping` is
answered with `pong`, malformed requests get `{"error":…,"success":false}`. The trade id is a
sequence number per book.

`ticker` (top of book): `event_trigger` `bbo` (or `trades`, treated alike here: an update per
change of the book), acknowledged per symbol with `result.channel` "ticker"; `snapshot`
(default true) sends the current book as `type:"snapshot"` after the ack, then `type:"update"`
per change; bid/ask/quantities are JSON numbers, `timestamp` is included (as in the captured
fixture the adapter is tested with), no sequence. Unknown symbols get the same refusal as on
`trade`, naming the symbol and not the channel.
"""

from __future__ import annotations

import json
from typing import Any

from . import Client, Market, PubSubReplay, ReplayQuote, ReplayTrade, iso_us
from .listing import KRAKEN_V1

SNAPSHOT = 50
CHANNELS = ("trade", "ticker")


def _times() -> dict[str, str]:
    from . import now_ms

    t = iso_us(now_ms())
    return {"time_in": t, "time_out": t}


def trade_json(symbol: str, t: ReplayTrade) -> str:
    # Numbers, not strings: the exact digits as a JSON number literal.
    return (f'{{"symbol":"{symbol}","side":"{"sell" if t.buyer_maker else "buy"}","price":{t.price(2)},'
            f'"qty":{t.size(8)},"ord_type":"{"limit" if t.trade_id % 3 else "market"}",'
            f'"trade_id":{t.trade_id},"timestamp":"{iso_us(t.ts_ms, t.trade_id)}"}}')


class KrakenReplay(PubSubReplay):
    exchange = "kraken"
    path = "/v2"
    rest_paths = {"/0/public/AssetPairs": "kraken"}
    heartbeat_interval = 1.0

    def __init__(self, symbols: list[str] | None = None, *, max_symbols: int | None = None, **kw: Any) -> None:
        super().__init__(symbols, **kw)
        # Kraken documents no per-connection cap; for tests of a venue that silently ignores
        # subscriptions above one, set max_symbols.
        self.max_symbols = max_symbols
        self.ignored = 0
        self.subscribed_before: dict[str, int] = {}  # market -> last trade id at its first subscribe

    def listed_symbols(self) -> set[str]:
        v2 = {v: k for k, v in KRAKEN_V1.items()}
        out = set()
        for info in self.listing()["result"].values():
            base, _, quote = info["wsname"].partition("/")
            out.add(f"{v2.get(base, base)}/{v2.get(quote, quote)}")
        return out

    def on_open(self, conn: Client) -> None:
        conn.send({"channel": "status", "type": "update", "data": [{
            "version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": int(conn.conn_id, 16)}]})

    def heartbeat(self) -> str:
        return '{"channel":"heartbeat"}'

    def encode(self, symbol: str, trades: list[ReplayTrade]) -> list[str]:
        return ['{"channel":"trade","type":"update","data":[' + ",".join(trade_json(symbol, t) for t in trades)
                + "]}"]

    def encode_quote(self, channel: str, symbol: str, quote: ReplayQuote, market: Market, kind: str = "update") -> str:
        last = market.tape[-1].price(2) if market.tape else quote.ask
        return (f'{{"channel":"ticker","type":"{kind}","data":[{{"symbol":"{symbol}","bid":{quote.bid},'
                f'"bid_qty":{quote.bid_size},"ask":{quote.ask},"ask_qty":{quote.ask_size},"last":{last},'
                f'"volume":{market.made},"vwap":{last},"low":{last},"high":{last},"change":0.0,"change_pct":0.0,'
                f'"timestamp":"{iso_us(quote.ts_ms)}"}}]}}')

    def on_text(self, conn: Client, data: bytes) -> None:
        try:
            req = json.loads(data)
        except ValueError:
            return self.error(conn, {"error": "Malformed request", "method": "error", "success": False, **_times()})
        if not isinstance(req, dict):
            return self.error(conn, {"error": "Malformed request", "method": "error", "success": False, **_times()})
        method, req_id = req.get("method"), req.get("req_id")
        extra = {"req_id": req_id} if req_id is not None else {}
        if method == "ping":
            return conn.send({"method": "pong", **extra, **_times()})
        if method not in ("subscribe", "unsubscribe"):
            return self.error(conn, {"error": f"Unsupported method {method!r}", "method": str(method),
                                     "success": False, **extra, **_times()})
        params = req.get("params")
        channel = params.get("channel") if isinstance(params, dict) else None
        if channel not in CHANNELS:
            return self.error(conn, {"error": f"Channel {channel!r} not supported here", "method": method,
                                     "success": False, **extra, **_times()})
        assert isinstance(params, dict)
        if channel == "ticker" and params.get("event_trigger", "trades") not in ("trades", "bbo"):
            return self.error(conn, {"error": f"event_trigger {params.get('event_trigger')!r}: expected bbo or trades",
                                     "method": method, "success": False, **extra, **_times()})
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            return self.error(conn, {"error": "symbol: expected a list of currency pairs", "method": method,
                                     "success": False, **extra, **_times()})
        self.subscribe_requests.append(req)
        if method == "subscribe" and self.ignore_next_subscribes > 0:
            self.ignore_next_subscribes -= 1
            return None
        snapshot = params.get("snapshot", True) is not False
        for symbol in symbols:
            if channel == "ticker":
                self._one_ticker(conn, method, symbol, snapshot, extra)
            else:
                self._one(conn, method, symbol, snapshot, extra)
        return None

    def _one_ticker(self, conn: Client, method: str, symbol: str, snapshot: bool, extra: dict[str, Any]) -> None:
        if not self.known(symbol):
            self.error(conn, {"error": f"Currency pair not supported {symbol}", "method": method,
                              "success": False, "symbol": symbol, **extra, **_times()})
            return
        ack = {"method": method, "result": {"channel": "ticker", "symbol": symbol}, "success": True, **extra,
               **_times()}
        if method == "unsubscribe":
            conn.quotes.pop(("ticker", symbol), None)
            conn.send(ack)
            return
        self.stats.subscribes += 1
        quote, market = self.subscribe_quote(conn, "ticker", symbol)
        conn.send({**ack, "result": {"channel": "ticker", "symbol": symbol, "snapshot": snapshot}})
        if snapshot and not market.quote_silent:
            conn.send(self.encode_quote("ticker", symbol, quote, market, "snapshot"))
            self.stats.quotes_sent += 1

    def _one(self, conn: Client, method: str, symbol: str, snapshot: bool, extra: dict[str, Any]) -> None:
        if not self.known(symbol):
            self.error(conn, {"error": f"Currency pair not supported {symbol}", "method": method,
                              "success": False, "symbol": symbol, **extra, **_times()})
            return
        if method == "unsubscribe":
            conn.subs.pop(symbol, None)
            conn.send({"method": method, "result": {"channel": "trade", "symbol": symbol}, "success": True,
                       **extra, **_times()})
            return
        if self.error_next_subscribes > 0:
            self.error_next_subscribes -= 1
            self.error(conn, {"error": "Subscription failed: injected failure", "method": method,
                              "success": False, "symbol": symbol, **extra, **_times()})
            return
        if self.max_symbols is not None and symbol not in conn.subs and len(conn.subs) >= self.max_symbols:
            self.ignored += 1  # silently: no ack, no error
            return
        self.stats.subscribes += 1
        past = self.subscribe(conn, symbol, SNAPSHOT if snapshot else 0)
        history_end = self.subscribed_before.get(symbol)
        if history_end is None:
            # First subscribe: the snapshot is history, which a client skips.
            self.subscribed_before[symbol] = past[-1].trade_id if past else -1
        else:
            # Resubscribe: the snapshot's trades after that history are ones a client may have
            # missed while away; it takes them (deduplicated against what it has).
            self.sent.update((symbol, t.trade_id) for t in past if t.trade_id > history_end)
        conn.send({"method": "subscribe", "result": {"channel": "trade", "symbol": symbol, "snapshot": snapshot},
                   "success": True, **extra, **_times()})
        if snapshot:
            conn.send('{"channel":"trade","type":"snapshot","data":['
                      + ",".join(trade_json(symbol, t) for t in past) + "]}")
