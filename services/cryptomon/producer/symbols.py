"""Markets and symbol sets: explicit lists (`BTCUSDT,ETHUSDT`) and whole-market patterns
(`*USDT`, `*-USD`) resolved against the exchange's public REST symbol list, with a cache file
so a producer can start when that list cannot be fetched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from cryptomon.kafka_settings import ConfigError

from .schema import is_symbol

log = logging.getLogger("cryptomon.producer.symbols")

# Exchanges that write symbols without a separator (Binance, Bybit): quote assets, longest
# first, split them when no REST listing says which part is the base.
CONCATENATED_QUOTES = (
    "FDUSD", "USDT", "USDC", "USDE", "BUSD", "TUSD", "USDP", "USD1", "DAI", "BTC", "ETH", "BNB",
    "EUR", "GBP", "TRY", "BRL", "JPY", "AUD", "XRP", "TRX", "DOGE", "PLN", "RON", "ZAR", "UAH",
    "ARS", "MXN", "COP", "IDR", "CZK", "SOL",
)
_RAW = re.compile(r"[A-Z0-9]{2,40}")
_PATTERN = re.compile(r"[A-Z0-9*?/-]{1,40}")


@dataclass(frozen=True, slots=True, order=True)
class Market:
    raw: str      # the exchange's own symbol on the wire: BTCUSDT, BTC/USD, BTC-USDT
    symbol: str   # normalized BASE-QUOTE

    @classmethod
    def of(cls, raw: str, base: str, quote: str) -> Market:
        return cls(raw, f"{base.upper()}-{quote.upper()}")


def split_concatenated(text: str) -> Market:
    """`BTCUSDT`, `btcusdt`, `BTC-USDT` or `BTC/USDT` -> Market("BTCUSDT", "BTC-USDT")."""
    text = text.strip().upper()
    for sep in ("-", "/"):
        if sep in text:
            base, _, quote = text.partition(sep)
            market = Market.of(base + quote, base, quote)
            if not is_symbol(market.symbol):
                raise ValueError(f"{text!r} is not a symbol like BTCUSDT or BTC-USDT")
            return market
    if _RAW.fullmatch(text):
        for quote in CONCATENATED_QUOTES:
            if text.endswith(quote) and len(text) > len(quote):
                return Market.of(text, text[: -len(quote)], quote)
    raise ValueError(f"{text!r} has no known quote asset; write it as BASE-QUOTE (e.g. BTC-USDT)")


def split_separated(text: str, sep: str, aliases: Mapping[str, str] | None = None) -> Market:
    """`BTC-USD` / `btc/usd` style (the separator on the wire is `sep`)."""
    text = text.strip().upper()
    for s in ("-", "/"):
        if s in text:
            base, _, quote = text.partition(s)
            break
    else:
        raise ValueError(f"{text!r} is not a symbol like BTC{sep}USD")
    if aliases:
        base, quote = aliases.get(base, base), aliases.get(quote, quote)
    market = Market.of(f"{base}{sep}{quote}", base, quote)
    if not is_symbol(market.symbol):
        raise ValueError(f"{text!r} is not a symbol like BTC{sep}USD")
    return market


@dataclass(frozen=True)
class SymbolSet:
    """What an operator asked for: explicit markets plus patterns (resolved later)."""

    variable: str
    markets: tuple[Market, ...]
    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, variable: str, value: str | None, default: str,
              parse_one: Callable[[str], Market]) -> SymbolSet:
        """`value` None = the variable is unset: the default applies. Set but empty is an
        error (issue 15, defect 4): an operator who empties the list did not mean "default"."""
        if value is None:
            value = default
        elif not value.strip():
            raise ConfigError(f"{variable}: set but empty; list symbols (e.g. {default}) "
                              "or unset the variable for that default")
        items = [s.strip() for s in value.split(",")]
        if not any(items):
            raise ConfigError(f"{variable}: {value!r} lists no symbols")
        markets: dict[str, Market] = {}
        patterns: list[str] = []
        for item in items:
            if not item:
                continue
            if "*" in item or "?" in item:
                pattern = item.upper()
                if not _PATTERN.fullmatch(pattern):
                    raise ConfigError(f"{variable}: pattern {item!r} may hold only letters, digits, "
                                      "'-', '/', '*' and '?'")
                patterns.append(pattern)
                continue
            try:
                market = parse_one(item)
            except ValueError as exc:
                raise ConfigError(f"{variable}: {exc}") from None
            markets.setdefault(market.raw, market)
        return cls(variable, tuple(markets.values()), tuple(dict.fromkeys(patterns)))

    def resolve(self, listing: Iterable[Market] | None) -> tuple[list[Market], list[str]]:
        """Explicit markets plus every listed market a pattern matches; and the patterns that
        matched nothing. Explicit markets found in the listing take its base/quote split."""
        listed = {m.raw: m for m in listing or ()}
        out: dict[str, Market] = {m.raw: listed.get(m.raw, m) for m in self.markets}
        empty = []
        for pattern in self.patterns:
            hits = [m for m in listed.values() if matches(pattern, m)]
            if not hits:
                empty.append(pattern)
            for m in hits:
                out.setdefault(m.raw, m)
        return sorted(out.values(), key=lambda m: m.symbol), empty

    def describe(self) -> str:
        return ",".join([m.raw for m in self.markets] + list(self.patterns))


def matches(pattern: str, market: Market) -> bool:
    """A pattern with a separator matches the normalized BASE-QUOTE (`*-USD`, `BTC/*`); one
    without matches base and quote written together (`*USDT`), whatever the exchange's own
    separator is."""
    if "-" in pattern or "/" in pattern:
        return fnmatchcase(market.symbol, pattern.replace("/", "-"))
    return fnmatchcase(market.symbol.replace("-", ""), pattern)


class ListingError(Exception):
    """The exchange's symbol list could not be fetched or read (one line)."""


def normalized_listing(entries: Iterable[tuple[str, str, str]], exchange: str) -> list[Market]:
    """(raw, base, quote) of trading markets -> Markets; entries that cannot be normalized are
    skipped with one log line (a new listing with odd characters must not stop the rest)."""
    out, skipped = [], []
    for raw, base, quote in entries:
        market = Market.of(raw, base, quote)
        if is_symbol(market.symbol) and re.fullmatch(r"[A-Za-z0-9/_.:-]{1,64}", raw):
            out.append(market)
        else:
            skipped.append(raw)
    if skipped:
        # Once per distinct set: the daily refresh must not repeat the same line forever.
        key = (exchange, tuple(skipped))
        (log.warning if key not in _SKIPPED_SEEN else log.debug)(
            "%s symbol list: %d market(s) skipped, not normalizable to BASE-QUOTE: %.200s",
            exchange, len(skipped), ", ".join(skipped))
        _SKIPPED_SEEN.add(key)
    return out


_SKIPPED_SEEN: set[tuple[str, tuple[str, ...]]] = set()


def fetch_listing(url: str, parse: Callable[[Any], list[Market]], timeout: float = 10.0) -> list[Market]:
    import requests  # only whole-market symbol sets need it

    try:
        resp = requests.get(url, timeout=timeout, headers={"User-Agent": "cryptomon-producer"})
    except requests.RequestException as exc:
        raise ListingError(f"GET {url} failed: {exc.__class__.__name__}: {exc}") from None
    if resp.status_code != 200:
        raise ListingError(f"GET {url} answered HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        payload = resp.json()
    except ValueError:
        raise ListingError(f"GET {url} did not return JSON: {resp.text[:200]!r}") from None
    try:
        markets = parse(payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ListingError(f"GET {url}: unexpected response shape ({exc.__class__.__name__}: {exc})") from None
    if not markets:
        raise ListingError(f"GET {url}: no market is trading")
    return markets


def save_cache(path: Path, exchange: str, markets: list[Market]) -> None:
    """Atomically: a crash mid-write must not leave a half file for the next start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"exchange": exchange, "fetched_at": int(time.time()),
                                   "markets": [[m.raw, m.symbol] for m in markets]}))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("%s: cannot write the symbol cache %s: %s", exchange, path, exc)


def load_cache(path: Path, exchange: str) -> tuple[list[Market], int] | None:
    try:
        data = json.loads(path.read_text())
        if data.get("exchange") != exchange:
            raise ValueError(f"it is for {data.get('exchange')!r}")
        markets = [Market(str(raw), str(sym)) for raw, sym in data["markets"]]
        if not markets or not all(is_symbol(m.symbol) for m in markets):
            raise ValueError("no valid markets")
        return markets, int(data.get("fetched_at", 0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        log.warning("%s: ignoring the symbol cache %s: %s", exchange, path, exc)
        return None
