"""A running PLAINTEXT cluster moved to the secure model stage by stage (cryptomon_kafka_migration)
while a producer writes: no trade lost, none twice.

Three combined KRaft nodes run as local processes on their own loopback addresses with exactly
the server.properties the kafka role renders for each stage (tests/fixtures/ansible/
render_kafka.yml over a three-host inventory). Each stage is a rolling restart in the role's
order and with the role's health rule: the node answers and no partition is under-replicated
before the next one restarts. The producer moves from PLAINTEXT to SASL_SSL after `bridge`, as
the services do in that run, once the SCRAM users and ACLs exist.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import pytest
import yaml
from pki import TestCA
from unit.playbook_runner import run_playbook

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RENDER = REPO / "tests" / "fixtures" / "ansible" / "render_kafka.yml"
HOSTS = {"k1": "127.0.0.11", "k2": "127.0.0.12", "k3": "127.0.0.13"}
TOPIC = "trades.raw"
ADMIN, PRODUCER = "cryptomon-admin", "cryptomon-producer"


@dataclass
class Node:
    name: str
    address: str
    node_id: int
    root: Path
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.root / "conf" / "server.properties"

    def start(self) -> None:
        cp = f"{harness.kafka_home()}/libs/*"
        log4j = self.root / "log4j2.properties"
        log4j.write_text("rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\n"
                         "appender.out.type=Console\nappender.out.name=out\n"
                         "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%d] %p %m (%c)%n\n")
        self.proc = subprocess.Popen(
            [harness.java_bin(), "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}",
             "-cp", cp, "kafka.Kafka", str(self.conf)],
            stdout=(self.root / "kafka.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        # SIGTERM: a controlled shutdown, as systemd's restart does (leadership moves first).
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self) -> str:
        return (self.root / "kafka.log").read_text(errors="replace")[-3000:]


@dataclass
class Writer:
    """Writes trade ids 0, 1, 2, ... with an idempotent producer; switch() hands over to another
    client configuration after flushing what the current one holds (as a restarted producer
    service does)."""

    config: dict[str, str]
    next_id: int = 0
    delivered: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _run(self, config: dict[str, str]) -> None:
        from confluent_kafka import Producer

        def report(err, msg) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.delivered.append(int(msg.value()))

        producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                             "delivery.timeout.ms": 300000, "log_level": 3})
        while not self.stop_flag.is_set():
            with self.lock:
                trade_id = self.next_id
                self.next_id += 1
            producer.produce(TOPIC, key=str(trade_id % 7).encode(), value=str(trade_id).encode(), on_delivery=report)
            producer.poll(0)
            time.sleep(0.005)
        left = producer.flush(120)
        if left:
            self.errors.append(f"{left} trades still undelivered at the hand-over")

    def start(self) -> None:
        self.stop_flag.clear()
        self.thread = threading.Thread(target=self._run, args=(dict(self.config),), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        assert self.thread is not None
        self.thread.join(180)

    def switch(self, config: dict[str, str]) -> None:
        self.stop()
        self.config = config
        self.start()


def _render(tmp: Path, inventory: Path, stage_vars: dict) -> dict[str, dict[str, str]]:
    out = tmp / f"render-{len(list(tmp.glob('render-*')))}"
    out.mkdir()
    run_playbook(RENDER, inventory=inventory, extra_vars={"render_out": str(out), **stage_vars}).assert_ok()
    fmt = {h: json.loads((out / f"{h}.format.json").read_text()) for h in HOSTS}
    props = {h: (out / f"{h}.properties").read_text() for h in HOSTS}
    health = {h: json.loads((out / f"{h}.health.json").read_text()) for h in HOSTS}
    node_client = {h: (out / f"{h}.node-client.conf").read_text() for h in HOSTS}
    return {"props": props, "format": fmt, "health": health, "node_client": node_client}


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def _connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def _wait_whole(nodes: list[Node], admin_config: dict[str, str], expect_brokers: int = 3,
                timeout: float = 180) -> None:
    """Every broker registered and no partition of the topic (if it exists) under-replicated: the
    kafka role's health rule between two restarts."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**admin_config, "log_level": 2})
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for n in nodes:
            if n.proc and n.proc.poll() is not None:
                raise AssertionError(f"{n.name} exited with {n.proc.returncode}:\n{n.log_tail()}")
        try:
            md = admin.list_topics(timeout=5)
            under = [p.id for t in md.topics.values() if not t.topic.startswith("__")
                     for p in t.partitions.values() if len(p.isrs) < len(p.replicas)]
            last = f"brokers {sorted(md.brokers)}, under-replicated partitions {under}"
            if len(md.brokers) == expect_brokers and not under:
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"cluster not whole after {timeout}s: {last}\n" + "\n".join(
        f"--- {n.name}\n{n.log_tail()}" for n in nodes))


def _quorum_leader(node: Node, rendered: dict, timeout: float = 120) -> None:
    """The role's first health check (tasks/health.yml): kafka-metadata-quorum describe --status
    against the node, on the listener and with the settings the role renders for the stage,
    until it names a leader. Each try gets 30 s: a tool asked on the wrong listener hangs."""
    check = rendered["health"][node.name]
    cmd = [harness.java_bin(), "-cp", f"{harness.kafka_home()}/libs/*", "org.apache.kafka.tools.MetadataQuorumCommand",
           "--bootstrap-controller", check["controller"], *check["args"], "describe", "--status"]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            last = out.stdout + out.stderr
            if out.returncode == 0 and re.search(r"LeaderId:\s+\d+", out.stdout):
                return
        except subprocess.TimeoutExpired:
            last = f"no answer in 30 s from {check['controller']}"
        time.sleep(1)
    raise AssertionError(f"{node.name}: the role's quorum check fails: {' '.join(cmd)}\n{last[-2000:]}")


def _roll(nodes: list[Node], rendered: dict, admin_config: dict[str, str]) -> None:
    """The role's rolling restart: one node at a time, each passing the role's quorum check and
    whole again before the next."""
    for n in nodes:
        n.stop()
        n.conf.write_text(rendered["props"][n.name])
        (n.root / "conf" / "node-client.properties").write_text(rendered["node_client"][n.name])
        n.start()
        _quorum_leader(n, rendered)
        _wait_whole(nodes, admin_config)


@pytest.mark.parametrize("quorum_mode", ["static", "dynamic"])
def test_a_running_plaintext_cluster_moves_to_secure_without_losing_a_trade(tmp_path: Path, quorum_mode: str) -> None:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        NewTopic,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    plain = {"client": harness.free_port(), "internal": harness.free_port(), "controller": harness.free_port()}
    secure = {"client": harness.free_port(), "internal": harness.free_port(), "controller": harness.free_port()}
    ca = TestCA(tmp_path / "pki")
    nodes = []
    hostvars = {}
    for i, (name, address) in enumerate(HOSTS.items(), start=1):
        root = tmp_path / name
        (root / "conf" / "tls").mkdir(parents=True)
        issued = ca.issue(name, [address])
        (root / "conf" / "tls" / "kafka.pem").write_bytes(issued.pem.read_bytes())
        (root / "conf" / "tls" / "ca.crt").write_bytes(ca.cert_path.read_bytes())
        nodes.append(Node(name, address, i, root))
        hostvars[name] = {
            "cryptomon_advertised_host": address, "kafka_listener_bind_address": address,
            "cryptomon_tls_cn": name, "kafka_node_id": i, "kafka_conf_dir": str(root / "conf"),
            "kafka_data_dirs": [str(root / "data")], "kafka_metadata_dir": str(root / "meta"),
        }
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "kafka_quorum_mode": quorum_mode,
                 "kafka_server_properties": {"group.initial.rebalance.delay.ms": 0, "num.partitions": 3}},
        "children": {"kafka": {"children": {"kafka_controller": {"hosts": hostvars},
                                            "kafka_broker": {"hosts": {h: {} for h in HOSTS}}}}},
    }}))
    ports = {"cryptomon_kafka_port": secure["client"], "cryptomon_kafka_internal_port": secure["internal"],
             "cryptomon_kafka_controller_port": secure["controller"],
             "cryptomon_kafka_migration_plaintext_ports": plain}

    # Before: the cluster as cryptomon_kafka_plaintext left it (PLAINTEXT on the old ports).
    before = _render(tmp_path, inventory, {"cryptomon_kafka_plaintext": True, "cryptomon_kafka_port": plain["client"],
                                           "cryptomon_kafka_internal_port": plain["internal"],
                                           "cryptomon_kafka_controller_port": plain["controller"]})
    cluster_id = harness._kafka_uuid()
    for n in nodes:
        n.conf.write_text(before["props"][n.name])
        subprocess.run([harness.java_bin(), "-cp", f"{harness.kafka_home()}/libs/*", "kafka.tools.StorageTool",
                        "format", f"--cluster-id={cluster_id}", f"--config={n.conf}", *before["format"][n.name]],
                       check=True, capture_output=True)
    plain_client = {"bootstrap.servers": ",".join(f"{a}:{plain['client']}" for a in HOSTS.values())}
    try:
        for n in nodes:
            n.start()
        _wait_whole(nodes, plain_client)
        admin = AdminClient(plain_client)
        for f in admin.create_topics([NewTopic(TOPIC, 3, 3, config={"min.insync.replicas": "2"})]).values():
            f.result(30)
        writer = Writer(plain_client)
        writer.start()
        time.sleep(3)

        # bridge: secure listeners beside the PLAINTEXT ones; then the users and ACLs (the
        # kafka_admin role, through a node's certificate on the internal listener) and the
        # producer on SASL_SSL.
        bridge = _render(tmp_path, inventory, {**ports, "cryptomon_kafka_migration": "bridge"})
        _roll(nodes, bridge, plain_client)
        k1 = nodes[0]
        node_identity = {"bootstrap.servers": f"{k1.address}:{secure['internal']}", "security.protocol": "SSL",
                         "ssl.ca.location": str(ca.cert_path),
                         "ssl.certificate.location": str(tmp_path / "pki" / "k1.crt"),
                         "ssl.key.location": str(tmp_path / "pki" / "k1.key")}
        passwords = {ADMIN: "admin-secret-1", PRODUCER: "producer-secret-1"}
        node_admin = AdminClient(node_identity)
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        for f in node_admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(u, info, pw.encode()) for u, pw in passwords.items()]).values():
            f.result(30)
        acls = [AclBinding(ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, f"User:{PRODUCER}", "*", op,
                           AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
        acls.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, f"User:{PRODUCER}",
                               "*", AclOperation.IDEMPOTENT_WRITE, AclPermissionType.ALLOW))
        for f in node_admin.create_acls(acls).values():
            f.result(30)

        def sasl(user: str) -> dict[str, str]:
            return {"bootstrap.servers": ",".join(f"{a}:{secure['client']}" for a in HOSTS.values()),
                    "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                    "sasl.password": passwords[user], "ssl.ca.location": str(ca.cert_path)}

        deadline = time.monotonic() + 30
        while True:  # SCRAM credentials reach every broker through the metadata log
            try:
                AdminClient({**sasl(ADMIN), "log_level": 2}).list_topics(timeout=5)
                break
            except Exception:  # noqa: BLE001
                assert time.monotonic() < deadline, "the admin user cannot log in on the secure client listener"
                time.sleep(0.5)
        writer.switch(sasl(PRODUCER))
        time.sleep(3)

        # switch: nodes talk TLS among themselves; done: the PLAINTEXT listeners close.
        _roll(nodes, _render(tmp_path, inventory, {**ports, "cryptomon_kafka_migration": "switch"}), sasl(ADMIN))
        done = _render(tmp_path, inventory, {**ports, "cryptomon_kafka_migration": "done"})
        _roll(nodes, done, sasl(ADMIN))
        time.sleep(3)
        writer.stop()

        for n in nodes:
            p = _props(done["props"][n.name])
            assert "PLAINTEXT" not in p["listener.security.protocol.map"], n.name
            assert "User:ANONYMOUS" not in p["super.users"], n.name
            for port in plain.values():
                assert not _connects(n.address, port), f"{n.name} still listens on PLAINTEXT port {port}"
        # The secure cluster's rules hold: a PLAINTEXT client gets nothing, the producer may not
        # read what it writes.
        assert writer.errors == [], writer.errors[:5]
        consumer = Consumer({**sasl(ADMIN), "group.id": "migration-check", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
        md = consumer.list_topics(TOPIC, timeout=10)
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in md.topics[TOPIC].partitions])
        seen: dict[int, int] = {}
        expected = writer.next_id
        deadline = time.monotonic() + 60
        while sum(1 for i in seen if i < expected) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1):
                if msg.error() is None:
                    trade_id = int(msg.value())
                    seen[trade_id] = seen.get(trade_id, 0) + 1
        consumer.close()
        lost = [i for i in range(expected) if i not in seen]
        twice = [i for i, c in seen.items() if c > 1]
        assert expected > 1000, f"only {expected} trades written"
        assert not lost and not twice, f"{len(lost)} lost (first {lost[:10]}), {len(twice)} twice (first {twice[:10]})"
        assert sorted(writer.delivered) == list(range(expected))
    finally:
        for n in nodes:
            n.stop()
