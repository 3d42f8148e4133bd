"""The flink_job module and the flink_jobs role, run through Ansible against a real Flink cluster.

The job is tests/fixtures/flink/stateful_counter.py (datagen -> keyed count -> blackhole).
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "tests" / "fixtures" / "flink" / "stateful_counter.py"
V1 = "1" * 64
V2 = "2" * 64


def _ansible_env(tmp: Path) -> dict:
    cfg = tmp / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_LIBRARY": str(REPO / "roles" / "flink_jobs" / "library"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "true",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }


def run_module(tmp: Path, args: dict, check: bool = False) -> dict:
    """Run flink_job once from a one-task playbook (--diff, optionally --check); returns its result.

    The result is registered and written to a file: the json stdout callback would overwrite the
    module's `action` return value with the task's action name.
    """
    out = tmp / "result.json"
    out.unlink(missing_ok=True)
    play = [{"name": "flink_job", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Run the module", "flink_job": args, "register": "result", "ignore_errors": True},
        {"name": "Save the result", "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)},
         "check_mode": False, "diff": False},
    ]}]
    (tmp / "module.yml").write_text(yaml.safe_dump(play))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", str(tmp / "module.yml"), "--diff"]
    if check:
        cmd.append("--check")
    res = subprocess.run(cmd, env=_ansible_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600,
                         check=False)
    if not out.exists():
        raise AssertionError(f"ansible-playbook failed (rc={res.returncode}):\n"
                             f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return json.loads(out.read_text())


def base_args(flink, tmp: Path, **extra) -> dict:
    env = {k: flink.env[k] for k in ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LIB_DIR", "FLINK_LOG_DIR", "PATH")}
    args = {
        "name": "counter", "py_file": str(JOB), "args": ["--tag", "v1"], "version": V1,
        "rest_url": flink.rest_url, "flink_bin": f"{env['FLINK_HOME']}/bin/flink", "flink_env": env,
        "pyexec": sys.executable, "savepoint_dir": f"file://{tmp}/savepoints", "state_dir": str(tmp / "state"),
        "parallelism": 1, "settle_seconds": 3,
    }
    (tmp / "state").mkdir(exist_ok=True)
    args.update(extra)
    return args


def active(flink, prefix: str) -> list[dict]:
    return [j for j in flink.rest("/jobs/overview")["jobs"]
            if j["name"].split("@")[0] == prefix and j["state"] not in ("FINISHED", "CANCELED", "FAILED")]


def restored_path(flink, job_id: str) -> str | None:
    restored = (flink.rest(f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("restored") or {}
    return restored.get("external_path")


def same_savepoint(a: str, b: str) -> bool:
    def norm(path: str) -> str:
        return path.replace("file:///", "/").replace("file:/", "/").rstrip("/")

    return norm(a) == norm(b)


def test_submit_noop_check_upgrade_stop(flink_clean, tmp_path):
    flink = flink_clean
    # 1. Nothing runs: submitted under the versioned name.
    first = run_module(tmp_path, base_args(flink, tmp_path))
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"] and first["action"] == "submitted"
    assert first["job_name"] == "counter@" + V1[:12]
    assert [j["jid"] for j in active(flink, "counter")] == [first["job_id"]]
    assert flink.rest(f"/jobs/{first['job_id']}")["state"] == "RUNNING"

    # 2. Same version again: nothing to do, same job.
    again = run_module(tmp_path, base_args(flink, tmp_path))
    assert not again["changed"] and again["action"] == "none" and again["job_id"] == first["job_id"]

    # 3. Check mode with a new version: reports the upgrade and its diff, touches nothing.
    dry = run_module(tmp_path, base_args(flink, tmp_path, version=V2, args=["--tag", "v2"]), check=True)
    assert dry["changed"] and dry["action"] == "upgraded"
    assert dry["diff"]["before"]["version"] == V1[:12] and dry["diff"]["after"]["version"] == V2[:12]
    assert dry["diff"]["before"]["job_id"] == first["job_id"]
    assert "-s" in dry["command"]
    assert [(j["jid"], j["state"]) for j in active(flink, "counter")] == [(first["job_id"], "RUNNING")]

    # 4. New version: stop with savepoint, resubmit from it.
    up = run_module(tmp_path, base_args(flink, tmp_path, version=V2, args=["--tag", "v2"]))
    assert up.get("failed") is not True, up.get("msg")
    assert up["changed"] and up["action"] == "upgraded"
    assert up["stopped"][0]["id"] == first["job_id"] and up["stopped"][0]["method"] == "savepoint"
    savepoint = up["stopped"][0]["savepoint"]
    assert savepoint and up["restored_from"] == savepoint
    assert up["command"][up["command"].index("-s") + 1] == savepoint
    assert flink.rest(f"/jobs/{first['job_id']}")["state"] == "FINISHED"
    assert [j["jid"] for j in active(flink, "counter")] == [up["job_id"]] != [first["job_id"]]
    assert same_savepoint(restored_path(flink, up["job_id"]), savepoint)
    state = json.loads((tmp_path / "state" / "counter.state.json").read_text())
    assert state["job_id"] == up["job_id"] and "pending_savepoint" not in state

    # 5. state=absent: stopped with a savepoint that stays pending in the state file.
    gone = run_module(tmp_path, {"name": "counter", "state": "absent", "rest_url": flink.rest_url,
                                 "savepoint_dir": f"file://{tmp_path}/savepoints",
                                 "state_dir": str(tmp_path / "state")})
    assert gone["changed"] and gone["action"] == "stopped" and gone["savepoint"]
    assert active(flink, "counter") == []
    state = json.loads((tmp_path / "state" / "counter.state.json").read_text())
    assert state["pending_savepoint"] == gone["savepoint"]
    again = run_module(tmp_path, {"name": "counter", "state": "absent", "rest_url": flink.rest_url})
    assert not again["changed"] and again["action"] == "none"

    # 6. Submitting again resumes from the pending savepoint.
    back = run_module(tmp_path, base_args(flink, tmp_path, version=V2, args=["--tag", "v2"]))
    assert back["changed"] and back["action"] == "submitted" and back["restored_from"] == gone["savepoint"]
    assert same_savepoint(restored_path(flink, back["job_id"]), gone["savepoint"])


def test_failing_job_reports_the_jobmanager_exception(flink_clean, tmp_path):
    env_file = tmp_path / "counter.env"
    env_file.write_text("# driver settings\nCOUNTER_FAIL=1\n")
    res = run_module(tmp_path, base_args(flink_clean, tmp_path, name="failing", env_file=str(env_file),
                                         start_timeout=15))
    assert res.get("failed") is True and res["action"] == "submitted"
    assert "not running after 15s" in res["msg"]
    assert "NumberFormatException" in res["msg"] or "not-a-number" in res["msg"], res["msg"]


def test_driver_error_is_reported(flink_clean, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit('settings are wrong: KAFKA_BOOTSTRAP_SERVERS missing')\n")
    res = run_module(tmp_path, base_args(flink_clean, tmp_path, name="broken", py_file=str(broken)))
    assert res.get("failed") is True and "flink run failed" in res["msg"]
    assert "KAFKA_BOOTSTRAP_SERVERS missing" in res["msg"]
    assert active(flink_clean, "broken") == []


def _role_playbook(flink, tmp: Path, jobs: list[dict], env: dict) -> tuple[Path, Path]:
    src = tmp / "src"
    src.mkdir(exist_ok=True)
    shutil.copy(JOB, src / JOB.name)
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    vars_ = {
        "flink_jobs_src_dir": str(src), "flink_jobs_dir": str(tmp / "jobs"),
        "flink_jobs_owner": user, "flink_jobs_group": group,
        "flink_jobs_flink_venv": sys.prefix, "flink_jobs_flink_conf_dir": flink.env["FLINK_CONF_DIR"],
        "flink_jobs_flink_log_dir": flink.env["FLINK_LOG_DIR"], "flink_jobs_rest_url": flink.rest_url,
        "flink_jobs_savepoint_dir": f"file://{tmp}/savepoints",
        "flink_jobs_checkpoint_dir": f"file://{flink.workdir}/checkpoints",
        "flink_jobs_env": env, "flink_jobs_list": jobs,
        # The controller running the tests has no systemd; the keeper has its own test.
        "flink_jobs_keeper_enabled": False,
    }
    (tmp / "vars.yml").write_text(yaml.safe_dump(vars_))
    (tmp / "inventory.ini").write_text(
        f"[flink_jobmanager]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    play = [{"name": "Flink jobs", "hosts": "flink_jobmanager", "gather_facts": False,
             "vars_files": [str(tmp / "vars.yml")], "roles": ["flink_jobs"]}]
    (tmp / "site.yml").write_text(yaml.safe_dump(play))
    return tmp / "inventory.ini", tmp / "site.yml"


def converge(tmp: Path, *extra: str) -> dict:
    inv, play = tmp / "inventory.ini", tmp / "site.yml"
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(play), *extra]
    res = subprocess.run(cmd, env=_ansible_env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600,
                         check=False)
    out = json.loads(res.stdout)
    assert res.returncode == 0, json.dumps(out, indent=1)[-6000:]
    results = {}
    for task in out["plays"][0]["tasks"]:
        if task["task"]["name"].endswith("Keep each job running at its deployed version"):
            for item in task["hosts"]["localhost"]["results"]:
                results[item["flink_jobs_job"]["name"]] = item
    return {"stats": out["stats"]["localhost"], "jobs": results}


def test_role_converges_idempotently_and_submits_one_job(flink_clean, tmp_path):
    flink = flink_clean
    jobs = [{"name": "counter_a", "file": JOB.name, "args": ["--tag", "a"], "parallelism": 1},
            {"name": "counter_b", "file": JOB.name, "args": ["--tag", "b"], "parallelism": 1}]
    _role_playbook(flink, tmp_path, jobs, {"COUNTER_SETTING": "1"})

    first = converge(tmp_path)
    assert {n: r["action"] for n, r in first["jobs"].items()} == {"counter_a": "submitted", "counter_b": "submitted"}
    assert "COUNTER_SETTING=1" in (tmp_path / "jobs" / "counter_a.env").read_text().splitlines()

    second = converge(tmp_path)
    assert second["stats"]["changed"] == 0
    assert {n: r["job_id"] for n, r in second["jobs"].items()} == {n: r["job_id"] for n, r in first["jobs"].items()}

    # A settings change, applied to one job only (make submit-flink FLINK_JOB=...): the other keeps running.
    only = converge(tmp_path, "--tags", "jobs", "-e", "flink_jobs_only=counter_b",
                    "-e", '{"flink_jobs_env": {"COUNTER_SETTING": "2"}}')
    assert list(only["jobs"]) == ["counter_b"] and only["jobs"]["counter_b"]["action"] == "upgraded"
    running = {j["name"].split("@")[0]: j["jid"]
               for j in flink.rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING"}
    assert running["counter_a"] == first["jobs"]["counter_a"]["job_id"]
    assert running["counter_b"] == only["jobs"]["counter_b"]["job_id"]
