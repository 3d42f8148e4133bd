"""Producer configuration: parsed once from the environment (plus an optional .env file).

Every invalid value raises ConfigError with one line naming the variable, which the CLI
prints before exiting non-zero.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptomon.kafka_settings import ConfigError, KafkaSettings

from .schema import is_symbol

EXCHANGES = ("binance", "coinbase", "mock")

# Binance writes symbols without a separator; these quote assets (longest first) split them.
BINANCE_QUOTES = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP",
    "TRY", "BRL", "JPY", "AUD", "XRP", "TRX", "DOGE", "PLN", "RON", "ZAR", "UAH", "ARS", "MXN",
    "COP", "IDR", "CZK",
)
_BINANCE_RAW = re.compile(r"[A-Z0-9]{2,20}")
_EXCHANGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def binance_symbol(text: str) -> tuple[str, str]:
    """`BTCUSDT`, `btcusdt`, `BTC-USDT` or `BTC/USDT` -> ("BTCUSDT", "BTC-USDT")."""
    text = text.strip().upper()
    for sep in ("-", "/"):
        if sep in text:
            base, _, quote = text.partition(sep)
            norm = f"{base}-{quote}"
            if not is_symbol(norm):
                raise ConfigError(f"BINANCE_SYMBOLS: {text!r} is not a symbol like BTCUSDT or BTC-USDT")
            return base + quote, norm
    if _BINANCE_RAW.fullmatch(text):
        for quote in BINANCE_QUOTES:
            if text.endswith(quote) and len(text) > len(quote):
                return text, f"{text[: -len(quote)]}-{quote}"
    raise ConfigError(
        f"BINANCE_SYMBOLS: {text!r} has no known quote asset; write it as BASE-QUOTE (e.g. BTC-USDT)"
    )


def coinbase_product(text: str) -> str:
    text = text.strip().upper()
    if not is_symbol(text):
        raise ConfigError(f"COINBASE_PRODUCTS: {text!r} is not a product id like BTC-USD")
    return text


def ws_url(name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"{name}: {value!r} is not a ws:// or wss:// URL")
    del port
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` and matching quotes allowed."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{number}: not a KEY=VALUE line")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def load_env(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """The process environment over a .env file (CRYPTOMON_ENV_FILE, else ./.env): real env wins."""
    environ = dict(os.environ if environ is None else environ)
    explicit = environ.get("CRYPTOMON_ENV_FILE", "").strip()
    path = Path(explicit) if explicit else (cwd or Path.cwd()) / ".env"
    if explicit and not path.is_file():
        raise ConfigError(f"CRYPTOMON_ENV_FILE: {explicit!r} is not a file")
    file_env = read_env_file(path) if path.is_file() else {}
    return {**file_env, **environ}


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0,
            allow_zero: bool = False) -> float:
    raw = _get(env, name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}: {raw!r} is out of range")
    return value


def _list(env: Mapping[str, str], name: str, default: str) -> list[str]:
    items = [s.strip() for s in _get(env, name, default).split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{name}: empty list")
    return items


@dataclass(frozen=True)
class MockConfig:
    exchanges: tuple[str, ...] = ("binance", "coinbase")
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")
    rate: float = 5.0            # trades per second per exchange and symbol
    seed: int = 42
    diverge_bps: float = 0.0     # price offset of every exchange after the first, in basis points
    diverge_period_s: float = 0.0  # 0 = always diverged; else alternate on/off every period


@dataclass(frozen=True)
class ProducerConfig:
    exchange: str
    kafka: KafkaSettings
    binance_symbols: dict[str, str] = field(default_factory=dict)  # raw -> normalized
    binance_url: str = "wss://stream.binance.com:9443/stream"
    binance_stream: str = "trade"
    coinbase_products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    coinbase_url: str = "wss://ws-feed.exchange.coinbase.com"
    stale_after_s: float = 30.0
    max_connection_s: float = 86_100.0   # Binance cuts at 24 h: leave 5 minutes earlier
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    ack_timeout_s: float = 10.0
    stats_interval_s: float = 60.0
    mock: MockConfig = field(default_factory=MockConfig)

    @classmethod
    def from_env(cls, exchange: str, env: Mapping[str, str]) -> ProducerConfig:
        if exchange not in EXCHANGES:
            raise ConfigError(f"exchange {exchange!r} is not one of {', '.join(EXCHANGES)}")
        kafka = KafkaSettings.from_env(env)
        symbols = dict(binance_symbol(s) for s in _list(env, "BINANCE_SYMBOLS", "BTCUSDT,ETHUSDT,BNBUSDT"))
        stream = _get(env, "BINANCE_STREAM_TYPE", "trade")
        if stream not in ("trade", "aggTrade"):
            raise ConfigError(f"BINANCE_STREAM_TYPE: {stream!r} is not trade or aggTrade")
        products = tuple(dict.fromkeys(coinbase_product(p) for p in _list(env, "COINBASE_PRODUCTS", "BTC-USD,ETH-USD")))
        default_stale = {"binance": 30.0, "coinbase": 10.0, "mock": 30.0}[exchange]
        mock_exchanges = tuple(_list(env, "MOCK_EXCHANGES", "binance,coinbase"))
        for name in mock_exchanges:
            if not _EXCHANGE_NAME.fullmatch(name):
                raise ConfigError(f"MOCK_EXCHANGES: {name!r} is not a lowercase name")
        mock_symbols = tuple(s.upper() for s in _list(env, "MOCK_SYMBOLS", "BTC-USDT,ETH-USDT"))
        for sym in mock_symbols:
            if not is_symbol(sym):
                raise ConfigError(f"MOCK_SYMBOLS: {sym!r} is not BASE-QUOTE")
        seed_raw = _get(env, "MOCK_SEED", "42")
        if not seed_raw.lstrip("-").isdigit():
            raise ConfigError(f"MOCK_SEED: {seed_raw!r} is not an integer")
        mock = MockConfig(
            exchanges=mock_exchanges,
            symbols=mock_symbols,
            rate=_number(env, "MOCK_RATE", 5.0),
            seed=int(seed_raw),
            diverge_bps=_number(env, "MOCK_DIVERGE_BPS", 0.0, allow_zero=True),
            diverge_period_s=_number(env, "MOCK_DIVERGE_PERIOD_S", 0.0, allow_zero=True),
        )
        backoff_initial = _number(env, "PRODUCER_BACKOFF_INITIAL_S", 0.5)
        backoff_max = _number(env, "PRODUCER_BACKOFF_MAX_S", 30.0)
        if backoff_max < backoff_initial:
            raise ConfigError("PRODUCER_BACKOFF_MAX_S: smaller than PRODUCER_BACKOFF_INITIAL_S")
        return cls(
            exchange=exchange,
            kafka=kafka,
            binance_symbols=symbols,
            binance_url=ws_url("BINANCE_STREAM_URL", _get(env, "BINANCE_STREAM_URL", cls.binance_url)),
            binance_stream=stream,
            coinbase_products=products,
            coinbase_url=ws_url("COINBASE_STREAM_URL", _get(env, "COINBASE_STREAM_URL", cls.coinbase_url)),
            stale_after_s=_number(env, "PRODUCER_STALE_AFTER_S", default_stale),
            max_connection_s=_number(env, "PRODUCER_MAX_CONNECTION_S", cls.max_connection_s),
            backoff_initial_s=backoff_initial,
            backoff_max_s=backoff_max,
            ack_timeout_s=_number(env, "PRODUCER_ACK_TIMEOUT_S", cls.ack_timeout_s),
            stats_interval_s=_number(env, "PRODUCER_STATS_INTERVAL_S", cls.stats_interval_s),
            mock=mock,
        )
