"""The flink role turns on Flink's PrometheusReporter (the plugin inside the apache-flink wheel)
with one fixed port per process, the shared cryptomon_flink_prometheus_ports, so a host running
a JobManager and a TaskManager serves both; rendered for whole inventories without any host."""

from __future__ import annotations

import io
import os
import shlex
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_flink.yml"
FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


def render(tmp_path: Path, inventory: Path, **extra: object) -> Path:
    out = tmp_path / "out"
    out.mkdir(parents=True)
    # local whatever the inventory says (the sandbox names docker containers)
    variables = {"render_out": str(out), "cryptomon_state_dir": str(tmp_path / "state"), "ansible_connection": "local",
                 "ansible_python_interpreter": sys.executable, **extra}
    run_playbook(PLAYBOOK, inventory=inventory, extra_vars=variables).assert_ok()
    return out


def exec_start(unit: Path) -> list[str]:
    (line,) = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def reporter(config: Path) -> dict:
    return yaml.safe_load(config.read_text()).get("metrics", {}).get("reporter", {})


def test_each_process_reports_on_its_own_port(tmp_path: Path) -> None:
    out = render(tmp_path, REPO / "inventory" / "example")
    assert reporter(out / "flink-jm-1" / "config.yaml") == {"prom": {"factory": {"class": FACTORY}}}
    assert exec_start(out / "flink-jm-1" / "flink-jobmanager.service")[1:] == [
        "start-foreground", "-D", "metrics.reporter.prom.port=9249"]
    assert exec_start(out / "flink-tm-2" / "flink-taskmanager.service")[1:] == [
        "start-foreground", "-D", "metrics.reporter.prom.port=9250"]
    assert exec_start(out / "flink-tm-2" / "flink-taskmanager.service")[0].endswith("/bin/taskmanager.sh")


def test_a_host_running_both_gives_each_its_port(tmp_path: Path) -> None:
    # the sandbox's cm-flink is JobManager and TaskManager
    out = render(tmp_path, REPO / "inventory" / "sandbox", cryptomon_flink_prometheus_ports={"jobmanager": 19249,
                                                                                               "taskmanager": 19250})
    ports = {unit.stem: exec_start(unit)[-1] for unit in (out / "cm-flink").glob("*.service")}
    assert ports == {"flink-jobmanager": "metrics.reporter.prom.port=19249",
                     "flink-taskmanager": "metrics.reporter.prom.port=19250"}


def test_switched_off_there_is_no_reporter(tmp_path: Path) -> None:
    out = render(tmp_path, REPO / "inventory" / "example", cryptomon_flink_prometheus_enabled=False)
    assert reporter(out / "flink-jm-1" / "config.yaml") == {}
    assert exec_start(out / "flink-jm-1" / "flink-jobmanager.service")[1:] == ["start-foreground"]


def test_the_flink_wheel_carries_the_reporter_plugin() -> None:
    """Where the role looks for it (flink_prometheus_plugin), in the pinned wheel; skipped only
    when the artifact cache has no Flink wheels (make cache)."""
    cache = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon")) / "artifacts"
    wheels = sorted((cache / "wheels" / "flink").glob("apache_flink_libraries-*.whl"))
    if not wheels:
        pytest.skip("no apache-flink-libraries wheel in the artifact cache (make cache)")
    version = yaml.safe_load((REPO / "roles" / "flink" / "defaults" / "main.yml").read_text())["flink_version"]
    with zipfile.ZipFile(wheels[-1]) as wheel:
        jar = wheel.read(f"pyflink/plugins/metrics-prometheus/flink-metrics-prometheus-{version}.jar")
    with zipfile.ZipFile(io.BytesIO(jar)) as plugin:
        assert FACTORY.replace(".", "/") + ".class" in plugin.namelist()
