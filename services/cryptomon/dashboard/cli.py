"""cryptomon-dashboard: start the Streamlit app (exec, so systemd supervises streamlit itself).

    cryptomon-dashboard [--port 8501] [--address 0.0.0.0]

Defaults come from DASHBOARD_PORT / DASHBOARD_ADDRESS; also read: DASHBOARD_REFRESH_S (seconds
between redraws, at least 0.5), DASHBOARD_STALE_AFTER_S (a price older than this is greyed and
not compared, default 60), DASHBOARD_SPREAD_THRESHOLD_USD (the spread colours' alert threshold,
default 50, the arbitrage job's) and DASHBOARD_SPREAD_THRESHOLDS (per-asset overrides,
`ETH=5,SOL=0.5` or JSON, as ARBITRAGE_THRESHOLDS), DASHBOARD_SPREAD_EXCHANGES (compare only
these, at least two, `binance,kraken,okx`; empty: every exchange seen), DASHBOARD_PROMETHEUS_URL
(Prometheus' base URL for the pipeline-health section; empty: the section says it is not
configured), METRICS_PORT / METRICS_ADDRESS (the process's own /metrics, as the producer's),
LOG_LEVEL, and the Kafka settings from KAFKA_*. All are checked here first, so a bad value fails
fast with one line and exit status 2 instead of inside the web page.

Streamlit runs inside `python -m cryptomon.dashboard.serve`, which opens /metrics first and then
hands over to Streamlit's own command line: the endpoint is up before anyone opens the page.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from cryptomon.cli_args import EXIT_CONFIG, OneLineParser, from_env, listen_address, log_level, port, positive_float
from cryptomon.dashboard.health import parse_prometheus_url
from cryptomon.dashboard.state import DEFAULT_STALE_AFTER_MS, DEFAULT_THRESHOLD_USD, SpreadPolicy
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.logging_setup import log_format
from cryptomon.metrics import MetricsSettings

APP = Path(__file__).resolve().parent / "app.py"
# The arbitrage job's rule for exchange names (letters, digits, `.`, `_`, `-`), lower case.
_EXCHANGE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ASSET = re.compile(r"[A-Z0-9]{1,32}")


def build_command(port: int, address: str, extra: list[str]) -> list[str]:
    return [
        # Streamlit's `run`, in a process that opens the dashboard's /metrics first (serve.py).
        sys.executable, "-m", "cryptomon.dashboard.serve", "run", str(APP),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",  # a service, not a dev session
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",  # no telemetry calls from a closed network
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
        # Streamlit's own lines in the services' format (a timestamp only outside journald).
        "--logger.messageFormat", log_format(),
        *extra,
    ]


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's own variables (the Kafka ones are KafkaSettings')."""

    port: int = 8501
    address: str = "0.0.0.0"
    refresh_s: float = 2.0
    stale_after_s: float = DEFAULT_STALE_AFTER_MS / 1000
    spread_threshold_usd: Decimal = DEFAULT_THRESHOLD_USD
    spread_thresholds: tuple[tuple[str, Decimal], ...] = ()
    spread_exchanges: tuple[str, ...] = ()  # empty: every exchange seen
    prometheus_url: str = ""  # base URL without a trailing slash; empty: no pipeline-health section
    metrics: MetricsSettings = MetricsSettings()  # the dashboard's own /metrics
    log_level: str = "INFO"

    def policy(self) -> SpreadPolicy:
        return SpreadPolicy(stale_after_ms=max(1, round(self.stale_after_s * 1000)),
                            threshold_usd=self.spread_threshold_usd, thresholds=self.spread_thresholds,
                            exchanges=self.spread_exchanges)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        refresh = from_env(positive_float, get("DASHBOARD_REFRESH_S"), "DASHBOARD_REFRESH_S") \
            if get("DASHBOARD_REFRESH_S") else cls.refresh_s
        if refresh < 0.5:
            raise ConfigError(f"DASHBOARD_REFRESH_S: {refresh:g} is below 0.5 seconds")
        return cls(
            port=from_env(port, get("DASHBOARD_PORT"), "DASHBOARD_PORT") if get("DASHBOARD_PORT") else cls.port,
            address=from_env(listen_address, get("DASHBOARD_ADDRESS"), "DASHBOARD_ADDRESS")
            if get("DASHBOARD_ADDRESS") else cls.address,
            refresh_s=refresh,
            stale_after_s=from_env(positive_float, get("DASHBOARD_STALE_AFTER_S"), "DASHBOARD_STALE_AFTER_S")
            if get("DASHBOARD_STALE_AFTER_S") else cls.stale_after_s,
            spread_threshold_usd=_dollars(get("DASHBOARD_SPREAD_THRESHOLD_USD"), "DASHBOARD_SPREAD_THRESHOLD_USD")
            if get("DASHBOARD_SPREAD_THRESHOLD_USD") else cls.spread_threshold_usd,
            spread_thresholds=_thresholds(get("DASHBOARD_SPREAD_THRESHOLDS"), "DASHBOARD_SPREAD_THRESHOLDS"),
            spread_exchanges=_exchanges(get("DASHBOARD_SPREAD_EXCHANGES"), "DASHBOARD_SPREAD_EXCHANGES"),
            prometheus_url=parse_prometheus_url(get("DASHBOARD_PROMETHEUS_URL"), "DASHBOARD_PROMETHEUS_URL"),
            metrics=MetricsSettings.from_env(env),
            log_level=log_level(get("LOG_LEVEL"), "LOG_LEVEL"),
        )


def _dollars(raw: str, name: str) -> Decimal:
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a number of dollars") from None
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"{name}: {raw!r} is not a positive number of dollars")
    return value


def _thresholds(raw: str, name: str) -> tuple[tuple[str, Decimal], ...]:
    """`ETH=5,SOL=0.5` or `{"ETH": 5}` (the job's ARBITRAGE_THRESHOLDS forms) -> ((ETH, 5), ...)."""
    if not raw:
        return ()
    if raw.startswith("{"):
        try:
            pairs = list(json.loads(raw, parse_float=str, parse_int=str).items())
        except (ValueError, AttributeError):
            raise ConfigError(f"{name}: {raw!r} is not a JSON object like {{\"ETH\": 5}}") from None
    else:
        pairs = [item.partition("=")[::2] for item in raw.split(",") if item.strip()]
    out: dict[str, Decimal] = {}
    for key, value in pairs:
        asset = str(key).strip().upper()
        if not _ASSET.fullmatch(asset):
            raise ConfigError(f"{name}: {key!r} is not an asset such as ETH (thresholds are per asset, not symbol)")
        if asset in out:
            raise ConfigError(f"{name}: {asset} is given twice")
        out[asset] = _dollars(str(value), f"{name}[{asset}]")
    return tuple(sorted(out.items()))


def _exchanges(raw: str, name: str) -> tuple[str, ...]:
    """Empty: every exchange seen; else at least two different names."""
    if not raw:
        return ()
    names = [e.strip().lower() for e in raw.split(",") if e.strip()]
    bad = [n for n in names if not _EXCHANGE.fullmatch(n)]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not an exchange name")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{name}: {', '.join(twice)} given twice")
    if len(names) < 2:
        raise ConfigError(f"{name}: {raw!r} names fewer than two exchanges (leave it empty for every exchange), "
                          "e.g. binance,kraken,okx")
    return tuple(sorted(names))


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="cryptomon-dashboard", description="cryptomon live dashboard")
    ap.add_argument("--port", type=port, default=None, help="default: DASHBOARD_PORT, else 8501")
    ap.add_argument("--address", type=listen_address, default=None, help="default: DASHBOARD_ADDRESS, else 0.0.0.0")
    ap.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra `streamlit run` options")
    args = ap.parse_args(argv)
    try:
        settings = DashboardSettings.from_env()
        KafkaSettings.from_env()
    except ConfigError as exc:
        print(f"cryptomon-dashboard: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # The app imports cryptomon; make that work from a source checkout too.
    services = str(APP.parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (services, os.environ.get("PYTHONPATH")) if p)
    cmd = build_command(args.port or settings.port, args.address or settings.address,
                        [a for a in args.streamlit_args if a != "--"])
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
