"""The docs stay navigable: generated role tables up to date, every `make` target and relative
link they mention exists, the README stays a front page, and every role default is specified."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
ALL_DOCS = [*DOCS, *(role / "README.md" for role in ROLES)]
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    # `name:` and `a b:` rule lines, not `VAR :=` / `VAR ?=` assignments.
    targets = set()
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if m and not line.startswith((".", "\t")):
            targets.update(m.group(1).split())
    return targets


def make_commands(text: str) -> list[str]:
    """Every `make ...` command of a doc: in code spans and in code blocks (a shell line that
    starts with make)."""
    commands = [c for c in INLINE_CODE.findall(FENCE.sub("", text)) if c.startswith("make ")]
    for block in FENCE.findall(text):
        for line in block.splitlines()[1:-1]:
            line = line.split("#", 1)[0].strip()
            if line.startswith("make "):
                commands.append(line)
    return commands


def make_targets_named(command: str) -> list[str]:
    # `make lint unit integration molecule`, `make submit-flink FLINK_JOB=x.py`, `make -C dir x`
    try:
        words = shlex.split(command)[1:]
    except ValueError:  # an unbalanced quote in prose: fall back to plain words
        words = command.split()[1:]
    return [w for w in words if "=" not in w and not w.startswith("-") and re.fullmatch(r"[a-z][a-z0-9_-]*", w)]


def relative_links(text: str) -> list[str]:
    links = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, in-page anchors
        links.append(target.split("#", 1)[0])
    return links


def test_role_variable_tables_are_up_to_date():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "role_docs.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_role_docs_check_names_a_stale_readme(tmp_path, monkeypatch):
    # --check must fail, and say which README, when a table no longer matches its spec.
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import role_docs
    finally:
        sys.path.remove(str(REPO / "scripts"))
    role = tmp_path / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults").mkdir()
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "defaults" / "main.yml").write_text("---\ndemo_port: 8080\n")
    (role / "meta" / "argument_specs.yml").write_text(
        "---\nargument_specs:\n  main:\n    options:\n"
        "      demo_port: {type: int, required: true, description: Port.}\n")
    (role / "README.md").write_text(f"# demo\n\n{role_docs.BEGIN}\n{role_docs.END}\n")
    monkeypatch.setattr(role_docs, "REPO", tmp_path)
    monkeypatch.setattr(role_docs, "ROLES", tmp_path / "roles")
    assert role_docs.main(["--check"]) == 1
    assert role_docs.main(["--write"]) == 0
    assert "| `demo_port` | int | `8080` | Port. |" in (role / "README.md").read_text()
    assert role_docs.main(["--check"]) == 0


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_make_target_mentioned_exists(doc):
    targets = makefile_targets()
    named = {t for c in make_commands(doc.read_text()) for t in make_targets_named(c)}
    assert named <= targets, f"{rel(doc)} names make targets the Makefile lacks: {sorted(named - targets)}"


def test_the_make_target_scan_sees_the_readme_commands():
    # Guard the scan itself: the README's own commands must be found.
    named = {t for c in make_commands(README.read_text()) for t in make_targets_named(c)}
    assert {"up", "test", "submit-flink", "lint", "unit", "integration", "molecule"} <= named


@pytest.mark.parametrize("doc", ALL_DOCS, ids=rel)
def test_relative_links_point_to_existing_files(doc):
    broken = [t for t in relative_links(doc.read_text()) if t and not (doc.parent / t).exists()]
    assert not broken, f"{rel(doc)} links to missing files: {broken}"


def test_readme_is_a_front_page_starting_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    first_block = FENCE.search(text)
    assert first_block is not None
    assert "make up" in first_block.group(0) and "make test" in first_block.group(0)


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_default_is_in_the_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    spec_file = role / "meta" / "argument_specs.yml"
    assert spec_file.is_file(), f"{rel(spec_file)} is missing"
    options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"].get("options") or {}
    missing = sorted(set(defaults) - set(options))
    assert not missing, f"{role.name}: defaults without an argument spec (absent from the README table): {missing}"
