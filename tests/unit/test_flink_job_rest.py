"""The flink_job module against a fake Flink REST API: which requests a run makes, and when it waits.

The re-run of site.yml keeps every job at its version; that path must confirm the job runs
(GET /jobs/<id>) without extra round trips or sleeps (issue 15, operations speed).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "roles" / "flink_jobs" / "library" / "flink_job.py"
_spec = importlib.util.spec_from_file_location("flink_job_rest", MODULE)
fj = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fj)

JID = "3a3fd8dd1f6f81adbc263d53badb7528"
VERSION = "1111111111111111aaaa"


class FakeFlink:
    """Answers GETs from per-path queues (the last answer repeats) and records every request."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, dict]]] = {}
        self.requests: list[str] = []

    def answer(self, path: str, *bodies: dict | int) -> None:
        """Queue answers for a path: a dict is a 200 body, an int an error status."""
        self.answers[path] = [(b, {}) if isinstance(b, int) else (200, b) for b in bodies]

    def next_answer(self, path: str) -> tuple[int, dict]:
        queue = self.answers.get(path)
        if not queue:
            return 404, {"errors": [f"no fake answer for {path}"]}
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def fake_flink() -> Iterator[tuple[FakeFlink, str]]:
    fake = FakeFlink()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            fake.requests.append(f"GET {self.path}")
            status, body = fake.next_answer(self.path)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def overview(*jobs: dict) -> dict:
    return {"jobs": list(jobs)}


def running_job(state: str = "RUNNING", vertex: str = "RUNNING") -> dict:
    return {"jid": JID, "state": state, "vertices": [{"status": vertex}, {"status": vertex}]}


def listed(version: str = VERSION, state: str = "RUNNING") -> dict:
    return {"jid": JID, "name": fj.job_name("counter", version), "state": state, "start-time": 1}


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s on a path that must not wait")


# --- the REST client ---------------------------------------------------------------------------

def test_a_running_job_kept_at_its_version_is_confirmed_with_one_get_and_no_sleep(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer(f"/jobs/{JID}", running_job())
    monkeypatch.setattr(fj.time, "sleep", no_sleep)
    fj.Flink(url).wait_started(JID, 30, 0)
    assert fake.requests == [f"GET /jobs/{JID}"]


def test_a_kept_job_whose_vertices_still_deploy_is_waited_for(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer(f"/jobs/{JID}", running_job(vertex="DEPLOYING"), running_job())
    monkeypatch.setattr(fj.time, "sleep", lambda _: None)
    fj.Flink(url).wait_started(JID, 30, 0)
    assert fake.requests == [f"GET /jobs/{JID}", f"GET /jobs/{JID}"]


def test_a_kept_job_that_failed_is_reported_with_its_exceptions(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer(f"/jobs/{JID}", running_job(state="FAILED"))
    fake.answer(f"/jobs/{JID}/exceptions?maxExceptions=5",
                {"exceptionHistory": {"entries": [{"taskName": "src", "stacktrace": "java.lang.Boom"}]}})
    monkeypatch.setattr(fj.time, "sleep", no_sleep)
    with pytest.raises(fj.FlinkJobError, match=r"is FAILED:\n\[src\] java.lang.Boom"):
        fj.Flink(url).wait_started(JID, 30, 0)


def test_a_submitted_job_still_settles_and_watches_its_exceptions(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer(f"/jobs/{JID}", running_job())
    fake.answer(f"/jobs/{JID}/exceptions?maxExceptions=5", {"exceptionHistory": {"entries": []}})
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(fj.time, "time", lambda: next(clock))
    monkeypatch.setattr(fj.time, "sleep", lambda _: None)
    fj.Flink(url).wait_started(JID, 600, 5)
    # Running at t=3 (first look), still so with no new exception at t=9: started.
    assert fake.requests.count(f"GET /jobs/{JID}") >= 2
    assert f"GET /jobs/{JID}/exceptions?maxExceptions=5" in fake.requests


def test_wait_jobs_retries_until_the_api_answers_and_returns_the_job_list(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer("/jobs/overview", 503, overview(listed()))
    slept: list[float] = []
    monkeypatch.setattr(fj.time, "sleep", slept.append)
    assert fj.Flink(url).wait_jobs(30) == [listed()]
    assert fake.requests == ["GET /jobs/overview", "GET /jobs/overview"]
    assert slept == [2]


def test_wait_jobs_names_the_api_when_it_never_answers(fake_flink, monkeypatch):
    fake, url = fake_flink
    fake.answer("/jobs/overview", 503)
    monkeypatch.setattr(fj.time, "sleep", lambda _: None)
    with pytest.raises(fj.FlinkJobError, match=rf"Flink REST API {url} unreachable: .*HTTP 503"):
        fj.Flink(url).wait_jobs(0)


# --- the module run (real AnsibleModule, as a converge runs it) ----------------------------------

def run_module(tmp_path: Path, url: str, **extra: object) -> tuple[int, dict]:
    args = {"name": "counter", "version": VERSION, "py_file": "/opt/job.py", "rest_url": url,
            "state_dir": str(tmp_path), "flink_bin": "/bin/false", **extra}
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    res = subprocess.run([sys.executable, str(MODULE), str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    return res.returncode, json.loads(res.stdout.strip().splitlines()[-1])


def test_the_no_change_run_asks_for_the_job_list_and_the_job_only(fake_flink, tmp_path):
    pytest.importorskip("ansible")
    fake, url = fake_flink
    fake.answer("/jobs/overview", overview(listed(), listed(version="2" * 20, state="FINISHED")))
    fake.answer(f"/jobs/{JID}", running_job())
    rc, out = run_module(tmp_path, url, _ansible_diff=True)
    assert rc == 0, out
    assert (out["changed"], out["action"], out["job_id"]) == (False, "none", JID)
    assert out["diff"]["before"] == out["diff"]["after"] == {
        "name": "counter", "job_id": JID, "state": "RUNNING", "version": VERSION[:12]}
    assert fake.requests == ["GET /jobs/overview", f"GET /jobs/{JID}"]


def test_the_no_change_run_fails_when_the_kept_job_is_not_running(fake_flink, tmp_path):
    pytest.importorskip("ansible")
    fake, url = fake_flink
    fake.answer("/jobs/overview", overview(listed(state="RESTARTING")))
    fake.answer(f"/jobs/{JID}", running_job(state="FAILED"))
    rc, out = run_module(tmp_path, url)
    assert rc == 1 and out["failed"]
    assert f"job {JID} is FAILED" in out["msg"]


def test_check_mode_asks_for_the_job_list_only(fake_flink, tmp_path):
    pytest.importorskip("ansible")
    fake, url = fake_flink
    fake.answer("/jobs/overview", overview(listed()))
    rc, out = run_module(tmp_path, url, _ansible_check_mode=True)
    assert rc == 0, out
    assert (out["changed"], out["action"], out["job_id"]) == (False, "none", JID)
    assert fake.requests == ["GET /jobs/overview"]
    assert not (tmp_path / "counter.state.json.lock").exists()


# --- the role's keep and record tasks (submit.yml) on localhost -----------------------------------

SUBMIT = REPO / "roles" / "flink_jobs" / "tasks" / "submit.yml"
KEEP = "Keep each job running at its deployed version"
RECORD = "Install the keeper, each job's parameters for it and its units (root-owned)"


def role_tasks(*names: str) -> list[dict]:
    import yaml

    tasks = [t for entry in yaml.safe_load(SUBMIT.read_text()) for t in entry.get("block", [entry])]
    by_name = {t.get("name"): t for t in tasks}
    return [by_name[n] for n in names]


def test_the_keeper_files_hold_what_the_kept_jobs_ran_with_and_the_keeper_accepts_them(fake_flink, tmp_path):
    """Keep (module against the fake API) then the keeper set: one keeper file per enabled job, with the
    module's own arguments, resume_only and the keeper's TLS files; the standalone keeper runs it."""
    pytest.importorskip("ansible")
    import os

    fake, url = fake_flink
    version = "c0ffee" * 10
    # "counter" runs at the deployed version; "other" is disabled and runs nowhere.
    fake.answer("/jobs/overview", overview(
        {"jid": JID, "name": fj.job_name("counter", version), "state": "RUNNING", "start-time": 1}))
    fake.answer(f"/jobs/{JID}", running_job())
    home = tmp_path / "flink-home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "flink").write_text("#!/bin/sh\nexit 1\n")
    (home / "bin" / "flink").chmod(0o755)
    keeper_dir, job_dir = tmp_path / "keeper", tmp_path / "jobs"
    keeper_dir.mkdir()
    job_dir.mkdir()
    keeper_tls = {"client_cert": "/etc/flink/tls/client.crt", "client_key": "/etc/flink/tls/client.key",
                  "ca_cert": "/etc/flink/tls/ca.crt"}
    extra = {
        "ansible_python_interpreter": sys.executable,
        # Extra vars win over the task's vars: the version and the Flink home as the role computes them.
        "flink_jobs_version": version, "flink_jobs_home": str(home),
        "flink_jobs_flink_env": {"FLINK_HOME": str(home)},
        "flink_jobs_selected": [{"name": "counter", "file": "counter.py", "args": ["--x", "1"], "parallelism": 2},
                                {"name": "other", "file": "other.py", "enabled": False}],
        "flink_jobs_dir": str(job_dir), "flink_jobs_keeper_dir": str(keeper_dir),
        # the set's keeper code and units (role files, /etc/systemd): only its dir and the parameters here
        "flink_jobs_keeper_program": [],
        "flink_jobs_rest_url": url, "flink_jobs_rest_tls": {}, "flink_jobs_keeper_rest_tls": keeper_tls,
        "flink_jobs_flink_venv": str(Path(sys.executable).parent.parent),
        "flink_jobs_savepoint_dir": "file:///sp", "flink_jobs_checkpoint_dir": "file:///cp",
        "flink_jobs_restore": True, "flink_jobs_force": False, "flink_jobs_submit_user": "root",
        "flink_jobs_submit_timeout": 300, "flink_jobs_start_timeout": 30, "flink_jobs_savepoint_timeout": 600,
    }
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": role_tasks(KEEP, RECORD)}]
    env = {"ANSIBLE_LIBRARY": os.pathsep.join(str(REPO / "roles" / r / "library") for r in ("cryptomon", "flink_jobs")),
           "ANSIBLE_ACTION_PLUGINS": str(REPO / "roles" / "cryptomon" / "action_plugins")}

    def play() -> dict:
        res = run_playbook(plays, workdir=tmp_path, extra_vars=extra, env=env, args=["-c", "local"], json_output=True)
        return res.assert_ok().task_results()

    assert play()[RECORD]["changed"]
    assert not play()[RECORD]["changed"]  # the re-run: the same parameters, nothing written
    assert sorted(p.name for p in keeper_dir.iterdir()) == ["counter.keeper.json"]  # the disabled job has none
    path = keeper_dir / "counter.keeper.json"
    recorded = json.loads(path.read_text())
    assert recorded["resume_only"] is True
    assert {k: recorded[k] for k in keeper_tls} == keeper_tls
    assert (recorded["name"], recorded["state"], recorded["version"]) == ("counter", "running", version)
    assert (recorded["args"], recorded["parallelism"], recorded["rest_url"]) == (["--x", "1"], 2, url)
    assert recorded["flink_bin"] == str(home / "bin" / "flink") and recorded["state_dir"] == str(job_dir)
    assert oct(path.stat().st_mode & 0o777) == "0o644" and path.stat().st_uid == 0

    # The keeper (the same file without Ansible) accepts the file and finds the job running.
    plain = {k: v for k, v in recorded.items() if k not in keeper_tls}
    path.write_text(json.dumps(plain))
    path.chmod(0o644)
    fake.requests.clear()
    keeper = subprocess.run([sys.executable, "-S", str(MODULE), str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert keeper.returncode == 0, keeper.stdout + keeper.stderr
    assert json.loads(keeper.stdout.strip().splitlines()[-1])["action"] == "none"
    assert fake.requests == ["GET /jobs/overview", f"GET /jobs/{JID}"]
