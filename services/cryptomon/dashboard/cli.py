"""cryptomon-dashboard: start the Streamlit app (exec, so systemd supervises streamlit itself).

    cryptomon-dashboard [--port 8501] [--address 0.0.0.0]

Defaults come from DASHBOARD_PORT / DASHBOARD_ADDRESS; also read: DASHBOARD_REFRESH_S (seconds
between redraws, at least 0.5), DASHBOARD_SPREAD_EXCHANGES (two exchanges, `binance,coinbase`),
LOG_LEVEL, and the Kafka settings from KAFKA_*. All are checked here first, so a bad value fails
fast with one line and exit status 2 instead of inside the web page.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptomon.cli_args import EXIT_CONFIG, OneLineParser, from_env, listen_address, log_level, port, positive_float
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.logging_setup import log_format

APP = Path(__file__).resolve().parent / "app.py"
_EXCHANGE = re.compile(r"[a-z][a-z0-9-]{0,31}")


def build_command(port: int, address: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
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
    spread_exchanges: tuple[str, str] = ("binance", "coinbase")
    log_level: str = "INFO"

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
            spread_exchanges=_exchange_pair(env.get("DASHBOARD_SPREAD_EXCHANGES")),
            log_level=log_level(get("LOG_LEVEL"), "LOG_LEVEL"),
        )


def _exchange_pair(raw: str | None) -> tuple[str, str]:
    if raw is None or not raw.strip():
        return DashboardSettings.spread_exchanges
    names = [e.strip().lower() for e in raw.split(",")]
    if len(names) != 2 or not all(_EXCHANGE.fullmatch(n) for n in names) or names[0] == names[1]:
        raise ConfigError(f"DASHBOARD_SPREAD_EXCHANGES: {raw!r} is not two different exchange names, "
                          "e.g. binance,coinbase")
    return names[0], names[1]


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
