#!/usr/bin/python
# Part of cryptomon (roles/kafka_admin). Manages SCRAM credentials through the Admin API.
# The module runs in the admin venv on a Kafka broker (Python 3.11, confluent-kafka).

DOCUMENTATION = r"""
---
module: kafka_scram_user
short_description: Declare Kafka SASL/SCRAM users idempotently, without passwords in logs or arguments
description:
  - Makes each declared user's SCRAM credential (mechanism, iterations) exist on the cluster
    with the declared password, and removes the credentials of users declared I(state=absent).
  - Kafka never hands a password back, so a present credential is checked by logging in with
    the declared password on I(verify_bootstrap_servers) (the SASL listener). Only a user that
    cannot log in (no credential, or a different password) is written. After a write the module
    waits until the user can log in, so the next task can rely on it.
  - The write itself goes through the connection options (normally the broker's own
    certificate on its TLS listener: a super user that exists before any SCRAM user does).
  - Passwords never appear in the result, the diff or a process argument.
  - Supports check mode (nothing is written) and diff mode (user names and mechanisms only).
version_added: "1.0.0"
author: cryptomon maintainers
requirements:
  - confluent-kafka >= 2.3 (on the host that runs the module)
options:
  bootstrap_servers:
    description:
      - Where credentials are written, as C(host:port) items. The connection options
        C(security_protocol), C(sasl_*), C(ssl_*) and C(timeout) are shared with kafka_topic
        and kafka_acl (module_utils/kafka_admin_client.py).
    type: list
    elements: str
    required: true
  users:
    description: The users.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: User name (letters, digits, C(.), C(_), C(-)).
        type: str
        required: true
      password:
        description: The password (required unless I(state=absent)).
        type: str
      mechanism:
        description: SCRAM mechanism.
        type: str
        choices: [SCRAM-SHA-256, SCRAM-SHA-512]
        default: SCRAM-SHA-512
      iterations:
        description: PBKDF2 iterations stored with the credential (4096 or more).
        type: int
        default: 8192
      state:
        description: C(present) or C(absent).
        type: str
        choices: [present, absent]
        default: present
  verify_bootstrap_servers:
    description: The SASL listener(s) used to check that a declared password logs in.
    type: list
    elements: str
    required: true
  verify_security_protocol:
    description: Protocol of the verify listener.
    type: str
    choices: [SASL_SSL, SASL_PLAINTEXT]
    default: SASL_SSL
  verify_ssl_ca_location:
    description: CA bundle for the verify listener (defaults to I(ssl_ca_location)).
    type: path
"""

EXAMPLES = r"""
- name: One SCRAM user per service, written with the broker's own certificate
  kafka_scram_user:
    bootstrap_servers: ["kbrk-1:9094"]
    security_protocol: SSL
    ssl_ca_location: /etc/cryptomon/tls/ca.crt
    ssl_certificate_location: /etc/cryptomon/tls/host.crt
    ssl_key_location: /etc/cryptomon/tls/host.key
    verify_bootstrap_servers: ["kbrk-1:9092"]
    users:
      - {name: cryptomon-producer, password: "{{ vault_producer_password }}"}
      - {name: old-user, state: absent}
  no_log: true
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), one item per user; no passwords.
  returned: always
  type: list
  elements: dict
  sample:
    - {user: cryptomon-producer, action: create, mechanism: SCRAM-SHA-512}
    - {user: cryptomon-alerter, action: update_password, mechanism: SCRAM-SHA-512}
    - {user: old-user, action: delete, mechanism: SCRAM-SHA-512}
"""

import re
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.kafka_admin_client import (
    CONNECTION_OPTIONS,
    CONNECTION_REQUIRED_IF,
    CONNECTION_REQUIRED_TOGETHER,
    ClientErrors,
    client_config,
    wait_until,
)

KAFKA_IMPORT_ERROR = None
try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )
except ImportError:
    KAFKA_IMPORT_ERROR = traceback.format_exc()

    class KafkaException(Exception):
        """Stand-in so the module still loads (and fails cleanly) without confluent-kafka."""

USER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class ScramError(Exception):
    pass


# --- Pure logic (no broker): imported by the unit tests ---------------------------------


def normalize_users(users):
    """Validate the declared users; returns them normalized or raises ScramError (all problems)."""
    errors, out, seen = [], [], set()
    for i, raw in enumerate(users):
        name = str(raw.get("name") or "")
        label = f"users[{i}] ({name or 'no name'})"
        if not USER_NAME.match(name):
            errors.append(f"{label}: a user name is 1-255 letters, digits, '.', '_' or '-'")
        state = raw.get("state") or "present"
        mech = raw.get("mechanism") or "SCRAM-SHA-512"
        iterations = int(raw.get("iterations") or 8192)
        if (name, mech) in seen:
            errors.append(f"{label}: declared twice for {mech}")
        seen.add((name, mech))
        if state == "present" and not raw.get("password"):
            errors.append(f"{label}: a password is required")
        if iterations < 4096:
            errors.append(f"{label}: iterations must be at least 4096 (Kafka's minimum)")
        out.append({"name": name, "password": raw.get("password"), "mechanism": mech,
                    "iterations": iterations, "state": state})
    if errors:
        raise ScramError("; ".join(errors))
    return out


def plan(desired, current, can_login):
    """Actions for the declared users.

    current: {user: {mechanism: iterations}} as described by the cluster.
    can_login(user) -> bool: whether the declared password logs in (only asked for users
    whose credential exists with the declared mechanism and iterations).
    """
    actions = []
    for u in desired:
        have = current.get(u["name"], {})
        if u["state"] == "absent":
            if u["mechanism"] in have:
                actions.append({"user": u["name"], "action": "delete", "mechanism": u["mechanism"]})
            continue
        if u["mechanism"] not in have:
            actions.append({"user": u["name"], "action": "create", "mechanism": u["mechanism"]})
        elif have[u["mechanism"]] != u["iterations"]:
            actions.append({"user": u["name"], "action": "update_iterations", "mechanism": u["mechanism"]})
        elif not can_login(u):
            actions.append({"user": u["name"], "action": "update_password", "mechanism": u["mechanism"]})
    return actions


def render_diff(desired, current):
    before = {name: sorted(mechs) for name, mechs in current.items()
              if name in {u["name"] for u in desired}}
    after = {name: sorted(mechs) for name, mechs in before.items()}
    for u in desired:
        mechs = set(after.get(u["name"], []))
        if u["state"] == "present":
            mechs.add(u["mechanism"])
        else:
            mechs.discard(u["mechanism"])
        after[u["name"]] = sorted(mechs)
    after = {k: v for k, v in after.items() if v}
    return {"before": before, "after": after}


# --- Cluster ----------------------------------------------------------------------------


def _mechanism(name):
    return ScramMechanism.SCRAM_SHA_256 if name == "SCRAM-SHA-256" else ScramMechanism.SCRAM_SHA_512


def _mechanism_name(mech):
    return "SCRAM-SHA-256" if mech == ScramMechanism.SCRAM_SHA_256 else "SCRAM-SHA-512"


def describe(admin, timeout, explain):
    try:
        result = admin.describe_user_scram_credentials(request_timeout=timeout).result(timeout)
    except KafkaException as exc:
        raise ScramError(f"cannot describe the SCRAM users: {exc.args[0].str()}{explain()}") from exc
    current = {}
    for name, description in result.items():
        current[name] = {_mechanism_name(i.mechanism): i.iterations for i in description.scram_credential_infos}
    return current


def login_works(params, user, timeout):
    """Log in as `user` with the declared password on the SASL listener.

    A wrong password is known as soon as the broker says so (error_cb), not after the timeout.
    """
    errors = ClientErrors()
    conf = client_config(
        {
            "bootstrap_servers": params["verify_bootstrap_servers"],
            "security_protocol": params["verify_security_protocol"],
            "sasl_mechanism": user["mechanism"],
            "sasl_username": user["name"],
            "sasl_password": user["password"],
            "ssl_ca_location": params["verify_ssl_ca_location"] or params["ssl_ca_location"],
        },
        "cryptomon-ansible-scram-check",
        errors,
    )
    client = AdminClient(conf)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.list_topics(timeout=1)
            return True
        except KafkaException:
            last = errors.last
            if last is not None and "authentication" in last.str().lower():
                return False
    return False


def apply(admin, params, desired, actions, timeout, explain):
    by_name = {(u["name"], u["mechanism"]): u for u in desired}
    changes = []
    for a in actions:
        u = by_name[(a["user"], a["mechanism"])]
        if a["action"] == "delete":
            changes.append(UserScramCredentialDeletion(u["name"], _mechanism(u["mechanism"])))
        else:
            info = ScramCredentialInfo(_mechanism(u["mechanism"]), u["iterations"])
            changes.append(UserScramCredentialUpsertion(u["name"], info, u["password"].encode()))
    if not changes:
        return
    futures = admin.alter_user_scram_credentials(changes, request_timeout=timeout)
    problems = []
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            problems.append(f"user {name!r}: {exc.args[0].str()}")
    if problems:
        raise ScramError("; ".join(problems) + explain())
    # Credentials reach every broker through the metadata log: wait until each logs in.
    for a in actions:
        if a["action"] == "delete":
            continue
        u = by_name[(a["user"], a["mechanism"])]
        if not wait_until(lambda u=u: login_works(params, u, 5), timeout):
            raise ScramError(f"user {u['name']!r} was written but cannot log in on "
                             f"{','.join(params['verify_bootstrap_servers'])} after {timeout}s")


ARGUMENT_SPEC = {
    **CONNECTION_OPTIONS,
    "users": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "no_log": False,
        "options": {
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "mechanism": {"type": "str", "choices": ["SCRAM-SHA-256", "SCRAM-SHA-512"],
                          "default": "SCRAM-SHA-512"},
            "iterations": {"type": "int", "default": 8192},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
    },
    "verify_bootstrap_servers": {"type": "list", "elements": "str", "required": True},
    "verify_security_protocol": {"type": "str", "choices": ["SASL_SSL", "SASL_PLAINTEXT"],
                                 "default": "SASL_SSL"},
    "verify_ssl_ca_location": {"type": "path"},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=CONNECTION_REQUIRED_IF,
        required_together=CONNECTION_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    if KAFKA_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("confluent-kafka"), exception=KAFKA_IMPORT_ERROR)
    params = module.params
    timeout = params["timeout"]
    result = {"changed": False, "actions": []}
    try:
        desired = normalize_users(params["users"])
        client_errors = ClientErrors()
        admin = AdminClient(client_config(params, "cryptomon-ansible-scram", client_errors))

        def explain():
            return client_errors.explain(params)

        current = describe(admin, timeout, explain)
        actions = plan(desired, current, lambda u: login_works(params, u, min(timeout, 10)))
        if module._diff:
            result["diff"] = render_diff(desired, current)
        result.update(actions=actions, changed=bool(actions))
        if actions and not module.check_mode:
            apply(admin, params, desired, actions, timeout, explain)
    except ScramError as exc:
        module.fail_json(msg=f"kafka_scram_user: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
