"""kafka_topic module logic (no broker) and the topics template rendered with the role defaults."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "kafka_admin"


def load_role_module(name: str):
    """Load one of the role's modules as a plain Python module; its module_utils are made
    importable under ansible.module_utils like Ansible does for a role."""
    utils = "ansible.module_utils.kafka_admin_client"
    if utils not in sys.modules:
        spec = importlib.util.spec_from_file_location(utils, ROLE / "module_utils" / "kafka_admin_client.py")
        sys.modules[utils] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[utils])
    spec = importlib.util.spec_from_file_location(f"{name}_module", ROLE / "library" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kt = load_role_module("kafka_topic")


def topic(name, partitions=3, rf=1, configs=None, state="present"):
    raw = {"name": name, "state": state}
    if state == "present":
        raw.update(partitions=partitions, replication_factor=rf, configs=configs or {})
    return raw


def cluster_topic(partitions=3, rf=1, configs=None, overrides=()):
    return {
        "partitions": partitions,
        "replication_factor": rf,
        "configs": dict(configs or {}),
        "overrides": set(overrides),
    }


def plan(topics, current=None, brokers=3):
    return kt.compute_plan(kt.normalize_topics(topics), current or {}, brokers)


# --- normalisation -----------------------------------------------------------------------

def test_config_values_are_compared_as_kafka_strings():
    specs = kt.normalize_topics([topic("t", configs={
        "retention.ms": 604800000, "unclean.leader.election.enable": False,
        "cleanup.policy": ["compact", "delete"], "min.cleanable.dirty.ratio": 0.5,
        "segment.ms": None, "max.message.bytes": 2.0e6,
    })])
    assert specs[0]["configs"] == {
        "retention.ms": "604800000", "unclean.leader.election.enable": "false",
        "cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.5",
        "segment.ms": None, "max.message.bytes": "2000000",
    }


def test_numbers_given_as_strings_are_accepted():
    spec = kt.normalize_topics([{"name": "t", "partitions": " 6 ", "replication_factor": "3"}])[0]
    assert (spec["partitions"], spec["replication_factor"], spec["configs"]) == (6, 3, {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "bad name", "partitions": 1, "replication_factor": 1}, "invalid topic name"),
        ({"name": "x" * 250, "partitions": 1, "replication_factor": 1}, "invalid topic name"),
        ({"name": "..", "partitions": 1, "replication_factor": 1}, "invalid topic name"),
        ({"partitions": 1, "replication_factor": 1}, "topics[0]: invalid topic name"),
        ({"name": "t", "replication_factor": 1}, "topic 't': partitions is required"),
        ({"name": "t", "partitions": 1}, "replication_factor is required"),
        ({"name": "t", "partitions": 0, "replication_factor": 1}, "partitions must be at least 1"),
        ({"name": "t", "partitions": "six", "replication_factor": 1}, "must be an integer"),
        ({"name": "t", "partitions": True, "replication_factor": 1}, "must be an integer"),
        ({"name": "t", "partitions": 1, "replication_factor": 1, "state": "gone"},
         "state must be present or absent"),
        ({"name": "t", "partitions": 1, "replication_factor": 1, "configs": ["a"]},
         "configs must be a mapping"),
        ({"name": "t", "partitions": 1, "replication_factor": 1, "configs": {"a": {"b": 1}}},
         "configs.a: a mapping is not a valid config value"),
    ],
)
def test_invalid_specs_are_rejected_with_the_topic_named(raw, message):
    with pytest.raises(kt.PlanError) as err:
        kt.normalize_topics([raw])
    assert message in str(err.value)


def test_duplicates_and_all_errors_are_reported_together():
    with pytest.raises(kt.PlanError) as err:
        kt.normalize_topics([topic("a"), topic("a"), {"name": "b", "partitions": -1,
                                                      "replication_factor": 1}])
    assert err.value.errors == [
        "topic 'a': declared more than once",
        "topic 'b': partitions must be at least 1, got -1",
    ]


def test_absent_topics_need_no_numbers():
    assert kt.normalize_topics([{"name": "old", "state": "absent"}]) == [
        {"name": "old", "state": "absent"}
    ]


# --- plan ----------------------------------------------------------------------------------

def test_missing_topic_is_created_without_null_configs():
    actions = plan([topic("t", 6, 3, {"retention.ms": 1000, "segment.ms": None})])
    assert actions == [{
        "topic": "t", "action": "create", "partitions": 6, "replication_factor": 3,
        "configs": {"retention.ms": "1000"},
    }]


def test_matching_topic_needs_nothing():
    current = {"t": cluster_topic(6, 3, {"retention.ms": "1000", "cleanup.policy": "delete"},
                                  overrides={"retention.ms"})}
    assert plan([topic("t", 6, 3, {"retention.ms": 1000, "cleanup.policy": "delete"})],
                 current) == []


def test_partitions_are_raised_and_configs_aligned():
    current = {"t": cluster_topic(3, 3, {"retention.ms": "1000", "compression.type": "producer"})}
    actions = plan([topic("t", 6, 3, {"retention.ms": 2000, "compression.type": "producer"})],
                   current)
    assert actions == [
        {"topic": "t", "action": "add_partitions", "before": 3, "after": 6},
        {"topic": "t", "action": "alter_configs",
         "changes": {"retention.ms": {"before": "1000", "after": "2000"}}},
    ]


def test_unknown_config_key_is_planned_so_the_broker_rejects_it():
    current = {"t": cluster_topic(3, 1, {"retention.ms": "1000"})}
    actions = plan([topic("t", 3, 1, {"no.such.config": "x"})], current)
    assert actions[0]["changes"] == {"no.such.config": {"before": None, "after": "x"}}


def test_null_resets_only_an_existing_override():
    current = {"t": cluster_topic(3, 1, {"segment.ms": "3600000", "retention.ms": "604800000"},
                                  overrides={"segment.ms"})}
    actions = plan([topic("t", 3, 1, {"segment.ms": None, "retention.ms": None})], current)
    assert actions == [{"topic": "t", "action": "alter_configs",
                        "changes": {"segment.ms": {"before": "3600000", "after": None}}}]


def test_undeclared_configs_are_left_alone():
    current = {"t": cluster_topic(3, 1, {"segment.ms": "1", "retention.ms": "5"},
                                  overrides={"segment.ms", "retention.ms"})}
    assert plan([topic("t", 3, 1, {"retention.ms": 5})], current) == []


def test_delete_only_when_absent_and_present():
    current = {"old": cluster_topic(), "kept": cluster_topic()}
    actions = plan([{"name": "old", "state": "absent"}, {"name": "never", "state": "absent"}],
                   current)
    assert actions == [{"topic": "old", "action": "delete"}]


def test_replication_factor_above_broker_count_fails():
    with pytest.raises(kt.PlanError) as err:
        plan([topic("t", 3, 3)], brokers=1)
    assert str(err.value) == (
        "topic 't': replication_factor 3 is higher than the number of brokers (1)"
    )


def test_lowering_partitions_fails():
    with pytest.raises(kt.PlanError) as err:
        plan([topic("t", 3, 1)], {"t": cluster_topic(6, 1)})
    assert "topic 't': partitions cannot be lowered from 6 to 3" in str(err.value)


def test_changing_replication_factor_fails_as_unsupported():
    with pytest.raises(kt.PlanError) as err:
        plan([topic("t", 3, 3)], {"t": cluster_topic(3, 1)})
    assert "replication_factor is 1 on the cluster and 3 in the spec" in str(err.value)
    assert "not supported" in str(err.value)


def test_one_bad_spec_blocks_the_whole_plan():
    with pytest.raises(kt.PlanError) as err:
        plan([topic("good", 3, 1), topic("bad", 1, 1), topic("worse", 1, 5)],
             {"bad": cluster_topic(2, 1)}, brokers=3)
    assert len(err.value.errors) == 2
    assert "'bad'" in err.value.errors[0]
    assert "'worse'" in err.value.errors[1]


# --- diff ----------------------------------------------------------------------------------

def test_diff_shows_declared_topics_before_and_after():
    desired = kt.normalize_topics([
        topic("new", 2, 1, {"retention.ms": 10}),
        topic("grown", 4, 1, {"retention.ms": 20, "segment.ms": None}),
        {"name": "old", "state": "absent"},
    ])
    current = {
        "grown": cluster_topic(2, 1, {"retention.ms": "10", "segment.ms": "99"},
                               overrides={"segment.ms"}),
        "old": cluster_topic(1, 1),
    }
    diff = kt.render_diff(desired, current)
    assert diff["before"] == textwrap.dedent("""\
        new: absent
        grown:
          partitions: 2
          replication_factor: 1
          configs:
            retention.ms: 10
            segment.ms: 99
        old:
          partitions: 1
          replication_factor: 1
        """)
    assert diff["after"] == textwrap.dedent("""\
        new:
          partitions: 2
          replication_factor: 1
          configs:
            retention.ms: 10
        grown:
          partitions: 4
          replication_factor: 1
          configs:
            retention.ms: 20
            segment.ms: (broker default)
        old: absent
        """)


# --- apply (fake cluster) -------------------------------------------------------------------

class FakeCluster:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail or {}

    def _call(self, kind, actions, validate_only):
        self.calls.append((kind, validate_only, [a["topic"] for a in actions]))
        bad = self.fail.get(kind)
        ok = {a["topic"] for a in actions if a["topic"] != bad}
        errors = [f"topic {bad!r}: {kind} failed: boom"] if bad in {a["topic"] for a in actions} else []
        return ok, errors

    def delete(self, actions, validate_only):
        return self._call("delete", actions, validate_only)

    def create(self, actions, validate_only):
        return self._call("create", actions, validate_only)

    def add_partitions(self, actions, validate_only):
        return self._call("add_partitions", actions, validate_only)

    def alter_configs(self, actions, validate_only):
        return self._call("alter_configs", actions, validate_only)

    def wait(self, ready, deleted):
        self.calls.append(("wait", dict(ready), sorted(deleted)))
        return []


ACTIONS = [
    {"topic": "a", "action": "alter_configs", "changes": {}},
    {"topic": "c", "action": "create", "partitions": 2, "replication_factor": 1, "configs": {}},
    {"topic": "d", "action": "delete"},
    {"topic": "p", "action": "add_partitions", "before": 1, "after": 3},
]


def test_check_mode_only_validates():
    fake = FakeCluster()
    done, errors = kt.apply(fake, ACTIONS, check_mode=True)
    assert errors == []
    assert {a["topic"] for a in done} == {"a", "c", "d", "p"}
    assert all(validate for _, validate, _ in fake.calls)


def test_apply_validates_everything_then_runs_in_order_and_waits():
    fake = FakeCluster()
    done, errors = kt.apply(fake, ACTIONS, check_mode=False)
    assert errors == []
    assert [(k, v) for k, v, *_ in fake.calls] == [
        ("delete", True), ("create", True), ("add_partitions", True), ("alter_configs", True),
        ("delete", False), ("create", False), ("add_partitions", False), ("alter_configs", False),
        ("wait", {"c": 2, "p": 3}),
    ]
    assert fake.calls[-1][2] == ["d"]
    assert [a["action"] for a in done] == ["delete", "create", "add_partitions", "alter_configs"]


def test_broker_rejection_during_validation_changes_nothing():
    fake = FakeCluster(fail={"alter_configs": "a"})
    done, errors = kt.apply(fake, ACTIONS, check_mode=False)
    assert done == []
    assert errors == ["topic 'a': alter_configs failed: boom"]
    assert all(validate for _, validate, _ in fake.calls)


def test_client_config_carries_sasl_settings():
    params = {"bootstrap_servers": ["b1:9092", " b2:9092 "], "security_protocol": "SASL_SSL",
              "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "admin",
              "sasl_password": "s3cret", "ssl_ca_location": "/etc/ssl/ca.pem"}
    conf = kt.client_config(params)
    assert conf["bootstrap.servers"] == "b1:9092,b2:9092"
    assert conf["sasl.username"] == "admin"
    assert conf["sasl.password"] == "s3cret"
    assert conf["ssl.ca.location"] == "/etc/ssl/ca.pem"
    plain = kt.client_config({**params, "security_protocol": "PLAINTEXT", "ssl_ca_location": None})
    assert "sasl.username" not in plain
    assert "ssl.ca.location" not in plain


# --- the topics template with the role defaults ---------------------------------------------

RENDER_PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  vars_files:
    - {shared}
    - {defaults}
  tasks:
    - name: Render
      ansible.builtin.debug:
        msg: "{{{{ lookup('ansible.builtin.template', '{template}') | from_yaml }}}}"
"""


def render_topics(tmp_path: Path, brokers: int, extra_vars: dict | None = None) -> list[dict]:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[kafka_broker]\n"
        + "".join(f"kafka-{i} kafka_broker_port=9092\n" for i in range(brokers))
        + "[kafka:children]\nkafka_broker\n"
    )
    playbook = RENDER_PLAYBOOK.format(
        shared=REPO / "roles" / "cryptomon" / "defaults" / "main.yml",
        defaults=REPO / "roles" / "kafka_admin" / "defaults" / "main.yml",
        template=REPO / "templates" / "kafka" / "topics.yml.j2",
    )
    res = run_playbook(playbook, workdir=tmp_path, inventory=inventory, extra_vars=extra_vars, args=["-c", "local"],
                       json_output=True).assert_ok()
    return res.json["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


def test_template_renders_the_four_default_topics(tmp_path):
    topics = render_topics(tmp_path, brokers=3)
    assert [t["name"] for t in topics] == ["trades.raw", "quotes.raw", "signals.alerts", "signals.arbitrage"]
    trades = topics[0]
    assert trades["state"] == "present"
    assert (trades["partitions"], trades["replication_factor"]) == (6, 3)
    assert trades["configs"] == {"cleanup.policy": "delete", "retention.ms": 604800000,
                                 "compression.type": "lz4", "min.insync.replicas": "2"}
    # Quotes are useful for seconds: one hour kept, and as few partitions as the signal topics.
    quotes = topics[1]
    assert (quotes["partitions"], quotes["replication_factor"]) == (3, 3)
    assert quotes["configs"] == {"cleanup.policy": "delete", "retention.ms": 3600000,
                                 "compression.type": "lz4", "min.insync.replicas": "2"}
    assert all(t["replication_factor"] == 3 for t in topics)
    # Everything the template produces is accepted by the module's own validation.
    assert len(kt.normalize_topics(topics)) == 4


def test_template_scales_replication_to_a_single_broker(tmp_path):
    topics = render_topics(tmp_path, brokers=1)
    assert {t["replication_factor"] for t in topics} == {1}
    assert {t["configs"]["min.insync.replicas"] for t in topics} == {"1"}


def test_template_names_are_overridable_and_extras_appended(tmp_path):
    topics = render_topics(tmp_path, brokers=2, extra_vars={
        "cryptomon_trades_topic": "prod.trades",
        "cryptomon_quotes_topic": "prod.quotes",
        "cryptomon_alerts_topic": "prod.alerts",
        "cryptomon_arbitrage_topic": "prod.arbitrage",
        "kafka_admin_trades_partitions": 12,
        "kafka_admin_topics_extra": [
            {"name": "audit.log", "partitions": "2", "replication_factor": 2,
             "configs": {"cleanup.policy": "compact"}},
            {"name": "legacy.trades", "state": "absent"},
            {"name": "half.declared", "replication_factor": 1},
        ],
    })
    assert [t["name"] for t in topics] == [
        "prod.trades", "prod.quotes", "prod.alerts", "prod.arbitrage", "audit.log", "legacy.trades",
        "half.declared",
    ]
    assert topics[0]["partitions"] == 12
    assert topics[0]["replication_factor"] == 2
    assert topics[4] == {"name": "audit.log", "state": "present", "partitions": 2,
                         "replication_factor": 2, "configs": {"cleanup.policy": "compact"}}
    assert topics[5] == {"name": "legacy.trades", "state": "absent"}
    # A missing number stays missing, so the module names the problem.
    assert topics[6]["partitions"] is None
    with pytest.raises(kt.PlanError, match="'half.declared': partitions is required"):
        kt.normalize_topics(topics)


def test_template_can_render_only_extras_or_nothing(tmp_path):
    assert render_topics(tmp_path, brokers=1, extra_vars={"kafka_admin_manage_default_topics": False}) == []
    only = render_topics(tmp_path, brokers=1, extra_vars={
        "kafka_admin_manage_default_topics": False,
        "kafka_admin_topics_extra": [{"name": "x", "partitions": 1, "replication_factor": 1}],
    })
    assert [t["name"] for t in only] == ["x"]
