"""Kraken spot, WebSocket API v2, `trade` channel.

Subscribe: `{"method":"subscribe","params":{"channel":"trade","symbol":[...],"snapshot":true},
"req_id":N}`; Kraken acknowledges each symbol separately (`success` true, or false with an
`error` such as "Currency pair not supported XBT/USD"). A refused symbol is dropped with one
log line; the others go on.

Trades: `{"channel":"trade","type":"snapshot"|"update","data":[{symbol, side, price, qty,
ord_type, trade_id, timestamp}]}`. `side` is the taker's side (docs: "the side of the taker
order"). Price and qty are JSON *numbers*: the frame is parsed with the stdlib parser and
parse_float=str so the exact digits survive (no float ever holds a price). `trade_id` is a
sequence number per book, so the high-water-mark dedupe is exact.

Snapshot on subscribe: requested (`snapshot: true`; the docs disagree on its default, so it
is always sent explicitly), and DEDUPLICATED: snapshot trades from before the producer started
are history (they only set the dedupe mark, nothing is produced); the others go through the
dedupe, so after a reconnect the snapshot recovers the trades missed while disconnected (up to
50 per market) and repeats nothing already produced.

Keepalive: the server sends `{"channel":"heartbeat"}` about once a second when nothing else
flows; the watchdog reconnects after 10 s of silence (Kraken's guide suggests ~5 s). Symbols:
v2 writes `BTC/USD`; the REST AssetPairs `wsname` still uses v1 names (`XBT/USD`, `XDG/USD`),
normalized here to BTC and DOGE; `XBT/USD` in KRAKEN_SYMBOLS is accepted as BTC/USD. Limits:
none documented for connections or subscriptions; we keep 100 symbols per connection, one
message per 0.2 s and 10 connection attempts per 10 s.

Quotes (PRODUCER_QUOTES): the `ticker` channel with `event_trigger: "bbo"` (published when the
best bid or offer changes; the default `trades` would publish on trades only) and `snapshot:
true` (the current book at once; the docs' default, sent explicitly). Each symbol is
acknowledged per channel; a refused symbol gets one error per channel naming it and no channel
(both end in the same refusal). Frames `{"channel":"ticker","type":"snapshot"|"update","data":
[{"symbol","bid","bid_qty","ask","ask_qty",…,"timestamp"?}]}`, prices and quantities JSON
numbers (kept exact as for trades) [docs fields]. The ticker has NO sequence (sequence null);
`timestamp` appears in a captured fixture but not in the docs excerpts seen [unconfirmed]:
when present it orders the quotes and is exchange_ts, else exchange_ts is null. Snapshots are
the current book, not history: emitted like updates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .base import Limits, Reconnect, WebSocketAdapter
from .config import ProducerConfig
from .schema import Trade, iso_to_ms, number_text
from .symbols import Market, normalized_listing, split_separated

ALIASES = {"XBT": "BTC", "XDG": "DOGE"}  # Kraken v1/REST names -> the v2 (common) names
_decode = json.JSONDecoder(parse_float=str).decode
_SIDES = {"buy": "buy", "sell": "sell"}


def _v2(name: str) -> str:
    return ALIASES.get(name, name)


class KrakenAdapter(WebSocketAdapter):
    exchange = "kraken"
    symbols_var = "KRAKEN_SYMBOLS"
    default_symbols = "BTC/USD,ETH/USD"
    url_var = "KRAKEN_STREAM_URL"
    default_url = "wss://ws.kraken.com/v2"
    rest_var = "KRAKEN_REST_URL"
    default_rest_url = "https://api.kraken.com"
    listing_path = "/0/public/AssetPairs"
    replay_server = "cryptomon.replay.kraken:KrakenReplay"
    replay_port = 9445
    replay_path = "/v2"
    markets_per_ack = 1  # one ack per symbol
    default_stale_after_s = 10.0
    quote_channel = "ticker"
    limits = Limits(streams_per_connection=500, default_streams_per_connection=100, subscribe_batch=100,
                    send_interval_s=0.2, connect_attempts=10, connect_window_s=10.0,
                    max_message_bytes=4 << 20)

    @staticmethod
    def parse_symbol(text: str) -> Market:
        return split_separated(text, "/", ALIASES)

    @classmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        if payload.get("error"):
            raise ValueError(f"error {payload['error']!r}")
        entries = []
        for info in payload["result"].values():
            wsname = info.get("wsname")
            if info.get("status", "online") != "online" or not wsname or "/" not in wsname:
                continue
            base, _, quote = wsname.partition("/")
            base, quote = _v2(base), _v2(quote)
            entries.append((f"{base}/{quote}", base, quote))
        return normalized_listing(entries, cls.exchange)

    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, **kw: Any) -> None:
        super().__init__(config, markets, **kw)
        self._next_id = 1
        self.system: str | None = None

    def subscribe_messages(self) -> None:
        symbols = list(self.by_raw)
        batch = self.limits_in_use.subscribe_batch
        for i in range(0, len(symbols), batch):
            chunk = symbols[i:i + batch]
            self.queue(json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": chunk,
                                                                     "snapshot": True}, "req_id": self._next_id}),
                       *chunk)
            self._next_id += 1
            if self.quotes_on:
                self.queue(json.dumps({"method": "subscribe", "params": {
                    "channel": "ticker", "symbol": chunk, "event_trigger": "bbo", "snapshot": True},
                    "req_id": self._next_id}), *(("ticker", s) for s in chunk))
                self._next_id += 1

    def handle(self, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        try:
            msg = _decode(frame if isinstance(frame, str) else frame.decode())
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        channel = msg.get("channel")
        if channel == "trade":
            return self._trades(msg, frame, received_ms)
        if channel == "ticker" and self.quotes_on:
            return self._tickers(msg, frame, received_ms)
        if channel == "heartbeat":
            self.last_activity = time.monotonic()
            return ()
        if channel == "status":
            return self._status(msg, frame)
        method = msg.get("method")
        if method == "subscribe":
            return self._ack(msg, frame)
        if method == "pong":
            self.pong()
            return ()
        error = msg.get("error", msg.get("Error"))
        if error is not None:
            self.stats.errors += 1
            self.warn.warning("error", "error message: %.200s", str(error))
            if "rate" in str(error).lower():
                self.reconnect_request = Reconnect(f"kraken: {error}")
            return ()
        return self._bad("unknown", f"unknown message (channel {channel!r}, method {method!r})", frame)

    def _status(self, msg: dict, frame: bytes | str) -> Iterable[Trade]:
        try:
            system = msg["data"][0]["system"]
        except (KeyError, IndexError, TypeError):
            return self._bad("malformed", "status without data[0].system", frame)
        if system != self.system:
            (self.log.info if system == "online" else self.log.warning)("kraken system status: %s", system)
            self.system = system
        self.last_activity = time.monotonic()
        return ()

    def _ack(self, msg: dict, frame: bytes | str) -> Iterable[Trade]:
        result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
        symbol = result.get("symbol", msg.get("symbol"))
        if msg.get("success") is True and isinstance(symbol, str):
            self.pending_acks.pop(("ticker", symbol) if result.get("channel") == "ticker" else symbol, None)
            self.last_activity = time.monotonic()
            return ()
        error = str(msg.get("error", "no reason given"))
        # With quotes, a refused symbol is refused once per channel (the error names no channel).
        if isinstance(symbol, str) and (symbol in self.by_raw or (self.quotes_on and symbol in self.rejected)):
            self.pending_acks.pop(symbol, None)
            self.pending_acks.pop(("ticker", symbol), None)
            self.reject(symbol, error)
            return ()
        self.stats.errors += 1
        self.warn.warning("error", "subscribe failed: %.200s", error)
        return ()

    def _tickers(self, msg: dict, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        data = msg.get("data")
        if msg.get("type") not in ("update", "snapshot") or type(data) is not list:
            return self._bad("malformed", "ticker message without type/data", frame)
        self.last_activity = time.monotonic()
        for item in data:
            try:
                raw, bid, bid_qty = item["symbol"], item["bid"], item["bid_qty"]
                ask, ask_qty = item["ask"], item["ask_qty"]
                when = item.get("timestamp")
                ts = None if when is None else iso_to_ms(when)
            except (KeyError, TypeError, ValueError, AttributeError):
                self._bad("malformed", "ticker without a valid field", frame)
                continue
            market = self.by_raw.get(raw) if type(raw) is str else None
            if market is None:
                self._bad("unknown", "ticker for an unsubscribed symbol", frame)
                continue
            self.quote(market, number_text(bid), number_text(bid_qty), number_text(ask), number_text(ask_qty), ts,
                       received_ms, None, frame)
        return ()

    def _trades(self, msg: dict, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        kind = msg.get("type")
        data = msg.get("data")
        if kind not in ("update", "snapshot") or type(data) is not list:
            return self._bad("malformed", "trade message without type/data", frame)
        parsed: list[tuple[Market, int, str, str, str, int]] = []
        for item in data:
            try:
                raw, side, tid = item["symbol"], _SIDES[item["side"]], item["trade_id"]
                price, qty, ts = number_text(item["price"]), number_text(item["qty"]), iso_to_ms(item["timestamp"])
            except (KeyError, TypeError, ValueError, AttributeError):
                self._bad("malformed", "trade without a valid field", frame)
                continue
            market = self.by_raw.get(raw) if type(raw) is str else None
            if market is None:
                self._bad("unknown", "trade for an unsubscribed symbol", frame)
                continue
            if type(tid) is not int or tid < 0 or price is None or qty is None:
                self._bad("malformed", "trade with an invalid field", frame)
                continue
            parsed.append((market, tid, price, qty, side, ts))
        self.last_activity = time.monotonic()
        out = []
        dedupe = self.dedupe
        if kind == "snapshot":
            # A market we have nothing of yet: its snapshot trades from before this process
            # started are history; they only set the mark. Later ones (and, after a reconnect,
            # the ones newer than the mark) are trades we missed: produced.
            history: dict[str, int] = {}
            for market, tid, _, _, _, ts in parsed:
                if ts <= dedupe.started_ms and market.raw not in dedupe.marks:
                    history[market.raw] = max(tid, history.get(market.raw, tid))
            for raw, tid in history.items():
                dedupe.seed(raw, tid)
            parsed = [p for p in parsed if not (p[5] <= dedupe.started_ms and p[0].raw in history)]
        for market, tid, price, qty, side, ts in parsed:
            if not dedupe.is_new(market.raw, tid):
                self.stats.duplicates += 1
                continue
            self.stats.trades += 1
            out.append(Trade("kraken", market.symbol, market.raw, str(tid), price, qty, side, ts,
                             received_ms))
        return out

