#!/usr/bin/python
"""Remote half of the cryptomon_files action: which of a set of files and dirs differ."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cryptomon_files
short_description: Install a set of files and directories with one round trip when nothing changed
description:
  - The action plugin of the same name (roles/cryptomon/action_plugins) renders each file's content
    on the controller, then calls this module once with the expected checksums, owners, groups and
    modes of every entry. Only entries that differ are handed to the stock C(copy) (files) or
    C(file) (directories) modules, so a run with nothing to do costs one round trip per task
    instead of two per file, and a change goes through the same code, diff and check mode as
    C(template) and C(copy).
  - Run directly, this module only reports; it never changes anything.
options:
  entries:
    description:
      - What each entry should be. Keys C(dest) (required), C(state) (C(file) or C(directory)),
        C(checksum) (SHA-1 of the wanted content, files only), C(remote_src) (a path on this host
        whose content is wanted instead of C(checksum)), C(owner), C(group), C(mode) (octal
        string or int).
    type: list
    elements: dict
    required: true
author: cryptomon
"""

RETURN = r"""
entries:
  description: One result per entry, in order.
  returned: always
  type: list
  elements: dict
  contains:
    dest: {description: the entry's path, type: str}
    differs: {description: content, type, owner, group or mode differ (or cannot be compared), type: bool}
    reason: {description: why it differs (empty when it does not), type: str}
"""

import grp
import hashlib
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def _sha1(path: str) -> str:
    digest = hashlib.sha1()  # noqa: S324 - the copy module compares SHA-1 checksums
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _uid(owner: object) -> int | None:
    text = str(owner)
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        return None


def _gid(group: object) -> int | None:
    text = str(group)
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        return None


def _mode(mode: object) -> int | None:
    """The mode as an int, or None when it is symbolic (the file module then decides)."""
    if isinstance(mode, int):
        return mode
    text = str(mode)
    if text and all(ch in "01234567" for ch in text):
        return int(text, 8)
    return None


def why_differs(entry: dict[str, Any]) -> str:
    """Empty when the entry is as wanted, else a short reason."""
    dest = str(entry["dest"])
    try:
        info = os.lstat(dest)
    except FileNotFoundError:
        return "absent"
    except OSError as err:
        return f"cannot stat: {err.strerror}"
    wants_dir = entry.get("state", "file") == "directory"
    if wants_dir and not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    if not wants_dir:
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if entry.get("remote_src"):
            try:
                wanted = _sha1(str(entry["remote_src"]))
            except OSError as err:
                return f"cannot read the source: {err.strerror}"
        else:
            wanted = str(entry.get("checksum", ""))
        try:
            if _sha1(dest) != wanted:
                return "content"
        except OSError as err:
            return f"cannot read: {err.strerror}"
    if entry.get("owner") is not None and _uid(entry["owner"]) != info.st_uid:
        return "owner"
    if entry.get("group") is not None and _gid(entry["group"]) != info.st_gid:
        return "group"
    if entry.get("mode") is not None and _mode(entry["mode"]) != stat.S_IMODE(info.st_mode):
        return "mode"
    return ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={"entries": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    results = []
    for entry in module.params["entries"]:
        if not entry.get("dest"):
            module.fail_json(msg=f"cryptomon_files: an entry has no dest: {entry!r}")
        reason = why_differs(entry)
        results.append({"dest": entry["dest"], "differs": bool(reason), "reason": reason})
    module.exit_json(changed=False, entries=results)


if __name__ == "__main__":
    main()
