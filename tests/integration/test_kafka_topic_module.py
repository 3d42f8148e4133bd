"""The kafka_topic module and the kafka_admin role, run by Ansible against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "kafka_admin"
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon"))


def ansible_env(**extra: str) -> dict[str, str]:
    """Explicit settings so no ansible.cfg of the checkout changes the output format."""
    return {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_CALLBACKS_ENABLED": "",
        "ANSIBLE_LIBRARY": str(ROLE / "library"),
        "ANSIBLE_MODULE_UTILS": str(ROLE / "module_utils"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        **extra,
    }


def playbook(tmp_path: Path, text: str, inventory: str, *flags: str) -> dict:
    book = tmp_path / f"play-{uuid.uuid4().hex[:8]}.yml"
    book.write_text(text)
    inv = tmp_path / "hosts.ini"
    inv.write_text(inventory)
    res = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inv), str(book), *flags],
        capture_output=True, text=True, env=ansible_env(), cwd=tmp_path, timeout=300, check=False,
    )
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook output is not JSON (rc {res.returncode}):\n"
                    f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def run_module(tmp_path: Path, args: dict, *flags: str) -> dict:
    """Run kafka_topic once on localhost; returns the task result (failed or not)."""
    text = (
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - name: kafka_topic\n      kafka_topic: {json.dumps(args)}\n"
    )
    out = playbook(tmp_path, text, f"localhost ansible_connection=local "
                                   f"ansible_python_interpreter={sys.executable}\n", *flags)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def describe(bootstrap: str, name: str) -> dict | None:
    """The topic as the broker sees it: partitions, RF, topic-level overrides."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10).topics.get(name)
    if md is None:
        return None
    res = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([res])[res].result(10)
    return {
        "partitions": len(md.partitions),
        "replication_factor": max(len(p.replicas) for p in md.partitions.values()),
        "leaders": all(p.leader >= 0 for p in md.partitions.values()),
        "overrides": {k: e.value for k, e in entries.items() if e.source == 1},
    }


@pytest.fixture
def name() -> str:
    return f"it.kt.{uuid.uuid4().hex[:8]}"


def spec(name: str, partitions: int = 2, rf: int = 1, configs: dict | None = None, **kw) -> dict:
    return {"name": name, "partitions": partitions, "replication_factor": rf,
            "configs": configs or {}, **kw}


def test_create_is_idempotent(kafka_bootstrap, tmp_path, name):
    args = {"bootstrap_servers": kafka_bootstrap,
            "topics": [spec(name, 3, 1, {"retention.ms": 3600000, "cleanup.policy": "delete"})]}
    first = run_module(tmp_path, args)
    assert first["changed"] is True, first
    assert first["actions"] == [{"topic": name, "action": "create", "partitions": 3,
                                 "replication_factor": 1,
                                 "configs": {"cleanup.policy": "delete", "retention.ms": "3600000"}}]
    state = describe(kafka_bootstrap, name)
    assert state["partitions"] == 3
    assert state["leaders"]  # the module waited for leaders
    assert state["overrides"] == {"cleanup.policy": "delete", "retention.ms": "3600000"}

    again = run_module(tmp_path, args)
    assert again["changed"] is False, again
    assert again["actions"] == []
    assert again["broker_count"] == 1


def test_check_mode_and_diff_change_nothing(kafka_bootstrap, tmp_path, name):
    missing = run_module(tmp_path, {"bootstrap_servers": kafka_bootstrap, "topics": [spec(name)]},
                         "--check", "--diff")
    assert missing["changed"] is True
    assert missing["diff"]["before"] == f"{name}: absent\n"
    assert "partitions: 2" in missing["diff"]["after"]
    assert describe(kafka_bootstrap, name) is None

    run_module(tmp_path, {"bootstrap_servers": kafka_bootstrap,
                          "topics": [spec(name, 2, 1, {"retention.ms": 1000})]})
    grown = {"bootstrap_servers": kafka_bootstrap,
             "topics": [spec(name, 4, 1, {"retention.ms": 2000})]}
    checked = run_module(tmp_path, grown, "--check", "--diff")
    assert checked["changed"] is True
    assert [a["action"] for a in checked["actions"]] == ["add_partitions", "alter_configs"]
    assert "partitions: 2" in checked["diff"]["before"]
    assert "retention.ms: 1000" in checked["diff"]["before"]
    assert "partitions: 4" in checked["diff"]["after"]
    assert "retention.ms: 2000" in checked["diff"]["after"]
    state = describe(kafka_bootstrap, name)
    assert state["partitions"] == 2
    assert state["overrides"] == {"retention.ms": "1000"}


def test_raise_partitions_and_align_configs(kafka_bootstrap, tmp_path, name):
    base = {"bootstrap_servers": kafka_bootstrap}
    run_module(tmp_path, {**base, "topics": [spec(name, 2, 1, {"retention.ms": 1000,
                                                             "segment.ms": 3600000})]})
    res = run_module(tmp_path, {**base, "topics": [spec(name, 5, 1, {"retention.ms": 2000,
                                                                   "segment.ms": None})]})
    assert res["changed"] is True
    assert res["actions"] == [
        {"topic": name, "action": "add_partitions", "before": 2, "after": 5},
        {"topic": name, "action": "alter_configs", "changes": {
            "retention.ms": {"before": "1000", "after": "2000"},
            "segment.ms": {"before": "3600000", "after": None}}},
    ]
    state = describe(kafka_bootstrap, name)
    assert state["partitions"] == 5
    assert state["leaders"]
    assert state["overrides"] == {"retention.ms": "2000"}  # segment.ms back to the default

    # Undeclared overrides are left alone and reported.
    res = run_module(tmp_path, {**base, "topics": [spec(name, 5, 1)]})
    assert res["changed"] is False
    assert res["unmanaged_overrides"] == {name: {"retention.ms": "2000"}}


def test_lowering_partitions_fails_clearly(kafka_bootstrap, tmp_path, name):
    base = {"bootstrap_servers": kafka_bootstrap}
    run_module(tmp_path, {**base, "topics": [spec(name, 4)]})
    res = run_module(tmp_path, {**base, "topics": [spec(name, 2)]})
    assert res["failed"] is True
    assert res["changed"] is False
    assert f"topic '{name}': partitions cannot be lowered from 4 to 2" in res["msg"]
    assert describe(kafka_bootstrap, name)["partitions"] == 4


def test_replication_factor_above_brokers_fails_and_changes_nothing(kafka_bootstrap, tmp_path,
                                                                     name):
    other = name + ".ok"
    res = run_module(tmp_path, {"bootstrap_servers": kafka_bootstrap,
                                "topics": [spec(other), spec(name, 3, 3)]})
    assert res["failed"] is True
    assert (f"topic '{name}': replication_factor 3 is higher than the number of brokers (1)"
            in res["msg"])
    assert describe(kafka_bootstrap, name) is None
    assert describe(kafka_bootstrap, other) is None  # the valid topic was not created either


def test_invalid_config_name_is_the_brokers_error(kafka_bootstrap, tmp_path, name):
    base = {"bootstrap_servers": kafka_bootstrap}
    res = run_module(tmp_path, {**base, "topics": [spec(name, 2, 1, {"no.such.config": 1})]})
    assert res["failed"] is True
    assert f"topic '{name}': create failed" in res["msg"]
    assert "no.such.config" in res["msg"]
    assert describe(kafka_bootstrap, name) is None

    run_module(tmp_path, {**base, "topics": [spec(name, 2)]})
    res = run_module(tmp_path, {**base, "topics": [spec(name, 3, 1, {"no.such.config": 1})]})
    assert res["failed"] is True
    assert "Unknown topic config name: no.such.config" in res["msg"]
    assert res["msg"].startswith("nothing changed")
    assert describe(kafka_bootstrap, name)["partitions"] == 2  # validated before any change


def test_state_absent_deletes_only_that_topic(kafka_bootstrap, tmp_path, name):
    kept = name + ".kept"
    base = {"bootstrap_servers": kafka_bootstrap}
    run_module(tmp_path, {**base, "topics": [spec(name), spec(kept)]})
    # Dropping a topic from the list does not delete it.
    assert run_module(tmp_path, {**base, "topics": [spec(kept)]})["changed"] is False
    assert describe(kafka_bootstrap, name) is not None

    checked = run_module(tmp_path, {**base, "topics": [{"name": name, "state": "absent"}]},
                         "--check")
    assert checked["changed"] is True
    assert describe(kafka_bootstrap, name) is not None

    res = run_module(tmp_path, {**base, "topics": [{"name": name, "state": "absent"}]})
    assert res["actions"] == [{"topic": name, "action": "delete"}]
    assert describe(kafka_bootstrap, name) is None
    assert describe(kafka_bootstrap, kept) is not None
    again = run_module(tmp_path, {**base, "topics": [{"name": name, "state": "absent"}]})
    assert again["changed"] is False


def test_unreachable_cluster_fails_clearly(tmp_path, name):
    res = run_module(tmp_path, {"bootstrap_servers": "127.0.0.1:1", "timeout": 3,
                                "topics": [spec(name)]})
    assert res["failed"] is True
    assert "cannot read the cluster metadata from 127.0.0.1:1 within 3s" in res["msg"]


# --- the whole role -----------------------------------------------------------------------

ROLE_PLAYBOOK = """\
- hosts: kafka
  gather_facts: false
  roles:
    - role: kafka_admin
"""


def test_role_converges_idempotently_from_the_artifact_cache(kafka_bootstrap, tmp_path):
    wheels = CACHE / "artifacts" / "wheels" / "kafka-admin"
    if not any(wheels.glob("*.whl")):
        pytest.fail(f"{wheels} is empty: run `make cache` first")
    host, port = kafka_bootstrap.rsplit(":", 1)
    prefix = f"it.role.{uuid.uuid4().hex[:6]}"
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    # The broker's interpreter has no confluent-kafka: the module must run in the role's venv.
    inventory = (
        "[kafka_broker]\n"
        f"broker1 ansible_connection=local ansible_python_interpreter={python} "
        f"cryptomon_advertised_host={host} cryptomon_kafka_port={port}\n"
        "[kafka:children]\nkafka_broker\n"
    )
    extra = {
        "kafka_admin_venv": str(tmp_path / "venv"),
        "kafka_admin_wheelhouse": str(tmp_path / "wheels"),
        "kafka_admin_python": python,
        "kafka_admin_system_packages": [],
        "cryptomon_airgapped": True,
        "cryptomon_artifact_cache": str(CACHE / "artifacts"),
        "cryptomon_templates_dir": str(REPO / "templates"),
        "cryptomon_trades_topic": f"{prefix}.trades",
        "cryptomon_alerts_topic": f"{prefix}.alerts",
        "cryptomon_arbitrage_topic": f"{prefix}.arbitrage",
        # The topics part of the role against the plaintext test broker (users and ACLs are
        # covered against a secure one in test_kafka_security.py); no certificates needed.
        "cryptomon_kafka_plaintext": True,
        "cryptomon_host_prepared": True,
        "cryptomon_state_dir": str(tmp_path / "state"),
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra))

    def converge(*flags: str) -> dict:
        return playbook(tmp_path, ROLE_PLAYBOOK, inventory, "-e", f"@{vars_file}", *flags)

    first = converge()
    assert first["stats"]["broker1"]["failures"] == 0, json.dumps(first)[-3000:]
    assert first["stats"]["broker1"]["changed"] > 0
    trades = describe(kafka_bootstrap, f"{prefix}.trades")
    assert trades["partitions"] == 6
    assert trades["replication_factor"] == 1  # min(3, one broker)
    assert trades["overrides"] == {"cleanup.policy": "delete", "compression.type": "lz4",
                                   "min.insync.replicas": "1", "retention.ms": "604800000"}
    assert describe(kafka_bootstrap, f"{prefix}.alerts")["overrides"]["retention.ms"] == "2592000000"
    assert describe(kafka_bootstrap, f"{prefix}.arbitrage")["partitions"] == 3

    second = converge()
    assert second["stats"]["broker1"]["failures"] == 0
    assert second["stats"]["broker1"]["changed"] == 0, json.dumps(second)[-3000:]

    checked = converge("--check", "--diff", "-e", "kafka_admin_trades_partitions=8")
    assert checked["stats"]["broker1"]["changed"] == 1
    assert describe(kafka_bootstrap, f"{prefix}.trades")["partitions"] == 6

    lowered = converge("-e", "kafka_admin_trades_partitions=4")
    assert lowered["stats"]["broker1"]["failures"] == 1
    task = lowered["plays"][0]["tasks"][-1]["hosts"]["broker1"]
    assert "partitions cannot be lowered from 6 to 4" in task["msg"]
