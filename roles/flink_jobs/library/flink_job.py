#!/usr/bin/python
# Copyright: cryptomon contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: keep one PyFlink job running at a given version on a Flink session cluster."""

DOCUMENTATION = r"""
---
module: flink_job
short_description: Keep a PyFlink job running at a given version, upgrading it through a savepoint
description:
  - Submits a PyFlink job to a Flink session cluster with C(flink run -d -py) unless a job of the
    same I(name) and I(version) already runs.
  - The job is submitted under the Flink job name C(<name>@<version[:12]>) (C(-Dpipeline.name)), so
    the running version is visible in the Flink UI and is found again through the REST API
    (C(/jobs/overview)) without any local state.
  - When a job of the same I(name) but another version runs, it is stopped with a savepoint
    (C(POST /jobs/<id>/stop)) and the new version is submitted from that savepoint (C(flink run -s)).
  - Every savepoint the module takes is recorded in C(<state_dir>/<name>.state.json) as I(pending)
    until a job has started from it. A later fresh submission (no job of that name running, for
    example after I(state=absent) or after a failed upgrade) restores from the pending savepoint
    when I(restore=true). Once a job runs from it the savepoint is no longer pending; a job that
    later fails, is cancelled outside Ansible or dies with its JobManager is resumed from its
    newest retained checkpoint (I(checkpoint_dir)), or starts without state when there is none.
  - After a submission the module waits until the job and all its vertices are C(RUNNING) and stay
    so for I(settle_seconds); otherwise it fails with the JobManager's exception history.
  - When a job of the same I(name) and I(version) already runs, the module only confirms it: it
    waits (up to I(start_timeout)) until the job and all its vertices are C(RUNNING), without a
    settle time. That no-change run asks the REST API twice (C(GET /jobs/overview) and
    C(GET /jobs/<id>)) and does not sleep.
  - Supports check mode (reports the planned action, changes nothing) and diff mode
    (name, version, job id and state before and after).
version_added: "1.0.0"
author: cryptomon
options:
  name:
    description:
      - Logical job name; the Flink job name is C(<name>@<version[:12]>). Must not contain C(@).
    type: str
    required: true
  state:
    description:
      - C(running) keeps the job running at I(version); C(absent) stops every job of this name
        with a savepoint (cancels jobs that are not C(RUNNING)).
    type: str
    choices: [running, absent]
    default: running
  version:
    description:
      - Opaque version of the job (code, settings, arguments). Only the first 12 characters are
        compared. Required when I(state=running).
    type: str
  py_file:
    description: Path of the job's Python entry point on the managed host. Required when I(state=running).
    type: path
  args:
    description: Arguments passed to the job's entry point.
    type: list
    elements: str
    default: []
  env:
    description:
      - Environment variables for the job's driver process (the Python client that builds the
        job graph). They do not reach Python workers on the TaskManagers.
    type: dict
    default: {}
  env_file:
    description:
      - A C(KEY=value) file (C(#) comments, no quoting) on the managed host whose variables are
        added to the driver environment before I(env). Keeps secrets out of module arguments.
    type: path
  pyfs:
    description: Extra Python files or archives shipped with the job (C(-pyfs)).
    type: list
    elements: str
    default: []
  parallelism:
    description: Job parallelism (C(-p)); the cluster default when omitted.
    type: int
  flink_options:
    description: Extra Flink configuration passed as C(-D<key>=<value>) at submission.
    type: dict
    default: {}
  rest_url:
    description: Base URL of the JobManager's REST API; also used as the C(-m) target of C(flink run).
    type: str
    default: http://127.0.0.1:8081
  client_cert:
    description:
      - PEM certificate presented to an C(https) REST API that asks for one (Flink's
        C(security.ssl.rest.authentication-enabled)). C(flink run) itself takes its TLS settings
        from the cluster's config.yaml.
    type: path
  client_key:
    description: PEM private key of I(client_cert).
    type: path
  ca_cert:
    description: CA bundle (PEM) that verifies the REST API's certificate.
    type: path
  resume_only:
    description:
      - Only bring back a job that is gone (no running job of this name at any version), from
        its pending savepoint or newest retained checkpoint; never stop, cancel or upgrade a
        running job. This is how the keeper timer runs the module between converges.
      - When the file runs standalone (the keeper), it refuses any parameter file that is not
        owned by root, names parameters outside this spec or of the wrong type, sets
        I(resume_only) to anything but true, or whose I(flink_bin) is not
        C(<flink_env.FLINK_HOME>/bin/flink) (root-owned, like I(pyexec)).
    type: bool
    default: false
  flink_bin:
    description: The C(flink) command line client.
    type: path
    default: flink
  flink_env:
    description:
      - Environment for C(flink) (C(FLINK_HOME), C(FLINK_CONF_DIR), C(FLINK_LIB_DIR), C(JAVA_HOME),
        C(PATH) ...).
    type: dict
    default: {}
  pyexec:
    description:
      - Python interpreter with apache-flink, used for the driver and the Python workers
        (C(-pyclientexec), C(-pyexec)).
    type: path
  savepoint_dir:
    description:
      - Target directory of savepoints (a URI such as C(file:///var/lib/flink/savepoints)); the
        cluster's C(state.savepoints.dir) when omitted.
    type: str
  state_dir:
    description: Directory of the C(<name>.state.json) file; no state file is kept when omitted.
    type: path
  restore:
    description: On a fresh submission, restore from the pending savepoint recorded in the state file.
    type: bool
    default: true
  restore_from:
    description:
      - Savepoint or retained checkpoint to start from on a fresh submission; takes precedence over
        the pending savepoint.
    type: str
  checkpoint_dir:
    description:
      - The cluster's checkpoint directory (C(execution.checkpointing.dir)). On a fresh submission
        without a pending savepoint and with I(restore=true), the job resumes from the newest
        retained checkpoint of the job recorded in the state file (asked from the REST API while the
        JobManager remembers that job, else looked up under this directory when it is a local
        C(file://) path). Needs C(externalized-checkpoint-retention) C(RETAIN_ON_CANCELLATION).
    type: str
  run_as:
    description:
      - Run C(flink run) (and so the job's Python driver) as this user when the module runs as root.
    type: str
  force:
    description:
      - Stop the job with a savepoint and resubmit it from that savepoint even when it already
        runs at I(version) (for example to pick up a new connector jar). Always reports a change.
    type: bool
    default: false
  allow_non_restored_state:
    description: Pass C(--allowNonRestoredState) when submitting from a savepoint (needed when operators were removed).
    type: bool
    default: false
  submit_timeout:
    description: Seconds allowed for C(flink run) to return.
    type: int
    default: 300
  start_timeout:
    description: Seconds allowed for a submitted job to reach C(RUNNING) with all vertices C(RUNNING).
    type: int
    default: 180
  settle_seconds:
    description: Seconds a started job must keep running without new exceptions before it counts as started.
    type: int
    default: 5
  savepoint_timeout:
    description: Seconds allowed for stop-with-savepoint (or cancel) to finish.
    type: int
    default: 600
  rest_timeout:
    description: Seconds to wait for the REST API to answer before giving up.
    type: int
    default: 60
notes:
  - Restore order of a submission is the savepoint just taken by an upgrade, then I(restore_from),
    then the pending savepoint, then the newest retained checkpoint of the last job (see I(checkpoint_dir)).
  - The job code must not set its own job name (C(pipeline.name), C(execute("name"))); the module
    fails and cancels the job when the submitted job does not carry the expected name.
  - With several TaskManager hosts, I(savepoint_dir) must be storage every Flink process can reach.
"""

EXAMPLES = r"""
- name: Keep the anomaly detector running at the deployed version
  flink_job:
    name: anomaly_detector
    py_file: /opt/cryptomon/flink-jobs/anomaly_detector.py
    env_file: /opt/cryptomon/flink-jobs/anomaly_detector.env
    version: "{{ job_version }}"
    parallelism: 2
    pyexec: /opt/flink/venv/bin/python
    flink_bin: /opt/flink/venv/lib/python3.11/site-packages/pyflink/bin/flink
    flink_env:
      FLINK_HOME: /opt/flink/venv/lib/python3.11/site-packages/pyflink
      FLINK_CONF_DIR: /etc/flink
    savepoint_dir: file:///var/lib/flink/savepoints
    state_dir: /opt/cryptomon/flink-jobs

- name: Stop it with a savepoint
  flink_job:
    name: anomaly_detector
    state: absent
    state_dir: /opt/cryptomon/flink-jobs
"""

RETURN = r"""
action:
  description: What was (or in check mode would be) done.
  returned: always
  type: str
  choices: [none, submitted, upgraded, stopped]
job_id:
  description:
    - Id of the job running at I(version) afterwards (C(null) after state=absent or in check mode
      before a submission).
  returned: always
  type: str
job_name:
  description: Flink job name C(<name>@<version[:12]>).
  returned: when state=running
  type: str
savepoint:
  description: Savepoint taken by a stop, or the one the new job was started from.
  returned: always
  type: str
restored_from:
  description: Savepoint or checkpoint the submitted job was started from.
  returned: when a job was submitted
  type: str
stopped:
  description: Jobs stopped or cancelled, each with id, name, state before, method and savepoint.
  returned: always
  type: list
  elements: dict
command:
  description: The C(flink run) command line that was (or would be) executed.
  returned: when a job was submitted
  type: list
  elements: str
"""

import grp
import json
import os
import pwd
import re
import subprocess
import time
import traceback
from urllib.error import HTTPError, URLError

try:
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.common.text.converters import to_native
    from ansible.module_utils.urls import open_url
except ImportError:
    # Standalone on a host without Ansible: cryptomon-flink-jobs.timer runs this same file
    # (as the flink user) with the parameters the role recorded, so a job that died (JobManager
    # restart, reboot) is resumed from its last checkpoint without waiting for the next converge.
    import ssl
    import stat
    import sys
    import urllib.request

    def to_native(value):
        return str(value)

    def open_url(url, data=None, method=None, timeout=10, headers=None, client_cert=None, client_key=None,
                 ca_path=None, **_):
        context = None
        if url.startswith("https://"):
            context = ssl.create_default_context(cafile=ca_path)
            if client_cert:
                context.load_cert_chain(client_cert, client_key)
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        return urllib.request.urlopen(req, timeout=timeout, context=context)

    class KeeperRefused(Exception):
        """A parameter file the standalone keeper will not run."""

    _TYPES = {"str": str, "path": str, "bool": bool, "int": int, "list": list, "dict": dict}
    _BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}

    def _coerce(value, kind):
        """What AnsibleModule accepts for a type (the role records templated values as strings)."""
        if kind == "int" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if kind == "bool" and isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        return value

    def _owned_by_root_and_not_writable(path):
        st = os.stat(path)
        return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)

    def validate_standalone(given, argument_spec, params_path):
        """The keeper's parameters against the module's argument spec, and then some: the keeper
        only resumes jobs, and only runs Flink's own client from the recorded FLINK_HOME, both
        root-owned. Anything else is refused (the file is written by the role, root-owned)."""
        problems = []
        if not _owned_by_root_and_not_writable(params_path):
            problems.append(f"{params_path} must be owned by root and writable by root only")
        unknown = sorted(set(given) - set(argument_spec))
        if unknown:
            problems.append(f"unknown parameters {unknown}")
        for key, spec in argument_spec.items():
            if key not in given or given[key] is None:
                if spec.get("required"):
                    problems.append(f"{key} is required")
                continue
            given[key] = _coerce(given[key], spec.get("type", "str"))
            want = _TYPES.get(spec.get("type", "str"), str)
            if not isinstance(given[key], want) or (want is int and isinstance(given[key], bool)):
                problems.append(f"{key} must be a {spec.get('type', 'str')}")
            elif "choices" in spec and given[key] not in spec["choices"]:
                problems.append(f"{key} must be one of {spec['choices']}")
        if given.get("resume_only") is not True:
            problems.append("resume_only must be true (the keeper never upgrades or stops jobs)")
        flink_home = (given.get("flink_env") or {}).get("FLINK_HOME")
        flink_bin = given.get("flink_bin")
        if not flink_home or flink_bin != os.path.join(flink_home, "bin", "flink"):
            problems.append(f"flink_bin {flink_bin!r} is not <flink_env.FLINK_HOME>/bin/flink")
        for key in ("flink_bin", "pyexec"):
            path = given.get(key)
            if path and not (os.path.isabs(path) and os.path.exists(path) and _owned_by_root_and_not_writable(path)):
                problems.append(f"{key} {path!r} must be an absolute path owned by root and not writable by others")
        if problems:
            raise KeeperRefused("; ".join(problems))

    class AnsibleModule:
        """The part of AnsibleModule this module uses, fed from a JSON parameter file."""

        def __init__(self, argument_spec, supports_check_mode=False, **_):
            path = sys.argv[1]
            with open(path) as handle:
                given = json.load(handle)
            given = given.get("ANSIBLE_MODULE_ARGS", given)
            try:
                validate_standalone(given, argument_spec, path)
            except KeeperRefused as exc:
                print(f"flink_job keeper: refusing {path}: {exc}", file=sys.stderr)
                self.fail_json(msg=f"refused {path}: {exc}")
            self.params = {k: given.get(k, spec.get("default")) for k, spec in argument_spec.items()}
            self.check_mode = False
            self._diff = False

        def warn(self, msg):
            print(f"WARNING: {msg}", file=sys.stderr)

        def exit_json(self, **result):
            print(json.dumps(result, default=str))
            sys.exit(0)

        def fail_json(self, **result):
            print(json.dumps(dict(failed=True, **result), default=str))
            sys.exit(1)

VERSION_LEN = 12
ACTIVE_STATES = frozenset(
    ["INITIALIZING", "CREATED", "RUNNING", "FAILING", "CANCELLING", "RESTARTING", "SUSPENDED", "RECONCILING"]
)
TERMINAL_STATES = frozenset(["FINISHED", "CANCELED", "FAILED"])
JOB_ID_RE = re.compile(r"JobID ([0-9a-f]{32})")


class FlinkJobError(Exception):
    """An operation on the cluster failed; the message is meant for the operator."""


# --- pure logic (unit tested) ---------------------------------------------------------------

def short_version(version):
    return (version or "")[:VERSION_LEN]


def job_name(name, version):
    """The Flink job name carrying the version: ``<name>@<version[:12]>``."""
    return f"{name}@{short_version(version)}"


def parse_job_name(flink_name):
    """Split a Flink job name into (logical name, short version or None)."""
    base, sep, version = (flink_name or "").rpartition("@")
    if not sep:
        return flink_name, None
    return base, version


def jobs_of(jobs, name):
    """Active jobs (from /jobs/overview) whose logical name is `name`, newest first."""
    mine = [j for j in jobs if parse_job_name(j.get("name"))[0] == name and j.get("state") in ACTIVE_STATES]
    return sorted(mine, key=lambda j: j.get("start-time", 0), reverse=True)


def plan(jobs, name, version, state, force=False):
    """Decide what to do. Returns a dict:

    action: none | submitted | upgraded | stopped
    keep:   the job already running at `version` (or None)
    stop:   jobs to stop, newest first (with a savepoint if RUNNING, else cancelled)
    submit: whether a new job must be submitted
    force:  resubmit (through a savepoint) even if the version already runs
    """
    mine = jobs_of(jobs, name)
    if state == "absent":
        return {"action": "stopped" if mine else "none", "keep": None, "stop": mine, "submit": False}
    want = short_version(version)
    current = [j for j in mine if parse_job_name(j["name"])[1] == want]
    if current and not force:
        keep = current[0]
        others = [j for j in mine if j["jid"] != keep["jid"]]
        return {"action": "stopped" if others else "none", "keep": keep, "stop": others, "submit": False}
    if mine:
        return {"action": "upgraded", "keep": None, "stop": mine, "submit": True}
    return {"action": "submitted", "keep": None, "stop": [], "submit": True}


def restore_point(stopped, pending, restore, restore_from):
    """Savepoint the new job starts from: the one just taken, else an explicit one, else the pending one."""
    for job in stopped:
        if job.get("savepoint"):
            return job["savepoint"]
    if restore_from:
        return restore_from
    if restore and pending:
        return pending
    return None


def local_path(uri):
    """Local file system path of a file: URI or plain path, None for other schemes."""
    if not uri:
        return None
    if uri.startswith("file://"):
        return uri[len("file://"):] or None
    if uri.startswith("file:"):
        return uri[len("file:"):]
    if "://" in uri:
        return None
    return uri


def latest_checkpoint_in(checkpoint_dir, job_id):
    """Newest complete retained checkpoint (chk-N with _metadata) of a job under a local dir."""
    base = local_path(checkpoint_dir)
    if not base or not job_id:
        return None
    job_dir = os.path.join(base, job_id)
    try:
        names = os.listdir(job_dir)
    except OSError:
        return None
    found = []
    for entry in names:
        match = re.match(r"^chk-(\d+)$", entry)
        if match and os.path.isfile(os.path.join(job_dir, entry, "_metadata")):
            found.append((int(match.group(1)), entry))
    if not found:
        return None
    return "file://" + os.path.join(job_dir, max(found)[1])


def rest_target(rest_url):
    """host:port for `flink run -m` from the REST base URL."""
    target = re.sub(r"^[a-z]+://", "", rest_url.rstrip("/"))
    return target.split("/", 1)[0]


def build_run_command(params, flink_name, savepoint=None):
    # rest.address/rest.port rather than -m: with -m the client drops the cluster's REST TLS
    # settings (security.ssl.rest.*) and speaks plain HTTP to an HTTPS endpoint.
    from urllib.parse import urlsplit

    url = urlsplit(params["rest_url"])
    host, port = url.hostname, url.port or 8081
    cmd = [params["flink_bin"], "run", "-d", f"-Drest.address={host}", f"-Drest.port={port}",
           f"-Dpipeline.name={flink_name}"]
    for key in sorted(params.get("flink_options") or {}):
        cmd.append(f"-D{key}={params['flink_options'][key]}")
    if params.get("parallelism"):
        cmd += ["-p", str(params["parallelism"])]
    if params.get("pyexec"):
        cmd += ["-pyexec", params["pyexec"], "-pyclientexec", params["pyexec"]]
    if savepoint:
        cmd += ["-s", savepoint]
        if params.get("allow_non_restored_state"):
            cmd.append("-n")
    if params.get("pyfs"):
        cmd += ["-pyfs", ",".join(params["pyfs"])]
    cmd += ["-py", params["py_file"]]
    cmd += [str(a) for a in params.get("args") or []]
    return cmd


def parse_job_id(output):
    match = JOB_ID_RE.search(output or "")
    return match.group(1) if match else None


def parse_env_file(text):
    """KEY=value lines; blank lines and # comments ignored; values taken literally."""
    env = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValueError(f"line {number} is not KEY=value")
        env[key] = value
    return env


def savepoint_status(body):
    """(done, location, error) from GET /jobs/<id>/savepoints/<trigger>."""
    if (body.get("status") or {}).get("id") != "COMPLETED":
        return False, None, None
    operation = body.get("operation") or {}
    if operation.get("location"):
        return True, operation["location"], None
    cause = operation.get("failure-cause") or {}
    trace = cause.get("stack-trace") or cause.get("class") or json.dumps(operation)[:2000]
    return True, None, first_lines(trace, 6)


def first_lines(text, count):
    return "\n".join((text or "").strip().splitlines()[:count])


def summarize_exceptions(body, limit=3, lines=12):
    """Readable text from GET /jobs/<id>/exceptions (newest first)."""
    parts = []
    entries = (body.get("exceptionHistory") or {}).get("entries") or []
    for entry in entries[:limit]:
        where = entry.get("taskName") or "job"
        text = first_lines(entry.get("stacktrace") or entry.get("exceptionName"), lines)
        parts.append(f"[{where}] {text}")
    if not parts and body.get("root-exception"):
        parts.append(first_lines(body["root-exception"], lines))
    return "\n---\n".join(parts) or "(no exception recorded by the JobManager)"


def exception_count(body):
    history = body.get("exceptionHistory") or {}
    entries = history.get("entries") or []
    return len(entries) + (1 if history.get("truncated") else 0)


def describe(job, version=None):
    """Diff view of a job (or of no job)."""
    if not job:
        return {"job_id": None, "state": "absent", "version": None}
    return {"job_id": job.get("jid"), "state": job.get("state"),
            "version": parse_job_name(job.get("name"))[1] or version}


# --- cluster access ---------------------------------------------------------------------------

class Flink:
    def __init__(self, rest_url, timeout=10, client_cert=None, client_key=None, ca_cert=None):
        self.base = rest_url.rstrip("/")
        self.timeout = timeout
        # The REST API asks for a client certificate from the cluster CA (mutual TLS).
        self.tls = {"client_cert": client_cert, "client_key": client_key, "ca_path": ca_cert}

    def call(self, path, method="GET", body=None):
        data = json.dumps(body).encode("utf-8") if body is not None else None
        try:
            resp = open_url(self.base + path, data=data, method=method, timeout=self.timeout,
                            headers={"Content-Type": "application/json", "Accept": "application/json"},
                            **{k: v for k, v in self.tls.items() if v})
            raw = resp.read()
        except HTTPError as exc:
            detail = ""
            try:
                errors = json.loads(exc.read() or b"{}").get("errors") or []
                detail = first_lines(errors[0], 3) if errors else ""
            except ValueError:
                pass
            raise FlinkJobError(f"{method} {path}: HTTP {exc.code} {detail}") from None
        return json.loads(raw) if raw else {}

    def wait_jobs(self, timeout):
        """The job list, retried for up to `timeout` s until the REST API answers.

        Waiting on /jobs/overview itself (not on /overview first) saves a round trip per run."""
        deadline = time.time() + timeout
        while True:
            try:
                return self.jobs()
            except (URLError, OSError, FlinkJobError) as exc:
                if time.time() >= deadline:
                    raise FlinkJobError(f"Flink REST API {self.base} unreachable: {to_native(exc)}") from exc
            time.sleep(2)

    def jobs(self):
        return self.call("/jobs/overview").get("jobs") or []

    def job(self, job_id):
        return self.call(f"/jobs/{job_id}")

    def exceptions(self, job_id):
        try:
            return self.call(f"/jobs/{job_id}/exceptions?maxExceptions=5")
        except (FlinkJobError, URLError, OSError):
            return {}

    def wait_terminal(self, job_id, timeout):
        deadline = time.time() + timeout
        while True:
            state = self.job(job_id).get("state")
            if state in TERMINAL_STATES:
                return state
            if time.time() >= deadline:
                raise FlinkJobError(f"job {job_id} still {state} after {timeout}s")
            time.sleep(1)

    def stop_with_savepoint(self, job_id, target_dir, timeout):
        body = {"drain": False}
        if target_dir:
            body["targetDirectory"] = target_dir
        trigger = self.call(f"/jobs/{job_id}/stop", method="POST", body=body)["request-id"]
        deadline = time.time() + timeout
        while True:
            done, location, error = savepoint_status(self.call(f"/jobs/{job_id}/savepoints/{trigger}"))
            if done and error:
                raise FlinkJobError(f"stop-with-savepoint of job {job_id} failed (the job keeps running):\n{error}")
            if done:
                break
            if time.time() >= deadline:
                raise FlinkJobError(f"stop-with-savepoint of job {job_id} not done after {timeout}s")
            time.sleep(1)
        self.wait_terminal(job_id, max(30, int(deadline - time.time())))
        return location

    def retained_checkpoint(self, job_id):
        """external path of the latest completed checkpoint of a terminated job the JM still knows."""
        try:
            if self.job(job_id).get("state") not in TERMINAL_STATES:
                return None
            latest = (self.call(f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed") or {}
        except (FlinkJobError, URLError, OSError, ValueError):
            return None
        path = latest.get("external_path")
        if not path or path == "<checkpoint-not-externally-addressable>":
            return None
        return path

    def cancel(self, job_id, timeout):
        self.call(f"/jobs/{job_id}?mode=cancel", method="PATCH")
        return self.wait_terminal(job_id, timeout)

    def wait_started(self, job_id, timeout, settle):
        """Wait until the job and all vertices run and stay so (no new exceptions) for `settle` s;
        with `settle` 0 (a job kept at its version), until they run."""
        deadline = time.time() + timeout
        since, seen_exceptions = None, None
        while True:
            info = self.job(job_id)
            state = info.get("state")
            if state in TERMINAL_STATES:
                raise FlinkJobError(f"job {job_id} is {state}:\n{summarize_exceptions(self.exceptions(job_id))}")
            vertices = info.get("vertices") or []
            running = state == "RUNNING" and vertices and all(
                v.get("status") in ("RUNNING", "FINISHED") for v in vertices)
            if running and settle <= 0:
                # Nothing to settle (a job kept at its version): running now is the confirmation,
                # without the exception history and a second look a second later.
                return
            count = exception_count(self.exceptions(job_id)) if running else None
            if running and since is not None and count == seen_exceptions:
                if time.time() - since >= settle:
                    return
            elif running:
                since, seen_exceptions = time.time(), count
            else:
                since = None
            if time.time() >= deadline:
                history = summarize_exceptions(self.exceptions(job_id))
                raise FlinkJobError(f"job {job_id} not running after {timeout}s (state {state}):\n{history}")
            time.sleep(1)


# --- state file -------------------------------------------------------------------------------

def state_path(state_dir, name):
    return os.path.join(state_dir, f"{name}.state.json") if state_dir else None


def read_state(path):
    if not path or not os.path.exists(path):
        return {}
    with open(path) as handle:
        try:
            return json.load(handle)
        except ValueError:
            return {}


def write_state(path, data):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o640)
    _give_to_dir_owner(tmp)
    os.replace(tmp, path)


def _give_to_dir_owner(path):
    """Files the converge (root) writes in the job dir stay usable by the keeper, which runs as
    the dir's owner (the flink user)."""
    if os.geteuid() == 0:
        st = os.stat(os.path.dirname(os.path.abspath(path)))
        os.chown(path, st.st_uid, st.st_gid)


# --- module -----------------------------------------------------------------------------------

def drop_privileges(user, env):
    """subprocess arguments that run the child as `user` (module must run as root or as that user)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise FlinkJobError(f"run_as: no user {user!r}") from None
    if os.geteuid() == entry.pw_uid:
        return {}
    if os.geteuid() != 0:
        raise FlinkJobError(f"run_as={user} needs the module to run as root (become: true)")
    env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    groups = [g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem]
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [entry.pw_gid] + groups,
            "cwd": "/"}


def checkpoint_number(path):
    """N of a `.../chk-N` checkpoint path, -1 for anything else."""
    match = re.search(r"/chk-(\d+)/?$", path or "")
    return int(match.group(1)) if match else -1


def resume_point(flink, params, saved):
    """Newest retained checkpoint of the last job recorded in the state file, if any."""
    last = saved.get("job_id")
    if not last or not params["restore"]:
        return None
    reported = flink.retained_checkpoint(last)
    on_disk = latest_checkpoint_in(params.get("checkpoint_dir"), last)
    # The REST API serves checkpoint statistics from a cache refreshed every few seconds: right
    # after a job ends it can still name a checkpoint that a newer one has subsumed and deleted
    # (the restore then fails). Where the checkpoint dir is readable here, the newest complete
    # chk-N on disk wins over an older or equal one from the API.
    if on_disk and checkpoint_number(on_disk) >= checkpoint_number(reported):
        return on_disk
    return reported or on_disk


def submit(module, params, flink_name, savepoint):
    cmd = build_run_command(params, flink_name, savepoint)
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (params["flink_env"] or {}).items()})
    if params.get("env_file"):
        try:
            with open(params["env_file"]) as handle:
                env.update(parse_env_file(handle.read()))
        except (OSError, ValueError) as exc:
            raise FlinkJobError(f"env_file {params['env_file']}: {to_native(exc)}") from exc
    env.update({k: str(v) for k, v in (params["env"] or {}).items()})
    kwargs = {}
    if params.get("run_as"):
        kwargs = drop_privileges(params["run_as"], env)
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, timeout=params["submit_timeout"], text=True,
                             check=False, **kwargs)
    except subprocess.TimeoutExpired:
        raise FlinkJobError(f"flink run did not return within {params['submit_timeout']}s") from None
    except OSError as exc:
        raise FlinkJobError(f"cannot run {cmd[0]}: {to_native(exc)}") from exc
    job_id = parse_job_id(res.stdout) or parse_job_id(res.stderr)
    if res.returncode != 0 or not job_id:
        raise FlinkJobError(f"flink run failed (rc={res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return cmd, job_id


def run_module():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "running", "choices": ["running", "absent"]},
            "version": {"type": "str"},
            "py_file": {"type": "path"},
            "args": {"type": "list", "elements": "str", "default": []},
            "env": {"type": "dict", "default": {}},
            "env_file": {"type": "path"},
            "pyfs": {"type": "list", "elements": "str", "default": []},
            "parallelism": {"type": "int"},
            "flink_options": {"type": "dict", "default": {}},
            "rest_url": {"type": "str", "default": "http://127.0.0.1:8081"},
            "client_cert": {"type": "path"},
            "client_key": {"type": "path", "no_log": False},
            "ca_cert": {"type": "path"},
            "flink_bin": {"type": "path", "default": "flink"},
            "flink_env": {"type": "dict", "default": {}},
            "pyexec": {"type": "path"},
            "savepoint_dir": {"type": "str"},
            "state_dir": {"type": "path"},
            "restore": {"type": "bool", "default": True},
            "restore_from": {"type": "str"},
            "checkpoint_dir": {"type": "str"},
            "run_as": {"type": "str"},
            "allow_non_restored_state": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
            "submit_timeout": {"type": "int", "default": 300},
            "start_timeout": {"type": "int", "default": 180},
            "settle_seconds": {"type": "int", "default": 5},
            "savepoint_timeout": {"type": "int", "default": 600},
            "rest_timeout": {"type": "int", "default": 60},
            "resume_only": {"type": "bool", "default": False},
        },
        required_if=[("state", "running", ("version", "py_file"))],
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    if not name or "@" in name:
        module.fail_json(msg=f"name must be non-empty and must not contain '@': {name!r}")
    if p["state"] == "running" and not short_version(p["version"]).strip():
        module.fail_json(msg="version must not be empty")
    flink = Flink(p["rest_url"], client_cert=p["client_cert"], client_key=p["client_key"], ca_cert=p["ca_cert"])
    path = state_path(p["state_dir"], name)
    # One writer per job at a time: the converge and the keeper timer may run together.
    lock = None
    if path and not module.check_mode:
        import fcntl

        lock = open(path + ".lock", "a")  # noqa: SIM115 - held until the process exits
        _give_to_dir_owner(path + ".lock")
        fcntl.flock(lock, fcntl.LOCK_EX)
    saved = read_state(path)
    flink_name = job_name(name, p["version"]) if p["state"] == "running" else None
    result = {"changed": False, "action": "none", "job_id": None, "savepoint": None, "stopped": []}
    if flink_name:
        result["job_name"] = flink_name

    try:
        try:
            jobs = flink.jobs() if module.check_mode else flink.wait_jobs(p["rest_timeout"])
        except (URLError, OSError, FlinkJobError) as exc:
            if not module.check_mode:
                raise
            module.warn(f"Flink REST API unreachable ({to_native(exc)}); check mode assumes no job runs")
            jobs = []
        decision = plan(jobs, name, p["version"], p["state"], p["force"])
        if p["resume_only"] and (decision["keep"] or decision["stop"]):
            # The keeper only brings back jobs that are gone; upgrades are the converge's call.
            decision = {"action": "none", "keep": decision["keep"], "stop": [], "submit": False}
        before_job = decision["keep"] or (decision["stop"][0] if decision["stop"] else None)
        result["action"] = decision["action"]
        result["changed"] = decision["action"] != "none"
        if decision["keep"]:
            result["job_id"] = decision["keep"]["jid"]
        pending = saved.get("pending_savepoint")
        if p["state"] == "running":
            after = {"job_id": result["job_id"] or "(new job)", "state": "RUNNING",
                     "version": short_version(p["version"])}
        else:
            after = describe(None)
        if module._diff:
            result["diff"] = {"before": dict(name=name, **describe(before_job)), "after": dict(name=name, **after)}

        if module.check_mode:
            result["stopped"] = [{"id": j["jid"], "name": j["name"], "state": j["state"],
                                  "method": "savepoint" if j["state"] == "RUNNING" else "cancel"}
                                 for j in decision["stop"]]
            if decision["submit"]:
                would = restore_point([], pending, p["restore"], p["restore_from"])
                if not would:
                    would = resume_point(flink, p, saved)
                running = [j for j in decision["stop"] if j["state"] == "RUNNING"]
                if running:
                    would = f"(savepoint of job {running[0]['jid']})"
                result["command"] = build_run_command(p, flink_name, would)
                result["restored_from"] = would
            module.exit_json(**result)

        # Stop what must go; every savepoint is recorded before anything else can fail.
        for job in decision["stop"]:
            entry = {"id": job["jid"], "name": job["name"], "state": job["state"], "savepoint": None}
            if job["state"] == "RUNNING":
                entry["method"] = "savepoint"
                entry["savepoint"] = flink.stop_with_savepoint(job["jid"], p["savepoint_dir"], p["savepoint_timeout"])
                saved.update(name=name, pending_savepoint=entry["savepoint"], savepoint_job_id=job["jid"],
                             savepoint_job_name=job["name"], savepoint_time=int(time.time()))
                write_state(path, saved)
            else:
                entry["method"] = "cancel"
                flink.cancel(job["jid"], p["savepoint_timeout"])
            if saved.get("job_id") == job["jid"]:
                saved["job_id"] = None
                write_state(path, saved)
            result["stopped"].append(entry)
            if entry["savepoint"] and not result["savepoint"]:
                result["savepoint"] = entry["savepoint"]

        if decision["keep"]:
            flink.wait_started(decision["keep"]["jid"], p["start_timeout"], 0)
        elif decision["submit"]:
            start_from = restore_point(result["stopped"], pending, p["restore"], p["restore_from"])
            if not start_from:
                start_from = resume_point(flink, p, saved)
            cmd, job_id = submit(module, p, flink_name, start_from)
            result.update(command=cmd, job_id=job_id, restored_from=start_from)
            if start_from:
                result["savepoint"] = start_from
            actual = flink.job(job_id).get("name")
            if actual != flink_name:
                flink.cancel(job_id, p["savepoint_timeout"])
                raise FlinkJobError(f"the submitted job is named {actual!r}, not {flink_name!r}: the job code must "
                                    f"not set its own name (pipeline.name / execute(name)); job {job_id} cancelled")
            flink.wait_started(job_id, p["start_timeout"], p["settle_seconds"])
            saved.update(name=name, version=p["version"], job_id=job_id, job_name=flink_name,
                         submitted_time=int(time.time()), restored_from=start_from)
            saved.pop("pending_savepoint", None)
            write_state(path, saved)
        else:
            result["job_id"] = None
    except FlinkJobError as exc:
        result["msg"] = to_native(exc)
        if saved.get("pending_savepoint"):
            result["msg"] += f"\nPending savepoint (used by the next submission): {saved['pending_savepoint']}"
        module.fail_json(**result)
    except (URLError, OSError) as exc:
        module.fail_json(msg=f"Flink REST API {p['rest_url']}: {to_native(exc)}",
                         exception=traceback.format_exc(), **result)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
