"""The flink_jobs role creates the job dir and copies the job sources in one cryptomon_files set
(one round trip when nothing changed): the dir first (0750), each source under its base name
(0640, the `../` pyfs files too), both the job user's; a second run changes nothing (issue 15)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "roles" / "flink_jobs" / "tasks" / "deploy.yml"
TASKS = ["Checksum the job sources on the controller", "Check that every job source exists on the controller",
         "Create the job directory and copy the job sources"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the set chowns to the job user (root here)")


def run(tmp_path: Path, src_dir: Path, job_dir: Path) -> dict[str, dict]:
    by_name = {t.get("name"): t for t in yaml.safe_load(DEPLOY.read_text())}
    variables = {"flink_jobs_src_dir": str(src_dir), "flink_jobs_dir": str(job_dir),
                 "flink_jobs_owner": "root", "flink_jobs_group": "root",
                 "flink_jobs_selected": [{"name": "a", "file": "job_a.py", "pyfs": ["lib/common.py", "../shared.py"]}],
                 "ansible_python_interpreter": sys.executable}
    env = {"ANSIBLE_ACTION_PLUGINS": str(REPO / "roles" / "cryptomon" / "action_plugins"),
           "ANSIBLE_LIBRARY": str(REPO / "roles" / "cryptomon" / "library")}
    res = run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [by_name[n] for n in TASKS]}],
                       workdir=tmp_path, extra_vars=variables, args=["-c", "local"], env=env, json_output=True)
    return res.assert_ok().task_results()


def test_the_dir_and_the_sources_are_one_set_and_a_rerun_changes_nothing(tmp_path):
    src = tmp_path / "jobs"
    (src / "lib").mkdir(parents=True)
    (src / "job_a.py").write_text("print('a')\n")
    (src / "lib" / "common.py").write_text("X = 1\n")
    (tmp_path / "shared.py").write_text("Y = 2\n")
    job_dir = tmp_path / "deployed"

    first = run(tmp_path, src, job_dir)[TASKS[2]]
    assert first["changed"]
    assert first["changed_files"] == [str(job_dir), *(str(job_dir / n) for n in ("job_a.py", "common.py", "shared.py"))]
    assert oct(job_dir.stat().st_mode & 0o777) == "0o750"
    for name, text in {"job_a.py": "print('a')\n", "common.py": "X = 1\n", "shared.py": "Y = 2\n"}.items():
        assert (job_dir / name).read_text() == text
        assert oct((job_dir / name).stat().st_mode & 0o777) == "0o640", name

    again = run(tmp_path, src, job_dir)[TASKS[2]]
    assert not again["changed"] and again["changed_files"] == []
