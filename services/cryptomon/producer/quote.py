"""The normalized top-of-book quote (issue 14): one schema for every exchange, serialized like
trades as one JSON object, keyed `exchange:symbol`.

Prices and sizes stay the exchange's own decimal strings, checked to be plain positive decimals
and passed through unchanged (see schema.py). `exchange_ts` is null where the venue's channel
carries no time (Binance `bookTicker`), `sequence` null where it carries no update id (Kraken
`ticker`, OKX `tickers`).

Two rules every emitted quote obeys, enforced here for all venues:
- the book is not crossed or locked: bid < ask, compared exactly (`crossed`);
- a quote is never older than the one emitted before it for the same market (`QuoteOrder`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from .schema import SchemaError, check_exchange_name, is_symbol, json_record, positive_decimal, safe_token

# A plain decimal (schema._DECIMAL) with at least one non-zero digit: positive, in one match.
POSITIVE_DECIMAL = re.compile(r"(?=[0-9.]*[1-9])[0-9]+(?:\.[0-9]+)?")

QUOTE_FIELDS = (
    "exchange", "symbol", "raw_symbol", "bid", "bid_size", "ask", "ask_size",
    "exchange_ts", "received_ts", "sequence",
)


def crossed(bid: str, ask: str) -> bool:
    """bid >= ask, exactly, for two validated decimal strings.

    Floats only order the two values, they never stand for one: conversion of a decimal string
    to float is correctly rounded, hence monotonic, so unequal floats order the decimals the
    same way. Only when both round to the same float (equal, or differing past ~16 digits)
    does Decimal decide.
    """
    b, a = float(bid), float(ask)
    if b != a:
        return b > a
    return Decimal(bid) >= Decimal(ask)


@dataclass(slots=True)
class Quote:
    exchange: str            # lowercase exchange name, e.g. "binance"
    symbol: str              # normalized BASE-QUOTE, e.g. "BTC-USDT"
    raw_symbol: str          # the exchange's own symbol, e.g. "BTCUSDT"
    bid: str                 # best bid price, exact decimal string
    bid_size: str            # quantity at the best bid (base asset)
    ask: str                 # best ask price
    ask_size: str            # quantity at the best ask (base asset)
    exchange_ts: int | None  # the venue's time of this book state, ms; None where it sends none
    received_ts: int         # when this process received the frame, ms
    sequence: int | None     # the venue's update id / sequence, where it sends one

    def key(self) -> bytes:
        """Kafka key: one market per key, so each market's quotes stay in order in a partition."""
        return f"{self.exchange}:{self.symbol}".encode()

    def to_json(self) -> str:
        # As Trade.to_json: every string field is validated to need no escaping.
        ets = "null" if self.exchange_ts is None else self.exchange_ts
        seq = "null" if self.sequence is None else self.sequence
        return (
            f'{{"exchange":"{self.exchange}","symbol":"{self.symbol}","raw_symbol":"{self.raw_symbol}",'
            f'"bid":"{self.bid}","bid_size":"{self.bid_size}","ask":"{self.ask}","ask_size":"{self.ask_size}",'
            f'"exchange_ts":{ets},"received_ts":{self.received_ts},"sequence":{seq}}}'
        )

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in QUOTE_FIELDS}

    @classmethod
    def from_json(cls, text: str | bytes) -> Quote:
        """Parse and validate a normalized quote (tests and consumers)."""
        quote = cls(**json_record(text, QUOTE_FIELDS))
        quote.validate()
        return quote

    def validate(self) -> None:
        check_exchange_name(self.exchange)
        if not is_symbol(self.symbol):
            raise SchemaError(f"symbol {self.symbol!r} is not BASE-QUOTE")
        safe_token(self.raw_symbol, "raw_symbol")
        for name in ("bid", "bid_size", "ask", "ask_size"):
            positive_decimal(getattr(self, name), name)
        if crossed(self.bid, self.ask):
            raise SchemaError(f"bid {self.bid} is not below ask {self.ask} (crossed or locked book)")
        if type(self.received_ts) is not int or self.received_ts <= 0:
            raise SchemaError(f"received_ts {self.received_ts!r} is not a positive integer")
        if self.exchange_ts is not None and (type(self.exchange_ts) is not int or self.exchange_ts <= 0):
            raise SchemaError(f"exchange_ts {self.exchange_ts!r} is not a positive integer or null")
        if self.sequence is not None and (type(self.sequence) is not int or self.sequence < 0):
            raise SchemaError(f"sequence {self.sequence!r} is not a non-negative integer or null")


# QuoteOrder.check verdicts
ACCEPT, OLDER, RESEQUENCED = 0, 1, 2


class QuoteOrder:
    """Per market, the (sequence, exchange_ts) of the last quote let through, so no quote older
    than it is emitted.

    Older means: a lower sequence, or the same sequence (or none) with an earlier exchange_ts.
    The same sequence and time again is not older: Bybit resends an unchanged book every 3 s and
    OKX after 60 s idle with the same update id, and such a resend tells the consumer the quote
    still stands.

    Venues renumber: Bybit's `u` restarts at 1 after a service restart, OKX's `seqId` can reset
    after maintenance. A lower sequence with a strictly later exchange_ts is such a renumbering
    (accepted: RESEQUENCED). Without a time to tell (Binance bookTicker), and against one bogus
    far-ahead sequence or timestamp, the mark must not block a market forever: after
    `confirmations` quotes in a row were dropped as older, the venue is taken to have moved
    its numbering (or clock) and the last of them is accepted (RESEQUENCED). A stray late
    message is dropped alone; the quote after it resets the count.

    Shared by a Feed's connections like the deduper: a market lives on one connection at a time.
    """

    def __init__(self, confirmations: int = 3) -> None:
        self.marks: dict[str, tuple[int | None, int | None]] = {}
        self.behind: dict[str, int] = {}  # market -> quotes dropped as older in a row
        self.confirmations = confirmations

    def check(self, market: str, sequence: int | None, exchange_ts: int | None) -> int:
        mark = self.marks.get(market)
        if mark is None:
            self.marks[market] = (sequence, exchange_ts)
            return ACCEPT
        last_seq, last_ts = mark
        verdict = ACCEPT
        if sequence is not None and last_seq is not None and sequence != last_seq:
            if sequence < last_seq:
                renumbered = exchange_ts is not None and last_ts is not None and exchange_ts > last_ts
                verdict = RESEQUENCED if renumbered else OLDER
        elif exchange_ts is not None and last_ts is not None and exchange_ts < last_ts:
            verdict = OLDER
        if verdict == OLDER:
            behind = self.behind.get(market, 0) + 1
            if behind < self.confirmations:
                self.behind[market] = behind
                return OLDER
            verdict = RESEQUENCED
        if self.behind:
            self.behind.pop(market, None)
        if verdict == RESEQUENCED:
            self.marks[market] = (sequence, exchange_ts)
        else:
            # A venue that sends no time (or no sequence) on one message keeps the last one known.
            self.marks[market] = (last_seq if sequence is None else sequence,
                                  last_ts if exchange_ts is None else exchange_ts)
        return verdict
