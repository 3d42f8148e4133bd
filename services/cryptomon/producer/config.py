"""Producer configuration: parsed once from the environment (plus an optional .env file) into
one typed object.

The generic knobs (Kafka, watchdog, backoff, sharding, the symbol cache) are read here; each
exchange's own variables (symbols, stream URL, REST URL, extras) are read by its adapter class
(`settings_from_env`), found through the registry. Every invalid value raises ConfigError with
one line naming the variable, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptomon.cli_args import check_file_location
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.metrics import MetricsSettings

from .schema import is_symbol
from .symbols import SymbolSet

if TYPE_CHECKING:
    from .base import WebSocketAdapter

_EXCHANGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def ws_url(name: str, value: str) -> str:
    from .transport import check_url

    if not value.startswith(("ws://", "wss://")):
        raise ConfigError(f"{name}: {value!r} is not a ws:// or wss:// URL")
    try:
        check_url(value)
        _check_port(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a valid URL ({exc})") from None
    return value


def _check_port(url: str) -> None:
    """urlsplit rejects ports above 65535; port 0 would silently become the scheme's default."""
    from urllib.parse import urlsplit

    if urlsplit(url).port == 0:
        raise ValueError("port 0")


def http_url(name: str, value: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        _check_port(value)  # also raises ValueError on a port that is not 1-65535
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: {value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` and matching quotes allowed."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
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
    try:
        file_env = read_env_file(path) if path.is_file() else {}
    except ConfigError as exc:
        if explicit:
            raise ConfigError(f"CRYPTOMON_ENV_FILE: {exc}") from None
        raise
    return {**file_env, **environ}


# --- value helpers (also used by the adapters' settings) ----------------------------------

def get(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0,
           allow_zero: bool = False, maximum: float = math.inf) -> float:
    raw = get(env, name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum or value > maximum or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}: {raw!r} is out of range")
    return value


def integer(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int = 2**31) -> int:
    raw = get(env, name, "")
    if not raw:
        return default
    if not re.fullmatch(r"-?[0-9]+", raw):
        raise ConfigError(f"{name}: {raw!r} is not an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}: {raw!r} is out of range ({minimum}..{maximum})")
    return value


def listed(env: Mapping[str, str], name: str, default: str) -> list[str]:
    """A comma-separated list; set but empty is an error, unset means the default."""
    value = env.get(name)
    if value is not None and not value.strip():
        raise ConfigError(f"{name}: set but empty; unset it for the default ({default})")
    items = [s.strip() for s in (value if value is not None else default).split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{name}: {value!r} lists nothing")
    return items


@dataclass(frozen=True)
class FeedSettings:
    """One exchange feed's settings, read by its adapter class from its own variables."""

    symbols: SymbolSet
    stream_url: str
    rest_url: str
    streams_per_connection: int
    symbols_cache: Path | None = None
    refresh_s: float = 86_400.0

    @classmethod
    def fields_from_env(cls, spec: type[WebSocketAdapter], env: Mapping[str, str]) -> dict[str, Any]:
        limits = spec.limits
        per_conn = integer(env, "PRODUCER_STREAMS_PER_CONNECTION", limits.default_streams_per_connection,
                           1, limits.streams_per_connection)
        cache_raw = env.get("PRODUCER_SYMBOLS_CACHE")
        if cache_raw is not None and not cache_raw.strip():
            raise ConfigError("PRODUCER_SYMBOLS_CACHE: set but empty; unset it for the default "
                              "($STATE_DIRECTORY/symbols-<exchange>.json)")
        cache_var = "PRODUCER_SYMBOLS_CACHE"
        if cache_raw:
            cache: Path | None = Path(cache_raw.strip())
        elif env.get("STATE_DIRECTORY", "").strip():
            # systemd's StateDirectory= (may list several, colon-separated): the first one.
            cache = Path(env["STATE_DIRECTORY"].split(":")[0].strip()) / f"symbols-{spec.exchange}.json"
            cache_var = "STATE_DIRECTORY"
        else:
            cache = None
        if cache is not None:
            check_file_location(cache_var, cache)
        return {
            "symbols": SymbolSet.parse(spec.symbols_var, env.get(spec.symbols_var), spec.default_symbols,
                                       spec.parse_symbol),
            "stream_url": ws_url(spec.url_var, get(env, spec.url_var, spec.default_url)),
            "rest_url": http_url(spec.rest_var, get(env, spec.rest_var, spec.default_rest_url)),
            "streams_per_connection": per_conn,
            "symbols_cache": cache,
            "refresh_s": number(env, "PRODUCER_SYMBOLS_REFRESH_S", 86_400.0, minimum=1.0),
        }

    @classmethod
    def from_env(cls, spec: type[WebSocketAdapter], env: Mapping[str, str]) -> FeedSettings:
        return cls(**cls.fields_from_env(spec, env))


@dataclass(frozen=True)
class MockConfig:
    exchanges: tuple[str, ...] = ("binance", "coinbase")
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")
    rate: float = 5.0            # trades per second per exchange and symbol
    seed: int = 42
    diverge_bps: float = 0.0     # price offset of every exchange after the first, in basis points
    diverge_period_s: float = 0.0  # 0 = always diverged; else alternate on/off every period

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MockConfig:
        from .registry import exchange_names

        known = exchange_names(real_only=True)
        exchanges = tuple(dict.fromkeys(listed(env, "MOCK_EXCHANGES", "binance,coinbase")))
        for name in exchanges:
            if not _EXCHANGE_NAME.fullmatch(name):
                raise ConfigError(f"MOCK_EXCHANGES: {name!r} is not a lowercase name")
            if name not in known:
                raise ConfigError(f"MOCK_EXCHANGES: {name!r} is not a known exchange ({', '.join(known)})")
        symbols = tuple(dict.fromkeys(s.upper() for s in listed(env, "MOCK_SYMBOLS", "BTC-USDT,ETH-USDT")))
        for sym in symbols:
            if not is_symbol(sym):
                raise ConfigError(f"MOCK_SYMBOLS: {sym!r} is not BASE-QUOTE")
        return cls(
            exchanges=exchanges,
            symbols=symbols,
            rate=number(env, "MOCK_RATE", 5.0, maximum=1e6),
            seed=integer(env, "MOCK_SEED", 42, minimum=-(2**62), maximum=2**62),
            diverge_bps=number(env, "MOCK_DIVERGE_BPS", 0.0, allow_zero=True, maximum=10_000),
            diverge_period_s=number(env, "MOCK_DIVERGE_PERIOD_S", 0.0, allow_zero=True),
        )


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = get(env, name, "").lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}: {env[name].strip()!r} is not true or false")


def topic_name(env: Mapping[str, str], name: str, default: str) -> str:
    """A Kafka topic name, checked as KafkaSettings checks the other topics."""
    value = get(env, name, default)
    if not all(c.isalnum() or c in "._-" for c in value) or len(value) > 249 or value in (".", ".."):
        raise ConfigError(f"{name}: {value!r} is not a valid Kafka topic name")
    return value


@dataclass(frozen=True)
class QuoteSettings:
    """Top-of-book quotes (issue 14): off unless PRODUCER_QUOTES is true."""

    enabled: bool = False
    topic: str = "quotes.raw"

    @classmethod
    def from_env(cls, env: Mapping[str, str], trades_topic: str) -> QuoteSettings:
        enabled = boolean(env, "PRODUCER_QUOTES", False)
        topic = topic_name(env, "KAFKA_QUOTES_TOPIC", cls.topic)
        if topic == trades_topic:
            raise ConfigError(f"KAFKA_QUOTES_TOPIC: {topic!r} is the trades topic too; quotes need their own")
        return cls(enabled=enabled, topic=topic)

    def describe(self) -> str:
        return f"quotes to {self.topic}" if self.enabled else "quotes off"


@dataclass(frozen=True)
class ProducerConfig:
    exchange: str
    kafka: KafkaSettings
    # The adapter's own typed settings: FeedSettings (or a subclass) for an exchange feed,
    # MockConfig for the mock.
    settings: Any = None
    stale_after_s: float = 30.0
    max_connection_s: float = 86_100.0   # Binance cuts at 24 h: leave 5 minutes earlier
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    ack_timeout_s: float = 10.0
    stats_interval_s: float = 60.0
    metrics: MetricsSettings = MetricsSettings()  # METRICS_PORT / METRICS_ADDRESS
    quotes: QuoteSettings = QuoteSettings()       # PRODUCER_QUOTES / KAFKA_QUOTES_TOPIC

    @property
    def feed(self) -> FeedSettings:
        if not isinstance(self.settings, FeedSettings):
            raise TypeError(f"{self.exchange} is not an exchange feed")
        return self.settings

    @property
    def mock(self) -> MockConfig:
        if not isinstance(self.settings, MockConfig):
            raise TypeError(f"{self.exchange} is not the mock feed")
        return self.settings

    @classmethod
    def from_env(cls, exchange: str, env: Mapping[str, str]) -> ProducerConfig:
        from .registry import adapter_class, exchange_names

        if exchange not in exchange_names():
            raise ConfigError(f"exchange {exchange!r} is not one of {', '.join(exchange_names())}")
        adapter = adapter_class(exchange)
        kafka = KafkaSettings.from_env(env)
        settings = adapter.settings_from_env(env)
        backoff_initial = number(env, "PRODUCER_BACKOFF_INITIAL_S", 0.5)
        backoff_max = number(env, "PRODUCER_BACKOFF_MAX_S", 30.0)
        if backoff_max < backoff_initial:
            raise ConfigError("PRODUCER_BACKOFF_MAX_S: smaller than PRODUCER_BACKOFF_INITIAL_S")
        return cls(
            exchange=exchange,
            kafka=kafka,
            settings=settings,
            stale_after_s=number(env, "PRODUCER_STALE_AFTER_S", adapter.default_stale_after_s),
            max_connection_s=number(env, "PRODUCER_MAX_CONNECTION_S", cls.max_connection_s),
            backoff_initial_s=backoff_initial,
            backoff_max_s=backoff_max,
            ack_timeout_s=number(env, "PRODUCER_ACK_TIMEOUT_S", cls.ack_timeout_s),
            stats_interval_s=number(env, "PRODUCER_STATS_INTERVAL_S", cls.stats_interval_s),
            metrics=MetricsSettings.from_env(env),
            quotes=QuoteSettings.from_env(env, kafka.trades_topic),
        )
