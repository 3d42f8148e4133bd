"""How often the monitoring role contacts a host, and which handlers its file sets call, run by
ansible-playbook on this machine with the role's own task files, vars and handlers: every module
that would act on a host becomes a `debug` stand-in, and `cryptomon_files` a stand-in action that
reports the entries it was given and, as changed, those the scenario names (with their handlers,
as the real action does). `set_fact`, `assert`, `debug`, `meta`, the includes and the
`when`/`loop`/`register`/`notify` wiring stay as written.

Shown: a re-run where nothing changed costs node exporter's play 2 host tasks and Prometheus' and
Alertmanager's 3 (one set of files each, the start); main.yml run without node_exporter.yml still
makes the user and copies the TLS files; on a host without the packages the files promtool and
amtool check follow the install and the command lines precede it; each changed file calls only
its own service's handler."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
HOST = "mon-1"
CONTROLLER_ACTIONS = {"ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug",
                      "ansible.builtin.meta", "ansible.builtin.import_tasks", "ansible.builtin.include_tasks",
                      "ansible.builtin.include_role", "ansible.builtin.import_role", "cryptomon_files"}
# Keys that only make sense with the real module's result, or that would act elsewhere.
DROPPED_KEYS = {"until", "retries", "delay", "failed_when", "changed_when", "delegate_to", "check_mode",
                "run_once", "no_log"}
TASK_KEYS = {"name", "when", "loop", "loop_control", "register", "notify", "vars", "listen", "tags",
             "block", "become"} | DROPPED_KEYS
STAND_IN = "host stand-in"

FAKE_FILES_ACTION = '''\
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """cryptomon_files stand-in: the entries it got; changed = those in fake_changed."""

    def run(self, tmp=None, task_vars=None):
        args = self._task.args
        entries = args.get("files") or [{"dest": args["dest"]}]
        wanted = set(task_vars.get("fake_changed") or [])
        handlers = []
        for entry in entries:
            if entry["dest"] in wanted:
                names = entry.get("notify") or []
                names = [names] if isinstance(names, str) else names
                handlers.extend(n for n in names if n not in handlers)
        return {"changed": any(e["dest"] in wanted for e in entries), "msg": "%s" % "HOST_MARK",
                "entries": [{"dest": e["dest"], "notify": e.get("notify")} for e in entries],
                "notify_handlers": handlers}
'''.replace("HOST_MARK", STAND_IN)

FAKE_FACTS_MODULE = '''\
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
module.exit_json(changed=False, ansible_facts=module.params["facts"])
'''


def action_of(task: dict[str, Any]) -> str:
    keys = [k for k in task if k not in TASK_KEYS]
    if len(keys) != 1:
        raise AssertionError(f"cannot tell the module of task {task.get('name')!r}: {keys}")
    return keys[0]


def stub(task: dict[str, Any]) -> dict[str, Any]:
    """The task with a host module replaced by a debug that never reports a change."""
    if "block" in task:
        return {**{k: v for k, v in task.items() if k not in DROPPED_KEYS},
                "block": [stub(t) for t in task["block"]]}
    if action_of(task) in CONTROLLER_ACTIONS:
        return task
    out = {k: v for k, v in task.items() if k in TASK_KEYS and k not in DROPPED_KEYS}
    out["ansible.builtin.debug"] = {"msg": STAND_IN}
    out["changed_when"] = False
    return out


def stubbed_roles(dest: Path) -> Path:
    """roles/ with monitoring's host modules stubbed, no role dependency, and the cryptomon role's
    values (not its action plugins: the stand-in cryptomon_files takes their place)."""
    roles = dest / "roles"
    shutil.copytree(ROLES / "monitoring", roles / "monitoring")
    shutil.copytree(ROLES / "cryptomon", roles / "cryptomon",
                    ignore=shutil.ignore_patterns("action_plugins", "library"))
    meta = roles / "monitoring" / "meta" / "main.yml"
    meta.write_text(yaml.safe_dump({**yaml.safe_load(meta.read_text()), "dependencies": []}, sort_keys=False))
    for path in [*(roles / "monitoring" / "tasks").glob("*.yml"), roles / "monitoring" / "handlers" / "main.yml"]:
        path.write_text(yaml.safe_dump([stub(t) for t in yaml.safe_load(path.read_text())], sort_keys=False))
    return roles


INSTALLED = {name: [{"name": name, "version": "1.0-1", "arch": "amd64"}]
             for name in ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter")}
# getent as the cryptomon role reads it: the prometheus user as user.yml makes it.
ACCOUNTS = {"getent_group": {"prometheus": ["x", "998", ""]},
            "getent_passwd": {"prometheus": ["x", "998", "998", "Prometheus daemon", "/var/lib/prometheus",
                                             "/usr/sbin/nologin"]}}
NEW_HOST = {"packages": {}, "getent_group": {}, "getent_passwd": {}}
TLS = ["/etc/prometheus/tls", "/etc/prometheus/tls/host.crt", "/etc/prometheus/tls/host.key",
       "/etc/prometheus/tls/ca.crt"]
CONFIG = ["/etc/prometheus/rules", "/etc/prometheus/rules/cryptomon-alerts.yml",
          "/etc/prometheus/rules/cryptomon-recording.yml", "/etc/prometheus/prometheus.yml"]


def unit_files(package: str, unit: str) -> list[str]:
    return [f"/etc/default/{package}", f"/etc/systemd/system/{unit}.d",
            f"/etc/systemd/system/{unit}.d/cryptomon.conf"]


PROMETHEUS_UNIT = unit_files("prometheus", "prometheus.service")
ALERTMANAGER_UNIT = unit_files("prometheus-alertmanager", "prometheus-alertmanager.service")
NODE_UNIT = unit_files("prometheus-node-exporter", "prometheus-node-exporter.service")

# One host per scenario, all in one run: the host's facts before the run (default: everything
# installed and the user as wanted), the files the stand-in reports changed, other host values.
# `alone`: main.yml without node_exporter.yml earlier in the run.
SCENARIOS: dict[str, dict[str, Any]] = {
    "rerun": {},
    "alone": {"alone": True},
    "alone-new": {"alone": True, "facts": NEW_HOST},
    "new": {"facts": NEW_HOST},
    "new-changed": {"facts": NEW_HOST, "changed": ["/etc/prometheus/prometheus.yml"]},
    "no-tls": {"vars": {"monitoring_node_exporter_tls": False}},
    "no-tls-alone": {"alone": True, "vars": {"monitoring_node_exporter_tls": False}},
    "restarts": {"changed": ["/etc/default/prometheus", ALERTMANAGER_UNIT[2], "/etc/prometheus",
                             "/etc/prometheus/rules", NODE_UNIT[1]]},
    "reloads": {"changed": ["/etc/prometheus/prometheus.yml", CONFIG[1], "/etc/prometheus/node-exporter-web.yml",
                            TLS[1]]},
    "alertmanager-node": {"changed": ["/etc/prometheus/alertmanager.yml", NODE_UNIT[0]]},
    "certificates": {"changed": TLS},
}


def inventory() -> dict[str, Any]:
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "scenario_facts": {"packages": INSTALLED, **ACCOUNTS, **spec.get("facts", {})},
                    "fake_changed": spec.get("changed", []), **spec.get("vars", {})}
             for name, spec in SCENARIOS.items()}
    alone = {name: {} for name, spec in SCENARIOS.items() if spec.get("alone")}
    return {"all": {"children": {"monitoring": {"hosts": hosts}, "main_alone": {"hosts": alone}}}}


def playbook() -> list[dict[str, Any]]:
    prepare = [
        {"name": "Fake the host's facts", "fake_facts": {"facts": "{{ scenario_facts }}"}},
        {"name": "Load the shared values", "ansible.builtin.include_role": {
            "name": "cryptomon", "tasks_from": "shared.yml", "public": True}},
    ]
    return [
        {"name": "node exporter", "hosts": "all:!main_alone", "gather_facts": False, "tasks": [
            *prepare, {"name": "Node exporter", "ansible.builtin.include_role": {
                "name": "monitoring", "tasks_from": "node_exporter.yml"}}]},
        {"name": "main", "hosts": "monitoring", "gather_facts": False, "pre_tasks": prepare, "roles": ["monitoring"]},
    ]


def run(tmp_path: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """host -> play name -> [{name, result}] of its tasks and handlers that ran (not skipped)."""
    roles = stubbed_roles(tmp_path)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "fake_facts.py").write_text(FAKE_FACTS_MODULE)
    (tmp_path / "action_plugins").mkdir()
    (tmp_path / "action_plugins" / "cryptomon_files.py").write_text(FAKE_FILES_ACTION)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory()))
    env = {"ANSIBLE_ROLES_PATH": str(roles), "ANSIBLE_LIBRARY": str(tmp_path / "library"),
           "ANSIBLE_ACTION_PLUGINS": str(tmp_path / "action_plugins"),
           "ANSIBLE_FILTER_PLUGINS": str(ROLES / "cryptomon" / "filter_plugins")}
    out = run_playbook(playbook(), workdir=tmp_path, inventory=tmp_path / "hosts.yml", env=env, json_output=True,
                       timeout=600).assert_ok().json
    return {host: {p["play"]["name"]: [{"name": t["task"]["name"].split(" : ", 1)[-1], "result": t["hosts"][host]}
                                       for t in p["tasks"]
                                       if host in t["hosts"] and not t["hosts"][host].get("skipped")]
                   for p in out["plays"]}
            for host in SCENARIOS}


def host_tasks(ran: list[dict[str, Any]]) -> list[str]:
    """The tasks that contacted the host (a loop counts once per task; a no_log result, censored,
    is a file set here)."""
    def contacted(result: dict[str, Any]) -> bool:
        return result.get("msg") == STAND_IN or "censored" in result or any(
            contacted(r) for r in result.get("results", []) if not r.get("skipped"))
    return [t["name"] for t in ran if contacted(t["result"])]


def entries(ran: list[dict[str, Any]], task: str) -> list[str]:
    (result,) = [t["result"] for t in ran if t["name"] == task]
    return [e["dest"] for e in result["entries"]]


def handlers_run(plays: dict[str, list[dict[str, Any]]]) -> list[str]:
    return sorted(t["name"] for ran in plays.values() for t in ran
                  if t["name"].startswith(("Restart ", "Reload ")) and t["result"].get("msg") == STAND_IN)


NODE_FILES = "Write node exporter's files (TLS copies and settings, command line, limits drop-in)"
MAIN_FILES = "Write the files of Prometheus and Alertmanager"
LATE_FILES = "Write the TLS copies, rules and prometheus.yml (after installing Prometheus)"
MAIN_RERUN = [MAIN_FILES, "Render alertmanager.yml", "Start and enable Prometheus and Alertmanager"]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return run(tmp_path_factory.mktemp("monitoring_round_trips"))


def test_a_rerun_without_changes_contacts_the_host_five_times(hosts) -> None:
    assert host_tasks(hosts["rerun"]["node exporter"]) == [NODE_FILES, "Start and enable node exporter"]
    assert host_tasks(hosts["rerun"]["main"]) == MAIN_RERUN
    assert handlers_run(hosts["rerun"]) == []


def test_node_exporter_has_one_set_of_files(hosts) -> None:
    assert entries(hosts["rerun"]["node exporter"], NODE_FILES) == [
        "/etc/prometheus", *TLS, "/etc/prometheus/node-exporter-web.yml", *NODE_UNIT]
    assert entries(hosts["no-tls"]["node exporter"], NODE_FILES) == ["/etc/prometheus", *NODE_UNIT]


def test_main_after_node_exporter_leaves_out_the_tls_copies(hosts) -> None:
    for host in ("rerun", "no-tls"):
        assert entries(hosts[host]["main"], MAIN_FILES) == [
            "/etc/prometheus", *CONFIG, *PROMETHEUS_UNIT, *ALERTMANAGER_UNIT], host


def test_main_alone_still_copies_the_tls_files_before_prometheus_yml(hosts) -> None:
    assert "node exporter" not in hosts["alone"] or hosts["alone"]["node exporter"] == []
    assert host_tasks(hosts["alone"]["main"]) == MAIN_RERUN
    assert entries(hosts["alone"]["main"], MAIN_FILES) == [
        "/etc/prometheus", *TLS, *CONFIG, *PROMETHEUS_UNIT, *ALERTMANAGER_UNIT]
    assert entries(hosts["no-tls-alone"]["main"], MAIN_FILES) == [
        "/etc/prometheus", *CONFIG, *PROMETHEUS_UNIT, *ALERTMANAGER_UNIT]


def test_main_alone_on_a_new_host_makes_the_user_and_checks_the_files_after_the_install(hosts) -> None:
    main = hosts["alone-new"]["main"]
    assert host_tasks(main) == [
        "Create the prometheus group", "Create the prometheus user", MAIN_FILES, "Install Prometheus and Alertmanager",
        LATE_FILES, "Render alertmanager.yml", "Start and enable Prometheus and Alertmanager"]
    assert entries(main, MAIN_FILES) == ["/etc/prometheus", *PROMETHEUS_UNIT, *ALERTMANAGER_UNIT]
    assert entries(main, LATE_FILES) == [*TLS, *CONFIG]


def test_a_new_host_makes_the_user_once_and_copies_the_tls_files_once(hosts) -> None:
    assert host_tasks(hosts["new"]["node exporter"]) == [
        "Create the prometheus group", "Create the prometheus user", NODE_FILES, "Install node exporter",
        "Start and enable node exporter"]
    assert host_tasks(hosts["new"]["main"]) == [
        MAIN_FILES, "Install Prometheus and Alertmanager", LATE_FILES, "Render alertmanager.yml",
        "Start and enable Prometheus and Alertmanager"]
    assert entries(hosts["new"]["main"], LATE_FILES) == CONFIG


@pytest.mark.parametrize(("host", "handlers"), [
    ("new", []),
    ("new-changed", ["Reload prometheus"]),
    ("restarts", ["Restart prometheus", "Restart prometheus-alertmanager"]),
    ("reloads", ["Reload prometheus", "Restart prometheus-node-exporter"]),
    ("alertmanager-node", ["Reload prometheus-alertmanager", "Restart prometheus-node-exporter"]),
    ("certificates", []),
])
def test_a_changed_file_calls_only_its_own_services_handler(hosts, host, handlers) -> None:
    assert handlers_run(hosts[host]) == handlers
