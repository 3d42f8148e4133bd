"""Kafka secured end to end, against a real broker with the bundle's security model.

The kafka_admin role bootstraps the SCRAM users through the broker's own certificate, declares
the topics as the admin user and applies the ACLs; then each service's credentials do exactly
what its ACLs allow, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import harness
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon"))
SERVICES = ("admin", "producer", "flink", "alerter", "dashboard")

ROLE_PLAYBOOK = """\
- hosts: kafka_broker
  gather_facts: false
  roles:
    - role: kafka_admin
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A fresh secure node with no SCRAM user yet, and the kafka_admin role pointed at it."""
    work = tmp_path_factory.mktemp("kafka-sec")
    node = harness.start_kafka(work / "kafka", secure=True, create_users=False)
    tls = work / "tls"  # what the shared role puts in cryptomon_tls_dir on a broker
    tls.mkdir()
    shutil.copy(node.ca_file, tls / "ca.crt")
    shutil.copy(node.node_cert, tls / "host.crt")
    shutil.copy(node.node_key, tls / "host.key")
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    wheels = CACHE / "artifacts" / "wheels" / "kafka-admin"
    if not any(wheels.glob("*.whl")):
        pytest.fail(f"{wheels} is empty: run `make cache` first")
    port = node.bootstrap.rsplit(":", 1)[1]
    iport = node.internal.rsplit(":", 1)[1]
    topic = f"sec.{uuid.uuid4().hex[:6]}"
    base = {
        "cryptomon_advertised_host": "127.0.0.1",
        "cryptomon_kafka_port": int(port),
        "cryptomon_kafka_internal_port": int(iport),
        "cryptomon_tls_dir": str(tls),
        # The node's identity is the harness's: the shared role's certificate tasks are skipped.
        "cryptomon_host_prepared": True,
        "cryptomon_state_dir": str(work / "state"),
        "cryptomon_templates_dir": str(REPO / "templates"),
        "cryptomon_airgapped": True,
        "cryptomon_artifact_cache": str(CACHE / "artifacts"),
        "cryptomon_trades_topic": f"{topic}.trades",
        "cryptomon_alerts_topic": f"{topic}.alerts",
        "cryptomon_arbitrage_topic": f"{topic}.arbitrage",
        "kafka_admin_venv": str(work / "venv"),
        "kafka_admin_wheelhouse": str(work / "wheels"),
        "kafka_admin_python": python,
        "kafka_admin_system_packages": [],
        "kafka_admin_client_properties": str(work / "kafka-admin.properties"),
    }
    inventory = work / "hosts.ini"
    inventory.write_text("[kafka_broker]\n"
                         f"broker1 ansible_connection=local ansible_python_interpreter={python}\n"
                         "[kafka:children]\nkafka_broker\n")
    yield {"node": node, "work": work, "base": base, "inventory": inventory, "topic": topic}
    node.stop()


def converge(c: dict, extra: dict | None = None, *flags: str) -> dict:
    vars_file = c["work"] / f"vars-{uuid.uuid4().hex[:6]}.json"
    vars_file.write_text(json.dumps({**c["base"], **(extra or {})}))
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_CALLBACKS_ENABLED": "",
           "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_RETRY_FILES_ENABLED": "false"}
    book = c["work"] / "play.yml"
    book.write_text(ROLE_PLAYBOOK)
    res = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(c["inventory"]), str(book),
                          "-e", f"@{vars_file}", *flags],
                         capture_output=True, text=True, env=env, cwd=c["work"], timeout=600, check=False)
    try:
        out = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook output is not JSON (rc {res.returncode}):\n"
                    f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    out["raw"] = res.stdout
    return out


def stats(out: dict) -> dict:
    return out["stats"]["broker1"]


def task_results(out: dict, name_part: str) -> list[dict]:
    return [t["hosts"]["broker1"] for p in out["plays"] for t in p["tasks"]
            if name_part in t["task"]["name"] and "broker1" in t["hosts"]]


def password(c: dict, service: str) -> str:
    return (c["work"] / "state" / "secrets" / f"kafka-{service}.password").read_text().strip()


def conf(c: dict, service: str, pw: str | None = None) -> dict:
    node = c["node"]
    return {"bootstrap.servers": node.bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": f"cryptomon-{service}",
            "sasl.password": pw or password(c, service), "ssl.ca.location": str(node.ca_file)}


def produce_ok(config: dict, topic: str) -> bool:
    """One idempotent produce (as the services do); False when the broker denies it."""
    p = Producer({**config, "enable.idempotence": True, "message.timeout.ms": 8000, "log_level": 2})
    delivered: list = []
    try:
        p.produce(topic, b"x", partition=0, on_delivery=lambda err, msg: delivered.append(err))
        p.flush(10)
    except (KafkaException, SystemError) as exc:
        # Without WRITE on any topic the idempotent producer's PID request is denied: a fatal
        # error, raised from inside the client (a SystemError whose cause is the KafkaException).
        cause = exc if isinstance(exc, KafkaException) else (exc.__cause__ or exc.__context__)
        if isinstance(cause, KafkaException) and cause.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
            return False
        raise
    assert len(delivered) == 1, f"no delivery report for {topic} in 10 s"
    if delivered[0] is not None:  # (KafkaError == None raises, hence `is`)
        assert delivered[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                       KafkaError.CLUSTER_AUTHORIZATION_FAILED), delivered[0]
        return False
    return True


DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)


def read_ok(config: dict, topic: str, group: str) -> bool:
    """Read partition 0 from the start and commit the offset in `group` (which needs the group
    ACL); False as soon as the broker denies either, True once both worked."""
    errors: list = []
    c = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "log_level": 2, "error_cb": errors.append})
    msg = None
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None and meta.error.code() in DENIED:
            return False  # not even allowed to see the topic
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            polled = c.poll(0.5)
            if any(e.code() in DENIED for e in errors):
                return False
            if polled is not None and polled.error():
                if polled.error().code() in DENIED:
                    return False
                continue
            if polled is not None:
                msg = polled
            if msg is None:
                continue
            try:
                c.commit(message=msg, asynchronous=False)
                return True
            except KafkaException as exc:
                if exc.args[0].code() in DENIED:
                    return False  # otherwise (waiting for the coordinator): try again
        raise AssertionError(f"{config['sasl.username']}: neither read+commit nor a denial on {topic} in 20 s")
    finally:
        c.close()


def login_ok(config: dict) -> bool:
    errors: list = []
    admin = AdminClient({**config, "error_cb": errors.append, "log_level": 2})
    try:
        admin.list_topics(timeout=5)
        return True
    except KafkaException:
        admin.poll(1)  # serves error_cb
        assert any("Authentication failed" in e.str() for e in errors), errors
        return False


def delete_ok(config: dict, topic: str) -> bool:
    admin = AdminClient(config)  # kept referenced until the future resolves
    try:
        admin.delete_topics([topic], operation_timeout=10)[topic].result(15)
        return True
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, exc
        return False


def test_role_bootstraps_users_topics_and_acls_idempotently(cluster):
    first = converge(cluster)
    assert stats(first)["failures"] == 0, first["raw"][-4000:]
    assert stats(first)["changed"] > 0
    users = task_results(first, "One SCRAM user per service")[0]
    # The task is no_log: nothing of the users' passwords reaches the output.
    assert users.get("censored") and all(password(cluster, s) not in first["raw"] for s in SERVICES)
    shown = task_results(first, "Show the SCRAM users changed")[0]["msg"]
    assert sorted(a["user"] for a in shown) == sorted(f"cryptomon-{s}" for s in SERVICES)
    assert {a["action"] for a in shown} == {"create"}
    # Generated once on the controller, 0600.
    pw_file = cluster["work"] / "state" / "secrets" / "kafka-producer.password"
    assert oct(pw_file.stat().st_mode & 0o777) == "0o600" and len(pw_file.read_text().strip()) == 32
    assert oct((cluster["work"] / "kafka-admin.properties").stat().st_mode & 0o777) == "0o600"

    second = converge(cluster)
    assert stats(second)["failures"] == 0
    assert stats(second)["changed"] == 0, second["raw"][-4000:]

    checked = converge(cluster, {"cryptomon_kafka_passwords": {"alerter": "a-new-alerter-password"}},
                       "--check", "--diff")
    assert stats(checked)["changed"] == 1
    assert all("a-new-alerter-password" not in json.dumps(p) for p in checked["plays"])
    assert produce_ok(conf(cluster, "producer"), f"{cluster['topic']}.trades")


def test_each_service_does_exactly_what_its_acls_allow(cluster):
    t = cluster["topic"]
    trades, alerts, arbitrage = f"{t}.trades", f"{t}.alerts", f"{t}.arbitrage"
    out = converge(cluster)
    assert stats(out)["failures"] == 0, out["raw"][-4000:]
    producer, flink, alerter, dashboard = (conf(cluster, s) for s in ("producer", "flink", "alerter", "dashboard"))
    admin = conf(cluster, "admin")
    # producer: writes trades, reads nothing, deletes nothing
    assert produce_ok(producer, trades)
    assert not produce_ok(producer, arbitrage)
    assert not read_ok(producer, arbitrage, "cryptomon-alerter")
    assert not delete_ok(producer, trades)
    # flink jobs: read trades in their own groups, write the signal topics
    assert read_ok(flink, trades, "cryptomon-flink-anomaly-detector")
    assert not read_ok(flink, trades, "cryptomon-alerter")  # not its group
    assert produce_ok(flink, alerts) and produce_ok(flink, arbitrage)
    assert not produce_ok(flink, trades)
    # alerter: reads the signal topics in its group, writes nothing
    assert read_ok(alerter, alerts, "cryptomon-alerter") and read_ok(alerter, arbitrage, "cryptomon-alerter")
    assert not read_ok(alerter, trades, "cryptomon-alerter")
    assert not produce_ok(alerter, alerts)
    # dashboard: reads everything it shows under its group prefix, never writes
    for topic in (trades, alerts, arbitrage):
        assert read_ok(dashboard, topic, "cryptomon-dashboard-1")
    assert not produce_ok(dashboard, trades) and not produce_ok(dashboard, alerts)
    # admin is a super user
    assert read_ok(admin, trades, "anything") and produce_ok(admin, f"{t}.alerts")


def test_wrong_password_and_wrong_protocol_are_refused(cluster):
    node = cluster["node"]
    converge(cluster)
    assert login_ok(conf(cluster, "producer"))
    assert not login_ok(conf(cluster, "producer", pw="not-the-password"))
    # PLAINTEXT against the client listener and against the controller listener: no answer.
    for address in (node.bootstrap, node.controller):
        with pytest.raises(KafkaException):
            AdminClient({"bootstrap.servers": address, "log_level": 2}).list_topics(timeout=4)
    # TLS without a client certificate on the controller and INTERNAL listeners: refused.
    for address in (node.controller, node.internal):
        with pytest.raises(KafkaException):
            AdminClient({"bootstrap.servers": address, "security.protocol": "SSL", "log_level": 2,
                         "ssl.ca.location": str(node.ca_file)}).list_topics(timeout=4)


def test_password_change_and_acl_removal_reach_the_cluster(cluster):
    t = cluster["topic"]
    converge(cluster)
    old = password(cluster, "alerter")
    changed = converge(cluster, {"cryptomon_kafka_passwords": {"alerter": "rotated-alerter-password-1"}})
    assert stats(changed)["failures"] == 0, changed["raw"][-4000:]
    shown = task_results(changed, "Show the SCRAM users changed")[0]["msg"]
    assert shown == [{"user": "cryptomon-alerter", "action": "update_password", "mechanism": "SCRAM-SHA-512"}]
    assert read_ok(conf(cluster, "alerter", pw="rotated-alerter-password-1"), f"{t}.alerts", "cryptomon-alerter")
    assert not login_ok(conf(cluster, "alerter", pw=old))

    # The dashboard's ACLs dropped from the inventory are dropped from the cluster.
    defaults = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
         str(REPO / "roles" / "cryptomon" / "defaults" / "main.yml")], capture_output=True, text=True).stdout)
    fewer = [a for a in defaults["cryptomon_kafka_acls"] if a["principal"] != "dashboard"]
    out = converge(cluster, {"cryptomon_kafka_acls": fewer,
                             "cryptomon_kafka_passwords": {"alerter": "rotated-alerter-password-1"}})
    assert stats(out)["failures"] == 0, out["raw"][-4000:]
    removed = task_results(out, "Grant the declared ACLs")[0]["actions"]
    assert removed and {a["action"] for a in removed} == {"delete"}
    assert all("cryptomon-dashboard" in a["acl"] for a in removed)
    assert not read_ok(conf(cluster, "dashboard"), f"{t}.trades", "cryptomon-dashboard-1")
    # ...and come back when declared again
    back = converge(cluster, {"cryptomon_kafka_passwords": {"alerter": "rotated-alerter-password-1"}})
    assert stats(back)["failures"] == 0
    assert read_ok(conf(cluster, "dashboard"), f"{t}.trades", "cryptomon-dashboard-1")


def test_bad_acls_fail_before_anything_changes(cluster):
    converge(cluster)
    bad = [{"principal": "producer", "resource_type": "topic", "resource_name": "x", "operations": ["wrte"]},
           {"principal": "nobody", "resource_type": "topic", "resource_name": "x", "operations": ["read"]}]
    out = converge(cluster, {"cryptomon_kafka_acls_extra": bad})
    assert stats(out)["failures"] == 1
    failed = [h for p in out["plays"] for t in p["tasks"] for h in t["hosts"].values() if h.get("failed")]
    msg = failed[0]["msg"]
    assert "unknown operation wrte" in msg and "unknown principal nobody" in msg
    assert stats(out)["changed"] == 0
