"""Prometheus /metrics endpoints of the services (prometheus_client does the exposition).

Each process (one producer per exchange, the alerter) serves its own endpoint on
METRICS_ADDRESS:METRICS_PORT; METRICS_PORT unset or 0 means no endpoint and no metrics work at
all. The address defaults to 127.0.0.1: the endpoint has no authentication, so listening on
other interfaces is a deliberate choice (and the firewall's business).

Every process builds its own registry instead of prometheus_client's global one, so tests (and
a process that builds two collectors) never collide on names; it carries the standard process,
platform and GC collectors as well.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, start_http_server

from cryptomon.cli_args import listen_address, port_or_zero
from cryptomon.kafka_settings import ConfigError

DEFAULT_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class MetricsSettings:
    port: int = 0                    # 0: no endpoint
    address: str = DEFAULT_ADDRESS

    @property
    def enabled(self) -> bool:
        return self.port != 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsSettings:
        raw_port = env.get("METRICS_PORT", "").strip()
        try:
            port = port_or_zero(raw_port) if raw_port else 0
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"METRICS_PORT: {exc}; 0 or unset: no metrics endpoint") from None
        raw_address = env.get("METRICS_ADDRESS", "").strip()
        try:
            # getaddrinfo wants an IPv6 address without the brackets of a URL.
            address = listen_address(raw_address).strip("[]") if raw_address else DEFAULT_ADDRESS
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"METRICS_ADDRESS: {exc}") from None
        return cls(port=port, address=address)

    def describe(self) -> str:
        return f"http://{self._host()}:{self.port}/metrics" if self.enabled else "off (METRICS_PORT unset or 0)"

    def _host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address


def new_registry() -> CollectorRegistry:
    """A registry of this process's own, with the process, platform and GC metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsServer:
    """The running endpoint (a daemon thread of prometheus_client's WSGI server)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0)."""
        return int(self._httpd.server_port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def serve(registry: CollectorRegistry, address: str, port: int) -> MetricsServer:
    """Listen now; a port already taken or an address not on this host is a configuration
    error naming the variables (port 0 picks a free port: for tests)."""
    try:
        httpd, thread = start_http_server(port, address, registry=registry)
    except OSError as exc:
        raise ConfigError(f"METRICS_ADDRESS/METRICS_PORT: cannot listen on {address}:{port}: "
                          f"{exc.strerror or exc}") from None
    return MetricsServer(httpd, thread)


def start(settings: MetricsSettings, registry: CollectorRegistry) -> MetricsServer | None:
    """The endpoint if METRICS_PORT asks for one, else None."""
    if not settings.enabled:
        return None
    return serve(registry, settings.address, settings.port)
