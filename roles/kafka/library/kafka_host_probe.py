#!/usr/bin/python
"""Read in one round trip what a converge with nothing to do only looks at on a Kafka node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_host_probe
short_description: One round trip for the reads of a converge with nothing to do
description:
  - A re-run of the kafka role changes nothing on a node that is as it should be, yet it used to
    ask the node one question per task (the stamps, the current symlink, the metadata, the TLS
    files, the unit's state, a setup call for the default route): about 0.6 s each. This module answers them all
    at once; the role's tasks then run only when an answer says there is work.
  - It only reads: it never changes anything and runs in check mode too. No file content is
    returned for C(matches) (the key stays on the host): only whether the file is as wanted.
options:
  files:
    description:
      - Name -> C({path, while}). The text of C(path), or null when it is missing or cannot be
        read, or when C(while) (a path) is given and missing.
    type: dict
    default: {}
  links:
    description: Name -> path. The link's target, or null when the path is not a symlink.
    type: dict
    default: {}
  matches:
    description:
      - Name -> C({dest, owner, group, mode} and one of C(parts) or C(copy_of)). Whether C(dest) is
        a regular file with that owner, group and mode whose content is, for C(parts) (paths on
        this host), each part's text stripped of surrounding whitespace and ended by a newline
        (a PEM bundle as the role writes it), or for C(copy_of) the exact bytes of that file.
    type: dict
    default: {}
  units:
    description: systemd units whose C(ActiveState) and C(UnitFileState) to read.
    type: list
    elements: str
    default: []
  default_ipv4:
    description:
      - Return the fact C(ansible_default_ipv4) as C(setup) gathers it (its own network
        collector: the default route's interface, source address, gateway, netmask...), so the
        role needs no setup call and later roles on this host find the fact of this run.
    type: bool
    default: false
author: cryptomon
"""

RETURN = r"""
files: {description: name -> text or null, returned: always, type: dict}
links: {description: name -> target or null, returned: always, type: dict}
matches: {description: name -> whether the file is as wanted, returned: always, type: dict}
units:
  description: unit -> {ActiveState, UnitFileState}; empty when systemctl cannot answer.
  returned: always
  type: dict
ansible_facts:
  description: C(ansible_default_ipv4) as setup's, when asked and C(ip) is there ({} without a default route).
  returned: when default_ipv4 is true
  type: dict
"""

import grp
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.facts.network.linux import LinuxNetwork

UNIT_PROPERTIES = ("Id", "ActiveState", "UnitFileState")


def read_text(path: str, while_path: str | None = None) -> str | None:
    if while_path and not os.path.exists(while_path):
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


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


def wanted_bytes(spec: dict[str, Any]) -> bytes | None:
    """What dest should hold, None when a source cannot be read."""
    try:
        if spec.get("copy_of") is not None:
            with open(str(spec["copy_of"]), "rb") as handle:
                return handle.read()
        texts = []
        for part in spec["parts"]:
            with open(str(part), "rb") as handle:
                # As the role's template does: `{{ part | b64decode | trim }}` then a newline.
                texts.append(handle.read().decode("utf-8").strip() + "\n")
        return "".join(texts).encode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def matches(spec: dict[str, Any]) -> bool:
    """Whether dest is a regular file with the wanted content, owner, group and mode."""
    try:
        info = os.lstat(str(spec["dest"]))
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if _uid(spec["owner"]) != info.st_uid or _gid(spec["group"]) != info.st_gid:
        return False
    if int(str(spec["mode"]), 8) != stat.S_IMODE(info.st_mode):
        return False
    wanted = wanted_bytes(spec)
    if wanted is None:
        return False
    try:
        with open(str(spec["dest"]), "rb") as handle:
            return handle.read() == wanted
    except OSError:
        return False


def unit_states(module: AnsibleModule, units: list[str]) -> dict[str, dict[str, str]]:
    """Unit -> its properties; empty when systemctl is missing or cannot answer (no systemd)."""
    systemctl = module.get_bin_path("systemctl")
    if not units or not systemctl:
        return {}
    rc, out, _ = module.run_command(
        [systemctl, "show", "--property=" + ",".join(UNIT_PROPERTIES), "--", *units])
    if rc != 0:
        return {}
    states: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            states[props["Id"]] = {k: v for k, v in props.items() if k != "Id"}
    return states


def default_ipv4(module: AnsibleModule) -> dict[str, Any] | None:
    """setup's ansible_default_ipv4 (its Linux network collector); None without `ip`, where setup
    has no such fact either."""
    if not module.get_bin_path("ip"):
        return None
    return dict(LinuxNetwork(module).populate().get("default_ipv4", {}))


def check_specs(module: AnsibleModule) -> None:
    for name, spec in module.params["files"].items():
        if not isinstance(spec, dict) or not spec.get("path"):
            module.fail_json(msg=f"kafka_host_probe: files.{name} needs a path, got {spec!r}")
    for name, spec in module.params["matches"].items():
        missing = [k for k in ("dest", "owner", "group", "mode") if not isinstance(spec, dict) or not spec.get(k)]
        sources = [k for k in ("parts", "copy_of") if isinstance(spec, dict) and spec.get(k)]
        if missing or len(sources) != 1:
            module.fail_json(msg=f"kafka_host_probe: matches.{name} needs dest, owner, group, mode and one of "
                                 f"parts or copy_of, got {spec!r}")
        if not all(ch in "01234567" for ch in str(spec["mode"])):
            module.fail_json(msg=f"kafka_host_probe: matches.{name}: mode must be octal, got {spec['mode']!r}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "dict", "default": {}},
            "links": {"type": "dict", "default": {}},
            "matches": {"type": "dict", "default": {}},
            "units": {"type": "list", "elements": "str", "default": []},
            "default_ipv4": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    check_specs(module)
    params = module.params
    result: dict[str, Any] = {
        "changed": False,
        "files": {name: read_text(str(spec["path"]), spec.get("while")) for name, spec in params["files"].items()},
        "links": {name: link_target(str(path)) for name, path in params["links"].items()},
        "matches": {name: matches(spec) for name, spec in params["matches"].items()},
        "units": unit_states(module, params["units"]),
    }
    if params["default_ipv4"]:
        route = default_ipv4(module)
        # setup's key: the fact lands as ansible_facts.default_ipv4 and ansible_default_ipv4
        result["ansible_facts"] = {} if route is None else {"ansible_default_ipv4": route}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
