"""Which of a role's system groups and users the host's account facts do not show as wanted.

prepare.yml reads the host's passwd and group databases once per host and run (getent, 2 round
trips); every role's group and user task then loops only over the accounts these filters return,
so a converge with nothing to change skips them (about 0.5 s a task). The answer errs on the side
of running the stock module: without facts, or for an account that differs in anything the task
sets (primary group, home, shell, comment), the account is returned and the module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# getent's passwd fields after the name: password, uid, gid, gecos, home, shell.
_GID, _GECOS, _HOME, _SHELL = 2, 3, 4, 5
USER_KEYS = {"name", "group", "home", "shell", "comment"}


def _names(groups: object) -> list[str]:
    items = [groups] if isinstance(groups, str) else groups
    if isinstance(items, Iterable) and not isinstance(items, Mapping):
        names = list(items)
        if all(isinstance(n, str) and n for n in names):
            return names
    raise AnsibleFilterError(f"cryptomon_missing_groups expects a group name or a list of them, got {groups!r}")


def cryptomon_missing_groups(groups: object, group_db: object = None) -> list[str]:
    """The group names not in the host's group database (all of them without the facts)."""
    names = _names(groups)
    if not isinstance(group_db, Mapping):
        return names
    return [n for n in names if n not in group_db]


def _users(users: object) -> list[Mapping[str, Any]]:
    items = [users] if isinstance(users, Mapping) else users
    if isinstance(items, Iterable) and not isinstance(items, (str, Mapping)):
        specs = list(items)
        if all(isinstance(u, Mapping) and isinstance(u.get("name"), str) and u["name"] for u in specs):
            for spec in specs:
                unknown = sorted(set(spec) - USER_KEYS)
                if unknown:
                    raise AnsibleFilterError(
                        f"cryptomon_users_to_change: user {spec['name']!r} has unknown key(s) {unknown}; "
                        f"known: {sorted(USER_KEYS)}")
            return specs
    raise AnsibleFilterError(
        f"cryptomon_users_to_change expects a user spec {{name, group, home, shell, comment}} or a list "
        f"of them, got {users!r}")


def _differs(spec: Mapping[str, Any], entry: object, group_db: Mapping) -> bool:
    if not isinstance(entry, list) or len(entry) < 6:
        return True
    if spec.get("group") is not None:
        group = group_db.get(spec["group"])
        if not isinstance(group, list) or len(group) < 2 or str(group[1]) != str(entry[_GID]):
            return True
    for key, field in (("home", _HOME), ("shell", _SHELL), ("comment", _GECOS)):
        if spec.get(key) is not None and str(spec[key]) != str(entry[field]):
            return True
    return False


def cryptomon_users_to_change(users: object, passwd_db: object = None, group_db: object = None) -> list:
    """The user specs the host's passwd and group databases do not show as given (all of them
    without the facts)."""
    specs = _users(users)
    if not isinstance(passwd_db, Mapping) or not isinstance(group_db, Mapping):
        return specs
    return [s for s in specs if _differs(s, passwd_db.get(s["name"]), group_db)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"cryptomon_missing_groups": cryptomon_missing_groups,
                "cryptomon_users_to_change": cryptomon_users_to_change}
