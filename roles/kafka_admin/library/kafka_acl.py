#!/usr/bin/python
# Part of cryptomon (roles/kafka_admin). Keeps a cluster's ACLs equal to a declared list.
# The module runs in the admin venv on a Kafka broker (Python 3.11, confluent-kafka).

DOCUMENTATION = r"""
---
module: kafka_acl
short_description: Declare Kafka ACLs as data; create what is missing, remove what is not declared
description:
  - Each item of I(acls) is one Kafka ACL binding (principal, host, operation, permission,
    resource type, resource name, pattern type). Missing bindings are created; with
    I(purge=true) every binding on the cluster that is not declared is deleted, so an ACL
    removed from the inventory is removed from the cluster.
  - Every binding is validated before anything changes; one bad item fails the module and
    names the item.
  - Supports check mode (nothing changes) and diff mode (the sorted bindings before and after).
version_added: "1.0.0"
author: cryptomon maintainers
requirements:
  - confluent-kafka >= 2.3 (on the host that runs the module)
options:
  bootstrap_servers:
    description:
      - Kafka bootstrap servers as C(host:port) items. The connection options
        C(security_protocol), C(sasl_*), C(ssl_*) and C(timeout) are shared with kafka_topic and
        kafka_scram_user (module_utils/kafka_admin_client.py). The user must be allowed to
        describe and alter ACLs (a super user).
    type: list
    elements: str
    required: true
  acls:
    description: The ACL bindings.
    type: list
    elements: dict
    required: true
    suboptions:
      principal:
        description: C(User:<name>).
        type: str
        required: true
      host:
        description: Client host the binding applies to.
        type: str
        default: "*"
      operation:
        description: Kafka operation, e.g. C(read), C(write), C(describe), C(idempotent_write).
        type: str
        required: true
      permission_type:
        description: C(allow) or C(deny).
        type: str
        default: allow
      resource_type:
        description: C(topic), C(group), C(cluster) or C(transactional_id).
        type: str
        required: true
      resource_name:
        description: Resource name (C(kafka-cluster) for the cluster), or prefix with I(pattern_type=prefixed).
        type: str
        required: true
      pattern_type:
        description: C(literal) or C(prefixed).
        type: str
        default: literal
  purge:
    description: Delete bindings found on the cluster that are not declared.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: The producer may write trades and nothing else
  kafka_acl:
    bootstrap_servers: ["kbrk-1:9092"]
    security_protocol: SASL_SSL
    sasl_username: cryptomon-admin
    sasl_password: "{{ admin_password }}"
    ssl_ca_location: /etc/cryptomon/tls/ca.crt
    acls:
      - {principal: "User:cryptomon-producer", operation: write, resource_type: topic, resource_name: trades.raw}
      - {principal: "User:cryptomon-producer", operation: describe, resource_type: topic, resource_name: trades.raw}
"""

RETURN = r"""
actions:
  description: Bindings created or deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - {action: create, acl: "User:cryptomon-producer allow write on topic:literal:trades.raw from *"}
    - {action: delete, acl: "User:old allow read on topic:literal:trades.raw from *"}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.kafka_admin_client import (
    CONNECTION_OPTIONS,
    CONNECTION_REQUIRED_IF,
    CONNECTION_REQUIRED_TOGETHER,
    ClientErrors,
    client_config,
)

KAFKA_IMPORT_ERROR = None
try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )
except ImportError:
    KAFKA_IMPORT_ERROR = traceback.format_exc()

    class KafkaException(Exception):
        """Stand-in so the module still loads (and fails cleanly) without confluent-kafka."""

OPERATIONS = ("all", "read", "write", "create", "delete", "alter", "describe", "cluster_action",
              "describe_configs", "alter_configs", "idempotent_write")
RESOURCE_TYPES = ("topic", "group", "cluster", "transactional_id")
# The Admin API's name for Kafka's CLUSTER resource type (librdkafka: RD_KAFKA_RESOURCE_BROKER).
_ADMIN_RESOURCE_TYPE = {"cluster": "BROKER"}
PATTERN_TYPES = ("literal", "prefixed")
PERMISSIONS = ("allow", "deny")
FIELDS = ("principal", "host", "operation", "permission_type", "resource_type", "resource_name", "pattern_type")


class AclError(Exception):
    pass


# --- Pure logic (no broker): imported by the unit tests ---------------------------------


def normalize(acls):
    """Validate declared bindings; returns a set of tuples in FIELDS order or raises AclError."""
    errors, out = [], set()
    for i, raw in enumerate(acls):
        b = {
            "principal": str(raw.get("principal") or ""),
            "host": str(raw.get("host") or "*"),
            "operation": str(raw.get("operation") or "").lower(),
            "permission_type": str(raw.get("permission_type") or "allow").lower(),
            "resource_type": str(raw.get("resource_type") or "").lower(),
            "resource_name": str(raw.get("resource_name") or ""),
            "pattern_type": str(raw.get("pattern_type") or "literal").lower(),
        }
        label = f"acls[{i}] ({b['principal']} {b['operation']} {b['resource_type']}:{b['resource_name']})"
        if not b["principal"].startswith("User:") or len(b["principal"]) <= 5:
            errors.append(f"{label}: principal must be User:<name>")
        if b["operation"] not in OPERATIONS:
            errors.append(f"{label}: unknown operation {b['operation']!r} (one of {', '.join(OPERATIONS)})")
        if b["resource_type"] not in RESOURCE_TYPES:
            errors.append(f"{label}: unknown resource_type {b['resource_type']!r} (one of {', '.join(RESOURCE_TYPES)})")
        if b["pattern_type"] not in PATTERN_TYPES:
            errors.append(f"{label}: pattern_type must be literal or prefixed")
        if b["permission_type"] not in PERMISSIONS:
            errors.append(f"{label}: permission_type must be allow or deny")
        if not b["resource_name"]:
            errors.append(f"{label}: resource_name is empty")
        if b["resource_type"] == "cluster" and b["resource_name"] != "kafka-cluster":
            errors.append(f"{label}: the cluster resource is named kafka-cluster")
        out.add(tuple(b[f] for f in FIELDS))
    if errors:
        raise AclError("; ".join(errors))
    return out


def describe_binding(t):
    b = dict(zip(FIELDS, t, strict=True))
    return (f"{b['principal']} {b['permission_type']} {b['operation']} on "
            f"{b['resource_type']}:{b['pattern_type']}:{b['resource_name']} from {b['host']}")


def plan(desired, current, purge):
    create = sorted(desired - current)
    delete = sorted(current - desired) if purge else []
    return create, delete


# --- Cluster ----------------------------------------------------------------------------


def _enum(enum_cls, name):
    if enum_cls is ResourceType:
        name = _ADMIN_RESOURCE_TYPE.get(name, name)
    return getattr(enum_cls, name.upper())


def to_binding(t):
    b = dict(zip(FIELDS, t, strict=True))
    return AclBinding(_enum(ResourceType, b["resource_type"]), b["resource_name"],
                      _enum(ResourcePatternType, b["pattern_type"]), b["principal"], b["host"],
                      _enum(AclOperation, b["operation"]), _enum(AclPermissionType, b["permission_type"]))


def to_filter(t):
    b = dict(zip(FIELDS, t, strict=True))
    return AclBindingFilter(_enum(ResourceType, b["resource_type"]), b["resource_name"],
                            _enum(ResourcePatternType, b["pattern_type"]), b["principal"], b["host"],
                            _enum(AclOperation, b["operation"]), _enum(AclPermissionType, b["permission_type"]))


def from_binding(acl):
    restype = {v: k for k, v in _ADMIN_RESOURCE_TYPE.items()}.get(acl.restype.name, acl.restype.name.lower())
    return (acl.principal, acl.host, acl.operation.name.lower(), acl.permission_type.name.lower(),
            restype, acl.name, acl.resource_pattern_type.name.lower())


def current_bindings(admin, timeout, explain):
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    try:
        found = admin.describe_acls(everything, request_timeout=timeout).result(timeout)
    except KafkaException as exc:
        raise AclError(f"cannot describe the cluster's ACLs: {exc.args[0].str()}{explain()}") from exc
    return {from_binding(a) for a in found}


def apply(admin, create, delete, timeout):
    problems = []
    if delete:
        for f, future in admin.delete_acls([to_filter(t) for t in delete], request_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                problems.append(f"delete {f}: {exc.args[0].str()}")
    if create:
        for b, future in admin.create_acls([to_binding(t) for t in create], request_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                problems.append(f"create {b}: {exc.args[0].str()}")
    if problems:
        raise AclError("; ".join(problems))


ARGUMENT_SPEC = {
    **CONNECTION_OPTIONS,
    "acls": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "principal": {"type": "str", "required": True},
            "host": {"type": "str", "default": "*"},
            "operation": {"type": "str", "required": True},
            "permission_type": {"type": "str", "default": "allow"},
            "resource_type": {"type": "str", "required": True},
            "resource_name": {"type": "str", "required": True},
            "pattern_type": {"type": "str", "default": "literal"},
        },
    },
    "purge": {"type": "bool", "default": True},
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
    result = {"changed": False, "actions": []}
    try:
        desired = normalize(params["acls"])
        client_errors = ClientErrors()
        admin = AdminClient(client_config(params, "cryptomon-ansible-kafka-acl", client_errors))
        current = current_bindings(admin, params["timeout"], lambda: client_errors.explain(params))
        create, delete = plan(desired, current, params["purge"])
        result["actions"] = ([{"action": "delete", "acl": describe_binding(t)} for t in delete]
                             + [{"action": "create", "acl": describe_binding(t)} for t in create])
        result["changed"] = bool(create or delete)
        if module._diff:
            after = (current - set(delete)) | set(create)
            result["diff"] = {"before": "\n".join(sorted(describe_binding(t) for t in current)) + "\n",
                              "after": "\n".join(sorted(describe_binding(t) for t in after)) + "\n"}
        if result["changed"] and not module.check_mode:
            apply(admin, create, delete, params["timeout"])
    except AclError as exc:
        module.fail_json(msg=f"kafka_acl: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
