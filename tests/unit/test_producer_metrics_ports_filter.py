"""The producers' metric ports have one definition, the cryptomon role's filter: base + the
instance's place in the registry's exchange list, the mock after them. The cryptomon_services
role gives the ports with it, the monitoring role scrapes by it and the firewall role opens them
(rendered in test_services_role_exchanges.py, test_monitoring_role.py, test_firewall_rules.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "cryptomon_metrics", REPO / "roles" / "cryptomon" / "filter_plugins" / "cryptomon_metrics.py")
cryptomon_metrics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cryptomon_metrics)
ports_of = cryptomon_metrics.cryptomon_producer_metrics_ports


def test_each_instance_gets_base_plus_its_place_in_the_registry_and_the_mock_comes_last() -> None:
    assert ports_of(["binance", "coinbase", "kraken"], 9310) == {"binance": 9310, "coinbase": 9311, "kraken": 9312,
                                                                 "mock": 9313}
    # a base port from the inventory may arrive as a string
    assert ports_of(["okx"], "9400") == {"okx": 9400, "mock": 9401}
    # no exchanges (registry not read yet): the mock still has its place
    assert ports_of([], 9310) == {"mock": 9310}


def test_the_filter_is_registered_under_its_name() -> None:
    assert cryptomon_metrics.FilterModule().filters()["cryptomon_producer_metrics_ports"] is ports_of


@pytest.mark.parametrize(("exchanges", "base", "words"), [
    (["binance", "binance"], 9310, "each exchange once"),
    (["binance", "mock"], 9310, "never 'mock'"),
    ("binance", 9310, "must be a list"),
    (["binance"], "http", "must be a port"),
    (["binance"], 0, "must be a port"),
    (["binance", "coinbase"], 65535, "go past 65535"),
])
def test_bad_input_is_refused_naming_the_problem(exchanges: object, base: object, words: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(words)):
        ports_of(exchanges, base)


def test_no_role_writes_the_formula_itself() -> None:
    """The base port reaches a port number only through the filter."""
    places = []
    for path in (REPO / "roles").rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".j2"}:
            for line in path.read_text().splitlines():
                if re.search(r"metrics_producer_base_port\b.*\+|\+\s*(loop\.index0|names\.index)", line):
                    places.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert not places, places
    users = {str(p.relative_to(REPO)) for p in (REPO / "roles").rglob("*.yml")
             if "cryptomon_producer_metrics_ports(" in p.read_text()}
    # the role that opens the ports, the one that scrapes them, the one that lets the scraper in
    assert users == {"roles/cryptomon_services/vars/main.yml", "roles/monitoring/vars/main.yml",
                     "roles/firewall/vars/main.yml"}
