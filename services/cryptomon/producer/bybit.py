"""Bybit, API v5 public spot WebSocket, `publicTrade.<symbol>` topics.

Subscribe: `{"req_id":"N","op":"subscribe","args":["publicTrade.BTCUSDT",…]}` with at most 10
args per request (spot); one reply per request: `{"success":true,"ret_msg":"subscribe",
"req_id":"N","op":"subscribe",…}`, or `"success":false` with `ret_msg` such as
"Invalid symbol :[publicTrade.NOPEUSDT]": the named symbols are dropped with one log line and
the rest of the request is sent again; a refusal naming no symbol ends the session.

Trades: `{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":…,"data":[{"T","s","S","v","p",
"i","BT",…}]}`; `type` is always "snapshot" (not a replay), `data` is ascending, up to 1024
trades per message. `S` is the taker's side (docs: "Side of taker"), `p`/`v` decimal strings,
`i` the trade id as a string (spot: numeric, rising), deduplicated by a high-water mark when
numeric, by a bounded recent-id set otherwise. Snapshot on subscribe: none ("after
subscription, you will be pushed trade messages in real-time").

Keepalive: the client sends `{"req_id":…,"op":"ping"}` every 20 s (recommended by the docs);
the spot reply is `{"success":true,"ret_msg":"pong","op":"ping",…}`; the server cuts a
connection after 10 minutes without ping or data. Limits (documented): 10 args per subscribe
request, 21,000 characters of args per connection (about 500 topics: our cap), 500 new
connections per 5 minutes per domain. We hold 100 symbols per connection.

Quotes (PRODUCER_QUOTES): `orderbook.1.<symbol>` next to each trade topic (so 5 symbols per
subscribe request of 10 args). Spot level 1 pushes every 10 ms and sends snapshots only
(`type` "snapshot"; a "delta" is counted as unknown), resending an unchanged book every 3 s
with the same `u` [docs]: `{"topic":"orderbook.1.BTCUSDT","ts":…,"type":"snapshot","data":
{"s","b":[[px,sz]],"a":[[px,sz]],"u","seq"},"cts":…}`. `u` is the quote's sequence; `u`=1
means a service restart (followed: its `ts` is later, see quote.QuoteOrder). exchange_ts is
`ts`, the time Bybit generated this snapshot (`cts`, the matching engine's time of the last
change, stays the same on the 3 s resends); the docs show `ts` as a number in the table and as
a string in one note: both are read. An empty side is an invalid quote.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

from .base import Limits, Reconnect, WebSocketAdapter
from .config import ProducerConfig
from .fastjson import loads as _loads
from .schema import Trade, is_decimal
from .symbols import Market, normalized_listing, split_concatenated

_TOPIC = "publicTrade."
_BOOK = "orderbook.1."
_NAMED = re.compile(r"(?:publicTrade|orderbook\.1)\.([A-Za-z0-9]+)")
_SIDES = {"Buy": "buy", "Sell": "sell"}
_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class BybitAdapter(WebSocketAdapter):
    exchange = "bybit"
    symbols_var = "BYBIT_SYMBOLS"
    default_symbols = "BTCUSDT,ETHUSDT"
    url_var = "BYBIT_STREAM_URL"
    default_url = "wss://stream.bybit.com/v5/public/spot"
    rest_var = "BYBIT_REST_URL"
    default_rest_url = "https://api.bybit.com"
    listing_path = "/v5/market/instruments-info?category=spot"
    replay_server = "cryptomon.replay.bybit:BybitReplay"
    replay_port = 9447
    replay_path = "/v5/public/spot"
    markets_per_ack = 10  # one ack per request of 10 symbols
    default_stale_after_s = 45.0
    quote_channel = "orderbook.1"
    ping_interval_s = 20.0
    pong_timeout_s = 10.0
    limits = Limits(streams_per_connection=500, default_streams_per_connection=100, subscribe_batch=10,
                    send_interval_s=0.1, connect_attempts=500, connect_window_s=300.0,
                    max_message_bytes=4 << 20)

    @staticmethod
    def parse_symbol(text: str) -> Market:
        return split_concatenated(text)

    @classmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        if payload.get("retCode") != 0:
            raise ValueError(f"retCode {payload.get('retCode')!r}: {payload.get('retMsg')!r}")
        return normalized_listing(
            ((s["symbol"], s["baseCoin"], s["quoteCoin"]) for s in payload["result"]["list"]
             if s.get("status") == "Trading"),
            cls.exchange)

    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, **kw: Any) -> None:
        super().__init__(config, markets, **kw)
        self._next_id = 1
        self.requests: dict[str, list[str]] = {}  # req_id -> symbols of that request

    def keepalive_message(self) -> str:
        req_id = f"ping{self._next_id}"
        self._next_id += 1
        return json.dumps({"req_id": req_id, "op": "ping"})

    def _request(self, symbols: list[str]) -> None:
        req_id = str(self._next_id)
        self._next_id += 1
        self.requests[req_id] = list(symbols)
        topics = (_TOPIC, _BOOK) if self.quotes_on else (_TOPIC,)
        self.queue(json.dumps({"req_id": req_id, "op": "subscribe", "args": [t + s for s in symbols for t in topics]}),
                   req_id)

    def subscribe_messages(self) -> None:
        self.requests.clear()
        symbols = list(self.by_raw)
        # subscribe_batch counts args (10 on spot): a market takes one per topic.
        batch = max(1, self.limits_in_use.subscribe_batch // self.streams_per_market(self.config))
        for i in range(0, len(symbols), batch):
            self._request(symbols[i:i + batch])

    def handle(self, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        try:
            msg = _loads(frame)
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        topic = msg.get("topic")
        if type(topic) is str:
            if topic.startswith(_TOPIC):
                return self._trades(msg, frame, received_ms)
            if self.quotes_on and topic.startswith(_BOOK):
                return self._book(msg, frame, received_ms)
            return self._bad("unknown", f"push for an unknown topic {topic[:50]!r}", frame)
        op = msg.get("op")
        if op == "ping" or op == "pong" or msg.get("ret_msg") == "pong":
            self.pong()
            return ()
        if op == "subscribe":
            return self._reply(msg)
        return self._bad("unknown", f"unknown message (op {op!r})", frame)

    def _reply(self, msg: dict) -> Iterable[Trade]:
        req_id = str(msg.get("req_id"))
        symbols = self.requests.pop(req_id, None)
        if msg.get("success") is True:
            self.pending_acks.pop(req_id, None)
            self.last_activity = time.monotonic()
            return ()
        text = str(msg.get("ret_msg"))
        self.pending_acks.pop(req_id, None)
        named = [s for s in _NAMED.findall(text) if s in self.by_raw]
        if named:
            for s in named:
                self.reject(s, text)
            rest = [s for s in symbols or () if s not in named and s in self.by_raw]
            if rest:
                self._request(rest)
            return ()
        self.stats.errors += 1
        self.warn.warning("error", "subscribe refused: %.200s", text)
        self.reconnect_request = Reconnect(f"subscribe refused: {text[:100]}")
        return ()

    def _book(self, msg: dict, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        data = msg.get("data")
        if msg.get("type") != "snapshot":
            return self._bad("unknown", f"orderbook.1 message of type {msg.get('type')!r}", frame)
        try:
            raw, bids, asks, update_id, ts = data["s"], data["b"], data["a"], data["u"], int(msg["ts"])  # type: ignore[index]
            bid, bid_sz = (bids[0][0], bids[0][1]) if bids else (None, None)
            ask, ask_sz = (asks[0][0], asks[0][1]) if asks else (None, None)
        except (KeyError, IndexError, TypeError, ValueError):
            return self._bad("malformed", "orderbook.1 without a valid field", frame)
        market = self.by_raw.get(raw) if type(raw) is str else None
        if market is None:
            return self._bad("unknown", "orderbook.1 for an unsubscribed symbol", frame)
        if type(update_id) is not int or update_id < 0 or ts <= 0:
            return self._bad("malformed", "orderbook.1 with an invalid u or ts", frame)
        self.last_activity = time.monotonic()
        return self.quote(market, bid, bid_sz, ask, ask_sz, ts, received_ms, update_id, frame)

    def _trades(self, msg: dict, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        data = msg.get("data")
        if type(data) is not list:
            return self._bad("malformed", "publicTrade without a data list", frame)
        out = []
        dedupe = self.dedupe
        for item in data:
            try:
                raw, side, tid, price, size, ts = (item["s"], _SIDES[item["S"]], item["i"], item["p"],
                                                   item["v"], item["T"])
            except (KeyError, TypeError):
                self._bad("malformed", "trade without a valid field", frame)
                continue
            market = self.by_raw.get(raw)
            if market is None:
                self._bad("unknown", "trade for an unsubscribed symbol", frame)
                continue
            if (type(tid) is not str or not _ID.fullmatch(tid) or type(ts) is not int or ts <= 0
                    or not is_decimal(price) or not is_decimal(size) or not price.strip("0.")
                    or not size.strip("0.")):
                self._bad("malformed", "trade with an invalid field", frame)
                continue
            self.last_activity = time.monotonic()
            if not dedupe.is_new(raw, int(tid) if tid.isdigit() else tid):
                self.stats.duplicates += 1
                continue
            self.stats.trades += 1
            out.append(Trade("bybit", market.symbol, raw, tid, price, size, side, ts, received_ms))
        return out
