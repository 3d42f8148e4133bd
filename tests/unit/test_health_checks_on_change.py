"""The health waits of the kafka, flink, monitoring, frontdoor and cryptomon_services roles run
only when the service started, restarted or reloaded in this run (a handler fired), or when
`cryptomon_health_checks_always` is true; a re-run where nothing changed skips them.

The roles' own task files run on localhost from their start task on: every module call becomes
a `debug` (changed when the scenario says the start task changed), `set_fact`, `meta` and the
`when`/`loop`/`register`/`notify` wiring stay as written, and the roles' real handlers run the
same way, so the facts the handlers set and the conditions that read them are the real ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"

# Keys that only make sense with the real module's result, or that would act on the host.
DROPPED_KEYS = {"until", "retries", "delay", "failed_when", "changed_when", "delegate_to",
                "check_mode", "tags", "run_once", "daemon_reload"}
KEPT_ACTIONS = {"ansible.builtin.set_fact", "ansible.builtin.meta"}
TASK_KEYS = {"name", "when", "loop", "loop_control", "register", "notify", "vars", "listen",
             "block", "no_log", "become"} | DROPPED_KEYS


def action_of(task: dict[str, Any]) -> str | None:
    """The module key of a task (None for a block)."""
    keys = [k for k in task if k not in TASK_KEYS]
    if "block" in task:
        return None
    if len(keys) != 1:
        raise AssertionError(f"cannot tell the module of task {task.get('name')!r}: {keys}")
    return keys[0]


def stub(task: dict[str, Any], started_task: str) -> dict[str, Any]:
    """The task with its module replaced by a debug; `started_task` reports changed when the
    scenario says the service was (re)started by it."""
    if "block" in task:
        out = {k: v for k, v in task.items() if k not in DROPPED_KEYS}
        out["block"] = [stub(t, started_task) for t in task["block"]]
        return out
    action = action_of(task)
    if action in KEPT_ACTIONS:
        return {k: v for k, v in task.items() if k not in DROPPED_KEYS}
    out = {k: v for k, v in task.items() if k in TASK_KEYS and k not in DROPPED_KEYS}
    out["ansible.builtin.debug"] = {"msg": "stand-in"}
    out["changed_when"] = "scenario.started | default(false)" if task.get("name") == started_task else False
    return out


def tasks_from(role: str, tasks_file: str, first_task: str) -> list[dict[str, Any]]:
    tasks = yaml.safe_load((ROLES / role / "tasks" / tasks_file).read_text())
    names = [t.get("name") for t in tasks]
    assert first_task in names, f"{role}/tasks/{tasks_file}: no task {first_task!r} (renamed?)"
    return tasks[names.index(first_task):]


def handlers_of(role: str) -> list[dict[str, Any]]:
    return [stub(h, "") for h in yaml.safe_load((ROLES / role / "handlers" / "main.yml").read_text())]


# role -> tasks file, its start task, the wait tasks, the handler names its tasks notify,
# the role values the tasks read (stand-ins).
ROLE_CASES: dict[str, dict[str, Any]] = {
    "kafka": {
        "file": "service.yml", "start": "Start and enable kafka",
        "waits": ["Wait until the node is healthy", "Wait until the JMX exporter agent answers"],
        "notify": ["Restart kafka"],
        "vars": {"cryptomon_kafka_jmx_exporter_enabled": True},
    },
    "flink": {
        "file": "service.yml", "start": "Start and enable the Flink units",
        "waits": ["Wait for the JobManager REST API",
                  "Wait until this TaskManager is registered with the JobManager",
                  "Wait until each process's PrometheusReporter answers"],
        "notify": ["Restart flink"],
        "vars": {"flink_components": ["jobmanager", "taskmanager"], "flink_is_jobmanager": True,
                 "flink_is_taskmanager": True, "cryptomon_flink_prometheus_enabled": True,
                 # the role starts only the units its state read found not active or not enabled
                 "flink_components_to_start": "{{ flink_components if scenario.started | default(false) else [] }}"},
    },
    "monitoring": {
        "file": "service.yml", "start": "Start and enable Prometheus and Alertmanager",
        "waits": ["Wait until Prometheus and Alertmanager are ready"],
        "notify": ["Reload prometheus", "Restart prometheus", "Reload prometheus-alertmanager",
                   "Restart prometheus-alertmanager"],
        "vars": {"monitoring_self_prometheus": "127.0.0.1", "monitoring_self_alertmanager": "127.0.0.1",
                 "cryptomon_prometheus_port": 9090, "cryptomon_alertmanager_port": 9095,
                 "monitoring_units": {"prometheus": "prometheus.service",
                                      "alertmanager": "prometheus-alertmanager.service",
                                      "node_exporter": "prometheus-node-exporter.service"}},
    },
    "node_exporter": {
        "role": "monitoring", "file": "node_exporter.yml", "start": "Start and enable node exporter",
        "waits": ["Wait until node exporter listens"],
        "notify": ["Restart prometheus-node-exporter"],
        "vars": {"monitoring_units": {"prometheus": "prometheus.service",
                                      "alertmanager": "prometheus-alertmanager.service",
                                      "node_exporter": "prometheus-node-exporter.service"}},
    },
    "frontdoor": {
        "file": "configure.yml", "start": "Start and enable nginx",
        "waits": ["Wait until the front door asks for a login"],
        "notify": ["Reload nginx"],
        "vars": {},
    },
    "cryptomon_services": {
        "file": "service.yml", "start": "Start and enable the enabled units not yet running or enabled",
        "waits": ["Wait until every enabled unit is active", "Wait until the dashboard answers"],
        "notify": ["Restart cryptomon services"],
        "vars": {"cryptomon_services_units_enabled": ["cryptomon-alerter.service"],
                 "cryptomon_services_units_all": ["cryptomon-alerter.service", "cryptomon-discord-stub.service"],
                 "cryptomon_services_dashboard_enabled": True,
                 "cryptomon_services_unit_states": "{{ scenario.unit_states | default(unit_states_running) }}",
                 "unit_states_running": {
                     "cryptomon-alerter.service": {"ActiveState": "active", "UnitFileState": "enabled"},
                     "cryptomon-discord-stub.service": {"ActiveState": "inactive", "UnitFileState": "disabled"}}},
    },
}

NOTIFIER = {
    "name": "A file of the role changed (scenario)",
    "ansible.builtin.debug": {"msg": "notify {{ scenario.notify }}"},
    "changed_when": True,
    "notify": "{{ scenario.notify }}",
    "when": "scenario.notify is defined",
}


def play(case: str, scenarios: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = ROLE_CASES[case]
    role = spec.get("role", case)
    return {
        "name": case,
        "hosts": ",".join(scenarios),
        "gather_facts": False,
        "vars": {"scenarios": scenarios, "scenario": "{{ scenarios[inventory_hostname] }}",
                 "cryptomon_health_checks_always": "{{ scenario.always | default(false) }}",
                 **spec["vars"]},
        "handlers": handlers_of(role),
        "tasks": [NOTIFIER] + [stub(t, spec["start"]) for t in tasks_from(role, spec["file"], spec["start"])],
    }


def run(tmp_path: Path, plays: list[dict[str, Any]], groups: dict[str, list[str]]) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    hosts = sorted({h for p in plays for h in p["hosts"].split(",")})
    inventory = {"all": {"hosts": {h: {"ansible_connection": "local",
                                       "ansible_python_interpreter": sys.executable} for h in hosts},
                         "children": {g: {"hosts": {h: None for h in members}} for g, members in groups.items()}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    res = run_playbook(plays, workdir=tmp_path, inventory=tmp_path / "inventory.yml", json_output=True)
    out = res.json
    assert res.rc == 0, failures(out) or res.stderr[-2000:]
    return out


def failures(out: dict[str, Any]) -> list[str]:
    return [f"{p['play']['name']} / {t['task']['name']} / {host}: {r.get('msg')}"
            for p in out["plays"] for t in p["tasks"] for host, r in t["hosts"].items() if r.get("failed")]


def ran(out: dict[str, Any], play_name: str, task: str) -> dict[str, bool]:
    """host -> whether the task ran (not skipped) in that play."""
    result: dict[str, bool] = {}
    for p in out["plays"]:
        if p["play"]["name"] != play_name:
            continue
        for t in p["tasks"]:
            if t["task"]["name"] == task:
                for host, r in t["hosts"].items():
                    result[host] = result.get(host, False) or not r.get("skipped", False)
    return result


# cryptomon_services starts only the units it found not active or not enabled.
UNITS_STOPPED = {"cryptomon-alerter.service": {"ActiveState": "inactive", "UnitFileState": "enabled"},
                 "cryptomon-discord-stub.service": {"ActiveState": "inactive", "UnitFileState": "disabled"}}


def scenarios_for(case: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        f"{case}-idle": {},
        f"{case}-started": {"started": True, "unit_states": UNITS_STOPPED},
        f"{case}-always": {"always": True},
    }
    for i, name in enumerate(ROLE_CASES[case]["notify"]):
        out[f"{case}-notified-{i}"] = {"notify": name}
    return out


SINGLE_HOST_CASES = [c for c in ROLE_CASES if c != "flink"]


UNITS_ACTIVATING = {"cryptomon-alerter.service": {"ActiveState": "activating", "UnitFileState": "enabled"},
                    "cryptomon-discord-stub.service": {"ActiveState": "inactive", "UnitFileState": "disabled"}}
# Flink with an idle JobManager: a TaskManager waits only for its own start or restart.
FLINK_JM_IDLE = {"jm": {}, "tm-idle": {}, "tm-started": {"started": True},
                 "tm-notified": {"notify": "Restart flink"}, "tm-always": {"always": True}}


@pytest.fixture(scope="module")
def single_host_runs(tmp_path_factory) -> dict[str, Any]:
    """One ansible-playbook run (each costs seconds), one play per role, one host per scenario."""
    scenarios = {case: scenarios_for(case) for case in SINGLE_HOST_CASES}
    scenarios["cryptomon_services"]["svc-activating"] = {"unit_states": UNITS_ACTIVATING}
    plays = [play(case, scenarios[case]) for case in SINGLE_HOST_CASES] + [play("flink", FLINK_JM_IDLE)]
    groups = {"flink_jobmanager": ["jm"], "flink_taskmanager": list(FLINK_JM_IDLE)[1:]}
    return run(tmp_path_factory.mktemp("health"), plays, groups)


@pytest.mark.parametrize("case", SINGLE_HOST_CASES)
def test_waits_run_only_after_a_start_a_restart_or_when_asked(single_host_runs, case):
    for wait in ROLE_CASES[case]["waits"]:
        status = ran(single_host_runs, case, wait)
        assert status, f"{case}: task {wait!r} not found in the run"
        assert status.pop(f"{case}-idle") is False, f"{case}: {wait!r} ran although nothing started or restarted"
        assert all(status.values()), f"{case}: {wait!r} skipped on {[h for h, v in status.items() if not v]}"


def test_the_handlers_really_ran_in_the_notified_scenarios(single_host_runs):
    # Guards the test itself: a notification that reached no handler would leave the waits
    # skipped and the assertions above would blame the wrong thing.
    status = ran(single_host_runs, "frontdoor", "Reload nginx")
    assert status == {"frontdoor-notified-0": True}, status


def test_a_unit_found_activating_is_waited_for(single_host_runs):
    # systemd does not "start" a unit that is still activating (maybe crash-looping), so no
    # start reports a change: the state read before the start decides.
    assert ran(single_host_runs, "cryptomon_services", "Wait until every enabled unit is active")["svc-activating"]


def test_flink_waits_follow_this_hosts_start_or_restart(single_host_runs):
    for wait in ROLE_CASES["flink"]["waits"]:
        assert ran(single_host_runs, "flink", wait) == {
            "jm": False, "tm-idle": False, "tm-started": True, "tm-notified": True, "tm-always": True}, wait


def test_taskmanagers_wait_again_when_only_the_jobmanager_restarted(tmp_path):
    jm_restarted = {"jm": {"notify": "Restart flink"}, "tm": {}}
    out = run(tmp_path, [play("flink", jm_restarted)], {"flink_jobmanager": ["jm"], "flink_taskmanager": ["tm"]})
    for wait in ROLE_CASES["flink"]["waits"]:
        assert ran(out, "flink", wait) == {"jm": True, "tm": True}, wait


def test_the_switch_is_one_shared_documented_value_off_by_default():
    defaults = yaml.safe_load((ROLES / "cryptomon" / "defaults" / "main.yml").read_text())
    assert defaults["cryptomon_health_checks_always"] is False
    spec = yaml.safe_load((ROLES / "cryptomon" / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["cryptomon_health_checks_always"]["type"] == "bool"
    for role in ("kafka", "flink", "monitoring", "frontdoor", "cryptomon_services"):
        assert "cryptomon_health_checks_always" not in (ROLES / role / "defaults" / "main.yml").read_text(), role
        assert "`cryptomon_health_checks_always`" in (ROLES / role / "README.md").read_text(), role


def test_the_rolling_restart_checks_every_restarted_node_unconditionally():
    restart_one = yaml.safe_load((ROLES / "kafka" / "tasks" / "restart_one.yml").read_text())
    include = next(t for t in restart_one if "ansible.builtin.include_tasks" in t)
    assert include["ansible.builtin.include_tasks"] == "health.yml" and "when" not in include
    health = (ROLES / "kafka" / "tasks" / "health.yml").read_text()
    for fact in ("cryptomon_health_checks_always", "kafka_just_started", "kafka_restart_pending"):
        assert fact not in health, fact
