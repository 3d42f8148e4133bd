"""The flink_jobs role checksums the job sources on the controller without a module run per file:
the checksums are the sha256 of the files' bytes, as the stat loop it replaced gave them (they
make the job versions; a different checksum would upgrade every job), and a missing source
still stops the play with its name (issue 15, operations speed)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml
from unit.playbook_runner import PlaybookRun, run_playbook

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "roles" / "flink_jobs" / "tasks" / "deploy.yml"
CHECKSUM = "Checksum the job sources on the controller"
CHECK = "Check that every job source exists on the controller"


def run(tmp_path: Path, src_dir: Path, selected: list[dict]) -> PlaybookRun:
    by_name = {t.get("name"): t for t in yaml.safe_load(DEPLOY.read_text())}
    tasks = [by_name[CHECKSUM], by_name[CHECK],
             {"name": "Show", "ansible.builtin.copy": {
                 "content": "{{ flink_jobs_sources | to_json }}", "dest": str(tmp_path / "sources.json")}}]
    variables = {"flink_jobs_src_dir": str(src_dir), "flink_jobs_selected": selected,
                 "ansible_python_interpreter": sys.executable}
    return run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], workdir=tmp_path,
                        extra_vars=variables, args=["-c", "local"])


def test_checksums_are_the_sha256_of_the_bytes_of_every_source_once(tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    files = {
        "job_a.py": b"print('a')\n\n\n",  # trailing newlines count
        "job_b.py": "# caf\u00e9 \u20ac\r\nprint('{{ not a template }}')".encode(),
        "lib/common.py": b"X = 1",
        "lib/deps.zip": bytes(range(256)) * 4,  # -pyfs archives are not text
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    selected = [{"name": "a", "file": "job_a.py", "pyfs": ["lib/common.py", "lib/deps.zip"]},
                {"name": "b", "file": "job_b.py", "pyfs": ["lib/common.py"]}]
    res = run(tmp_path, src, selected)
    res.assert_ok()
    results = json.loads((tmp_path / "sources.json").read_text())["results"]
    assert [r["item"] for r in results] == ["job_a.py", "job_b.py", "lib/common.py", "lib/deps.zip"]
    for r in results:
        assert r["stat"] == {"exists": True, "isreg": True,
                             "checksum": hashlib.sha256(files[r["item"]]).hexdigest()}, r["item"]


def test_a_missing_source_stops_the_play_with_its_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "job_a.py").write_text("pass\n")
    (src / "a_dir.py").mkdir()
    res = run(tmp_path, src, [{"name": "a", "file": "job_a.py", "pyfs": ["gone.py"]}])
    assert res.rc != 0
    assert f"{src}/gone.py is missing (set flink_jobs_src_dir or fix flink_jobs_list)" in res.stdout
    res = run(tmp_path, src, [{"name": "a", "file": "a_dir.py"}])
    assert res.rc != 0 and f"{src}/a_dir.py is missing" in res.stdout
