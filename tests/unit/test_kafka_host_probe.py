"""The kafka role reads what a converge with nothing to do only looks at in one round trip
(kafka_host_probe: stamps, current symlink, metadata, keystore and CA file, unit state, private
address) and installs its dirs, configuration, client settings and unit as one cryptomon_files
set. Checked here: the module's answers (the address fact exactly as setup's), the keystore
check against what the role's own TLS tasks write, the tasks each answer skips, and that only the
set's files Kafka reads reach the rolling restart's handlers, only when they change."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "kafka"
spec = importlib.util.spec_from_file_location("kafka_host_probe", ROLE / "library" / "kafka_host_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

PROBE_TASK = "Read what the node already has (stamps, symlink, metadata, TLS files, unit, private address)"
TLS_BLOCK = "Write the node's keystore and the CA it trusts (unless they are as wanted)"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the role's tasks chown to root")


def role_task(tasks_file: str, name: str) -> dict[str, Any]:
    for task in yaml.safe_load((ROLE / "tasks" / tasks_file).read_text()):
        if task.get("name") == name:
            return copy.deepcopy(task)
    raise AssertionError(f"roles/kafka/tasks/{tasks_file} has no task {name!r}")


def playbook(tmp_path: Path, plays: list[dict], inventory: str | Path = "localhost,",
             variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """ansible-playbook's JSON report (every play's tasks and handlers)."""
    env = {"ANSIBLE_LIBRARY": f"{REPO / 'roles' / 'cryptomon' / 'library'}:{ROLE / 'library'}",
           "ANSIBLE_ACTION_PLUGINS": str(REPO / "roles" / "cryptomon" / "action_plugins"),
           "ANSIBLE_FILTER_PLUGINS": f"{REPO / 'roles' / 'cryptomon' / 'filter_plugins'}:{ROLE / 'filter_plugins'}"}
    return run_playbook(plays, workdir=tmp_path, inventory=inventory, extra_vars=variables, env=env,
                        json_output=True).json


def results(out: dict[str, Any], host: str = "localhost") -> dict[str, dict]:
    """Task name (without its role's prefix) -> this host's result (a task run twice keeps its last)."""
    return {t["task"]["name"].split(" : ", 1)[-1]: t["hosts"][host]
            for p in out["plays"] for t in p["tasks"] if host in t["hosts"]}


def ran(out: dict[str, Any], host: str = "localhost") -> list[str]:
    return [name for name, r in results(out, host).items() if not r.get("skipped")]


def failures(out: dict[str, Any]) -> list[str]:
    return [f"{t['task']['name']}: {r.get('msg')}" for p in out["plays"] for t in p["tasks"]
            for r in t["hosts"].values() if r.get("failed")]


# --- the module's answers -----------------------------------------------------------------------
def test_files_are_read_only_while_their_artifact_is_there(tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    stamp.write_text("release sha512:abc\n")
    assert probe.read_text(str(stamp)) == "release sha512:abc\n"
    assert probe.read_text(str(stamp), str(tmp_path / "no-release")) is None
    assert probe.read_text(str(stamp), str(tmp_path)) == "release sha512:abc\n"
    assert probe.read_text(str(tmp_path / "no-stamp")) is None


def test_links_give_their_target_and_anything_else_none(tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to(tmp_path / "kafka_2.13-4.1.1")
    assert probe.link_target(str(tmp_path / "current")) == str(tmp_path / "kafka_2.13-4.1.1")
    (tmp_path / "dir").mkdir()
    assert probe.link_target(str(tmp_path / "dir")) is None
    assert probe.link_target(str(tmp_path / "absent")) is None


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Any]:
    key, cert, ca = tmp_path / "host.key", tmp_path / "host.crt", tmp_path / "ca.crt"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n")
    cert.write_text("\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n\n")
    bundle = tmp_path / "kafka.pem"
    bundle.write_text("-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n"
                      "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n")
    bundle.chmod(0o640)
    return {"dest": str(bundle), "owner": "root", "group": str(os.getgid()), "mode": "0640",
            "parts": [str(key), str(cert)], "ca": ca}


@as_root
def test_a_bundle_matches_only_with_its_parts_owner_group_and_mode(pem: dict[str, Any]) -> None:
    spec_ = {k: v for k, v in pem.items() if k != "ca"}
    assert probe.matches(spec_)
    assert not probe.matches({**spec_, "mode": "0644"})
    assert not probe.matches({**spec_, "group": "no-such-group-here"})
    assert not probe.matches({**spec_, "parts": list(reversed(spec_["parts"]))})
    assert not probe.matches({**spec_, "parts": [*spec_["parts"], str(pem["ca"])]})
    assert not probe.matches({**spec_, "parts": [spec_["parts"][0], "/nonexistent"]})
    Path(spec_["parts"][1]).write_text("-----BEGIN CERTIFICATE-----\nRENEWED\n-----END CERTIFICATE-----\n")
    assert not probe.matches(spec_)


@as_root
def test_a_copy_matches_only_byte_for_byte(tmp_path: Path, pem: dict[str, Any]) -> None:
    dest = tmp_path / "copy.crt"
    dest.write_bytes(pem["ca"].read_bytes())
    dest.chmod(0o644)
    spec_ = {"dest": str(dest), "owner": "0", "group": str(os.getgid()), "mode": "0644", "copy_of": str(pem["ca"])}
    assert probe.matches(spec_)
    dest.write_bytes(pem["ca"].read_bytes().rstrip() + b"\n")  # a stripped copy is another file
    assert not probe.matches(spec_)
    dest.unlink()
    dest.symlink_to(pem["ca"])
    assert not probe.matches(spec_)


class FakeModule:
    """get_bin_path and run_command answering as AnsibleModule's would, with fixed output."""

    def __init__(self, out: str, rc: int = 0, binary: str | None = "/usr/bin/systemctl") -> None:
        self.out, self.rc, self.binary, self.calls = out, rc, binary, []

    def get_bin_path(self, name: str, *_: Any, **__: Any) -> str | None:
        return self.binary

    def run_command(self, argv: list[str], **_: Any) -> tuple[int, str, str]:
        self.calls.append(argv)
        return self.rc, self.out, ""


def test_the_private_address_is_the_fact_setup_gathers(tmp_path: Path) -> None:
    """On this machine: the probe's ansible_default_ipv4 and setup's, side by side."""
    plays = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        {"name": "setup", "ansible.builtin.setup": {"gather_subset": ["!all", "!min", "network"],
                                                    "filter": ["ansible_default_ipv4"]}, "register": "by_setup"},
        {"name": "probe", "kafka_host_probe": {"default_ipv4": True}, "register": "by_probe"},
        {"name": "compare", "ansible.builtin.debug": {"msg": "{{ [by_setup.ansible_facts.ansible_default_ipv4,"
                                                              " by_probe.ansible_facts.ansible_default_ipv4] }}"}},
    ]}, {"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [
        # a later play (the flink role's) finds the fact of this run
        {"name": "the fact", "ansible.builtin.debug": {
            "msg": "{{ [ansible_default_ipv4.address | default(''),"
                   " ansible_facts.default_ipv4.address | default('')] }}"}},
    ]}]
    variables = {"ansible_python_interpreter": sys.executable}
    out = playbook(tmp_path, plays, variables=variables)
    assert not failures(out), failures(out)
    by_setup, by_probe = results(out)["compare"]["msg"]
    if not by_setup.get("address"):
        pytest.skip("this machine has no IPv4 default route: nothing to compare")
    assert by_probe == by_setup
    assert results(out)["the fact"]["msg"] == [by_setup.get("address", "")] * 2


def test_no_ip_binary_means_no_fact_as_with_setup() -> None:
    assert probe.default_ipv4(FakeModule("", binary=None)) is None


def test_unit_states_come_from_one_systemctl_show() -> None:
    show = ("Id=kafka.service\nActiveState=active\nUnitFileState=enabled\n\n"
            "Id=other.service\nActiveState=inactive\nUnitFileState=\n")
    module = FakeModule(show)
    states = probe.unit_states(module, ["kafka.service", "other.service"])
    assert states == {"kafka.service": {"ActiveState": "active", "UnitFileState": "enabled"},
                      "other.service": {"ActiveState": "inactive", "UnitFileState": ""}}
    assert module.calls[0][-2:] == ["kafka.service", "other.service"]
    # no systemd (a container, a controller): no answer, the role's start task then runs
    assert probe.unit_states(FakeModule("", rc=1), ["kafka.service"]) == {}


def test_bad_specs_are_named() -> None:
    failed: list[str] = []

    def fail_json(msg: str) -> None:
        failed.append(msg)
        raise SystemExit

    for params, words in [({"files": {"x": {}}, "matches": {}}, "files.x needs a path"),
                          ({"files": {}, "matches": {"k": {"dest": "/d", "owner": "root", "group": "g",
                                                         "mode": "0640"}}}, "matches.k needs"),
                          ({"files": {}, "matches": {"k": {"dest": "/d", "owner": "root", "group": "g",
                                                         "mode": "rw", "copy_of": "/c"}}}, "mode must be octal")]:
        with pytest.raises(SystemExit):
            probe.check_specs(SimpleNamespace(params=params, fail_json=fail_json))
        assert words in failed[-1]


# --- the keystore: the probe against the role's own TLS tasks ------------------------------------
@as_root
def test_the_key_is_read_and_the_keystore_written_only_when_they_differ(tmp_path: Path, pem: dict[str, Any]) -> None:
    tls = tmp_path / "etc-kafka-tls"
    tls.mkdir()
    variables = {
        "ansible_python_interpreter": sys.executable, "cryptomon_kafka_plaintext": False,
        "cryptomon_kafka_jmx_exporter_enabled": False, "cryptomon_kafka_jmx_exporter_address": "",
        "kafka_install_dir": str(tmp_path / "opt"), "kafka_metadata_dir": str(tmp_path / "meta"),
        "kafka_tls_dir": str(tls), "kafka_group": "root",
        "cryptomon_tls_key_file": pem["parts"][0], "cryptomon_tls_cert_file": pem["parts"][1],
        "cryptomon_tls_ca_file": str(pem["ca"]),
    }
    plays = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
              "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
              "tasks": [role_task("install.yml", PROBE_TASK), role_task("configure.yml", TLS_BLOCK)],
              "handlers": [{"name": "Restart kafka", "ansible.builtin.debug": {"msg": "restart"}}]}]

    def converge() -> dict[str, Any]:
        out = playbook(tmp_path, plays, variables=variables)
        assert not failures(out), failures(out)
        return out

    first = converge()
    assert "Write the node's keystore and install the CA the node trusts" in ran(first)
    assert results(first)["Write the node's keystore and install the CA the node trusts"]["changed"]
    # exactly the bundle the probe expects
    assert (tls / "kafka.pem").read_text() == Path(pem["dest"]).read_text()
    assert (tls / "ca.crt").read_bytes() == pem["ca"].read_bytes()
    again = converge()
    assert ran(again) == [PROBE_TASK]
    assert results(again)[PROBE_TASK]["matches"] == {"keystore": True, "truststore": True}
    # the private address was not asked for: the exporter is off
    assert "ansible_default_ipv4" not in results(again)[PROBE_TASK].get("ansible_facts", {})
    # a renewed certificate, then a keystore opened up: written again, the node restarted
    Path(pem["parts"][1]).write_text("-----BEGIN CERTIFICATE-----\nRENEWED\n-----END CERTIFICATE-----\n")
    renewed = converge()
    assert "Read the host key and certificate" in ran(renewed)
    assert "RENEWED" in (tls / "kafka.pem").read_text()
    assert "Restart kafka" in ran(renewed)
    (tls / "kafka.pem").chmod(0o644)
    assert "Read the host key and certificate" in ran(converge())
    assert (tls / "kafka.pem").stat().st_mode & 0o777 == 0o640
    assert ran(converge()) == [PROBE_TASK]


# --- what each answer skips ---------------------------------------------------------------------
STATES = {
    "idle": {"links": {"current": "/opt/kafka/kafka_2.13-4.1.1"},
             "files": {"meta_properties": "cluster.id=abc\nnode.id=1\n"},
             "units": {"kafka.service": {"ActiveState": "active", "UnitFileState": "enabled"}}},
    "fresh": {"links": {"current": None}, "files": {"meta_properties": None}, "units": {}},
    "upgraded": {"links": {"current": "/opt/kafka/kafka_2.13-4.0.0"},
                 "files": {"meta_properties": "cluster.id=abc\n"},
                 "units": {"kafka.service": {"ActiveState": "active", "UnitFileState": "enabled"}}},
    "stopped": {"links": {"current": "/opt/kafka/kafka_2.13-4.1.1"},
                "files": {"meta_properties": "cluster.id=abc\n"},
                "units": {"kafka.service": {"ActiveState": "inactive", "UnitFileState": "enabled"}}},
    "crash-looping": {"links": {"current": "/opt/kafka/kafka_2.13-4.1.1"},
                      "files": {"meta_properties": "cluster.id=abc\n"},
                      "units": {"kafka.service": {"ActiveState": "activating", "UnitFileState": "enabled"}}},
    "disabled": {"links": {"current": "/opt/kafka/kafka_2.13-4.1.1"},
                 "files": {"meta_properties": "cluster.id=abc\n"},
                 "units": {"kafka.service": {"ActiveState": "active", "UnitFileState": "disabled"}}},
}
GUARDED = [("install.yml", "Point the current symlink at this release"),
           ("storage.yml", "Format KRaft storage (first run only)"),
           ("service.yml", "Start and enable kafka")]


def stand_in(task: dict[str, Any]) -> dict[str, Any]:
    """The task's name and `when` with a debug for its module (nothing acts on this machine)."""
    return {"name": task["name"], "when": task["when"], "ansible.builtin.debug": {"msg": "ran"}}


def test_each_answer_skips_only_its_own_task(tmp_path: Path) -> None:
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "kafka_host_state": state} for name, state in STATES.items()}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    plays = [{"hosts": "all", "gather_facts": False,
              "vars": {"kafka_release_dir": "/opt/kafka/kafka_2.13-4.1.1", "kafka_home": "/opt/kafka/current"},
              "tasks": [stand_in(role_task(f, name)) for f, name in GUARDED]}]
    out = playbook(tmp_path, plays, inventory=tmp_path / "inventory.yml")
    assert not failures(out)
    symlink, fmt, start = (name for _, name in GUARDED)
    assert ran(out, "idle") == []
    assert ran(out, "fresh") == [symlink, fmt, start]
    assert ran(out, "upgraded") == [symlink]
    assert ran(out, "stopped") == [start]
    assert ran(out, "crash-looping") == [start]  # systemd_service decides, as before
    assert ran(out, "disabled") == [start]


# --- the set and the rolling restart's handlers ---------------------------------------------------
@as_root
def test_only_changed_files_kafka_reads_reach_the_restart_handlers(tmp_path: Path) -> None:
    root = tmp_path / "node"
    variables = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "cryptomon_host_prepared": True, "kafka_user": "root", "kafka_group": "root",
        "kafka_install_dir": str(root / "opt" / "kafka"), "kafka_conf_dir": str(root / "etc" / "kafka"),
        "kafka_metadata_dir": str(root / "var" / "meta"), "kafka_data_dirs": [str(root / "var" / "data")],
        "kafka_unit_file": str(root / "systemd" / "kafka.service"),
        "kafka_unit_dropin_dir": str(root / "systemd" / "kafka.service.d"),
        # the probe's answers: TLS files as wanted (this test is about the set), the address fact
        "kafka_host_state": {"matches": {"keystore": True, "truststore": True}},
        "ansible_default_ipv4": {"address": "192.0.2.2"},
        # the rolling restart then has no node to restart here (each would be "just started")
        "kafka_just_started": True,
    }
    (root / "systemd").mkdir(parents=True)
    plays = [{"hosts": "cm-kafka", "gather_facts": False, "tasks": [
        {"name": "The role's configuration tasks, with its handlers",
         "ansible.builtin.include_role": {"name": "kafka", "tasks_from": "configure.yml"}},
        {"name": "Flush", "ansible.builtin.meta": "flush_handlers"},
        {"name": "Report", "ansible.builtin.debug": {"msg": "{{ kafka_restart_pending | default(false) }}"}},
    ]}]

    def converge(**extra: Any) -> dict[str, Any]:
        out = playbook(tmp_path, plays, inventory=REPO / "inventory" / "sandbox", variables={**variables, **extra})
        assert not failures(out), failures(out)
        return out

    def restarted(out: dict[str, Any]) -> bool:
        return "Rolling restart of changed Kafka nodes" in ran(out, "cm-kafka")

    first = converge()
    files = results(first, "cm-kafka")["Install Kafka's dirs, configuration, client settings and unit"]
    assert files["notify_handlers"] == ["Restart kafka"]
    assert restarted(first) and results(first, "cm-kafka")["Report"]["msg"] is True
    assert (root / "etc" / "kafka" / "server.properties").stat().st_mode & 0o777 == 0o640
    assert (root / "systemd" / "kafka.service").stat().st_mode & 0o777 == 0o644
    assert "=192.0.2.2:7071:" in (root / "etc" / "kafka" / "kafka.env").read_text()
    assert not (root / "systemd" / "kafka.service.d").exists()

    again = converge()
    assert not restarted(again)
    assert "Restart kafka when a file it reads changed" not in ran(again, "cm-kafka")

    # a dir's mode and the node's own client settings: fixed, nothing restarted
    (root / "etc" / "kafka").chmod(0o755)
    (root / "etc" / "kafka" / "node-client.properties").write_text("edited\n")
    fixed = converge()
    changed_files = results(fixed, "cm-kafka")["Install Kafka's dirs, configuration, client settings and unit"]
    assert changed_files["changed_files"] == [str(root / "etc" / "kafka"),
                                              str(root / "etc" / "kafka" / "node-client.properties")]
    assert not restarted(fixed)

    # a setting Kafka reads, then a drop-in: restarted
    assert restarted(converge(kafka_log_level="WARN"))
    dropin = converge(kafka_log_level="WARN", kafka_systemd_overrides={"CPUQuota": "150%"})
    assert restarted(dropin)
    assert "CPUQuota=150%" in (root / "systemd" / "kafka.service.d" / "cryptomon-overrides.conf").read_text()
