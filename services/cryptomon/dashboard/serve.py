"""`python -m cryptomon.dashboard.serve run app.py [streamlit options]`: Streamlit's own command
line, in a process that opens the dashboard's /metrics first.

Streamlit runs app.py only when a browser session connects, so an endpoint started there would
be down until someone opens the page (and Prometheus would call the dashboard down). This is
what `cryptomon-dashboard` execs instead of `python -m streamlit`: the same process, so systemd
still supervises Streamlit's server itself, and app.py finds the endpoint already running.
"""

from __future__ import annotations

import sys

from cryptomon.cli_args import EXIT_CONFIG
from cryptomon.dashboard.cli import DashboardSettings
from cryptomon.dashboard.metrics import ensure_started
from cryptomon.kafka_settings import ConfigError
from cryptomon.logging_setup import setup_logging


def main() -> None:
    try:
        settings = DashboardSettings.from_env()
        setup_logging(settings.log_level)
        ensure_started(settings.metrics, prometheus_configured=bool(settings.prometheus_url))
    except ConfigError as exc:  # a bad value, or a port another process holds
        print(f"cryptomon-dashboard: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    from streamlit.web.cli import main as streamlit_main

    # Reads sys.argv[1:] (`run app.py --server.port ...`), as `python -m streamlit` does.
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
