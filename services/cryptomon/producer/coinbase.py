"""Coinbase Exchange market data feed, `matches` + `heartbeat` channels.

Why `matches` (Exchange) rather than Advanced Trade `market_trades`: it is public without
keys; `side` is documented without ambiguity (the maker's side, so the taker's is the
opposite); every message carries a per-product `sequence`, so dropped messages show up as
gaps; trade ids are integers that rise per product, which makes dedupe across reconnects
exact; and the `heartbeat` channel (every second per product) feeds the staleness watchdog.
Advanced Trade's `sequence_num` is per connection, its first `snapshot` replays a batch of
trades, and the meaning of its `side` is disputed between docs and client libraries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from .base import WebSocketAdapter
from .config import ProducerConfig
from .fastjson import loads as _loads
from .schema import Trade, is_decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TAKER = {"buy": "sell", "sell": "buy"}  # Coinbase `side` is the maker's side


def iso_to_ms(text: str) -> int:
    """'2014-11-07T08:19:27.028459Z' -> epoch ms, exact (no float), any fraction length."""
    if not text.endswith("Z"):
        raise ValueError(f"time {text!r} is not UTC ISO 8601")
    main, _, frac = text[:-1].partition(".")
    dt = datetime.fromisoformat(main).replace(tzinfo=UTC)
    if frac and not frac.isdigit():
        raise ValueError(f"time {text!r} has a bad fraction")
    seconds = (dt - _EPOCH) // _ONE_SECOND
    return seconds * 1000 + int((frac + "000")[:3])


_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - _EPOCH


class CoinbaseAdapter(WebSocketAdapter):
    exchange = "coinbase"

    def __init__(self, config: ProducerConfig) -> None:
        super().__init__(config)
        self.products = set(config.coinbase_products)
        self.sequence: dict[str, int] = {}

    def markets(self) -> list[str]:
        return sorted(self.products)

    def url(self) -> str:
        return self.config.coinbase_url

    def subscribe_messages(self) -> list[str]:
        self.pending_acks["subscribe"] = time.monotonic() + self.config.ack_timeout_s
        return [json.dumps({"type": "subscribe", "product_ids": sorted(self.products),
                            "channels": ["matches", "heartbeat"]})]

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
        if kind == "heartbeat":
            if msg.get("product_id") in self.products:
                self.last_activity = time.monotonic()
                return ()
            return self._bad("unknown", "heartbeat for an unsubscribed product", frame)
        if kind == "subscriptions":
            if self.pending_acks.pop("subscribe", None) is not None:
                self.log.info("subscribed: %.300s", json.dumps(msg.get("channels")))
                self.last_activity = time.monotonic()
            return ()
        if kind == "error":
            self.stats.errors += 1
            self.warn.warning("error", "error message: %.200s (reason: %.200s)",
                              str(msg.get("message")), str(msg.get("reason")))
            return ()
        return self._bad("unknown", f"unknown message type {kind!r}", frame)

    def _match(self, msg: dict, kind: str, frame: str | bytes, received_ms: int) -> Iterable[Trade]:
        try:
            product, tid, seq = msg["product_id"], msg["trade_id"], msg["sequence"]
            price, size, maker_side, when = msg["price"], msg["size"], msg["side"], msg["time"]
            taker = _TAKER[maker_side]
            ts = iso_to_ms(when)
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._bad("malformed", f"{kind} without a valid field", frame)
        if product not in self.products:
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
        if not self.dedupe.is_new(product, tid):
            self.stats.duplicates += 1
            return ()
        self.stats.trades += 1
        return (Trade("coinbase", product, product, str(tid), price, size, taker, ts, received_ms),)
