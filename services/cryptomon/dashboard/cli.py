"""cryptomon-dashboard: start the Streamlit app (exec, so systemd supervises streamlit itself).

    cryptomon-dashboard [--port 8501] [--address 0.0.0.0]

Defaults come from DASHBOARD_PORT / DASHBOARD_ADDRESS; Kafka settings from KAFKA_* (checked
here first, so a bad value fails fast with one line instead of inside the web page).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.logging_setup import log_format

APP = Path(__file__).resolve().parent / "app.py"


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cryptomon-dashboard", description="cryptomon live dashboard")
    ap.add_argument("--port", type=int, default=int(os.environ.get("DASHBOARD_PORT") or 8501))
    ap.add_argument("--address", default=os.environ.get("DASHBOARD_ADDRESS") or "0.0.0.0")
    ap.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra `streamlit run` options")
    args = ap.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"cryptomon-dashboard: invalid port {args.port}", file=sys.stderr)
        return 2
    try:
        KafkaSettings.from_env()
    except ConfigError as exc:
        print(f"cryptomon-dashboard: configuration error: {exc}", file=sys.stderr)
        return 2
    # The app imports cryptomon; make that work from a source checkout too.
    services = str(APP.parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (services, os.environ.get("PYTHONPATH")) if p)
    cmd = build_command(args.port, args.address, [a for a in args.streamlit_args if a != "--"])
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
