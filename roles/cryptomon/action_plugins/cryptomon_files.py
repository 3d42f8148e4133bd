"""Install a set of files (templates, contents, controller or host files) and directories.

Why: `template` and `copy` cost two round trips per file even when nothing changed (a stat,
then the file module for owner and mode). A re-run of site.yml is mostly that. This action
renders every file on the controller, asks the host once (the cryptomon_files module) which
entries differ, and hands only those to the stock `copy` action (files) or `file` module
(directories): same writes, diffs, check mode and no_log handling as before, one round trip
when there is nothing to do.

Arguments:
  owner, group, mode, state, vars, validate: defaults for every entry, overridable per entry
    (validate as copy's: run on a file about to be written, never on one left as it is).
  files: list of entries. Each has `dest` and one of `template` (a template file, found like
    `template`'s src), `content`, `src` (a file on the controller, found like `copy`'s src),
    `remote_src` (a file on the host) or `state: directory`; plus `owner`, `group`, `mode`,
    `vars` (extra variables for its template), `variable_start_string` and
    `variable_end_string` (as `template`'s) and `notify` (a handler name or list: see below).
  each: a list; adds one entry per element, built from the task-level `dest` and one of
    `template`, `content`, `src`, `remote_src`: str.format patterns of the element, `{item}`,
    `{item[name]}` or `{basename}` (of a path; double a literal brace). Its template sees the
    element as `item` and as the name given in `as`.
  dest with one of the sources and neither files nor each: a single file.

Returns `results` (dest, changed, item, reason, notify per entry), `changed_files` and
`notify_handlers`: the handlers named by the entries that changed, in order, each once. A task
can notify only all its handlers or none; with one set holding the files of several services,
a looped debug task notifies just the right ones:
`loop: "{{ files.notify_handlers }}"`, `changed_when: true`, `notify: "{{ item }}"`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase
from ansible.template import AnsibleEnvironment, generate_ansible_template_vars

SOURCE_KEYS = ("template", "content", "src", "remote_src")
PATTERN_KEYS = ("dest", *SOURCE_KEYS)
ATTR_KEYS = ("owner", "group", "mode")
TASK_KEYS = {"files", "each", "as", "state", "vars", "validate", *PATTERN_KEYS, *ATTR_KEYS}
TEMPLATE_KEYS = ("variable_start_string", "variable_end_string")
ENTRY_KEYS = {"dest", "state", "vars", "validate", "notify", *TEMPLATE_KEYS, *SOURCE_KEYS, *ATTR_KEYS}


def _format(pattern: object, item: object, key: str) -> str:
    try:
        return str(pattern).format(item=item, basename=os.path.basename(item) if isinstance(item, str) else "")
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as err:
        raise AnsibleActionFail(
            f"cryptomon_files: {key} pattern {pattern!r} does not fit the element {item!r}: {err}") from err


def _handlers(entry: dict[str, Any]) -> list[str]:
    notify = entry.get("notify") or []
    names = [notify] if isinstance(notify, str) else notify
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise AnsibleActionFail(
            f"cryptomon_files: {entry['dest']}: notify must be a handler name or a list of them, got {notify!r}")
    return names


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        try:
            entries = self._entries()
            wanted = [self._wanted(entry, task_vars) for entry in entries]
            state = self._execute_module(
                module_name="cryptomon_files",
                module_args={"entries": [w["check"] for w in wanted]},
                task_vars=task_vars,
            )
            if state.get("failed"):
                raise AnsibleActionFail(state.get("msg", "cryptomon_files: the host could not compare the files"))
            result.update(self._apply(wanted, state["entries"], task_vars))
        except AnsibleActionFail as err:
            result.update(err.result)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _entries(self) -> list[dict[str, Any]]:
        args = dict(self._task.args)
        unknown = sorted(set(args) - TASK_KEYS)
        if unknown:
            raise AnsibleActionFail(f"cryptomon_files: unknown argument(s) {unknown}; known: {sorted(TASK_KEYS)}")
        defaults = {k: args[k] for k in ("state", "vars", "validate", *ATTR_KEYS) if k in args}
        entries: list[dict[str, Any]] = []
        files = args.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise AnsibleActionFail("cryptomon_files: files must be a list of dicts")
        for entry in files:
            unknown = sorted(set(entry) - ENTRY_KEYS)
            if unknown:
                raise AnsibleActionFail(
                    f"cryptomon_files: entry {entry.get('dest')!r} has unknown key(s) {unknown}; "
                    f"known: {sorted(ENTRY_KEYS)}")
            merged = {**defaults, **entry}
            merged["vars"] = {**defaults.get("vars", {}), **entry.get("vars", {})}
            entries.append(merged)
        each = args.get("each")
        if each is not None:
            if not isinstance(each, list):
                raise AnsibleActionFail(f"cryptomon_files: each must be a list, got {type(each).__name__}")
            if "dest" not in args:
                raise AnsibleActionFail("cryptomon_files: each needs a dest pattern")
            name = str(args.get("as", "item"))
            for item in each:
                entry = {**defaults}
                for key in PATTERN_KEYS:
                    if key in args:
                        entry[key] = _format(args[key], item, key)
                entry["vars"] = {**defaults.get("vars", {}), "item": item, name: item}
                entry["item"] = item
                entries.append(entry)
        elif "dest" in args and not files:
            entries.append({**defaults, **{k: args[k] for k in PATTERN_KEYS if k in args}})
        for entry in entries:
            if not entry.get("dest"):
                raise AnsibleActionFail(f"cryptomon_files: an entry has no dest: {entry!r}")
            sources = [k for k in SOURCE_KEYS if entry.get(k) is not None]
            if entry.get("state", "file") == "directory":
                if sources:
                    raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: a directory takes no {sources[0]}")
            elif entry.get("state", "file") != "file":
                raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: state must be file or directory")
            elif any(entry.get(k) is not None for k in TEMPLATE_KEYS) and entry.get("template") is None:
                raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: {list(TEMPLATE_KEYS)} need a template")
            elif len(sources) != 1:
                raise AnsibleActionFail(
                    f"cryptomon_files: {entry['dest']}: give exactly one of {list(SOURCE_KEYS)}, "
                    f"got {sources or 'none'}")
            _handlers(entry)
        return entries

    def _wanted(self, entry: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        """What the host should have: the module's check and, for files, the local source."""
        check = {"dest": entry["dest"], "state": entry.get("state", "file")}
        check.update({k: entry[k] for k in ATTR_KEYS if entry.get(k) is not None})
        wanted: dict[str, Any] = {"entry": entry, "check": check}
        if check["state"] == "directory":
            return wanted
        if entry.get("remote_src") is not None:
            check["remote_src"] = entry["remote_src"]
            return wanted
        if entry.get("src") is not None:
            try:
                path = self._find_needle("files", entry["src"])
            except AnsibleError as err:
                raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: {to_text(err)}") from err
            with open(to_bytes(path), "rb") as handle:
                data = handle.read()
            wanted["local_path"] = path
        elif entry.get("template") is not None:
            data, wanted["basename"] = self._render(entry, task_vars)
        else:
            data = to_bytes(entry["content"], errors="surrogate_or_strict")
            wanted["basename"] = "source"
        wanted["data"] = data
        check["checksum"] = hashlib.sha1(data).hexdigest()  # noqa: S324 - copy's checksum
        return wanted

    def _render(self, entry: dict[str, Any], task_vars: dict[str, Any]) -> tuple[bytes, str]:
        """Render as the template action does (same search path and template vars)."""
        source_arg = entry["template"]
        try:
            source = self._find_needle("templates", source_arg)
        except AnsibleError as err:
            raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: {to_text(err)}") from err
        real = self._loader.get_real_file(source)
        try:
            with open(to_bytes(real), "rb") as handle:
                data = to_text(handle.read(), errors="surrogate_or_strict")
        finally:
            self._loader.cleanup_tmp_file(to_bytes(real))
        searchpath = list(task_vars.get("ansible_search_path", []))
        searchpath.extend([self._loader._basedir, os.path.dirname(source)])
        searchpath = [p for base in searchpath for p in (os.path.join(base, "templates"), base)]
        temp_vars = task_vars.copy()
        temp_vars.update(entry.get("vars") or {})
        temp_vars.update(generate_ansible_template_vars(source_arg, source, entry["dest"]))
        templar = self._templar.copy_with_new_env(
            environment_class=AnsibleEnvironment, searchpath=searchpath,
            newline_sequence="\n", available_variables=temp_vars)
        try:
            overrides = {"trim_blocks": True, "lstrip_blocks": False}
            overrides.update({k: entry[k] for k in TEMPLATE_KEYS if entry.get(k) is not None})
            text = templar.do_template(data, preserve_trailing_newlines=True, escape_backslashes=False,
                                       overrides=overrides)
        except Exception as err:  # noqa: BLE001 - reported with the file it came from
            raise AnsibleActionFail(
                f"cryptomon_files: {entry['dest']}: rendering {source_arg}: "
                f"{type(err).__name__}: {to_text(err)}") from err
        return to_bytes(text, errors="surrogate_or_strict"), os.path.basename(source)

    def _apply(self, wanted: list[dict[str, Any]], states: list[dict[str, Any]],
               task_vars: dict[str, Any]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        diffs: list[Any] = []
        changed = False
        for want, state in zip(wanted, states, strict=True):
            entry = want["entry"]
            item_result: dict[str, Any] = {"dest": entry["dest"], "changed": False}
            if "item" in entry:
                item_result["item"] = entry["item"]
            if entry.get("notify"):
                item_result["notify"] = _handlers(entry)
            if state["differs"]:
                sub = self._install(want, task_vars)
                if sub.get("failed"):
                    raise AnsibleActionFail(f"cryptomon_files: {entry['dest']}: {sub.get('msg', sub)}", result={
                        "results": results, "failed_dest": entry["dest"]})
                item_result["changed"] = bool(sub.get("changed"))
                item_result["reason"] = state["reason"]
                changed = changed or item_result["changed"]
                if sub.get("diff"):
                    diffs.extend(sub["diff"] if isinstance(sub["diff"], list) else [sub["diff"]])
            results.append(item_result)
        handlers: list[str] = []
        for r in results:
            if r["changed"]:
                handlers.extend(h for h in r.get("notify", []) if h not in handlers)
        out: dict[str, Any] = {"changed": changed, "results": results, "notify_handlers": handlers,
                               "changed_files": [r["dest"] for r in results if r["changed"]]}
        if diffs:
            out["diff"] = diffs
        return out

    def _install(self, want: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        entry = want["entry"]
        attrs = {k: entry[k] for k in ATTR_KEYS if entry.get(k) is not None}
        if entry.get("state", "file") == "directory":
            return self._execute_module(module_name="ansible.legacy.file",
                                        module_args={"path": entry["dest"], "state": "directory", **attrs},
                                        task_vars=task_vars)
        args: dict[str, Any] = {"dest": entry["dest"], "follow": False, **attrs}
        if entry.get("validate"):
            args["validate"] = entry["validate"]
        if entry.get("remote_src") is not None:
            args.update(src=entry["remote_src"], remote_src=True)
            return self._copy(args, task_vars)
        if want.get("local_path"):
            args["src"] = want["local_path"]
            return self._copy(args, task_vars)
        local_dir = tempfile.mkdtemp(dir=C.DEFAULT_LOCAL_TMP)
        try:
            path = os.path.join(local_dir, want["basename"])
            with open(to_bytes(path), "wb") as handle:
                handle.write(want["data"])
            args["src"] = path
            return self._copy(args, task_vars)
        finally:
            shutil.rmtree(to_bytes(local_dir), ignore_errors=True)

    def _copy(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        new_task = self._task.copy()
        new_task.args = args
        copy_action = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.copy", task=new_task, connection=self._connection,
            play_context=self._play_context, loader=self._loader, templar=self._templar,
            shared_loader_obj=self._shared_loader_obj)
        return copy_action.run(task_vars=task_vars)
