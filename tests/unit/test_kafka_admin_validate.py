"""What the topics role says about the inventory before it changes anything (issue 15 defect 8:
one broker silently meant replication factor 1)."""

from __future__ import annotations

from pathlib import Path

from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "validate_kafka_admin.yml"


def run(inventory: Path) -> str:
    res = run_playbook(PLAYBOOK, inventory=inventory, extra_vars={"cryptomon_templates_dir": str(REPO / "templates")})
    return res.assert_ok().stdout


def test_one_broker_warns_that_topics_get_one_replica():
    out = run(REPO / "inventory" / "sandbox")
    assert "WARNING: only 1 broker(s): the topics get replication factor 1 and min.insync.replicas 1" in out


def test_three_brokers_do_not_warn():
    out = run(REPO / "inventory" / "example")
    assert "WARNING: only" not in out
