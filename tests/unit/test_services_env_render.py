"""The alerter's and the dashboard's environment files as the cryptomon_services role renders
them from templates/services/, for inventory/example (svc-1 is also its monitoring host) and
variants of it: the metrics ports the monitoring role scrapes, on/off and the address, and where
the dashboard finds Prometheus."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from cryptomon.dashboard.cli import DashboardSettings
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_service_envs.yml"
EXAMPLE = REPO / "inventory" / "example"


def render(out: Path, inventory: Path = EXAMPLE, **extra: object) -> Path:
    """Render into out/<services host>/{alerter,dashboard}.env; returns out."""
    out.mkdir(parents=True, exist_ok=True)
    variables = {"render_out": str(out), "ansible_python_interpreter": sys.executable, **extra}
    run_playbook(PLAYBOOK, inventory=inventory, extra_vars=variables).assert_ok()
    return out


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; a key given twice keeps its last value, as systemd's EnvironmentFile= does."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def inventory_with(tmp_path: Path, edit) -> Path:
    """A copy of inventory/example with hosts.yml changed by `edit(hosts)`."""
    inventory = tmp_path / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    edit(hosts)
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("envs")) / "svc-1"


def test_alerter_and_dashboard_serve_metrics_on_their_shared_ports(example: Path) -> None:
    alerter, dashboard = env_file(example / "alerter.env"), env_file(example / "dashboard.env")
    assert (alerter["METRICS_PORT"], alerter["METRICS_ADDRESS"]) == ("9330", "127.0.0.1")
    assert (dashboard["METRICS_PORT"], dashboard["METRICS_ADDRESS"]) == ("9331", "127.0.0.1")


def test_metrics_off_and_address_reach_both(tmp_path: Path) -> None:
    off = render(tmp_path / "off", cryptomon_services_metrics_enabled=False) / "svc-1"
    assert env_file(off / "alerter.env")["METRICS_PORT"] == "0"
    assert env_file(off / "dashboard.env")["METRICS_PORT"] == "0"
    moved = render(tmp_path / "moved", cryptomon_services_metrics_address="10.0.3.11",
                   cryptomon_services_metrics_dashboard_port=9441) / "svc-1"
    dashboard = env_file(moved / "dashboard.env")
    assert (dashboard["METRICS_PORT"], dashboard["METRICS_ADDRESS"]) == ("9441", "10.0.3.11")
    assert env_file(moved / "alerter.env")["METRICS_ADDRESS"] == "10.0.3.11"


def test_dashboard_on_a_monitoring_host_asks_its_own_prometheus(example: Path, tmp_path: Path) -> None:
    assert env_file(example / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == "http://127.0.0.1:9090"
    other_port = render(tmp_path, cryptomon_prometheus_port=9190) / "svc-1"
    assert env_file(other_port / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == "http://127.0.0.1:9190"


@pytest.mark.parametrize(("address", "local"), [("0.0.0.0", True), ("::1", True), ("10.0.3.11", False)])
def test_prometheus_on_one_other_address_is_not_guessed(tmp_path: Path, address: str, local: bool) -> None:
    """A wildcard still answers on loopback; one other address does not (the operator says where)."""
    out = render(tmp_path, monitoring_prometheus_address=address) / "svc-1"
    expected = "http://127.0.0.1:9090" if local else ""
    assert env_file(out / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == expected


def test_dashboard_without_prometheus_on_its_host_has_no_url_unless_given(tmp_path: Path) -> None:
    def monitor_elsewhere(hosts: dict) -> None:
        hosts["all"]["children"]["monitoring"] = {"hosts": {"mon-1": {"ansible_host": "10.0.4.11"}}}

    inventory = inventory_with(tmp_path, monitor_elsewhere)
    plain = render(tmp_path / "plain", inventory) / "svc-1"
    assert env_file(plain / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == ""
    url = "https://dash:s3cret@mon-1/prometheus"
    given = render(tmp_path / "given", inventory, cryptomon_services_dashboard_prometheus_url=url) / "svc-1"
    assert env_file(given / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == url


def test_the_operators_url_wins_on_a_monitoring_host_too(tmp_path: Path) -> None:
    url = "http://10.0.4.11:9090"
    out = render(tmp_path, cryptomon_services_dashboard_prometheus_url=url) / "svc-1"
    assert env_file(out / "dashboard.env")["DASHBOARD_PROMETHEUS_URL"] == url


def test_rendered_dashboard_env_passes_the_dashboards_own_checks(example: Path) -> None:
    """What the template writes is what cryptomon-dashboard accepts (no value it would refuse)."""
    settings = DashboardSettings.from_env(env_file(example / "dashboard.env"))
    assert settings.prometheus_url == "http://127.0.0.1:9090"
    assert settings.metrics.enabled and settings.metrics.port == 9331
