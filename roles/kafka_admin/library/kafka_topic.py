#!/usr/bin/python
# Part of cryptomon (roles/kafka_admin). Manages Kafka topics through the Admin API.
# The module runs in the admin venv on the first Kafka broker (Python 3.11, confluent-kafka).

DOCUMENTATION = r"""
---
module: kafka_topic
short_description: Declare Kafka topics (partitions, replication factor, configs) idempotently
description:
  - Compares the declared topics with the cluster and creates missing topics, raises partition
    counts, aligns the declared topic configs and deletes topics declared with I(state=absent).
  - Every topic is validated before anything is changed; if one spec is invalid
    (replication factor above the broker count, fewer partitions than the topic has today,
    a changed replication factor, a bad topic name) the module fails without touching the cluster.
  - Only the config keys listed in I(configs) are managed. Other topic-level overrides are left
    alone and reported in RV(unmanaged_overrides). A key set to C(null) is reset to the
    broker default (its topic-level override is removed).
  - Supports check mode (the broker validates every planned request with C(validate_only),
    nothing changes) and diff mode (before/after of every declared topic).
  - Topics are never deleted unless declared with I(state=absent).
  - Created topics and added partitions are waited for until every partition has a leader.
version_added: "1.0.0"
author: cryptomon maintainers
requirements:
  - python >= 3.8
  - confluent-kafka >= 2.3 (on the host that runs the module)
options:
  bootstrap_servers:
    description:
      - Kafka bootstrap servers as C(host:port) items (a comma separated string works too).
      - The connection options C(security_protocol), C(sasl_mechanism), C(sasl_username),
        C(sasl_password), C(ssl_ca_location), C(ssl_certificate_location), C(ssl_key_location)
        and C(timeout) are shared with kafka_acl and kafka_scram_user
        (module_utils/kafka_admin_client.py).
    type: list
    elements: str
    required: true
  topics:
    description: The topics to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Topic name (letters, digits, C(.), C(_), C(-); at most 249 characters).
        type: str
        required: true
      partitions:
        description: Number of partitions. Can be raised, never lowered. Required when I(state=present).
        type: int
      replication_factor:
        description:
          - Replication factor. Must not exceed the number of brokers. Required when I(state=present).
          - Changing it for an existing topic is not supported (use C(kafka-reassign-partitions.sh)).
        type: int
      configs:
        description:
          - Topic configs to enforce, e.g. C(retention.ms). Values are compared as strings
            (C(true) becomes C("true"), lists are joined with commas).
          - C(null) removes the topic-level override so the broker default applies.
        type: dict
        default: {}
      state:
        description: C(present) creates or aligns the topic, C(absent) deletes it.
        type: str
        choices: [present, absent]
        default: present
notes:
  - Check mode is fully supported; deletions are only reported in check mode.
  - Diff mode shows the declared topics before and after.
"""

EXAMPLES = r"""
- name: Declare the trades topic
  kafka_topic:
    bootstrap_servers: ["kafka-1:9092", "kafka-2:9092", "kafka-3:9092"]
    topics:
      - name: trades.raw
        partitions: 6
        replication_factor: 3
        configs:
          retention.ms: 604800000
          compression.type: lz4
          min.insync.replicas: 2

- name: Remove an old topic and reset a config to the broker default
  kafka_topic:
    bootstrap_servers: kafka-1:9092
    topics:
      - name: trades.legacy
        state: absent
      - name: signals.alerts
        partitions: 3
        replication_factor: 3
        configs:
          segment.ms: null
"""

RETURN = r"""
actions:
  description: What was done (or, in check mode, would be done), one item per change.
  returned: always
  type: list
  elements: dict
  sample:
    - {topic: trades.raw, action: create, partitions: 6, replication_factor: 3, configs: {retention.ms: "604800000"}}
    - {topic: signals.alerts, action: add_partitions, before: 3, after: 6}
    - {topic: signals.alerts, action: alter_configs, changes: {retention.ms: {before: "86400000", after: "604800000"}}}
    - {topic: old.topic, action: delete}
broker_count:
  description: Number of brokers the cluster reported.
  returned: always
  type: int
  sample: 3
unmanaged_overrides:
  description: Topic-level config overrides present on declared topics but not declared (left untouched).
  returned: always
  type: dict
  sample: {trades.raw: {segment.bytes: "104857600"}}
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
)
from ansible.module_utils.kafka_admin_client import client_config as _client_config

KAFKA_IMPORT_ERROR = None
try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ConfigSource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )
except ImportError:
    KAFKA_IMPORT_ERROR = traceback.format_exc()

    class KafkaException(Exception):
        """Stand-in so the module still loads (and fails cleanly) without confluent-kafka."""

TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
KIND_ORDER = ("delete", "create", "add_partitions", "alter_configs")


class PlanError(Exception):
    """Topic specs that cannot be applied; .errors holds one message per problem."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


# --- Pure logic (no broker, no Ansible): imported by the unit tests --------------------


def config_value(value):
    """Kafka compares config values as strings; normalise what YAML/Jinja hand us."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(config_value(v) for v in value)
    if isinstance(value, dict):
        raise TypeError("a mapping is not a valid config value")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _as_int(value):
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, str):
        value = value.strip()
    return int(value)


def _check_numbers(label, raw, spec, errors):
    for key in ("partitions", "replication_factor"):
        value = raw.get(key)
        if value is None:
            errors.append(f"{label}: {key} is required with state: present")
            continue
        try:
            number = _as_int(value)
        except (TypeError, ValueError):
            errors.append(f"{label}: {key} must be an integer, got {value!r}")
            continue
        if number < 1:
            errors.append(f"{label}: {key} must be at least 1, got {number}")
            continue
        spec[key] = number


def _check_configs(label, raw, errors):
    configs = {}
    raw_configs = raw.get("configs") or {}
    if not isinstance(raw_configs, dict):
        errors.append(f"{label}: configs must be a mapping of config name to value")
        return configs
    for key, value in raw_configs.items():
        if not isinstance(key, str) or not key.strip():
            errors.append(f"{label}: config names must be non-empty strings, got {key!r}")
            continue
        try:
            configs[key.strip()] = config_value(value)
        except TypeError as exc:
            errors.append(f"{label}: configs.{key}: {exc}")
    return configs


def normalize_topics(topics):
    """Check the declared specs on their own and return them in canonical form.

    Raises PlanError listing every problem (names, duplicates, numbers, config values).
    """
    errors = []
    out = []
    seen = set()
    for index, raw in enumerate(topics or []):
        if not isinstance(raw, dict):
            errors.append(f"topics[{index}]: expected a mapping, got {raw!r}")
            continue
        name = raw.get("name")
        label = f"topic {name!r}" if name else f"topics[{index}]"
        if not isinstance(name, str) or not TOPIC_NAME.match(name) or name in (".", ".."):
            errors.append(
                f"{label}: invalid topic name (use 1-249 letters, digits, '.', '_' or '-')"
            )
            continue
        if name in seen:
            errors.append(f"{label}: declared more than once")
            continue
        seen.add(name)
        state = raw.get("state") or "present"
        if state not in ("present", "absent"):
            errors.append(f"{label}: state must be present or absent, not {state!r}")
            continue
        spec = {"name": name, "state": state}
        if state == "present":
            _check_numbers(label, raw, spec, errors)
            spec["configs"] = _check_configs(label, raw, errors)
        out.append(spec)
    if errors:
        raise PlanError(errors)
    return out


def _config_changes(spec, cur):
    changes = {}
    cur_configs = cur.get("configs") or {}
    overrides = cur.get("overrides") or set()
    for key, value in sorted(spec["configs"].items()):
        before = cur_configs.get(key)
        if value is None:
            if key in overrides:
                changes[key] = {"before": before, "after": None}
        elif before != value:
            changes[key] = {"before": before, "after": value}
    return changes


def compute_plan(desired, current, broker_count):
    """Compare normalised specs with the cluster; return the list of actions.

    desired:      output of normalize_topics()
    current:      {name: {"partitions": int, "replication_factor": int,
                          "configs": {key: effective value},
                          "overrides": set of keys overridden on the topic}}
                  for the declared topics that exist
    broker_count: number of brokers in the cluster

    Raises PlanError listing every spec that cannot be applied; nothing may change then.
    """
    errors = []
    actions = []
    for spec in desired:
        name = spec["name"]
        cur = current.get(name)
        if spec["state"] == "absent":
            if cur is not None:
                actions.append({"topic": name, "action": "delete"})
            continue
        partitions, rf = spec["partitions"], spec["replication_factor"]
        if cur is None:
            if rf > broker_count:
                errors.append(
                    f"topic {name!r}: replication_factor {rf} is higher than the number "
                    f"of brokers ({broker_count})"
                )
                continue
            configs = {k: v for k, v in sorted(spec["configs"].items()) if v is not None}
            actions.append({
                "topic": name,
                "action": "create",
                "partitions": partitions,
                "replication_factor": rf,
                "configs": configs,
            })
            continue
        if rf != cur["replication_factor"]:
            errors.append(
                f"topic {name!r}: replication_factor is {cur['replication_factor']} on the "
                f"cluster and {rf} in the spec; changing the replication factor of an "
                "existing topic is not supported by this module (reassign the partitions "
                "with kafka-reassign-partitions.sh, then update the spec)"
            )
            continue
        if partitions < cur["partitions"]:
            errors.append(
                f"topic {name!r}: partitions cannot be lowered from {cur['partitions']} to "
                f"{partitions} (Kafka can only add partitions; to shrink, delete the topic "
                "with state: absent and recreate it)"
            )
            continue
        if partitions > cur["partitions"]:
            actions.append({
                "topic": name,
                "action": "add_partitions",
                "before": cur["partitions"],
                "after": partitions,
            })
        changes = _config_changes(spec, cur)
        if changes:
            actions.append({"topic": name, "action": "alter_configs", "changes": changes})
    if errors:
        raise PlanError(errors)
    return actions


def _describe(name, state, keys):
    if state is None:
        return [f"{name}: absent"]
    lines = [
        f"{name}:",
        f"  partitions: {state['partitions']}",
        f"  replication_factor: {state['replication_factor']}",
    ]
    if keys:
        lines.append("  configs:")
        for key in keys:
            value = state["configs"].get(key)
            lines.append(f"    {key}: {'(broker default)' if value is None else value}")
    return lines


def render_diff(desired, current):
    """Before/after text of every declared topic, for Ansible's --diff."""
    before, after = [], []
    for spec in desired:
        name = spec["name"]
        cur = current.get(name)
        keys = sorted(spec.get("configs", {}))
        if cur is None:
            before += _describe(name, None, keys)
        else:
            overrides = cur.get("overrides") or set()
            shown = {
                k: cur.get("configs", {}).get(k)
                if k in overrides or spec["configs"][k] is not None
                else None
                for k in keys
            }
            before += _describe(name, {**cur, "configs": shown}, keys)
        if spec["state"] == "absent":
            after += _describe(name, None, keys)
        else:
            after += _describe(name, spec, keys)
    return {
        "before": "\n".join(before) + "\n",
        "after": "\n".join(after) + "\n",
        "before_header": "kafka topics (cluster)",
        "after_header": "kafka topics (declared)",
    }


# --- Broker access ---------------------------------------------------------------------


class KafkaTopicError(Exception):
    """The cluster could not be read."""


def _err(exc):
    if exc.args and hasattr(exc.args[0], "str"):
        err = exc.args[0]
        return f"{err.str()} ({err.name()})"
    return str(exc)


def _name_of(key):
    return getattr(key, "name", key)


class Cluster:
    """The few Admin API calls the module needs, with per-topic error messages."""

    def __init__(self, conf, timeout, explain=lambda: ""):
        self.admin = AdminClient(conf)
        self.timeout = timeout
        self.bootstrap = conf["bootstrap.servers"]
        self.explain = explain  # why the client could not talk to the cluster, if it knows

    def snapshot(self, names):
        """Return (broker count, current state of the named topics that exist)."""
        try:
            md = self.admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaTopicError(
                f"cannot read the cluster metadata from {self.bootstrap} within "
                f"{self.timeout}s: {_err(exc)}{self.explain()}"
            ) from exc
        current = {}
        for name in names:
            tmd = md.topics.get(name)
            if tmd is None or tmd.error is not None:
                continue
            replicas = [len(p.replicas) for p in tmd.partitions.values()]
            current[name] = {
                "partitions": len(tmd.partitions),
                "replication_factor": max(replicas or [0]),
                "configs": {},
                "overrides": set(),
                "all_overrides": {},
            }
        if current:
            resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(current)]
            futures = self.admin.describe_configs(resources, request_timeout=self.timeout)
            for resource, future in futures.items():
                try:
                    entries = future.result(self.timeout)
                except KafkaException as exc:
                    raise KafkaTopicError(
                        f"topic {resource.name!r}: describe configs failed: {_err(exc)}"
                    ) from exc
                state = current[resource.name]
                for key, entry in entries.items():
                    state["configs"][key] = entry.value
                    # confluent-kafka reports the source as a plain int
                    if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
                        state["overrides"].add(key)
                        state["all_overrides"][key] = entry.value
        return len(md.brokers), current

    @staticmethod
    def _results(futures, what):
        """Wait for per-topic futures; return (topics that succeeded, error messages)."""
        ok, errors = set(), []
        for key, future in sorted(futures.items(), key=lambda kv: str(_name_of(kv[0]))):
            try:
                future.result()
                ok.add(_name_of(key))
            except KafkaException as exc:
                errors.append(f"topic {_name_of(key)!r}: {what} failed: {_err(exc)}")
        return ok, errors

    def delete(self, actions, validate_only):
        if validate_only:  # the Admin API has no dry run for deletions
            return {a["topic"] for a in actions}, []
        names = [a["topic"] for a in actions]
        futures = self.admin.delete_topics(
            names, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        return self._results(futures, "delete")

    def create(self, actions, validate_only):
        new = [
            NewTopic(a["topic"], a["partitions"], a["replication_factor"], config=a["configs"])
            for a in actions
        ]
        futures = self.admin.create_topics(
            new,
            validate_only=validate_only,
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        return self._results(futures, "create")

    def add_partitions(self, actions, validate_only):
        new = [NewPartitions(a["topic"], a["after"]) for a in actions]
        futures = self.admin.create_partitions(
            new,
            validate_only=validate_only,
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        return self._results(futures, "adding partitions")

    def alter_configs(self, actions, validate_only):
        resources = []
        for a in actions:
            entries = []
            for key, change in sorted(a["changes"].items()):
                if change["after"] is None:
                    op = AlterConfigOpType.DELETE
                else:
                    op = AlterConfigOpType.SET
                entries.append(ConfigEntry(key, change["after"], incremental_operation=op))
            resources.append(
                ConfigResource(ResourceType.TOPIC, a["topic"], incremental_configs=entries)
            )
        futures = self.admin.incremental_alter_configs(
            resources, validate_only=validate_only, request_timeout=self.timeout
        )
        return self._results(futures, "altering configs")

    def _topic_ready(self, name, partitions):
        try:
            tmd = self.admin.list_topics(topic=name, timeout=5).topics.get(name)
        except KafkaException:
            return False
        return (
            tmd is not None
            and tmd.error is None
            and len(tmd.partitions) >= partitions
            and all(p.leader >= 0 for p in tmd.partitions.values())
        )

    def _topic_gone(self, name):
        try:
            return name not in self.admin.list_topics(timeout=5).topics
        except KafkaException:
            return False

    def wait(self, ready, deleted):
        """Wait until {name: partitions} all have leaders and `deleted` left the metadata."""
        deadline = time.monotonic() + self.timeout
        ready, deleted = dict(ready), set(deleted)
        while True:
            ready = {n: p for n, p in ready.items() if not self._topic_ready(n, p)}
            deleted = {n for n in deleted if not self._topic_gone(n)}
            if not ready and not deleted:
                return []
            if time.monotonic() > deadline:
                return [
                    f"topic {n!r}: partitions still without a leader after {self.timeout}s"
                    for n in sorted(ready)
                ] + [
                    f"topic {n!r}: still listed {self.timeout}s after its deletion"
                    for n in sorted(deleted)
                ]
            time.sleep(0.5)


def client_config(params, errors=None):
    """librdkafka settings for the admin client."""
    return _client_config(params, "cryptomon-ansible-kafka-topic", errors)


def _run(cluster, actions, validate_only):
    done = []
    for kind in KIND_ORDER:
        batch = [a for a in actions if a["action"] == kind]
        if not batch:
            continue
        ok, errors = getattr(cluster, kind)(batch, validate_only=validate_only)
        done += [a for a in batch if a["topic"] in ok]
        if errors:
            return done, errors
    return done, []


def apply(cluster, actions, check_mode):
    """Run the planned actions kind by kind; return (actions done, error messages).

    Every request is first sent with validate_only, so the broker checks names, numbers
    and config values of the whole plan before anything changes (check mode stops there).
    Then deletions go first (so names are free), creations, new partitions, configs; the
    first failing kind stops the run. New partitions and deletions are waited for.
    """
    done, errors = _run(cluster, actions, validate_only=True)
    if check_mode or errors:
        return (done if check_mode else []), errors
    done, errors = _run(cluster, actions, validate_only=False)
    if errors:
        return done, errors
    ready = {}
    for a in done:
        if a["action"] == "create":
            ready[a["topic"]] = a["partitions"]
        elif a["action"] == "add_partitions":
            ready[a["topic"]] = a["after"]
    deleted = [a["topic"] for a in done if a["action"] == "delete"]
    return done, cluster.wait(ready, deleted)


ARGUMENT_SPEC = {
    "bootstrap_servers": {"type": "list", "elements": "str", "required": True},
    "topics": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "partitions": {"type": "int"},
            "replication_factor": {"type": "int"},
            "configs": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        "required_if": [("state", "present", ("partitions", "replication_factor"))],
    },
    **{k: v for k, v in CONNECTION_OPTIONS.items() if k != "bootstrap_servers"},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=CONNECTION_REQUIRED_IF,
        required_together=CONNECTION_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    if KAFKA_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("confluent-kafka"), exception=KAFKA_IMPORT_ERROR
        )

    result = {"changed": False, "actions": [], "broker_count": 0, "unmanaged_overrides": {}}
    try:
        desired = normalize_topics(module.params["topics"])
    except PlanError as exc:
        module.fail_json(msg=f"invalid topic specs: {exc}", errors=exc.errors, **result)

    client_errors = ClientErrors()
    cluster = Cluster(client_config(module.params, client_errors), module.params["timeout"],
                      lambda: client_errors.explain(module.params))
    try:
        broker_count, current = cluster.snapshot([s["name"] for s in desired])
    except KafkaTopicError as exc:
        module.fail_json(msg=str(exc), **result)
    result["broker_count"] = broker_count
    for spec in desired:
        cur = current.get(spec["name"])
        if cur is None or spec["state"] == "absent":
            continue
        extra = {k: v for k, v in cur["all_overrides"].items() if k not in spec["configs"]}
        if extra:
            result["unmanaged_overrides"][spec["name"]] = extra

    try:
        actions = compute_plan(desired, current, broker_count)
    except PlanError as exc:
        module.fail_json(
            msg=f"nothing changed, the topic specs cannot be applied: {exc}",
            errors=exc.errors,
            **result,
        )

    if module._diff:
        result["diff"] = render_diff(desired, current)

    done, errors = apply(cluster, actions, module.check_mode)
    if errors:
        applied = [] if module.check_mode else done
        result.update(actions=applied, changed=bool(applied))
        if applied:
            steps = ", ".join(f"{a['action']} {a['topic']}" for a in applied)
            msg = f"{'; '.join(errors)} (applied before the failure: {steps})"
        else:
            msg = f"nothing changed: {'; '.join(errors)}"
        module.fail_json(msg=msg, errors=errors, **result)
    result.update(actions=done, changed=bool(done))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
