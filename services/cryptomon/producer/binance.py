"""Binance spot: `trade` (default) or `aggTrade` events over the combined stream endpoint.

The adapter connects to the combined-stream base URL (…/stream), SUBSCRIBEs to
`<symbol>@trade` for every configured symbol and waits for `{"result":null,"id":N}`.
Frames arrive wrapped as {"stream":…, "data":{…}}; unwrapped frames (raw /ws endpoint) are
accepted too. Taker side: `m` ("buyer is the maker") true means the taker sold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from .base import Reconnect, WebSocketAdapter
from .config import ProducerConfig
from .fastjson import loads as _loads
from .schema import Trade, is_decimal

_SUBSCRIBE_BATCH = 200  # streams per SUBSCRIBE message: few messages, far under the frame limit


class BinanceAdapter(WebSocketAdapter):
    exchange = "binance"
    send_interval = 0.3  # under 5 incoming msg/s per connection even with pongs

    def __init__(self, config: ProducerConfig) -> None:
        super().__init__(config)
        self.symbols = dict(config.binance_symbols)  # BTCUSDT -> BTC-USDT
        self.stream_type = config.binance_stream
        self._next_id = 1
        self._high = self.dedupe._high  # per-symbol high-water marks of trade ids

    def markets(self) -> list[str]:
        return list(self.symbols.values())

    def url(self) -> str:
        return self.config.binance_url

    def subscribe_messages(self) -> list[str]:
        streams = [f"{raw.lower()}@{self.stream_type}" for raw in self.symbols]
        out = []
        deadline = time.monotonic() + self.config.ack_timeout_s + len(streams) // _SUBSCRIBE_BATCH
        for i in range(0, len(streams), _SUBSCRIBE_BATCH):
            req_id = self._next_id
            self._next_id += 1
            out.append(json.dumps({"method": "SUBSCRIBE", "params": streams[i:i + _SUBSCRIBE_BATCH], "id": req_id}))
            self.pending_acks[req_id] = deadline
        return out

    def handle(self, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            msg = _loads(frame)
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        data = msg.get("data")
        if data is None:
            if "e" in msg:
                data = msg
            else:
                return self._control(msg, frame)
        if type(data) is not dict:
            return self._bad("malformed", "data is not an object", frame)
        event = data.get("e")
        if event == "trade" or event == "aggTrade":
            try:
                raw = data["s"]
                symbol = self.symbols.get(raw)
                if symbol is None:
                    return self._bad("unknown", "trade for unsubscribed symbol", frame)
                tid = data["t"] if event == "trade" else data["a"]
                price, qty, ts, maker = data["p"], data["q"], data["T"], data["m"]
            except (KeyError, TypeError):
                return self._bad("malformed", f"{event} without a required field", frame)
            if (type(tid) is not int or tid < 0 or type(ts) is not int or type(maker) is not bool
                    or not is_decimal(price) or not is_decimal(qty)
                    or not price.strip("0.") or not qty.strip("0.")):
                return self._bad("malformed", f"{event} with an invalid field", frame)
            self.last_activity = time.monotonic()
            # Deduper.is_new inlined for integer ids: this is the per-trade hot path.
            high = self._high.get(raw)
            if high is not None and tid <= high:
                self.dedupe.duplicates += 1
                self.stats.duplicates += 1
                return ()
            self._high[raw] = tid
            self.stats.trades += 1
            return (Trade("binance", symbol, raw, str(tid), price, qty,
                          "sell" if maker else "buy", ts, received_ms),)
        if event == "serverShutdown":
            self.log.warning("serverShutdown notice received: reconnecting now")
            self.reconnect_request = Reconnect("serverShutdown", immediate=True)
            return ()
        return self._bad("unknown", f"unknown event {event!r}", frame)

    def _control(self, msg: dict, frame: str | bytes) -> Iterable[Trade]:
        req_id = msg.get("id")
        if "code" in msg and "msg" in msg:
            # {"code": 2, "msg": "Invalid request: ...", "id": 1}: the request failed. The
            # pending ack stays, so the missing subscription ends in a reconnect with backoff.
            self.stats.errors += 1
            self.warn.warning("error", "error reply code=%s msg=%s id=%s",
                              msg.get("code"), str(msg.get("msg"))[:200], req_id)
            return ()
        if "result" in msg and req_id is not None:
            if self.pending_acks.pop(req_id, None) is not None:
                self.log.info("subscription %s acknowledged", req_id)
            if not self.pending_acks:
                self.last_activity = time.monotonic()
            return ()
        return self._bad("unknown", "unknown control message", frame)
