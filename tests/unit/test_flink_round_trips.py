"""How often the flink role contacts a host, run by ansible-playbook on this machine with the
role's own task files, vars and handlers: every module that would act on a host becomes a stand-in
module that answers what the scenario says that task's module would (the venv stamp's content,
what the look at FLINK_HOME finds, the units' state), and `cryptomon_files` a stand-in action that
reports the entries it was given and, as changed, those the scenario names. `set_fact`, `assert`,
`meta`, the includes and the `when`/`loop`/`register`/`notify` wiring stay as written.

Shown: a re-run where nothing changed contacts the host 9 times (21 before issue 15's cut: the
account tasks, the python run for FLINK_HOME, a stat or find per path, a task per file set and
a start per unit are gone); each thing that does change brings back exactly the tasks that act
on it (a venv to install, a stamp of the earlier format, a link or truststore not as wanted, a
changed CA, a unit not enabled, no address fact); the file sets hold what the tasks they replace did."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
STAND_IN = "host stand-in"
CONTROLLER_ACTIONS = {"ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug",
                      "ansible.builtin.meta", "ansible.builtin.import_tasks", "ansible.builtin.include_tasks",
                      "cryptomon_files"}
DROPPED_KEYS = {"until", "retries", "delay", "failed_when", "changed_when", "delegate_to", "check_mode",
                "run_once", "no_log"}
TASK_KEYS = {"name", "when", "loop", "loop_control", "register", "notify", "vars", "listen", "tags",
             "block", "always", "become", "diff"} | DROPPED_KEYS

FAKE_FACTS_MODULE = '''\
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
module.exit_json(changed=False, ansible_facts=module.params["facts"])
'''

# The module stand-in: answers the result the scenario gives for the task (by name), unchanged.
FAKE_HOST_MODULE = '''\
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"result": {"type": "raw"}}, supports_check_mode=True)
module.exit_json(**{**(module.params["result"] or {}), "changed": False, "msg": "STAND_IN"})
'''.replace("STAND_IN", STAND_IN)

FAKE_FILES_ACTION = '''\
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """cryptomon_files stand-in: the entries it got; changed = those in fake_changed."""

    def run(self, tmp=None, task_vars=None):
        args = self._task.args
        entries = args.get("files") or [{"dest": args["dest"]}]
        wanted = set(task_vars.get("fake_changed") or [])
        changed = [e["dest"] for e in entries if e["dest"] in wanted]
        return {"changed": bool(changed), "msg": "STAND_IN", "changed_files": changed, "notify_handlers": [],
                "entries": [{k: e.get(k) for k in ("dest", "state", "owner", "group", "mode", "template",
                                                   "remote_src", "vars")} for e in entries]}
'''.replace("STAND_IN", STAND_IN)


def action_of(task: dict[str, Any]) -> str:
    keys = [k for k in task if k not in TASK_KEYS]
    if len(keys) != 1:
        raise AssertionError(f"cannot tell the module of task {task.get('name')!r}: {keys}")
    return keys[0]


def stub(task: dict[str, Any]) -> dict[str, Any]:
    """The task with a host module replaced by the stand-in answering fake_results[its name]."""
    if "block" in task:
        out = {k: v for k, v in task.items() if k not in DROPPED_KEYS}
        for key in ("block", "always"):
            if key in task:
                out[key] = [stub(t) for t in task[key]]
        return out
    if action_of(task) in CONTROLLER_ACTIONS:
        return task
    out = {k: v for k, v in task.items() if k in TASK_KEYS and k not in DROPPED_KEYS}
    out["fake_host"] = {"result": "{{ fake_results[" + json.dumps(task["name"]) + "] | default({}) }}"}
    return out


def stubbed_roles(dest: Path) -> Path:
    roles = dest / "roles"
    shutil.copytree(ROLES / "flink", roles / "flink")
    # the cryptomon role's values, not its action plugins (the stand-in cryptomon_files takes their place)
    shutil.copytree(ROLES / "cryptomon", roles / "cryptomon",
                    ignore=shutil.ignore_patterns("action_plugins", "library"))
    meta = roles / "flink" / "meta" / "main.yml"
    meta.write_text(yaml.safe_dump({**yaml.safe_load(meta.read_text()), "dependencies": []}, sort_keys=False))
    for path in [*(roles / "flink" / "tasks").glob("*.yml"), roles / "flink" / "handlers" / "main.yml"]:
        path.write_text(yaml.safe_dump([stub(t) for t in yaml.safe_load(path.read_text())], sort_keys=False))
    return roles


HOME = "/opt/flink/venv/lib/python3.11/site-packages/pyflink"
DEFAULTS = yaml.safe_load((ROLES / "flink" / "defaults" / "main.yml").read_text())
VERSION = DEFAULTS["flink_version"]
JAR = f"flink-python-{VERSION}.jar"
PLUGIN = f"{HOME}/plugins/metrics-prometheus/flink-metrics-prometheus-{VERSION}.jar"
# as the role hashes it: the file lookup's text, trailing whitespace stripped
SHA = hashlib.sha256((ROLES / "flink" / "files" / "requirements-flink.txt").read_text().rstrip().encode()).hexdigest()
CA = "/etc/flink/tls/ca.crt"
CONNECTOR = (f"{HOME}/lib/{DEFAULTS['flink_kafka_connector_artifact']}-{DEFAULTS['flink_kafka_connector_version']}.jar"
             f" sha256:{DEFAULTS['flink_kafka_connector_sha256']}")


def stamp(text: str) -> dict[str, Any]:
    return {"content": base64.b64encode(text.encode()).decode()}


def found(path: str, **stat: Any) -> dict[str, Any]:
    return {"path": path, "isreg": True, "islnk": False, "pw_name": "root", "gr_name": "root", "mode": "0644",
            "size": 1, **stat}


LINK = found(f"{HOME}/lib/{JAR}", isreg=False, islnk=True, mode="0777", size=len(f"{HOME}/opt/{JAR}"))
TRUSTSTORE = found("/etc/flink/tls/truststore.p12", gr_name="flink", mode="0640")
LOOK = [found(f"{HOME}/opt/{JAR}"), LINK, found(PLUGIN), TRUSTSTORE]
UNITS_UP = ("Id=flink-jobmanager.service\nActiveState=active\nUnitFileState=enabled\n\n"
            "Id=flink-taskmanager.service\nActiveState=active\nUnitFileState=enabled\n")

STAMP_READ = "Read the venv's install stamp (the requirements' hash, then FLINK_HOME)"
LOOK_TASK = "Look at flink-python in opt/ and lib/, the PrometheusReporter plugin and the truststore"
UNITS_READ = "Read the state of the Flink units"
CONNECTOR_READ = "Read the connector's verification stamp (only while the jar is there)"
ADDRESS = "Find this host's private address (bind address of REST, RPC, blob and data)"
HOME_PROBE = "Find FLINK_HOME inside the venv (after an install, or a stamp without it)"
RERUN_RESULTS = {
    # when they run
    HOME_PROBE: {"stdout": HOME + "\n", "rc": 0},
    ADDRESS: {"ansible_facts": {"ansible_default_ipv4": {"address": "10.0.0.8"}}},
    CONNECTOR_READ: {"stdout": CONNECTOR + "\n"},
    STAMP_READ: stamp(f"{SHA}\n{HOME}\n"),
    LOOK_TASK: {"files": LOOK, "skipped_paths": {}},
    UNITS_READ: {"stdout": UNITS_UP},
}
DIRS_SET = "Create Flink dirs (and file:// checkpoint and savepoint dirs), install the CA, certificate and key copies"
CONF_SET = "Copy the stock logging configs next to config.yaml, render the environment file and the units"
RERUN = [DIRS_SET, STAMP_READ, LOOK_TASK, CONNECTOR_READ,
         "Build the keystore from the host key and certificate", CONF_SET, "Render config.yaml",
         "Install the Flink jobs' Kafka password", UNITS_READ]

# host -> what the stand-ins answer (over the re-run's), files reported changed, host values.
SCENARIOS: dict[str, dict[str, Any]] = {
    "rerun": {},
    "old-stamp": {"results": {STAMP_READ: stamp(f"{SHA}\n")}},
    "new-venv": {"results": {STAMP_READ: {"failed": False}}},
    # no link, the truststore's mode changed by hand, a unit disabled, no address fact yet
    "drifted": {"results": {LOOK_TASK: {"files": [{**f, "mode": "0644"} if f is TRUSTSTORE else f
                                                  for f in LOOK if f is not LINK]},
                            UNITS_READ: {"stdout": UNITS_UP.replace("=enabled", "=disabled")}},
                "facts": {"ansible_default_ipv4": {}}},
    # after a wheel upgrade (the link points elsewhere, the old version's is there too) and a new CA
    "upgraded": {"results": {LOOK_TASK: {"files": [{**f, "size": 3} if f is LINK else f for f in LOOK]
                                         + [{**LINK, "path": f"{HOME}/lib/flink-python-0.9.jar"}]}},
                 "changed": [CA]},
    "plaintext": {"vars": {"cryptomon_flink_plaintext": True, "cryptomon_kafka_plaintext": True}},
}


# The host's facts as the cryptomon role's prepare.yml reads them: the role's packages installed,
# the flink accounts as the role makes them; the address an earlier role gathered.
INSTALLED = {name: [{"name": name, "version": "1.0-1", "arch": "amd64"}]
             for name in ("openjdk-17-jre-headless", "python3-venv", "libpython3.11", "python3-packaging")}
FACTS = {"packages": INSTALLED, "getent_group": {"flink": ["x", "999", ""]},
         "getent_passwd": {"flink": ["x", "999", "999", "", "/var/lib/flink", "/usr/sbin/nologin"]},
         "ansible_default_ipv4": {"address": "10.0.0.9"}}
JOBMANAGER = "rerun"


def inventory(state_dir: Path) -> dict[str, Any]:
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "scenario_facts": {**FACTS, **spec.get("facts", {})},
                    "fake_results": {**RERUN_RESULTS, **spec.get("results", {})},
                    "fake_changed": spec.get("changed", []), **spec.get("vars", {})}
             for name, spec in SCENARIOS.items()}
    return {"all": {"vars": {"cryptomon_state_dir": str(state_dir), "cryptomon_flink_prometheus_enabled": True,
                             # several TaskManagers (the scenarios), as if on shared storage
                             "cryptomon_flink_storage_shared": True},
                    "children": {"flink_jobmanager": {"hosts": {JOBMANAGER: {}}},
                                 "flink_taskmanager": {"hosts": hosts}}}}


def playbook() -> list[dict[str, Any]]:
    return [{"name": "flink", "hosts": "flink_taskmanager", "gather_facts": False,
             "pre_tasks": [
                 {"name": "Fake the host's facts", "fake_facts": {"facts": "{{ scenario_facts }}"}},
                 {"name": "Load the shared values", "ansible.builtin.include_role": {
                     "name": "cryptomon", "tasks_from": "shared.yml", "public": True}}],
             "roles": ["flink"]}]


def run(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """host -> [{name, result}] of its tasks and handlers that ran (not skipped)."""
    roles = stubbed_roles(tmp_path)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "fake_facts.py").write_text(FAKE_FACTS_MODULE)
    (tmp_path / "library" / "fake_host.py").write_text(FAKE_HOST_MODULE)
    (tmp_path / "action_plugins").mkdir()
    (tmp_path / "action_plugins" / "cryptomon_files.py").write_text(FAKE_FILES_ACTION)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory(tmp_path / "state")))
    env = {"ANSIBLE_ROLES_PATH": str(roles), "ANSIBLE_LIBRARY": str(tmp_path / "library"),
           "ANSIBLE_ACTION_PLUGINS": str(tmp_path / "action_plugins"),
           "ANSIBLE_FILTER_PLUGINS": str(ROLES / "cryptomon" / "filter_plugins")}
    out = run_playbook(playbook(), workdir=tmp_path, inventory=tmp_path / "hosts.yml", env=env, json_output=True,
                       timeout=600).assert_ok().json
    return {host: [{"name": t["task"]["name"].split(" : ", 1)[-1], "result": t["hosts"][host]}
                   for p in out["plays"] for t in p["tasks"]
                   if host in t["hosts"] and not t["hosts"][host].get("skipped")]
            for host in SCENARIOS}


def host_tasks(ran: list[dict[str, Any]]) -> list[str]:
    """The tasks that contacted the host (a loop counts once per task; a no_log result, censored,
    counts too: the stand-in of a no_log task)."""
    def contacted(result: dict[str, Any]) -> bool:
        return result.get("msg") == STAND_IN or "censored" in result or any(
            contacted(r) for r in result.get("results", []) if not r.get("skipped"))
    return [t["name"] for t in ran if contacted(t["result"])]


def result_of(ran: list[dict[str, Any]], task: str) -> dict[str, Any]:
    (result,) = [t["result"] for t in ran if t["name"] == task]
    return result


def extra(ran: list[dict[str, Any]]) -> list[str]:
    """The host tasks beyond the re-run's, in order."""
    return [name for name in host_tasks(ran) if name not in RERUN]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    return run(tmp_path_factory.mktemp("flink_round_trips"))


def test_a_rerun_without_changes_contacts_the_host_nine_times(hosts) -> None:
    assert host_tasks(hosts["rerun"]) == RERUN


LINK_TASK = "Link flink-python into lib/ (PyFlink thread mode)"


@pytest.mark.parametrize(("host", "tasks"), [
    ("old-stamp", ["Find FLINK_HOME inside the venv (after an install, or a stamp without it)",
                   "Stamp the venv with the requirements it holds and FLINK_HOME"]),
    ("new-venv", ["Copy the hash-locked requirements", "Install apache-flink into the venv (every file checked "
                  "against its pinned hash)", "Find FLINK_HOME inside the venv (after an install, or a stamp "
                  "without it)", "Stamp the venv with the requirements it holds and FLINK_HOME"]),
    ("drifted", [LINK_TASK, "Give the truststore to the flink group",
                 ADDRESS, "Start and enable the Flink units"]),
    ("upgraded", [LINK_TASK, "Remove flink-python links of other versions from lib/",
                  "Write the store password for keytool (never a process argument)", "Remove the old truststore",
                  "Import the CA into a new truststore", "Remove the store password file",
                  "Give the truststore to the flink group"]),
])
def test_each_change_brings_back_only_the_tasks_that_act_on_it(hosts, host, tasks) -> None:
    assert extra(hosts[host]) == tasks


def test_the_old_version_link_is_the_one_removed(hosts) -> None:
    removed = result_of(hosts["upgraded"], "Remove flink-python links of other versions from lib/")["results"]
    assert [r["item"] for r in removed] == [f"{HOME}/lib/flink-python-0.9.jar"]


def test_the_stamp_gives_flink_home_to_the_files(hosts) -> None:
    for host in ("rerun", "old-stamp", "new-venv"):
        env = [e for e in result_of(hosts[host], CONF_SET)["entries"] if e["dest"] == "/etc/flink/log4j.properties"]
        assert env and env[0]["remote_src"] == f"{HOME}/conf/log4j.properties", host


def test_only_the_unit_not_enabled_is_started(hosts) -> None:
    started = result_of(hosts["drifted"], "Start and enable the Flink units")["results"]
    assert [r["item"] for r in started] == ["taskmanager"]


def test_the_file_sets_hold_what_the_tasks_they_replace_did(hosts) -> None:
    dirs = result_of(hosts["rerun"], DIRS_SET)["entries"]
    assert [(e["dest"], e["state"], e["owner"], e["group"], e["mode"]) for e in dirs] == [
        ("/opt/flink", "directory", "root", "flink", "0755"),
        ("/etc/flink", "directory", "root", "flink", "0755"),
        ("/var/log/flink", "directory", "flink", "flink", "0755"),
        ("/var/lib/flink", "directory", "flink", "flink", "0755"),
        ("/var/lib/flink/tmp", "directory", "flink", "flink", "0755"),
        ("/var/lib/flink/checkpoints", "directory", "flink", "flink", "0750"),
        ("/var/lib/flink/savepoints", "directory", "flink", "flink", "0750"),
        ("/etc/flink/tls", "directory", "root", "flink", "0750"),
        (CA, None, "root", "flink", "0644"),
        ("/etc/flink/tls/client.crt", None, "root", "flink", "0644"),
        ("/etc/flink/tls/client.key", None, "root", "flink", "0640")]
    plain = result_of(hosts["plaintext"], DIRS_SET)["entries"]
    assert [e["dest"] for e in plain] == [e["dest"] for e in dirs[:7]]
    conf = result_of(hosts["rerun"], CONF_SET)["entries"]
    # the set's owner, group and mode are root, flink and 0644; the units' group is root
    assert [(e["dest"], e["group"]) for e in conf] == [
        ("/etc/flink/log4j-console.properties", None), ("/etc/flink/log4j-cli.properties", None),
        ("/etc/flink/log4j.properties", None), ("/etc/flink/flink.env", None),
        ("/etc/systemd/system/flink-jobmanager.service", "root"),
        ("/etc/systemd/system/flink-taskmanager.service", "root")]
    assert [e["remote_src"] for e in conf[:3]] == [f"{HOME}/conf/{e['dest'].rsplit('/', 1)[1]}" for e in conf[:3]]
    assert [(e["template"], e["vars"]) for e in conf[3:]] == [
        ("flink.env.j2", None), ("flink.service.j2", {"item": "jobmanager"}),
        ("flink.service.j2", {"item": "taskmanager"})]
    # a TaskManager only host: its unit only
    assert [e["dest"] for e in result_of(hosts["plaintext"], CONF_SET)["entries"]][-2:] == [
        "/etc/flink/flink.env", "/etc/systemd/system/flink-taskmanager.service"]


def test_plaintext_has_no_tls_tasks_and_no_kafka_password(hosts) -> None:
    assert host_tasks(hosts["plaintext"]) == [t for t in RERUN if t not in (
        "Build the keystore from the host key and certificate", "Install the Flink jobs' Kafka password")]
