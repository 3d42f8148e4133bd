"""The kafka role's multi-node wiring, rendered for whole inventories without any host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_kafka.yml"


Rendered = tuple[dict[str, dict[str, str]], dict[str, list]]


def render(tmp_path: Path, inventory: Path, *extra: str) -> Rendered:
    """Each node's server.properties and format arguments; `extra`: more ansible-playbook
    arguments (-e key=value)."""
    out = tmp_path / "out"
    out.mkdir()
    run_playbook(PLAYBOOK, inventory=inventory, extra_vars={"render_out": str(out)}, args=extra).assert_ok()
    props, fmt = {}, {}
    for f in out.glob("*.properties"):
        props[f.stem] = dict(
            line.split("=", 1) for line in f.read_text().splitlines() if line and not line.startswith("#")
        )
    for f in out.glob("*.format.json"):
        fmt[f.name.removesuffix(".format.json")] = json.loads(f.read_text())
    return props, fmt


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """inventory/example with every default, rendered once for the tests that only read it."""
    return render(tmp_path_factory.mktemp("example"), REPO / "inventory" / "example")


def test_example_inventory_split_roles_dynamic_quorum(example):
    props, fmt = example
    assert sorted(props) == ["kbrk-1", "kbrk-2", "kbrk-3", "kctl-1", "kctl-2", "kctl-3"]
    assert props["kctl-1"]["process.roles"] == "controller"
    assert props["kbrk-1"]["process.roles"] == "broker"
    assert props["kctl-2"]["node.id"] == "2" and props["kbrk-3"]["node.id"] == "103"
    # dynamic quorum: bootstrap servers instead of a fixed voter list, on every node
    for p in props.values():
        assert p["controller.quorum.bootstrap.servers"] == "kctl-1:9093,kctl-2:9093,kctl-3:9093"
        assert "controller.quorum.voters" not in p
    assert props["kctl-1"]["listeners"] == "CONTROLLER://0.0.0.0:9093"
    assert "inter.broker.listener.name" not in props["kctl-1"]
    assert props["kbrk-2"]["advertised.listeners"] == "CLIENT://kbrk-2:9092,INTERNAL://kbrk-2:9094"
    assert props["kbrk-2"]["inter.broker.listener.name"] == "INTERNAL"
    # three brokers: RF 3 and min ISR 2 for internal topics; the operator override lands
    assert props["kbrk-1"]["offsets.topic.replication.factor"] == "3"
    assert props["kbrk-1"]["min.insync.replicas"] == "2"
    assert props["kbrk-1"]["log.retention.hours"] == "72"
    # KIP-853 formatting: controllers get the same initial voter list (with directory ids),
    # brokers none
    voters = {tuple(fmt[h]) for h in ("kctl-1", "kctl-2", "kctl-3")}
    assert len(voters) == 1
    flag, spec = next(iter(voters))
    assert flag == "--initial-controllers"
    entries = spec.split(",")
    assert [e.split(":")[0] for e in entries] == ["1@kctl-1", "2@kctl-2", "3@kctl-3"]
    assert len({e.split(":")[2] for e in entries}) == 3
    assert fmt["kbrk-1"] == ["--no-initial-controllers"]


def test_example_inventory_is_secure_everywhere(example):
    """No PLAINTEXT listener on any node; clients SASL_SSL/SCRAM, nodes mTLS, ACLs enforced."""
    props, _ = example
    for host, p in props.items():
        protocols = dict(item.split(":") for item in p["listener.security.protocol.map"].split(","))
        used = [entry.split("://")[0] for entry in p["listeners"].split(",")]
        assert used and all(protocols[name] in ("SSL", "SASL_SSL") for name in used), host
        assert "PLAINTEXT" not in p["listener.security.protocol.map"], host
        assert p["controller.listener.names"] == "CONTROLLER" and protocols["CONTROLLER"] == "SSL"
        assert p["ssl.client.auth"] == "required", host  # INTERNAL and CONTROLLER: client certificates
        assert p["ssl.keystore.type"] == "PEM" and p["ssl.truststore.location"].endswith("/ca.crt")
        assert p["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert p["allow.everyone.if.no.acl.found"] == "false"
        supers = p["super.users"].split(";")
        assert "User:cryptomon-admin" in supers
        assert {f"User:{h}" for h in props} <= set(supers), host  # every node, by its certificate CN
    broker = props["kbrk-1"]
    assert broker["listener.name.client.ssl.client.auth"] == "none"  # SCRAM authenticates clients
    assert broker["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "ScramLoginModule" in broker["listener.name.client.scram-sha-512.sasl.jaas.config"]
    assert "listener.name.client.sasl.enabled.mechanisms" not in props["kctl-1"]


def test_plaintext_only_on_purpose(tmp_path):
    props, _ = render(tmp_path, REPO / "inventory" / "example", "-e", "cryptomon_kafka_plaintext=true")
    p = props["kbrk-1"]
    assert p["listener.security.protocol.map"] == "CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT"
    assert "authorizer.class.name" not in p and "ssl.keystore.location" not in p


MOVE_PORTS = json.dumps({"cryptomon_kafka_port": 9192, "cryptomon_kafka_internal_port": 9194,
                         "cryptomon_kafka_controller_port": 9193})


def test_a_move_from_plaintext_keeps_both_listener_sets_until_done(tmp_path):
    """cryptomon_kafka_migration: the old PLAINTEXT listeners keep their names and ports beside
    the *_TLS ones; inter-broker and quorum traffic moves to TLS in `switch`; `done` leaves only
    TLS. (tests/integration/test_kafka_plaintext_migration.py runs the stages on a live cluster.)"""
    stages = {}
    for stage in ("bridge", "switch", "done"):
        out = tmp_path / stage
        out.mkdir()
        stages[stage], _ = render(out, REPO / "inventory" / "example", "-e", MOVE_PORTS,
                                  "-e", f"cryptomon_kafka_migration={stage}")
    bridge, switch, done = (stages[s]["kbrk-1"] for s in ("bridge", "switch", "done"))
    ctl_bridge, ctl_switch, ctl_done = (stages[s]["kctl-1"] for s in ("bridge", "switch", "done"))
    both = ("CLIENT:PLAINTEXT,CLIENT_TLS:SASL_SSL,CONTROLLER:PLAINTEXT,CONTROLLER_TLS:SSL,"
            "INTERNAL:PLAINTEXT,INTERNAL_TLS:SSL")
    assert bridge["listener.security.protocol.map"] == switch["listener.security.protocol.map"] == both
    assert bridge["listeners"] == "CLIENT_TLS://0.0.0.0:9192,INTERNAL_TLS://0.0.0.0:9194,CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094"
    assert ctl_bridge["listeners"] == "CONTROLLER_TLS://0.0.0.0:9193,CONTROLLER://0.0.0.0:9093"
    assert (bridge["inter.broker.listener.name"], switch["inter.broker.listener.name"]) == ("INTERNAL", "INTERNAL_TLS")
    assert (ctl_bridge["controller.listener.names"], ctl_switch["controller.listener.names"]) == (
        "CONTROLLER,CONTROLLER_TLS", "CONTROLLER_TLS,CONTROLLER")
    assert bridge["controller.quorum.bootstrap.servers"] == "kctl-1:9093,kctl-2:9093,kctl-3:9093"
    assert switch["controller.quorum.bootstrap.servers"] == "kctl-1:9193,kctl-2:9193,kctl-3:9193"
    # the SCRAM settings follow the client listener's name
    assert bridge["listener.name.client_tls.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert not any(k.startswith("listener.name.client.") for k in bridge)
    # PLAINTEXT users (the nodes among themselves, clients not yet moved) keep what they had
    for p in (bridge, switch, ctl_bridge, ctl_switch):
        assert "User:ANONYMOUS" in p["super.users"].split(";")
        assert p["authorizer.class.name"].endswith("StandardAuthorizer")
    for p in (done, ctl_done):
        assert "PLAINTEXT" not in p["listener.security.protocol.map"]
        assert "User:ANONYMOUS" not in p["super.users"]
    assert done["listeners"] == "CLIENT_TLS://0.0.0.0:9192,INTERNAL_TLS://0.0.0.0:9194"
    assert ctl_done["controller.listener.names"] == "CONTROLLER_TLS"


@pytest.mark.parametrize(("extra", "message"), [
    (["-e", "cryptomon_kafka_migration=bridge"],
     r"the secure listeners open beside the PLAINTEXT ones, so their ports must differ: "
     r"cryptomon_kafka_port \(9092\) = cryptomon_kafka_migration_plaintext_ports.client"),
    (["-e", MOVE_PORTS, "-e", '{"cryptomon_kafka_migration": "switch", "cryptomon_kafka_plaintext": true}'],
     "so cryptomon_kafka_plaintext must be false"),
    (["-e", "cryptomon_kafka_migration=later"], "value of cryptomon_kafka_migration must be one of"),
])
def test_a_wrong_move_fails_before_anything_renders(tmp_path, extra, message):
    with pytest.raises(AssertionError, match=message):
        render(tmp_path, REPO / "inventory" / "example", *extra)


def test_example_inventory_static_quorum(tmp_path):
    props, fmt = render(tmp_path, REPO / "inventory" / "example", "-e", "kafka_quorum_mode=static")
    for p in props.values():
        assert p["controller.quorum.voters"] == "1@kctl-1:9093,2@kctl-2:9093,3@kctl-3:9093"
    assert all(args == [] for args in fmt.values())


def test_sandbox_inventory_combined_mode(tmp_path):
    props, _ = render(tmp_path, REPO / "inventory" / "sandbox")
    p = props["cm-kafka"]
    assert p["process.roles"] == "broker,controller"
    assert p["listeners"] == "CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093"
    assert p["listener.security.protocol.map"] == "CLIENT:SASL_SSL,CONTROLLER:SSL,INTERNAL:SSL"
    assert p["controller.quorum.voters"] == "1@cm-kafka:9093"
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["auto.create.topics.enable"] == "false"


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("all:\n  children:\n    kafka:\n      children:\n        kafka_controller:\n          hosts: {a: , b: }\n"
         "        kafka_broker:\n          hosts: {a: , b: }\n", "use an odd number"),
        ("all:\n  children:\n    kafka:\n      children:\n        kafka_controller:\n"
         "          hosts: {a: {kafka_node_id: 1}}\n"
         "        kafka_broker:\n          hosts: {b: {kafka_node_id: 1}}\n", "Duplicate kafka_node_id"),
    ],
)
def test_bad_inventories_fail_with_a_clear_message(tmp_path, hosts, message):
    inv = tmp_path / "hosts.yml"
    inv.write_text(hosts)
    with pytest.raises(AssertionError, match=message):
        render(tmp_path, inv)


def kafka_env(tmp_path: Path, *extra: str) -> dict[str, dict[str, str]]:
    """Each host's kafka.env, rendered for inventory/example with a private address of 10.9.9.9
    (the facts the role gathers on a host)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    facts = json.dumps({"ansible_default_ipv4": {"address": "10.9.9.9"}})
    render(tmp_path, REPO / "inventory" / "example", "-e", facts, *extra)
    return {f.stem: dict(line.split("=", 1) for line in f.read_text().splitlines() if line and not line.startswith("#"))
            for f in (tmp_path / "out").glob("*.env")}


def test_every_kafka_jvm_loads_the_jmx_exporter_on_its_private_address(tmp_path):
    env = kafka_env(tmp_path)
    assert sorted(env) == ["kbrk-1", "kbrk-2", "kbrk-3", "kctl-1", "kctl-2", "kctl-3"]
    for host in env.values():
        assert host["KAFKA_OPTS"] == ("-javaagent:/opt/kafka/jmx-exporter/jmx_prometheus_javaagent-1.0.1.jar"
                                      "=10.9.9.9:7071:/etc/kafka/jmx-exporter.yml")
    # the unit passes it to java, like the heap and JVM options
    unit = (REPO / "roles" / "kafka" / "templates" / "kafka.service.j2").read_text()
    assert "$KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS $KAFKA_OPTS -D" in unit


def test_jmx_exporter_address_port_and_switch_are_the_shared_values(tmp_path):
    env = kafka_env(tmp_path / "a", "-e", "cryptomon_kafka_jmx_exporter_address=127.0.0.1",
                    "-e", "cryptomon_kafka_jmx_exporter_port=17071")
    assert env["kbrk-1"]["KAFKA_OPTS"].endswith("=127.0.0.1:17071:/etc/kafka/jmx-exporter.yml")
    env = kafka_env(tmp_path / "b", "-e", "cryptomon_kafka_jmx_exporter_enabled=false")
    assert all("KAFKA_OPTS" not in host for host in env.values())
    assert env["kbrk-1"]["KAFKA_HEAP_OPTS"] == "-Xms4g -Xmx4g"
