"""One way for the unit tests to run `ansible-playbook` on this machine: a play given as a file,
as YAML text, as plays or as a list of tasks for localhost; extra vars, environment overrides,
--check/--diff and verbosity; the run's rc, stdout and stderr, and with `json_output=True` the
json callback's results by task and host.

Every run gets the same settings (BASE_ENV): the checkout's ansible.cfg, which operators run
with, the roles of the checkout, no colour and no warnings about an implicit localhost. A JSON
run also leaves out the config's timing callback, whose lines would land inside the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
BASE_ENV = {
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
    "ANSIBLE_LOCALHOST_WARNING": "false",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
}
JSON_ENV = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": ""}
# How much of each stream a failure message shows.
TAIL = 3000

Playbook = Path | str | Sequence[Mapping[str, Any]]


def localhost_play(tasks: Sequence[Mapping[str, Any]], **keys: Any) -> list[dict[str, Any]]:
    """A playbook of one play running `tasks` on localhost without facts; `keys` add to the play
    (vars, handlers) or replace its defaults."""
    return [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": list(tasks), **keys}]


@dataclass(frozen=True)
class PlaybookRun:
    """What one ansible-playbook run left: its exit code and output."""

    cmd: list[str]
    rc: int
    stdout: str
    stderr: str
    json_output: bool = field(default=False, repr=False)

    @property
    def tail(self) -> str:
        """The end of both streams, for an assertion's message."""
        return self.stdout[-TAIL:] + self.stderr[-TAIL:]

    def assert_ok(self) -> PlaybookRun:
        assert self.rc == 0, self.tail
        return self

    @cached_property
    def json(self) -> dict[str, Any]:
        """The json callback's report (the run must have had json_output=True). With -v and more
        the verbose lines come first: the report is the JSON object from the first line that
        is a lone `{`."""
        if not self.json_output:
            raise ValueError("this run printed text, not JSON: pass json_output=True to run_playbook")
        # -1 + 1: no such line, the whole output has to be the report
        start = 0 if self.stdout.startswith("{") else self.stdout.find("\n{\n") + 1
        try:
            report, _ = json.JSONDecoder().raw_decode(self.stdout, start)
        except json.JSONDecodeError:
            raise AssertionError(f"ansible-playbook printed no JSON report (rc {self.rc}):\n{self.tail}") from None
        return report

    def task_results(self, host: str = "localhost") -> dict[str, dict[str, Any]]:
        """Task name -> `host`'s result, for every task of every play that reached the host (a
        name given twice keeps its last result)."""
        return {t["task"]["name"]: t["hosts"][host] for p in self.json["plays"] for t in p["tasks"]
                if host in t["hosts"]}


def _playbook_file(playbook: Playbook, workdir: Path | None) -> Path:
    if isinstance(playbook, Path):
        return playbook
    if workdir is None:
        raise ValueError("a playbook given as text or plays needs a workdir to be written to")
    book = workdir / "play.yml"
    if isinstance(playbook, str):
        book.write_text(playbook)
    elif isinstance(playbook, Sequence):
        book.write_text(yaml.safe_dump(list(playbook), sort_keys=False))
    else:
        raise TypeError(f"playbook must be a Path, YAML text or a list of plays, not {type(playbook).__name__}")
    return book


def run_playbook(
    playbook: Playbook,
    *,
    workdir: Path | None = None,
    inventory: str | Path = "localhost,",
    extra_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    json_output: bool = False,
    args: Sequence[str] = (),
    timeout: float = 300,
) -> PlaybookRun:
    """Run ansible-playbook once and return what it left; the caller asserts on it.

    playbook: a file (Path), YAML text (str) or a list of plays; text and plays are written to
    workdir/play.yml, so files next to it (templates/) are the play's own. workdir is also the
    run's directory; without one the run starts in the checkout. inventory: a file, a directory
    or a host list ("localhost,"). extra_vars: given as one JSON -e. env: on top of BASE_ENV.
    args: more ansible-playbook arguments, after the others (more -e, --vault-password-file).
    """
    if verbosity < 0:
        raise ValueError(f"verbosity must be 0 or more, not {verbosity}")
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(_playbook_file(playbook, workdir))]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += [*(["--check"] if check else []), *(["--diff"] if diff else []),
            *(["-" + "v" * verbosity] if verbosity else []), *args]
    full_env = {**os.environ, **BASE_ENV, **(JSON_ENV if json_output else {}), **(env or {})}
    res = subprocess.run(cmd, env=full_env, capture_output=True, text=True, cwd=workdir or REPO, timeout=timeout,
                         check=False)
    return PlaybookRun(cmd, res.returncode, res.stdout, res.stderr, json_output)
