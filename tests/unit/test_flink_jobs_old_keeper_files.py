"""The flink_jobs role removes the keeper files earlier versions left in the job dir with one look
at the dir (find) and a removal loop over what it found: exactly the old names, nothing else, and
nothing to do on a re-run; the look happens only when the keeper set changed something (it made
the keeper dir or the keeper), so a re-run without changes skips it (issue 15, operations speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "roles" / "flink_jobs" / "tasks" / "submit.yml"
FIND = "Find the keeper files of earlier versions (they lived in the flink-owned job dir)"
REMOVE = "Remove the keeper files of earlier versions"


def keeper_cleanup_tasks() -> list[dict]:
    """The role's own two tasks, taken from the keeper block of submit.yml."""
    tasks = [t for entry in yaml.safe_load(SUBMIT.read_text()) for t in entry.get("block", [entry])]
    by_name = {t.get("name"): t for t in tasks}
    assert FIND in by_name and REMOVE in by_name, sorted(n for n in by_name if n)
    return [by_name[FIND], by_name[REMOVE]]


def run(tmp_path: Path, job_dir: Path, *, check: bool = False, keeper_set_changed: bool = True) -> dict:
    """Run the two tasks on localhost after a keeper set that changed something (or nothing); the
    play's stats per task."""
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": keeper_cleanup_tasks(),
              "vars": {"flink_jobs_dir": str(job_dir), "flink_jobs_keeper_files": {"results": [
                  {"dest": "/opt/cryptomon/flink-keeper/flink_job_keeper.py", "changed": keeper_set_changed}]},
                       "flink_jobs_list": [{"name": "anomaly_detector"}, {"name": "quote_arbitrage"}]}}]
    res = run_playbook(plays, workdir=tmp_path, extra_vars={"ansible_python_interpreter": sys.executable},
                       check=check, args=["-c", "local"], json_output=True)
    return res.assert_ok().task_results()


def test_old_keeper_files_go_the_rest_stays_and_a_rerun_has_nothing_to_do(tmp_path):
    job_dir = tmp_path / "flink-jobs"
    job_dir.mkdir()
    old = ["flink_job_keeper.py", "anomaly_detector.keeper.json", "quote_arbitrage.keeper.json"]
    kept = ["anomaly_detector.py", "anomaly_detector.env", "anomaly_detector.state.json",
            "other_job.keeper.json", "flink_job_keeper.py.bak"]
    for name in old + kept:
        (job_dir / name).write_text("x")

    checked = run(tmp_path, job_dir, check=True)
    assert checked[REMOVE]["changed"]
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(old + kept)  # check mode: nothing removed

    first = run(tmp_path, job_dir)
    assert first[REMOVE]["changed"]
    assert sorted(r["path"] for r in first[REMOVE]["results"]) == sorted(str(job_dir / n) for n in old)
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(kept)

    again = run(tmp_path, job_dir)
    assert again[FIND]["matched"] == 0
    assert not again[REMOVE]["changed"] and again[REMOVE]["skipped"]


def test_without_a_change_of_the_keeper_set_the_job_dir_is_not_looked_at(tmp_path):
    job_dir = tmp_path / "flink-jobs"
    job_dir.mkdir()
    (job_dir / "flink_job_keeper.py").write_text("x")
    rerun = run(tmp_path, job_dir, keeper_set_changed=False)
    assert rerun[FIND].get("skipped") and rerun[REMOVE].get("skipped")
    assert (job_dir / "flink_job_keeper.py").exists()
