"""The front door's pages, rendered for inventory/example without a host: the dashboard and
Flink everywhere, Prometheus and Alertmanager (loopback, prefix stripped) on a services host that
is also a monitoring host, and nowhere else."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_frontdoor.yml"


def render(tmp_path: Path, inventory: Path, **extra: object) -> dict[str, str]:
    out = tmp_path / "out"
    out.mkdir()
    variables = {"render_out": str(out), "ansible_python_interpreter": sys.executable, **extra}
    run_playbook(PLAYBOOK, inventory=inventory, extra_vars=variables).assert_ok()
    return {f.stem: f.read_text() for f in out.glob("*.conf")}


def locations(site: str) -> dict[str, str]:
    """path -> proxy_pass upstream."""
    return dict(re.findall(r"location (\S+) \{\s*proxy_pass (\S+);", site))


def test_the_monitoring_host_shows_prometheus_and_alertmanager_behind_the_login(tmp_path: Path) -> None:
    site = render(tmp_path, REPO / "inventory" / "example")["svc-1"]
    assert locations(site) == {"/": "http://127.0.0.1:8501", "/flink/": "https://flink-jm-1:8081/",
                               "/prometheus/": "http://127.0.0.1:9090/", "/alertmanager/": "http://127.0.0.1:9095/"}
    # one server, one login for every page
    assert site.count("auth_basic_user_file") == 1 and site.count("server {") == 1


def test_a_services_host_without_prometheus_shows_no_monitoring_pages(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / "example", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["children"]["monitoring"] = {"hosts": {"mon-1": {"ansible_host": "10.0.4.11"}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    site = render(tmp_path, inventory)["svc-1"]
    assert set(locations(site)) == {"/", "/flink/"}


def test_the_pages_follow_the_shared_ports(tmp_path: Path) -> None:
    site = render(tmp_path, REPO / "inventory" / "example", cryptomon_prometheus_port=19090,
                  cryptomon_alertmanager_port=19095)["svc-1"]
    assert locations(site)["/prometheus/"] == "http://127.0.0.1:19090/"
    assert locations(site)["/alertmanager/"] == "http://127.0.0.1:19095/"
