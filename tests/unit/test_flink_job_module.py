"""Pure logic of the flink_job module: job names, the decision table, command lines, parsing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "flink_job", REPO / "roles" / "flink_jobs" / "library" / "flink_job.py")
fj = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fj)

V1 = "1111111111111111aaaa"
V2 = "2222222222222222bbbb"


def job(jid, name, state="RUNNING", start=0):
    return {"jid": jid, "name": name, "state": state, "start-time": start}


# --- names -----------------------------------------------------------------------------------

def test_job_name_carries_the_short_version():
    assert fj.job_name("anomaly_detector", V1) == "anomaly_detector@111111111111"


@pytest.mark.parametrize("flink_name, parsed", [
    ("anomaly_detector@111111111111", ("anomaly_detector", "111111111111")),
    ("anomaly_detector", ("anomaly_detector", None)),
    ("insert-into_default_catalog.default_database.sink", ("insert-into_default_catalog.default_database.sink", None)),
    ("a@b@c", ("a@b", "c")),
    ("", ("", None)),
])
def test_parse_job_name(flink_name, parsed):
    assert fj.parse_job_name(flink_name) == parsed


def test_jobs_of_ignores_other_names_terminal_jobs_and_prefixes():
    jobs = [
        job("a", "counter@111111111111", start=1),
        job("b", "counter2@111111111111"),
        job("c", "counter@000000000000", "FINISHED"),
        job("d", "counter@222222222222", "RESTARTING", start=5),
        job("e", "other"),
    ]
    assert [j["jid"] for j in fj.jobs_of(jobs, "counter")] == ["d", "a"]


# --- decision table --------------------------------------------------------------------------

def test_nothing_running_submits():
    p = fj.plan([], "counter", V1, "running")
    assert p == {"action": "submitted", "keep": None, "stop": [], "submit": True}


def test_same_version_running_is_left_alone():
    running = job("a", fj.job_name("counter", V1))
    p = fj.plan([running, job("z", "counter@999999999999", "CANCELED")], "counter", V1, "running")
    assert p["action"] == "none" and p["keep"] is running and p["stop"] == [] and not p["submit"]


def test_same_version_still_starting_is_kept_not_resubmitted():
    starting = job("a", fj.job_name("counter", V1), "INITIALIZING")
    p = fj.plan([starting], "counter", V1, "running")
    assert p["action"] == "none" and p["keep"] is starting


def test_other_version_is_upgraded():
    old = job("a", fj.job_name("counter", V1))
    p = fj.plan([old], "counter", V2, "running")
    assert p == {"action": "upgraded", "keep": None, "stop": [old], "submit": True}


def test_force_resubmits_the_current_version_through_a_savepoint():
    running = job("a", fj.job_name("counter", V1))
    p = fj.plan([running], "counter", V1, "running", force=True)
    assert p == {"action": "upgraded", "keep": None, "stop": [running], "submit": True}
    assert fj.plan([], "counter", V1, "running", force=True)["action"] == "submitted"


def test_unversioned_job_of_that_name_is_adopted_by_an_upgrade():
    manual = job("a", "counter")
    assert fj.plan([manual], "counter", V1, "running")["action"] == "upgraded"


def test_duplicates_are_stopped_and_the_newest_current_one_kept():
    old = job("a", fj.job_name("counter", V1), start=1)
    cur_old = job("b", fj.job_name("counter", V2), start=2)
    cur_new = job("c", fj.job_name("counter", V2), start=3)
    p = fj.plan([old, cur_old, cur_new], "counter", V2, "running")
    assert p["action"] == "stopped" and p["keep"] is cur_new
    assert [j["jid"] for j in p["stop"]] == ["b", "a"] and not p["submit"]


def test_absent_stops_every_job_of_the_name():
    jobs = [job("a", fj.job_name("counter", V1)), job("b", "counter@x", "RESTARTING")]
    p = fj.plan(jobs, "counter", None, "absent")
    assert p["action"] == "stopped" and len(p["stop"]) == 2 and not p["submit"]
    assert fj.plan([], "counter", None, "absent")["action"] == "none"


def test_restore_order():
    stopped = [{"id": "a", "savepoint": None}, {"id": "b", "savepoint": "file:/sp/new"}]
    assert fj.restore_point(stopped, "file:/sp/pending", True, "file:/sp/explicit") == "file:/sp/new"
    assert fj.restore_point([], "file:/sp/pending", True, "file:/sp/explicit") == "file:/sp/explicit"
    assert fj.restore_point([], "file:/sp/pending", True, None) == "file:/sp/pending"
    assert fj.restore_point([], "file:/sp/pending", False, None) is None


# --- command line and parsing ----------------------------------------------------------------

PARAMS = {
    "flink_bin": "/opt/flink/bin/flink", "rest_url": "http://jm.example:8081/", "parallelism": 2,
    "pyexec": "/opt/flink/venv/bin/python", "py_file": "/opt/jobs/job.py", "args": ["--x", "1"],
    "pyfs": ["/opt/jobs/a.py", "/opt/jobs/b.zip"], "flink_options": {"b.key": "2", "a.key": "1"},
    "allow_non_restored_state": False,
}


def test_run_command_fresh():
    assert fj.build_run_command(PARAMS, "job@111111111111") == [
        "/opt/flink/bin/flink", "run", "-d", "-Drest.address=jm.example", "-Drest.port=8081",
        "-Dpipeline.name=job@111111111111",
        "-Da.key=1", "-Db.key=2", "-p", "2",
        "-pyexec", "/opt/flink/venv/bin/python", "-pyclientexec", "/opt/flink/venv/bin/python",
        "-pyfs", "/opt/jobs/a.py,/opt/jobs/b.zip", "-py", "/opt/jobs/job.py", "--x", "1",
    ]


def test_run_command_from_savepoint():
    cmd = fj.build_run_command(PARAMS, "job@1", "file:/sp/savepoint-1")
    assert cmd[cmd.index("-s") + 1] == "file:/sp/savepoint-1" and "-n" not in cmd
    cmd = fj.build_run_command(dict(PARAMS, allow_non_restored_state=True), "job@1", "file:/sp/s")
    assert cmd[cmd.index("-s") + 2] == "-n"
    assert "-n" not in fj.build_run_command(dict(PARAMS, allow_non_restored_state=True), "job@1")


def test_minimal_run_command():
    params = {"flink_bin": "flink", "rest_url": "http://127.0.0.1:8081", "py_file": "/j.py"}
    assert fj.build_run_command(params, "j@1") == [
        "flink", "run", "-d", "-Drest.address=127.0.0.1", "-Drest.port=8081", "-Dpipeline.name=j@1", "-py", "/j.py"]


def test_parse_job_id():
    out = "stateful_counter tag=v1\nJob has been submitted with JobID 3a3fd8dd1f6f81adbc263d53badb7528\n"
    assert fj.parse_job_id(out) == "3a3fd8dd1f6f81adbc263d53badb7528"
    assert fj.parse_job_id("Traceback ...") is None


def test_parse_env_file():
    text = "# comment\n\nA=1\nexport B = x=y \nC=\n"
    assert fj.parse_env_file(text) == {"A": "1", "B": " x=y", "C": ""}
    with pytest.raises(ValueError, match="line 1"):
        fj.parse_env_file("no equals sign")
    with pytest.raises(ValueError, match="line 2"):
        fj.parse_env_file("A=1\n1BAD=2")


def test_savepoint_status():
    assert fj.savepoint_status({"status": {"id": "IN_PROGRESS"}}) == (False, None, None)
    done = {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-1"}}
    assert fj.savepoint_status(done) == (True, "file:/sp/savepoint-1", None)
    failed = {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {
        "class": "java.util.concurrent.CompletionException",
        "stack-trace": "java.util.concurrent.CompletionException: CheckpointException: not running\n\tat x\n" * 5}}}
    finished, location, error = fj.savepoint_status(failed)
    assert finished and location is None and error.startswith("java.util.concurrent.CompletionException")
    assert len(error.splitlines()) == 6


def test_summarize_exceptions():
    body = {"exceptionHistory": {"entries": [
        {"exceptionName": "java.lang.NumberFormatException", "taskName": "GroupAggregate (1/1)",
         "stacktrace": "java.lang.NumberFormatException: For input string: \"x\"\n\tat a\n"},
        {"exceptionName": "java.lang.RuntimeException", "stacktrace": "java.lang.RuntimeException: boom"},
    ], "truncated": False}}
    text = fj.summarize_exceptions(body)
    assert "[GroupAggregate (1/1)] java.lang.NumberFormatException" in text and "[job] java.lang.Runtime" in text
    assert fj.exception_count(body) == 2
    assert "no exception" in fj.summarize_exceptions({})


def test_rest_target_and_local_path():
    assert fj.rest_target("http://127.0.0.1:8081") == "127.0.0.1:8081"
    assert fj.rest_target("https://jm:8443/base/") == "jm:8443"
    assert fj.local_path("file:///var/lib/flink/cp") == "/var/lib/flink/cp"
    assert fj.local_path("file:/var/lib/flink/cp") == "/var/lib/flink/cp"
    assert fj.local_path("/var/lib/flink/cp") == "/var/lib/flink/cp"
    assert fj.local_path("s3://bucket/cp") is None


def test_latest_checkpoint_in(tmp_path):
    jid = "3a3fd8dd1f6f81adbc263d53badb7528"
    for n, complete in ((2, True), (10, True), (11, False)):
        d = tmp_path / jid / f"chk-{n}"
        d.mkdir(parents=True)
        if complete:
            (d / "_metadata").write_bytes(b"x")
    (tmp_path / jid / "shared").mkdir()
    assert fj.latest_checkpoint_in(f"file://{tmp_path}", jid) == f"file://{tmp_path}/{jid}/chk-10"
    assert fj.latest_checkpoint_in(f"file://{tmp_path}", "0" * 32) is None
    assert fj.latest_checkpoint_in("s3://bucket/cp", jid) is None


class ReportsCheckpoint:
    """The JobManager's answer for a terminated job's latest completed checkpoint."""

    def __init__(self, path):
        self.path = path

    def retained_checkpoint(self, job_id):
        return self.path


def test_resume_point_prefers_the_newest_checkpoint_on_disk_over_a_stale_api_answer(tmp_path):
    jid = "3a3fd8dd1f6f81adbc263d53badb7528"
    d = tmp_path / jid / "chk-7"
    d.mkdir(parents=True)
    (d / "_metadata").write_bytes(b"x")
    params = {"restore": True, "checkpoint_dir": f"file://{tmp_path}"}
    saved = {"job_id": jid}
    on_disk = f"file://{tmp_path}/{jid}/chk-7"
    # The API's cache still names chk-6, which chk-7 subsumed and deleted.
    assert fj.resume_point(ReportsCheckpoint(f"file://{tmp_path}/{jid}/chk-6"), params, saved) == on_disk
    assert fj.resume_point(ReportsCheckpoint(on_disk), params, saved) == on_disk
    # A newer one than the disk shows (storage not readable here) and remote storage: the API's.
    newer = f"file://{tmp_path}/{jid}/chk-9"
    assert fj.resume_point(ReportsCheckpoint(newer), params, saved) == newer
    remote = {"restore": True, "checkpoint_dir": "s3://bucket/cp"}
    assert fj.resume_point(ReportsCheckpoint(f"s3://bucket/cp/{jid}/chk-3"), remote, saved) == f"s3://bucket/cp/{jid}/chk-3"
    assert fj.resume_point(ReportsCheckpoint(None), params, saved) == on_disk
    assert fj.resume_point(ReportsCheckpoint(None), {**params, "restore": False}, saved) is None


def test_describe_for_diff():
    assert fj.describe(None) == {"job_id": None, "state": "absent", "version": None}
    assert fj.describe(job("a", "counter@111111111111")) == {
        "job_id": "a", "state": "RUNNING", "version": "111111111111"}


def test_state_file_roundtrip(tmp_path):
    path = fj.state_path(str(tmp_path), "counter")
    assert fj.read_state(path) == {}
    fj.write_state(path, {"pending_savepoint": "file:/sp/1"})
    assert fj.read_state(path) == {"pending_savepoint": "file:/sp/1"}
    assert oct(Path(path).stat().st_mode & 0o777) == "0o640"
    assert fj.state_path(None, "counter") is None


# --- the standalone keeper refuses parameter files it should not run ----------------------------

def _keeper_run(tmp_path: Path, params: dict, mode: int = 0o644) -> tuple[int, dict, str]:
    import json as _json
    import subprocess as _sp
    import sys as _sys

    f = tmp_path / "job.keeper.json"
    f.write_text(_json.dumps(params))
    f.chmod(mode)
    module = Path(__file__).resolve().parents[2] / "roles" / "flink_jobs" / "library" / "flink_job.py"
    # -S: no site-packages, so Ansible cannot be imported and the standalone shim runs (as the timer does).
    res = _sp.run([_sys.executable, "-S", str(module), str(f)], capture_output=True, text=True, timeout=60, check=False)
    return res.returncode, _json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def _keeper_params(tmp_path: Path) -> dict:
    import sys as _sys

    home = tmp_path / "flink-home"
    (home / "bin").mkdir(parents=True)
    flink = home / "bin" / "flink"
    flink.write_text("#!/bin/sh\nexit 1\n")
    flink.chmod(0o755)
    return {"name": "job", "state": "running", "version": "a" * 64, "py_file": "/opt/job.py",
            "rest_url": "http://127.0.0.1:1", "flink_bin": str(flink), "flink_env": {"FLINK_HOME": str(home)},
            "pyexec": _sys.executable, "resume_only": True, "rest_timeout": 1}


@pytest.mark.parametrize(("change", "mode", "reason"), [
    ({"flink_bin": "/bin/id"}, 0o644, "flink_bin '/bin/id' is not <flink_env.FLINK_HOME>/bin/flink"),
    ({"resume_only": False}, 0o644, "resume_only must be true"),
    ({"shell": "rm -rf /"}, 0o644, "unknown parameters ['shell']"),
    ({"parallelism": "two"}, 0o644, "parallelism must be a int"),
    ({"state": "exploded"}, 0o644, "state must be one of"),
    ({}, 0o664, "must be owned by root and writable by root only"),
])
def test_standalone_keeper_refuses_and_logs(tmp_path, change, mode, reason):
    rc, out, err = _keeper_run(tmp_path, {**_keeper_params(tmp_path), **change}, mode)
    assert rc == 1 and out["failed"]
    assert reason in out["msg"]
    assert "flink_job keeper: refusing" in err and reason in err  # stderr: the journal of the timer unit


def test_standalone_keeper_accepts_what_the_role_records(tmp_path):
    # Valid parameters get past validation (the role records templated numbers and booleans as
    # strings, which AnsibleModule accepts too): the failure is then the unreachable REST API.
    rc, out, _ = _keeper_run(tmp_path, {**_keeper_params(tmp_path), "parallelism": "1", "restore": "True"})
    assert rc == 1 and "unreachable" in out["msg"] and not out["msg"].startswith("refused")
