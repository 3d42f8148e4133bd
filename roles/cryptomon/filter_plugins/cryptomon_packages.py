"""Which of a role's Debian packages the host's package facts do not show as installed.

Every role's apt task asks `specs | cryptomon_missing_packages(ansible_facts.packages | default(none))`
and runs only when the answer is not empty, so a converge with nothing to install skips apt (about
0.6 s a task). The answer errs on the side of running apt: without facts, for a spec the facts
cannot settle (version ranges, name wildcards) or for an unreadable fact, the spec counts as
missing and apt decides, as it did before.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError

# apt's specs as ansible.builtin.apt takes them: name, name:arch, name=version (version may end in
# a * wildcard), name>=version.
_SPEC = re.compile(r"^(?P<name>[^=<>:\s]+)(?::(?P<arch>[^=<>\s]+))?(?:(?P<op>>=|=)(?P<version>\S+))?$")
_NAME_WILDCARD = re.compile(r"[*?\[]")


def _as_list(specs: object) -> list[str]:
    if isinstance(specs, str):
        return [specs]
    if isinstance(specs, Iterable) and not isinstance(specs, Mapping):
        items = list(specs)
        if all(isinstance(item, str) for item in items):
            return items
    raise AnsibleFilterError(
        f"cryptomon_missing_packages expects a package name or a list of them, got {specs!r}")


def _installed(spec: str, facts: Mapping) -> bool:
    match = _SPEC.match(spec.strip())
    if match is None or _NAME_WILDCARD.search(match["name"]) or match["op"] == ">=":
        return False  # nothing the facts can settle without apt's own version logic
    entries = facts.get(match["name"]) or []
    if not isinstance(entries, list):
        return False
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if match["arch"] and entry.get("arch") != match["arch"]:
            continue
        if match["version"] is None or fnmatch.fnmatchcase(str(entry.get("version", "")), match["version"]):
            return True
    return False


def cryptomon_missing_packages(specs: object, facts: object = None) -> list[str]:
    """The specs (as given to ansible.builtin.apt) the facts do not show installed; all of them
    when there are no facts (package_facts not gathered, or switched off)."""
    wanted = _as_list(specs)
    if not isinstance(facts, Mapping):
        return wanted
    return [spec for spec in wanted if not _installed(spec, facts)]


class FilterModule:
    def filters(self) -> dict:
        return {"cryptomon_missing_packages": cryptomon_missing_packages}
