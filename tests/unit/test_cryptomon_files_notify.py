"""cryptomon_files entries that name their handlers (`notify`) and templates with their own
delimiters: one set holds the files of several services, and only the handlers of the entries
that changed run. Real ansible-playbook runs on this machine, with real handlers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

PLAY = """\
- hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: Install the files of two services
      cryptomon_files:
        files:
          - {{dest: "{out}/a.conf", content: "a={{{{ a }}}}\\n", notify: Restart a}}
          - {{dest: "{out}/a.rules", template: rules.j2, variable_start_string: "<<",
              variable_end_string: ">>", notify: [Reload a]}}
          - {{dest: "{out}/b.conf", content: "b={{{{ b }}}}\\n", notify: Restart b}}
          - {{dest: "{out}/plain", content: "no handler\\n"}}
        mode: "0644"
      register: installed
    - name: Notify the handlers of what changed
      ansible.builtin.debug:
        msg: "{{{{ item }}}}"
      loop: "{{{{ installed.notify_handlers }}}}"
      changed_when: true
      notify: "{{{{ item }}}}"
  handlers:
    - name: Restart a
      ansible.builtin.debug: {{msg: ran Restart a}}
    - name: Reload a
      ansible.builtin.debug: {{msg: ran Reload a}}
    - name: Restart b
      ansible.builtin.debug: {{msg: ran Restart b}}
"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    (tmp_path / "templates").mkdir()
    # Prometheus' own {{ $value }} must survive: only << >> is Ansible's here.
    (tmp_path / "templates" / "rules.j2").write_text("summary: {{ $value }} above << limit >>\n")
    path = tmp_path / "play.yml"
    path.write_text(PLAY.format(out=tmp_path / "out"))
    return path


def run(book: Path, **variables: object) -> tuple[dict, list[str]]:
    extra = {"ansible_python_interpreter": sys.executable, "a": 1, "b": 1, "limit": 5, **variables}
    out = run_playbook(book, workdir=book.parent, extra_vars=extra, json_output=True).json
    tasks = out["plays"][0]["tasks"]
    handlers_run = [t["hosts"]["localhost"]["msg"] for t in tasks[2:]]
    return tasks[0]["hosts"]["localhost"], handlers_run


def test_only_the_handlers_of_changed_entries_run(book: Path) -> None:
    first, handlers = run(book)
    assert first["notify_handlers"] == ["Restart a", "Reload a", "Restart b"]
    assert sorted(handlers) == ["ran Reload a", "ran Restart a", "ran Restart b"]
    assert [r.get("notify") for r in first["results"]] == [["Restart a"], ["Reload a"], ["Restart b"], None]

    again, handlers = run(book)
    assert again["changed"] is False and again["notify_handlers"] == []
    assert handlers == []

    changed_b, handlers = run(book, b=2)
    assert changed_b["changed_files"] == [str(book.parent / "out" / "b.conf")]
    assert handlers == ["ran Restart b"]


def test_template_delimiters_of_the_entry(book: Path) -> None:
    run(book)
    assert (book.parent / "out" / "a.rules").read_text() == "summary: {{ $value }} above 5\n"
    _, handlers = run(book, limit=6)
    assert handlers == ["ran Reload a"]


@pytest.mark.parametrize(("entry", "message"), [
    ('{dest: /tmp/never-written, content: x, notify: [""]}', "notify must be a handler name"),
    ('{dest: /tmp/never-written, content: x, variable_start_string: "<<"}', "need a template"),
])
def test_bad_entries_are_named(book: Path, entry: str, message: str) -> None:
    plain = '- {dest: "' + str(book.parent / "out") + '/plain", content: "no handler\\n"}'
    book.write_text(book.read_text().replace(plain, "- " + entry))
    res, _ = run(book)
    assert res["failed"] is True and message in res["msg"], res
    assert not Path("/tmp/never-written").exists()
