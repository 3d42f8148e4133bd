"""The normalized trade: one schema for every exchange, serialized as one JSON object.

Prices and sizes stay the exchange's own decimal strings (never floats): they are checked to be
plain non-negative decimals and passed through unchanged, trailing zeros included, so nothing
that could change a value is ever rewritten. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

SCHEMA_FIELDS = (
    "exchange", "symbol", "raw_symbol", "trade_id", "price", "size", "side",
    "exchange_ts", "received_ts",
)
SIDES = ("buy", "sell")

# Plain decimal only: no sign, exponent, NaN/Infinity, spaces or leading dot.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Symbols and trade ids are written into JSON without escaping, so only safe characters pass.
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
_TOKEN = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")  # "/": Kraken's BTC/USD


class SchemaError(ValueError):
    """A field does not fit the normalized schema; the frame carrying it is dropped."""


def is_decimal(value: object) -> bool:
    return type(value) is str and _DECIMAL.fullmatch(value) is not None


def positive_decimal(value: object, name: str) -> str:
    """Return the exchange's decimal string unchanged, or raise SchemaError."""
    if type(value) is not str or _DECIMAL.fullmatch(value) is None:
        raise SchemaError(f"{name} {value!r} is not a decimal string")
    if not value.strip("0.") :
        raise SchemaError(f"{name} {value!r} is zero")
    return value


def safe_token(value: object, name: str) -> str:
    """Trade ids and raw symbols as strings that need no JSON escaping."""
    text = str(value) if type(value) is int else value
    if type(text) is not str or _TOKEN.fullmatch(text) is None:
        raise SchemaError(f"{name} {value!r} is not a plain token")
    return text


def number_text(value: object) -> str | None:
    """A price or size sent as a JSON number (Kraken v2), parsed with parse_float=str so its
    exact text survives, -> a plain positive decimal string; None if it is not one. An
    exponent (`1e-05`) is expanded exactly through Decimal, never through a float."""
    if type(value) is int:
        text = str(value)
    elif type(value) is str:
        text = value
    else:
        return None
    if _DECIMAL.fullmatch(text) is None:
        if "e" not in text and "E" not in text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        if not number.is_finite() or number <= 0:
            return None
        text = format(number, "f")
        if _DECIMAL.fullmatch(text) is None:
            return None
    return text if text.strip("0.") else None


def json_record(text: str | bytes, fields: tuple[str, ...]) -> dict[str, object]:
    """A JSON object with exactly `fields` (a normalized trade or quote), else SchemaError."""
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != set(fields):
        raise SchemaError(f"fields {sorted(data) if isinstance(data, dict) else data!r} "
                          f"are not {sorted(fields)}")
    return data


def check_exchange_name(name: str) -> None:
    if not name or not name.replace("-", "").isalnum() or not name.islower():
        raise SchemaError(f"exchange {name!r} is not a lowercase name")


def is_symbol(value: str) -> bool:
    return _SYMBOL.fullmatch(value) is not None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


@dataclass(slots=True)
class Trade:
    exchange: str          # lowercase exchange name, e.g. "binance"
    symbol: str            # normalized BASE-QUOTE, e.g. "BTC-USDT"
    raw_symbol: str        # the exchange's own symbol, e.g. "BTCUSDT"
    trade_id: str          # the exchange's trade id, as a string (ids are not all integers)
    price: str             # exact decimal string from the exchange
    size: str              # exact decimal string from the exchange (base asset quantity)
    side: str              # TAKER side: "buy" or "sell"
    exchange_ts: int  # trade time at the exchange
    received_ts: int   # when this process received the frame

    def key(self) -> bytes:
        """Kafka key: one market per key, so each market keeps its order inside a partition."""
        return f"{self.exchange}:{self.symbol}".encode()

    def to_json(self) -> str:
        # Every string field was validated to need no escaping, so formatting is exact JSON
        # and several times faster than json.dumps on the hot path.
        return (
            f'{{"exchange":"{self.exchange}","symbol":"{self.symbol}",'
            f'"raw_symbol":"{self.raw_symbol}","trade_id":"{self.trade_id}",'
            f'"price":"{self.price}","size":"{self.size}","side":"{self.side}",'
            f'"exchange_ts":{self.exchange_ts},"received_ts":{self.received_ts}}}'
        )

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in SCHEMA_FIELDS}

    @classmethod
    def from_json(cls, text: str | bytes) -> Trade:
        """Parse and validate a normalized trade (used by tests and consumers)."""
        trade = cls(**json_record(text, SCHEMA_FIELDS))
        trade.validate()
        return trade

    def validate(self) -> None:
        check_exchange_name(self.exchange)
        if not is_symbol(self.symbol):
            raise SchemaError(f"symbol {self.symbol!r} is not BASE-QUOTE")
        safe_token(self.raw_symbol, "raw_symbol")
        safe_token(self.trade_id, "trade_id")
        positive_decimal(self.price, "price")
        positive_decimal(self.size, "size")
        if self.side not in SIDES:
            raise SchemaError(f"side {self.side!r} is not buy or sell")
        for name in ("exchange_ts", "received_ts"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise SchemaError(f"{name} {value!r} is not a positive integer")
