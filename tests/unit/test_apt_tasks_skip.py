"""Every role's apt task runs only when one of its packages is missing from the host's package
facts (read once per host and run by roles/cryptomon/tasks/packages.yml): an idempotent converge
makes no apt calls. Checked with the roles' own `when` expressions and variables, run by
ansible-playbook with the apt module swapped for debug: all installed -> every apt task skipped;
one package missing or pinned to another version -> that role's task runs; no facts (a role run on
its own, cryptomon_package_facts: false) -> every task runs. Also: each apt task is followed by a
facts refresh once it changed something, so later roles see what it installed."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml
from unit.playbook_runner import localhost_play, run_playbook

REPO = Path(__file__).resolve().parents[2]
APT = "ansible.builtin.apt"
# file -> the apt tasks in it; the firewall role's nftables task is outside this change
APT_TASKS = {
    "roles/cryptomon/tasks/certificate.yml": ["Install the Python cryptography library (community.crypto on the host)"],
    "roles/kafka/tasks/install.yml": ["Install Java 17"],
    "roles/kafka_admin/tasks/install.yml": ["Install the packages needed for a Python venv"],
    "roles/flink/tasks/install.yml": ["Install Java 17 and Python venv support"],
    "roles/cryptomon_services/tasks/install.yml": ["Install Python venv support"],
    "roles/frontdoor/tasks/install.yml": ["Install nginx and passlib (for the htpasswd module)"],
    "roles/monitoring/tasks/install.yml": ["Install Prometheus and Alertmanager"],
    "roles/monitoring/tasks/node_exporter.yml": ["Install node exporter"],
}
ROLES = ["cryptomon", "kafka", "kafka_admin", "flink", "cryptomon_services", "frontdoor", "monitoring"]
# what the roles' defaults install, as package_facts (manager apt) reports it
INSTALLED = {name: [{"name": name, "version": "1.0-1", "arch": "amd64"}] for name in [
    "python3-cryptography", "openjdk-17-jre-headless", "python3-venv", "libpython3.11", "python3-packaging",
    "nginx", "python3-passlib", "prometheus", "prometheus-alertmanager", "prometheus-node-exporter"]}
FAKE_FACTS_MODULE = '''\
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"packages": {"type": "dict", "required": True}}, supports_check_mode=True)
module.exit_json(changed=False, ansible_facts={"packages": module.params["packages"]})
'''


def flat(tasks: list[dict]) -> list[dict]:
    out = []
    for task in tasks or []:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out.extend(flat(task.get(key, [])))
    return out


def apt_tasks(path: str) -> list[dict]:
    return [t for t in flat(yaml.safe_load((REPO / path).read_text())) if APT in t]


def test_the_list_names_every_apt_task_of_these_files() -> None:
    for path, names in APT_TASKS.items():
        assert [t["name"] for t in apt_tasks(path)] == names, path


@pytest.mark.parametrize("path", sorted(APT_TASKS))
def test_each_apt_task_is_followed_by_a_refresh_once_it_changed_something(path: str) -> None:
    tasks = flat(yaml.safe_load((REPO / path).read_text()))
    for i, task in enumerate(tasks):
        if APT not in task:
            continue
        register = task.get("register")
        assert register, f"{path}: {task['name']} registers no result"
        refresh = tasks[i + 1]
        assert "ansible.builtin.package_facts" in refresh, f"{path}: no refresh after {task['name']}"
        assert f"{register} is changed" in refresh["when"] and "not ansible_check_mode" in refresh["when"]
        assert refresh.get("delegate_to") == task.get("delegate_to")
        if task.get("delegate_to"):
            assert refresh.get("delegate_facts") is True, "the facts must land on the host apt ran on"


def play(facts: dict | None) -> list[dict]:
    """The apt tasks with their own vars, when and register, apt swapped for debug."""
    tasks: list[dict] = [{"name": f"Load the {role} role's defaults and vars", "ansible.builtin.include_vars": {
        "file": str(path)}} for role in ROLES for path in
        (REPO / "roles" / role / "defaults" / "main.yml", REPO / "roles" / role / "vars" / "main.yml") if path.exists()]
    if facts is not None:
        tasks.append({"name": "Fake package facts", "fake_package_facts": {"packages": facts}})
    for path in APT_TASKS:
        for task in apt_tasks(path):
            fake = {k: copy.deepcopy(v) for k, v in task.items() if k not in (APT, "delegate_to", "tags")}
            fake["ansible.builtin.debug"] = {"msg": f"apt: {task[APT]['name']}"}
            fake["name"] = f"{path}: {task['name']}"
            tasks.append(fake)
    return localhost_play(tasks)


def run(tmp_path: Path, facts: dict | None, **extra: object) -> dict[str, dict]:
    """Task name -> result of the apt stand-ins."""
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "library" / "fake_package_facts.py").write_text(FAKE_FACTS_MODULE)
    variables = {"ansible_python_interpreter": sys.executable, "kafka_admin_host": "localhost", **extra}
    env = {"ANSIBLE_LIBRARY": str(tmp_path / "library"),
           "ANSIBLE_FILTER_PLUGINS": str(REPO / "roles" / "cryptomon" / "filter_plugins")}
    res = run_playbook(play(facts), workdir=tmp_path, extra_vars=variables, env=env, json_output=True)
    return {name: host for name, host in res.assert_ok().task_results().items() if name.startswith("roles/")}


def ran(results: dict[str, dict]) -> list[str]:
    return sorted(name.split(":")[0] for name, host in results.items() if not host.get("skipped"))


def test_nothing_to_install_skips_every_apt_task(tmp_path: Path) -> None:
    results = run(tmp_path, INSTALLED)
    assert len(results) == sum(len(names) for names in APT_TASKS.values())
    assert ran(results) == []


def test_without_facts_every_apt_task_runs(tmp_path: Path) -> None:
    assert ran(run(tmp_path, None)) == sorted(APT_TASKS)


def test_one_missing_package_runs_its_roles_task(tmp_path: Path) -> None:
    facts = {name: v for name, v in INSTALLED.items() if name not in ("libpython3.11", "python3-passlib")}
    assert ran(run(tmp_path, facts)) == ["roles/flink/tasks/install.yml", "roles/frontdoor/tasks/install.yml"]


def test_a_package_both_java_roles_need_runs_both(tmp_path: Path) -> None:
    facts = {name: v for name, v in INSTALLED.items() if name != "openjdk-17-jre-headless"}
    assert ran(run(tmp_path, facts)) == ["roles/flink/tasks/install.yml", "roles/kafka/tasks/install.yml"]


def test_a_pin_to_another_version_runs_apt(tmp_path: Path) -> None:
    results = run(tmp_path, INSTALLED, kafka_java_package="openjdk-17-jre-headless=17.0.99-1",
                  flink_java_package="openjdk-17-jre-headless=1.0-1")
    assert ran(results) == ["roles/kafka/tasks/install.yml"]


def test_switches_that_turned_apt_off_still_do(tmp_path: Path) -> None:
    results = run(tmp_path, None, cryptomon_tls_install_packages=False, kafka_admin_system_packages=[])
    assert "roles/cryptomon/tasks/certificate.yml" not in ran(results)
    assert "roles/kafka_admin/tasks/install.yml" not in ran(results)
