"""The services' metric ports, defined once: the cryptomon_services role gives each producer
instance its port, the monitoring role scrapes it there, and both call this filter."""

from __future__ import annotations

from collections.abc import Sequence

from ansible.errors import AnsibleFilterError

# The mock generator is a producer instance too; it comes after every exchange.
MOCK = "mock"
MAX_PORT = 65535


def _exchange_names(exchanges: object) -> list[str]:
    if isinstance(exchanges, (str, bytes)) or not isinstance(exchanges, Sequence):
        raise AnsibleFilterError(
            f"cryptomon_producer_metrics_ports: the exchanges must be a list of names (the registry's, in its order), "
            f"got {exchanges!r}")
    names = [str(name) for name in exchanges]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or MOCK in names:
        raise AnsibleFilterError(
            f"cryptomon_producer_metrics_ports: each exchange once and never {MOCK!r} "
            f"(got {names}): the port is the place in this list")
    return names


def _base_port(base_port: object) -> int:
    try:
        port = int(str(base_port))
    except ValueError:
        port = 0
    if not 1 <= port <= MAX_PORT:
        raise AnsibleFilterError(
            f"cryptomon_producer_metrics_ports: cryptomon_services_metrics_producer_base_port must be a port "
            f"(1-{MAX_PORT}), got {base_port!r}")
    return port


def cryptomon_producer_metrics_ports(exchanges: object, base_port: object) -> dict[str, int]:
    """{instance: port}: base + the instance's place in the registry's exchange list, the mock
    after them. A place, not the list of enabled producers: an instance keeps its port when
    others are enabled or disabled."""
    names = [*_exchange_names(exchanges), MOCK]
    base = _base_port(base_port)
    if base + len(names) - 1 > MAX_PORT:
        raise AnsibleFilterError(
            f"cryptomon_producer_metrics_ports: {len(names)} producer instances from port {base} go past {MAX_PORT}; "
            f"lower cryptomon_services_metrics_producer_base_port")
    return {name: base + place for place, name in enumerate(names)}


class FilterModule:
    def filters(self) -> dict:
        return {"cryptomon_producer_metrics_ports": cryptomon_producer_metrics_ports}
