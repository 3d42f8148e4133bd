"""The flink role refuses, before touching a host, several TaskManagers writing checkpoints to
a local path that is not declared shared storage."""

from __future__ import annotations

import sys
from pathlib import Path

from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAY = """\
- hosts: flink_taskmanager
  gather_facts: false
  connection: local
  vars:
    cryptomon_host_prepared: true
  tasks:
    - name: The flink role's checks
      ansible.builtin.include_role:
        name: flink
"""


def run(tmp_path: Path, extra: dict) -> dict:
    variables = {"ansible_python_interpreter": sys.executable, **extra}
    res = run_playbook(PLAY, workdir=tmp_path, inventory=REPO / "inventory" / "example", extra_vars=variables,
                       check=True, json_output=True)
    return res.json


def failures(out: dict) -> list[str]:
    return [h.get("msg", "") for p in out["plays"] for t in p["tasks"] for h in t["hosts"].values() if h.get("failed")]


def test_two_taskmanagers_with_local_checkpoints_are_refused(tmp_path):
    out = run(tmp_path, {"cryptomon_flink_storage_shared": False,
                         "cryptomon_flink_checkpoint_dir": "file:///var/lib/flink/checkpoints"})
    msgs = failures(out)
    assert msgs and "2 TaskManagers, but checkpoints/savepoints go to a local path" in msgs[0]
    assert "cryptomon_flink_storage_shared: true" in msgs[0]
    # stopped at the check: nothing was installed, not even in check mode
    names = [t["task"]["name"] for p in out["plays"] for t in p["tasks"]]
    assert not any(n.startswith("flink : Install") for n in names), names


def test_declared_shared_storage_passes_the_check(tmp_path):
    out = run(tmp_path, {"cryptomon_flink_storage_shared": True})
    names = [t["task"]["name"] for p in out["plays"] for t in p["tasks"]]
    assert "flink : Check that several TaskManagers share their checkpoint storage" in names
    assert not any("local path" in m for m in failures(out))
