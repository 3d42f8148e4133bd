"""The job keeper: the flink_job module run standalone (no Ansible importable, `python -S`), as
cryptomon-flink-jobs.timer runs it on the JobManager host with resume_only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "roles" / "flink_jobs" / "library" / "flink_job.py"
JOB = REPO / "tests" / "fixtures" / "flink" / "stateful_counter.py"
V1 = "1" * 64
V2 = "2" * 64


def base_args(flink, tmp: Path) -> dict:
    env = {k: flink.env[k] for k in ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LIB_DIR", "FLINK_LOG_DIR", "PATH")}
    (tmp / "state").mkdir(exist_ok=True)
    return {
        "name": "counter", "py_file": str(JOB), "args": ["--tag", "v1"], "version": V1,
        "rest_url": flink.rest_url, "flink_bin": f"{env['FLINK_HOME']}/bin/flink", "flink_env": env,
        "pyexec": sys.executable, "savepoint_dir": f"file://{tmp}/savepoints", "state_dir": str(tmp / "state"),
        "parallelism": 1, "settle_seconds": 3,
        # As the flink role configures the cluster: checkpoints survive a cancel, to resume from.
        "flink_options": {"execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
                          "execution.checkpointing.interval": "1s"},
    }


def keeper(tmp: Path, args: dict) -> dict:
    params = tmp / "counter.keeper.json"
    params.write_text(json.dumps({**args, "resume_only": True}))
    # -S: no site-packages, so Ansible cannot be imported and the standalone shim is used.
    res = subprocess.run([sys.executable, "-S", str(MODULE), str(params)], capture_output=True, text=True,
                         timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def running(flink, name_prefix: str) -> list[dict]:
    return [j for j in flink.rest("/jobs/overview")["jobs"]
            if j["name"].startswith(name_prefix) and j["state"] == "RUNNING"]


def test_keeper_resumes_a_missing_job_and_never_upgrades(flink_clean, tmp_path):
    flink = flink_clean
    args = base_args(flink, tmp_path)

    first = keeper(tmp_path, args)
    assert first["action"] == "submitted" and first["changed"]
    assert [j["jid"] for j in running(flink, "counter@")] == [first["job_id"]]

    # Nothing to do while the job runs.
    again = keeper(tmp_path, args)
    assert again["action"] == "none" and again["job_id"] == first["job_id"]

    # Another version is deployed but the old one still runs: the keeper leaves the upgrade
    # to the converge instead of racing it.
    other = keeper(tmp_path, {**args, "version": V2, "args": ["--tag", "v2"]})
    assert other["action"] == "none" and not other["changed"]
    assert [j["name"] for j in running(flink, "counter@")] == [f"counter@{V1[:12]}"]

    # The job disappears (cancelled, or lost with a JobManager restart): the keeper brings it back
    # from its last retained checkpoint.
    deadline = time.monotonic() + 60
    while flink.rest(f"/jobs/{first['job_id']}/checkpoints")["counts"]["completed"] < 1:
        assert time.monotonic() < deadline, "no checkpoint completed"
        time.sleep(0.5)
    flink.rest(f"/jobs/{first['job_id']}", method="PATCH")
    deadline = time.monotonic() + 60
    # Wait for a terminal state: a CANCELLING job still counts as present (and it should).
    while flink.rest(f"/jobs/{first['job_id']}")["state"] not in ("CANCELED", "FAILED", "FINISHED"):
        assert time.monotonic() < deadline, "job did not finish cancelling"
        time.sleep(0.5)
    back = keeper(tmp_path, args)
    assert back["action"] == "submitted" and back["job_id"] != first["job_id"]
    assert "chk-" in (back.get("restored_from") or ""), back
    assert [j["jid"] for j in running(flink, "counter@")] == [back["job_id"]]
