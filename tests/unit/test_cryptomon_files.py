"""The cryptomon_files action (roles/cryptomon/action_plugins): a set of templates, contents,
controller files, host files and directories installed like template/copy/file would, with one
round trip to the host when nothing changed. Run with ansible-playbook on this machine."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "cryptomon"

PLAY = """\
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Install the set
      cryptomon_files:
        each: "{{{{ instances }}}}"
        as: instance
        template: "unit.j2"
        dest: "{out}/{{item}}.env"
        mode: "0640"
        files:
          - {{dest: "{out}/dir", state: directory, mode: "0750"}}
          - {{dest: "{out}/content.txt", content: "plain {{{{ word }}}}\\n", mode: "0600"}}
          - {{dest: "{out}/copied.txt", src: "{src}"}}
          - {{dest: "{out}/from-host.txt", remote_src: "{host_src}", mode: "0644"}}
      register: installed
    - name: Show what changed
      ansible.builtin.debug:
        var: installed.changed_files
"""


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "unit.j2").write_text(
        "INSTANCE={{ instance }}\nITEM={{ item }}\nWORD={{ word }}\n")
    src = tmp_path / "controller.txt"
    src.write_text("from the controller\n")
    host_src = tmp_path / "host.txt"
    host_src.write_text("from the host\n")
    book = tmp_path / "play.yml"
    book.write_text(PLAY.format(out=out, src=src, host_src=host_src))
    return {"tmp": tmp_path, "out": out, "book": book, "host_src": host_src}


# What a role's meta dependency on cryptomon gives its tasks; no pipelining, so that -vvv names the
# AnsiballZ file of each module run.
ENV = {"ANSIBLE_ACTION_PLUGINS": str(ROLE / "action_plugins"), "ANSIBLE_LIBRARY": str(ROLE / "library"),
       "ANSIBLE_PIPELINING": "false"}


def run(site: dict[str, Path], *, check: bool = False, diff: bool = False, verbose: bool = False,
        **extra: object) -> tuple[dict, str]:
    variables = {"ansible_python_interpreter": sys.executable, "instances": ["binance", "okx"], "word": "one",
                 **extra}
    res = run_playbook(site["book"], workdir=site["tmp"], extra_vars=variables, env=ENV, check=check, diff=diff,
                       verbosity=3 if verbose else 0, json_output=True)
    return res.json, res.stdout


def result(out: dict) -> dict:
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_installs_every_kind_then_changes_nothing(site: dict[str, Path]) -> None:
    out = site["out"]
    first = result(run(site)[0])
    assert first.get("failed") is not True, first
    assert first["changed"] is True
    assert (out / "binance.env").read_text() == "INSTANCE=binance\nITEM=binance\nWORD=one\n"
    assert (out / "okx.env").read_text().startswith("INSTANCE=okx\n")
    assert stat.S_IMODE((out / "okx.env").stat().st_mode) == 0o640
    assert (out / "dir").is_dir() and stat.S_IMODE((out / "dir").stat().st_mode) == 0o750
    assert (out / "content.txt").read_text() == "plain one\n"
    assert stat.S_IMODE((out / "content.txt").stat().st_mode) == 0o600
    assert (out / "copied.txt").read_text() == "from the controller\n"
    assert (out / "from-host.txt").read_text() == "from the host\n"
    assert [r["item"] for r in first["results"] if "item" in r] == ["binance", "okx"]

    second, log = run(site, verbose=True)
    again = result(second)
    assert again["changed"] is False, again
    assert again["changed_files"] == []
    # One module run for the whole set: the check; nothing handed to copy or file.
    module_runs = [line for line in log.splitlines() if "EXEC" in line and "/AnsiballZ_" in line and "python" in line]
    assert len(module_runs) == 1 and "AnsiballZ_cryptomon_files.py" in module_runs[0], module_runs


def test_only_what_differs_is_written(site: dict[str, Path]) -> None:
    out = site["out"]
    run(site)
    (out / "content.txt").chmod(0o644)
    (out / "okx.env").write_text("edited by hand\n")
    site["host_src"].write_text("the host's new version\n")
    (out / "dir").rmdir()
    res = result(run(site)[0])
    assert sorted(Path(p).name for p in res["changed_files"]) == [
        "content.txt", "dir", "from-host.txt", "okx.env"]
    assert stat.S_IMODE((out / "content.txt").stat().st_mode) == 0o600
    assert (out / "okx.env").read_text().startswith("INSTANCE=okx\n")
    assert (out / "from-host.txt").read_text() == "the host's new version\n"
    reasons = {Path(r["dest"]).name: r.get("reason") for r in res["results"] if r["changed"]}
    assert reasons == {"content.txt": "mode", "okx.env": "content", "from-host.txt": "content", "dir": "absent"}


def test_check_mode_reports_and_diff_shows_without_writing(site: dict[str, Path]) -> None:
    out = site["out"]
    run(site)
    res = result(run(site, check=True, diff=True, word="two")[0])
    assert res["changed"] is True
    assert sorted(Path(p).name for p in res["changed_files"]) == ["binance.env", "content.txt", "okx.env"]
    assert (out / "content.txt").read_text() == "plain one\n"
    afters = "".join(d.get("after", "") for d in res["diff"])
    assert "WORD=two" in afters and "plain two" in afters


def one_task(tmp_path: Path, args: str) -> dict[str, Path]:
    """A play of one cryptomon_files task with `args` (YAML lines, unindented)."""
    book = tmp_path / "play.yml"
    indented = "".join(f"        {line}\n" for line in args.splitlines())
    book.write_text(f"""\
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Install the set
      cryptomon_files:
{indented}""")
    return {"tmp": tmp_path, "book": book}


@pytest.mark.parametrize(("files", "message"), [
    ('[{"dest": "/tmp/x", "content": "a", "src": "b"}]', "give exactly one of"),
    ('[{"dest": "/tmp/x", "content": "a", "colour": "red"}]', "unknown key(s) ['colour']"),
    ('[{"dest": "/tmp/x", "state": "directory", "content": "a"}]', "a directory takes no content"),
    ('[{"dest": "/tmp/x", "template": "missing.j2"}]', "missing.j2"),
])
def test_bad_entries_fail_naming_the_file(tmp_path: Path, files: str, message: str) -> None:
    res = result(run(one_task(tmp_path, f"files: {files}"))[0])
    assert res.get("failed") is True
    assert message in res["msg"], res["msg"]
    assert not Path("/tmp/x").exists() or Path("/tmp/x").is_dir()


def test_each_pattern_that_does_not_fit_names_it(site: dict[str, Path]) -> None:
    book = site["book"]
    book.write_text(book.read_text().replace('dest: "' + str(site["out"]) + '/{item}.env"',
                                             'dest: "' + str(site["out"]) + '/{item[name]}.env"'))
    res = result(run(site)[0])
    assert res.get("failed") is True
    assert "dest pattern" in res["msg"] and "'binance'" in res["msg"]


def test_one_file_with_its_own_vars(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.j2").write_text('ARGS="{{ item.args | join(\' \') }}"\n')
    site = one_task(tmp_path, f"""\
dest: {tmp_path}/prometheus
template: default.j2
vars:
  item: {{args: [--web.listen-address=127.0.0.1:9090, --storage.tsdb.retention.time=15d]}}
mode: "0644"
""")
    assert result(run(site)[0])["changed"] is True
    assert (tmp_path / "prometheus").read_text() == (
        'ARGS="--web.listen-address=127.0.0.1:9090 --storage.tsdb.retention.time=15d"\n')
    assert result(run(site)[0])["changed"] is False
