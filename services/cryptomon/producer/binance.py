"""Binance spot: `trade` (default) or `aggTrade` events over the combined stream endpoint.

Each connection goes to the combined-stream base URL (…/stream), SUBSCRIBEs to
`<symbol>@trade` for its markets in batches, waits for `{"result":null,"id":N}` per batch and
then checks with LIST_SUBSCRIPTIONS that the server really holds every stream (an exchange that
silently drops streams above its limit would otherwise leave a partial subscription unnoticed).
Frames arrive wrapped as {"stream":…, "data":{…}}; unwrapped frames (raw /ws endpoint) are
accepted too. Taker side: `m` ("buyer is the maker") true means the taker sold.

Keepalive: the server pings every 20 s; the transport answers with the same payload.
Snapshot on subscribe: none. Limits (documented): 1024 streams per connection, 5 incoming
messages per second per connection (pings, pongs and control messages count), 300 connection
attempts per 5 minutes per IP, 24 h per connection. We hold 200 streams per connection by
default (one SUBSCRIBE message per connection, so a reconnect costs one message) and send at
most one message per 0.3 s.

Quotes (PRODUCER_QUOTES): `<symbol>@bookTicker` next to each trade stream (two streams per
market, so 100 markets per connection by default). Frames `{"u":400900217,"s":"BNBUSDT",
"b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}` (wrapped when
combined), strings throughout [docs]. `u` is the order-book update id, used as the quote's
sequence for ordering; it is not contiguous across bookTicker events [inferred, unconfirmed],
so no gap is counted. Spot bookTicker has NO event time and no `e` field [docs]: exchange_ts is
null. No snapshot on subscribe is documented; it pushes on change. LIST_SUBSCRIPTIONS must
list the bookTicker streams too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any

from cryptomon.kafka_settings import ConfigError

from .base import Limits, Reconnect, WebSocketAdapter
from .config import FeedSettings, ProducerConfig, get
from .fastjson import loads as _loads
from .schema import Trade, is_decimal
from .symbols import Market, normalized_listing, split_concatenated


@dataclass(frozen=True)
class BinanceSettings(FeedSettings):
    stream_type: str = "trade"

    @classmethod
    def fields_from_env(cls, spec: type[WebSocketAdapter], env: Mapping[str, str]) -> dict[str, Any]:
        fields = super().fields_from_env(spec, env)
        stream = get(env, "BINANCE_STREAM_TYPE", "trade")
        if stream not in ("trade", "aggTrade"):
            raise ConfigError(f"BINANCE_STREAM_TYPE: {stream!r} is not trade or aggTrade")
        return {**fields, "stream_type": stream}


class BinanceAdapter(WebSocketAdapter):
    exchange = "binance"
    symbols_var = "BINANCE_SYMBOLS"
    default_symbols = "BTCUSDT,ETHUSDT,BNBUSDT"
    url_var = "BINANCE_STREAM_URL"
    default_url = "wss://stream.binance.com:9443/stream"
    rest_var = "BINANCE_REST_URL"
    default_rest_url = "https://api.binance.com"
    listing_path = "/api/v3/exchangeInfo?permissions=SPOT"
    replay_server = "cryptomon.replay.binance:BinanceReplay"
    replay_port = 9443
    replay_path = "/stream"
    extra_vars = {"BINANCE_STREAM_TYPE": "trade"}
    quote_channel = "bookTicker"
    default_stale_after_s = 30.0
    settings_class = BinanceSettings
    limits = Limits(streams_per_connection=1024, default_streams_per_connection=200, subscribe_batch=200,
                    send_interval_s=0.3, connect_attempts=300, connect_window_s=300.0,
                    max_message_bytes=2 << 20)

    @staticmethod
    def parse_symbol(text: str) -> Market:
        return split_concatenated(text)

    @classmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        return normalized_listing(
            ((s["symbol"], s["baseAsset"], s["quoteAsset"]) for s in payload["symbols"]
             if s.get("status") == "TRADING" and s.get("isSpotTradingAllowed", True)),
            cls.exchange)

    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, **kw: Any) -> None:
        super().__init__(config, markets, **kw)
        self.stream_type = config.feed.stream_type
        self._next_id = 1
        self._list_id: int | None = None
        self._marks = self.dedupe.marks  # per-market high-water marks (the hot path reads them directly)
        self._far = self.dedupe.far      # far ids awaiting confirmation (the hot path only checks emptiness)
        self.markets_changed()

    def markets_changed(self) -> None:
        self._symbol_of = {raw: m.symbol for raw, m in self.by_raw.items()}  # the hot path's lookup

    def subscribe_messages(self) -> None:
        kinds = (self.stream_type, "bookTicker") if self.quotes_on else (self.stream_type,)
        # A market's streams side by side, so they land in the same SUBSCRIBE batch.
        streams = [f"{raw.lower()}@{kind}" for raw in self.by_raw for kind in kinds]
        batch = self.limits_in_use.subscribe_batch
        for i in range(0, len(streams), batch):
            req_id = self._next_id
            self._next_id += 1
            self.queue(json.dumps({"method": "SUBSCRIBE", "params": streams[i:i + batch], "id": req_id}), req_id)
        self._list_id = None

    def handle(self, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            msg = _loads(frame)
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        data = msg.get("data")
        if data is None:
            if "e" in msg or ("u" in msg and "s" in msg and self.quotes_on):  # raw /ws: unwrapped
                data = msg
            else:
                return self._control(msg, frame)
        if type(data) is not dict:
            return self._bad("malformed", "data is not an object", frame)
        event = data.get("e")
        if event == "trade" or event == "aggTrade":
            try:
                raw = data["s"]
                symbol = self._symbol_of.get(raw)
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
            self.last_activity = monotonic()
            # The common case of Deduper.is_new inlined (the next id, nothing far pending):
            # this is the per-trade hot path.
            marks = self._marks
            high = marks.get(raw, -1)
            if high < tid <= high + 1000 and not self._far:
                marks[raw] = tid
            elif not self.dedupe.is_new(raw, tid):
                self.stats.duplicates += 1
                return ()
            self.stats.trades += 1
            return (Trade("binance", symbol, raw, str(tid), price, qty,
                          "sell" if maker else "buy", ts, received_ms),)
        if event is None and self.quotes_on and "u" in data:
            return self._book_ticker(data, frame, received_ms)
        if event == "serverShutdown":
            self.log.warning("serverShutdown notice received: reconnecting now")
            self.reconnect_request = Reconnect("serverShutdown", immediate=True)
            return ()
        return self._bad("unknown", f"unknown event {event!r}", frame)

    def _book_ticker(self, data: dict, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            raw, update_id = data["s"], data["u"]
            bid, bid_qty, ask, ask_qty = data["b"], data["B"], data["a"], data["A"]
        except KeyError:
            return self._bad("malformed", "bookTicker without a required field", frame)
        market = self.by_raw.get(raw) if type(raw) is str else None
        if market is None:
            return self._bad("unknown", "bookTicker for an unsubscribed symbol", frame)
        if type(update_id) is not int or update_id < 0:
            return self._bad("malformed", "bookTicker with an invalid update id", frame)
        self.last_activity = monotonic()
        return self.quote(market, bid, bid_qty, ask, ask_qty, None, received_ms, update_id, frame)

    def _control(self, msg: dict, frame: str | bytes) -> Iterable[Trade]:
        req_id = msg.get("id")
        error = msg.get("error")
        if isinstance(error, dict) or ("code" in msg and "msg" in msg):
            # Flat {"code":2,"msg":…,"id":1} (the docs' table) or nested {"error":{…},"id":1}
            # (what clients see). The pending ack stays: the session ends in a reconnect with backoff.
            err = error if isinstance(error, dict) else msg
            self.stats.errors += 1
            self.warn.warning("error", "error reply code=%s msg=%s id=%s",
                              err.get("code"), str(err.get("msg"))[:200], req_id)
            return ()
        if "result" in msg and req_id is not None:
            if req_id == self._list_id:
                self._check_list(msg["result"])
                return ()
            if self.pending_acks.pop(req_id, None) is not None:
                self.log.debug("subscription %s acknowledged", req_id)
            if not self.pending_acks and self._list_id is None:
                self._list_id = self._next_id
                self._next_id += 1
                self.queue(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": self._list_id}), self._list_id)
            return ()
        return self._bad("unknown", "unknown control message", frame)

    def _check_list(self, result: object) -> None:
        self.pending_acks.pop(self._list_id, None)
        self.last_activity = monotonic()
        if not isinstance(result, list):
            self.warn.warning("list", "LIST_SUBSCRIPTIONS answered %.100r", result)
            return
        held = {str(s).partition("@")[0].upper() for s in result}
        missing = [raw for raw in self.by_raw if raw not in held]
        if self.quotes_on:
            streams = {str(s) for s in result}
            missing += [raw for raw in self.by_raw if raw in held and f"{raw.lower()}@bookTicker" not in streams]
        if missing:
            self.stats.errors += 1
            self.log.error("binance kept %d of %d streams on this connection (missing %s…): it drops "
                           "subscriptions above its limit", len(self.by_raw) - len(missing), len(self.by_raw),
                           ",".join(missing[:5]))
            self.capacity_hint = max(1, len(self.by_raw) - len(missing))
            self.reconnect_request = Reconnect("subscriptions dropped by the exchange", immediate=True)
        else:
            self.log.info("subscribed to %d streams", len(held))
