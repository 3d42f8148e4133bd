"""The kafka role's rolling restart, read from its task files: one node at a time, controllers
first, and the next node only once this one is healthy and no partition is under-replicated."""

from __future__ import annotations

from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parents[2] / "roles" / "kafka" / "tasks"


def load(name: str) -> list[dict]:
    return yaml.safe_load((TASKS / name).read_text())


def test_each_restart_is_followed_by_the_health_checks():
    restart_one = load("restart_one.yml")
    assert [next(k for k in t if k.startswith("ansible.builtin.")) for t in restart_one] == [
        "ansible.builtin.systemd_service", "ansible.builtin.include_tasks"]
    assert restart_one[0]["ansible.builtin.systemd_service"]["state"] == "restarted"
    assert restart_one[1]["ansible.builtin.include_tasks"] == "health.yml"


def test_the_order_is_one_node_at_a_time_controllers_first():
    rolling = load("rolling_restart.yml")[0]
    assert rolling["ansible.builtin.include_tasks"] == "restart_one.yml"  # a loop, not parallel
    order = rolling["vars"]["kafka_restart_order"]
    assert "select('in', groups['kafka_controller'])" in order
    assert order.index("select('in'") < order.index("reject('in'")


def test_health_waits_for_no_under_replicated_partitions_before_the_next_node():
    health = load("health.yml")
    names = [t["name"] for t in health]
    urp = next(t for t in health if "under-replicated" in t["name"])
    # after the node is registered, last of the checks
    assert names.index(urp["name"]) == len(names) - 1
    argv = urp["ansible.builtin.command"]["argv"]
    assert "org.apache.kafka.tools.TopicCommand" in argv and "--under-replicated-partitions" in argv
    assert "--command-config" in argv  # the node's own certificate: works on a secure cluster
    assert urp["until"] == "kafka_urp.rc == 0 and kafka_urp.stdout | trim | length == 0"
    assert "groups['kafka_broker'] | length > 1" in urp["when"]
    assert urp["delegate_to"] == "{{ kafka_check_host }}"
