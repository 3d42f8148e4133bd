"""Coinbase Exchange market data feed, `matches` + `heartbeat` channels.

Why `matches` (Exchange) rather than Advanced Trade `market_trades`: it is public without
keys; `side` is documented without ambiguity (the maker's side, so the taker's is the
opposite); every message carries a per-product `sequence`, so dropped messages show up as
gaps; trade ids are integers that rise per product, which makes dedupe across reconnects
exact; and the `heartbeat` channel (every second per product) feeds the staleness watchdog.
Advanced Trade's `sequence_num` is per connection, its first `snapshot` replays a batch of
trades, and the meaning of its `side` is disputed between docs and client libraries.

Keepalive: the `heartbeat` channel (every second per product) feeds the watchdog; no client
ping is documented. Snapshot on subscribe: each product starts with `last_match` (the latest
trade), deduplicated by trade id (emitted only when newer than what was produced). Limits: none
per connection documented; "8 requests per second per IP, bursts of 20" is read as the
connection rate (we allow 5 per second); 100 products per connection by default. An invalid
product gets an error naming it while the others are subscribed: it is dropped with one line.

Quotes (PRODUCER_QUOTES): the public `ticker` channel, subscribed in the same message. Fields
`best_bid`, `best_bid_size`, `best_ask`, `best_ask_size` (strings), `sequence` (integer),
`time` (ISO 8601, µs) [captured frames 2022 and 2026-04, not the docs]. Caveats: the ticker
fires on matches, so the book shown moves only when a trade happens (quote changes without a
trade are not sent; `level2`, which has every change, now needs authentication [captured]);
whether the Exchange ticker batches cascading matches is unconfirmed. `sequence` is per
product but shared by all channels: it orders quotes, its gaps mean nothing, it is never
mixed with the `matches` gap check. The first ticker after subscribing may lack `time`
[cryptofeed sample, 2018]: exchange_ts is then null.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

from .base import Limits, WebSocketAdapter
from .config import ProducerConfig
from .fastjson import loads as _loads
from .schema import Trade, is_decimal, iso_to_ms
from .symbols import Market, normalized_listing, split_separated

__all__ = ["CoinbaseAdapter", "iso_to_ms"]

_TAKER = {"buy": "sell", "sell": "buy"}  # Coinbase `side` is the maker's side
_INVALID_PRODUCT = re.compile(r"(\S+) is not a valid product")


class CoinbaseAdapter(WebSocketAdapter):
    exchange = "coinbase"
    symbols_var = "COINBASE_PRODUCTS"
    default_symbols = "BTC-USD,ETH-USD"
    url_var = "COINBASE_STREAM_URL"
    default_url = "wss://ws-feed.exchange.coinbase.com"
    rest_var = "COINBASE_REST_URL"
    default_rest_url = "https://api.exchange.coinbase.com"
    listing_path = "/products"
    replay_server = "cryptomon.replay.coinbase:CoinbaseReplay"
    replay_port = 9444
    default_stale_after_s = 10.0
    quote_channel = "ticker"
    limits = Limits(streams_per_connection=500, default_streams_per_connection=100, subscribe_batch=500,
                    send_interval_s=0.2, connect_attempts=5, connect_window_s=1.0,
                    max_message_bytes=2 << 20)

    @staticmethod
    def parse_symbol(text: str) -> Market:
        return split_separated(text, "-")

    @classmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        return normalized_listing(
            ((p["id"], p["base_currency"], p["quote_currency"]) for p in payload
             if p.get("status") == "online" and not p.get("trading_disabled") and not p.get("cancel_only")),
            cls.exchange)

    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, **kw: Any) -> None:
        super().__init__(config, markets, **kw)
        self.sequence: dict[str, int] = {}

    def subscribe_messages(self) -> None:
        channels = ["matches", "heartbeat", "ticker"] if self.quotes_on else ["matches", "heartbeat"]
        self.queue(json.dumps({"type": "subscribe", "product_ids": sorted(self.by_raw),
                               "channels": channels}), "subscribe")

    def handle(self, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            msg = _loads(frame)
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        kind = msg.get("type")
        if kind == "match" or kind == "last_match":
            return self._match(msg, kind, frame, received_ms)
        if kind == "ticker" and self.quotes_on:
            return self._ticker(msg, frame, received_ms)
        if kind == "heartbeat":
            if msg.get("product_id") in self.by_raw:
                self.last_activity = time.monotonic()
                return ()
            return self._bad("unknown", "heartbeat for an unsubscribed product", frame)
        if kind == "subscriptions":
            if self.pending_acks.pop("subscribe", None) is not None:
                channels = msg.get("channels") if isinstance(msg.get("channels"), list) else []
                self.log.info("subscribed: %s", ", ".join(
                    f"{c.get('name')} ({len(c.get('product_ids') or [])} products)" for c in channels
                    if isinstance(c, dict)))
                self.last_activity = time.monotonic()
            return ()
        if kind == "error":
            reason = str(msg.get("reason"))
            bad = _INVALID_PRODUCT.fullmatch(reason)
            if bad and bad.group(1) in self.by_raw:
                # The server subscribes the valid products and says which one it refused.
                self.reject(bad.group(1), reason)
                return ()
            self.stats.errors += 1
            self.warn.warning("error", "error message: %.200s (reason: %.200s)", str(msg.get("message")), reason)
            return ()
        return self._bad("unknown", f"unknown message type {kind!r}", frame)

    def _ticker(self, msg: dict, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            product, seq = msg["product_id"], msg["sequence"]
            bid, bid_size, ask, ask_size = msg["best_bid"], msg["best_bid_size"], msg["best_ask"], msg["best_ask_size"]
        except KeyError:
            return self._bad("malformed", "ticker without a required field", frame)
        market = self.by_raw.get(product) if type(product) is str else None
        if market is None:
            return self._bad("unknown", "ticker for an unsubscribed product", frame)
        if type(seq) is not int or seq < 0:
            return self._bad("malformed", "ticker with an invalid sequence", frame)
        when = msg.get("time")
        try:
            ts = None if when is None else iso_to_ms(when)
        except (TypeError, ValueError, AttributeError):
            return self._bad("malformed", "ticker with an invalid time", frame)
        self.last_activity = time.monotonic()
        return self.quote(market, bid, bid_size, ask, ask_size, ts, received_ms, seq, frame)

    def _match(self, msg: dict, kind: str, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            product, tid, seq = msg["product_id"], msg["trade_id"], msg["sequence"]
            price, size, maker_side, when = msg["price"], msg["size"], msg["side"], msg["time"]
            taker = _TAKER[maker_side]
            ts = iso_to_ms(when)
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._bad("malformed", f"{kind} without a valid field", frame)
        if product not in self.by_raw:
            return self._bad("unknown", f"{kind} for an unsubscribed product", frame)
        if (type(tid) is not int or tid < 0 or type(seq) is not int or not is_decimal(price)
                or not is_decimal(size) or not price.strip("0.") or not size.strip("0.")):
            return self._bad("malformed", f"{kind} with an invalid field", frame)
        self.last_activity = time.monotonic()
        last = self.sequence.get(product)
        if last is not None:
            if seq > last + 1:
                self.stats.gaps += 1
                self.stats.missed += seq - last - 1
                self.warn.warning(f"gap:{product}", "sequence gap on %s: %d -> %d (%d messages missed; gaps=%d)",
                                  product, last, seq, seq - last - 1, self.stats.gaps)
            elif seq <= last and kind == "match":
                # `last_match` after a reconnect is an expected replay; a late `match` is not.
                self.stats.out_of_order += 1
                self.warn.warning(f"order:{product}", "out-of-order match on %s: sequence %d after %d",
                                  product, seq, last)
        if last is None or seq > last:
            self.sequence[product] = seq
        if not self.dedupe.is_new(product, tid):  # a replayed last_match, an overlap
            self.stats.duplicates += 1
            return ()
        self.stats.trades += 1
        return (Trade("coinbase", product, product, str(tid), price, size, taker, ts, received_ms),)
