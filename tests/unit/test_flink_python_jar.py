"""The flink role links the wheel's opt/flink-python jar into lib/ (PyFlink's thread mode needs
it there, the quote arbitrage job's default), once: a second run changes nothing and asks for no
restart; the link of an older version goes; a wheel without the jar stops the role with a
message naming the fix; switched off, lib/ is left without it. Run against a FLINK_HOME in the
test's tmp dir (tasks/flink_home.yml, the one look at FLINK_HOME, then tasks/python_jar.yml, the
part of the role that acts on it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAY = """\
- hosts: localhost
  gather_facts: false
  connection: local
  vars:
    cryptomon_host_prepared: true
    # the handler would restart the units of this machine: the test only looks at the notification
    flink_just_started: true
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_vars:
        file: "{role}/{{{{ item }}}}/main.yml"
      loop: [defaults, vars]
    - name: The role's look at FLINK_HOME
      ansible.builtin.include_tasks: "{role}/tasks/flink_home.yml"
    - name: The role's flink-python tasks
      ansible.builtin.include_tasks: "{role}/tasks/python_jar.yml"
  handlers:
    - name: The role's handlers
      ansible.builtin.import_tasks: "{role}/handlers/main.yml"
"""


def run(tmp_path: Path, home: Path, **extra: object) -> dict:
    variables = {"ansible_python_interpreter": sys.executable, "flink_home": str(home), "flink_version": "2.2.1",
                 "cryptomon_flink_prometheus_enabled": False, "cryptomon_flink_plaintext": True, **extra}
    return run_playbook(PLAY.format(role=REPO / "roles" / "flink"), workdir=tmp_path, extra_vars=variables,
                        json_output=True).json


def tasks(out: dict) -> dict[str, dict]:
    return {t["task"]["name"]: t["hosts"].get("localhost", {}) for p in out["plays"] for t in p["tasks"]}


def changed(out: dict) -> list[str]:
    return [name for name, host in tasks(out).items() if host.get("changed")]


def failures(out: dict) -> list[str]:
    return [host.get("msg", "") for host in tasks(out).values() if host.get("failed")]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A FLINK_HOME as the apache-flink wheel ships it: flink-python in opt/ only."""
    home = tmp_path / "pyflink"
    (home / "opt").mkdir(parents=True)
    (home / "lib").mkdir()
    (home / "opt" / "flink-python-2.2.1.jar").write_bytes(b"PK\x03\x04 jar")
    (home / "lib" / "flink-dist-2.2.1.jar").write_bytes(b"PK\x03\x04 dist")
    return home


def test_the_jar_is_linked_into_lib_once(tmp_path: Path, home: Path) -> None:
    first = run(tmp_path, home)
    assert not failures(first)
    link = home / "lib" / "flink-python-2.2.1.jar"
    assert link.is_symlink() and link.resolve() == (home / "opt" / "flink-python-2.2.1.jar").resolve()
    assert changed(first) == ["Link flink-python into lib/ (PyFlink thread mode)"]
    # a second converge: nothing to do, so no restart is asked for, and the look at FLINK_HOME
    # showed the link as wanted: the link task does not even contact the host
    again = run(tmp_path, home)
    assert changed(again) == []
    assert tasks(again)["Link flink-python into lib/ (PyFlink thread mode)"].get("skipped")
    assert sorted(p.name for p in (home / "lib").iterdir()) == ["flink-dist-2.2.1.jar", "flink-python-2.2.1.jar"]


def test_a_link_pointing_elsewhere_is_put_back(tmp_path: Path, home: Path) -> None:
    run(tmp_path, home)
    link = home / "lib" / "flink-python-2.2.1.jar"
    link.unlink()
    link.symlink_to(home / "opt" / "flink-python-2.1.0.jar.old")
    out = run(tmp_path, home)
    assert changed(out) == ["Link flink-python into lib/ (PyFlink thread mode)"]
    assert link.resolve() == (home / "opt" / "flink-python-2.2.1.jar").resolve()


def test_the_link_of_an_older_version_goes(tmp_path: Path, home: Path) -> None:
    # after a wheel upgrade: the old version's link points at a jar that is gone
    (home / "lib" / "flink-python-2.1.0.jar").symlink_to(home / "opt" / "flink-python-2.1.0.jar")
    out = run(tmp_path, home)
    assert not failures(out)
    assert "Remove flink-python links of other versions from lib/" in changed(out)
    assert sorted(p.name for p in (home / "lib").iterdir()) == ["flink-dist-2.2.1.jar", "flink-python-2.2.1.jar"]


def test_a_wheel_without_the_jar_stops_the_role(tmp_path: Path, home: Path) -> None:
    msgs = failures(run(tmp_path, home, flink_version="2.3.0"))
    assert msgs and "opt/flink-python-2.3.0.jar is missing" in msgs[0]
    assert "flink_python_jar_in_lib: false" in msgs[0]
    assert not (home / "lib" / "flink-python-2.3.0.jar").exists()


def test_switched_off_lib_is_left_without_it(tmp_path: Path, home: Path) -> None:
    run(tmp_path, home)
    out = run(tmp_path, home, flink_python_jar_in_lib=False)
    assert not failures(out)
    assert sorted(p.name for p in (home / "lib").iterdir()) == ["flink-dist-2.2.1.jar"]
