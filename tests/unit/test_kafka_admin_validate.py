"""What the topics role says about the inventory before it changes anything (issue 15 defect 8:
one broker silently meant replication factor 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "validate_kafka_admin.yml"


def run(inventory: Path) -> str:
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK),
           "-e", f"cryptomon_templates_dir={REPO / 'templates'}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_one_broker_warns_that_topics_get_one_replica():
    out = run(REPO / "inventory" / "sandbox")
    assert "WARNING: only 1 broker(s): the topics get replication factor 1 and min.insync.replicas 1" in out


def test_three_brokers_do_not_warn():
    out = run(REPO / "inventory" / "example")
    assert "WARNING: only" not in out
