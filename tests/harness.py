"""Real Kafka and Flink for integration tests, started as local processes from the artifact cache.

Kafka: the cached Kafka 4 distribution (make cache), one KRaft node in combined mode.
Flink: the Flink distribution carried by the apache-flink package of the running venv, with
the cached Kafka SQL connector added through FLINK_LIB_DIR (the venv is never modified).
Ports are picked free, data lives in a temp dir, processes are killed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon"))
ARTIFACTS = CACHE / "artifacts"


def _defaults(role: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def java_bin() -> str:
    java = shutil.which("java")
    if not java:
        raise RuntimeError("java not found: integration tests need a Java 17 runtime on PATH")
    return java


def kafka_home() -> Path:
    """Unpack the cached Kafka distribution once into the cache's runtime dir."""
    d = _defaults("kafka")
    # CRYPTOMON_KAFKA_VERSION runs the tests against another release of kafka_releases.
    version = os.environ.get("CRYPTOMON_KAFKA_VERSION") or d["kafka_version"]
    name = f"kafka_{d['kafka_scala_version']}-{version}"
    tgz = ARTIFACTS / "kafka" / f"{name}.tgz"
    home = CACHE / "runtime" / name
    if (home / "libs").is_dir():
        return home
    if not tgz.exists():
        raise RuntimeError(f"{tgz} missing: run `make cache` first")
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    with tarfile.open(tgz) as tar:
        # The "data" filter (no links out of the tree, no device files) where this Python has it:
        # Debian 12's 3.11.2 predates it (PEP 706); the tarball is a checksum-pinned release.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp, filter="data")
        else:
            tar.extractall(tmp)  # noqa: S202
    home.parent.mkdir(parents=True, exist_ok=True)
    (tmp / name).rename(home)
    shutil.rmtree(tmp, ignore_errors=True)
    return home


# The service users of the bundle (roles/cryptomon defaults: cryptomon_kafka_users).
KAFKA_USERS = ("cryptomon-admin", "cryptomon-producer", "cryptomon-flink", "cryptomon-alerter",
               "cryptomon-dashboard")


@dataclass
class KafkaNode:
    bootstrap: str
    controller: str
    workdir: Path
    proc: subprocess.Popen | None = None
    log_path: Path = field(default_factory=Path)
    # Secure nodes only: the INTERNAL (mTLS) listener, the CA and the node's identity, and
    # the SCRAM users with their passwords.
    internal: str = ""
    ca_file: Path | None = None
    node_cert: Path | None = None
    node_key: Path | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return self.ca_file is not None

    def client_config(self, user: str | None = "cryptomon-admin") -> dict[str, str]:
        """librdkafka settings for the client listener: SASL_SSL as `user` on a secure node."""
        if not self.secure or user is None:
            return {"bootstrap.servers": self.bootstrap}
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": self.users[user], "ssl.ca.location": str(self.ca_file)}

    def client_env(self, user: str | None) -> dict[str, str]:
        """The services' KAFKA_* environment for `user` (what the role renders)."""
        if not self.secure:
            return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_USERNAME": user,
                "KAFKA_PASSWORD": self.users[user], "KAFKA_SSL_CA_LOCATION": str(self.ca_file)}

    def node_config(self) -> dict[str, str]:
        """The node's own identity (a super user) on the INTERNAL listener, mTLS."""
        return {"bootstrap.servers": self.internal, "security.protocol": "SSL",
                "ssl.ca.location": str(self.ca_file), "ssl.certificate.location": str(self.node_cert),
                "ssl.key.location": str(self.node_key)}

    def stop(self) -> None:
        stop_process(self.proc, 20)


def _secure_props(workdir: Path, port: int, iport: int, cport: int) -> tuple[dict[str, str], dict]:
    """The listeners and security settings the kafka role renders (roles/kafka/vars/main.yml)."""
    from pki import TestCA

    ca = TestCA(workdir / "pki")
    node = ca.issue("kafka-node", ["127.0.0.1", "localhost"])
    props = {
        "listeners": f"CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{iport},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{iport}",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SSL,INTERNAL:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(node.pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca.cert_path),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^(.*,)?CN=([^,]+)(,.*)?$/$2/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": "User:cryptomon-admin;User:kafka-node",
        "listener.name.client.ssl.client.auth": "none",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    return props, {"ca": ca, "node": node}


def start_kafka(workdir: Path, extra: dict[str, str] | None = None, timeout: float = 60,
                secure: bool = False, create_users: bool = True) -> KafkaNode:
    """Format and start a single combined-mode KRaft node; returns once it serves metadata.

    secure=True: the bundle's security model (CLIENT SASL_SSL/SCRAM-SHA-512, INTERNAL and
    CONTROLLER TLS with client certificates, StandardAuthorizer, no access without an ACL) with
    the KAFKA_USERS created through the node's own identity, like the kafka_admin role does
    (create_users=False: no SCRAM user exists yet, as on a freshly formatted cluster).
    """
    from confluent_kafka.admin import AdminClient

    home = kafka_home()
    port, cport, iport = free_port(), free_port(), free_port()
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    tls: dict = {}
    if secure:
        secure_props, tls = _secure_props(workdir, port, iport, cport)
        props.update(secure_props)
    props.update(extra or {})
    conf = workdir / "server.properties"
    conf.write_text("".join(f"{k}={v}\n" for k, v in sorted(props.items())))
    cp = f"{home}/libs/*"
    subprocess.run(
        [java_bin(), "-cp", cp, "kafka.tools.StorageTool", "format", f"--cluster-id={_kafka_uuid()}", "-c", str(conf)],
        check=True, capture_output=True,
    )
    log = workdir / "kafka.log"
    log4j = workdir / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=out\n"
        "appender.out.type=Console\nappender.out.name=out\n"
        "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=[%d] %p %m (%c)%n\n"
    )
    proc = subprocess.Popen(
        [java_bin(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={log4j}",
         "-cp", cp, "kafka.Kafka", str(conf)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    node = KafkaNode(f"127.0.0.1:{port}", f"127.0.0.1:{cport}", workdir, proc, log)
    if secure:
        node.internal = f"127.0.0.1:{iport}"
        node.ca_file = tls["ca"].cert_path
        node.node_cert, node.node_key = tls["node"].cert, tls["node"].key
    # log_level 2 (critical only): the startup polling would print every refused connection.
    admin = AdminClient({**(node.node_config() if secure else {"bootstrap.servers": node.bootstrap}), "log_level": 2})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Kafka exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                if secure and create_users:
                    _create_scram_users(admin, node)
                return node
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    node.stop()
    raise RuntimeError(f"Kafka did not come up in {timeout}s:\n{log.read_text()[-4000:]}")


def _create_scram_users(admin, node: KafkaNode) -> None:
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    node.users = {u: uuid.uuid4().hex for u in KAFKA_USERS}
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(u, info, pw.encode()) for u, pw in node.users.items()])
    for f in futures.values():
        f.result(30)
    # SCRAM credentials reach the broker through the metadata log: wait until admin can log in.
    from confluent_kafka.admin import AdminClient

    check = AdminClient(node.client_config())
    deadline = time.monotonic() + 30
    while True:
        try:
            check.list_topics(timeout=3)
            return
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _kafka_uuid() -> str:
    import base64

    # First byte 0x40..0x7f, as Kafka's own Uuid.randomUuid: the id never starts with '-', which
    # kafka-storage's argument parser would read as an option (it did: a flaky format failure).
    raw = uuid.uuid4().bytes
    return base64.urlsafe_b64encode(bytes([(raw[0] & 0x7F) | 0x40]) + raw[1:]).decode().rstrip("=")


def create_topic_with(node: KafkaNode, name: str, partitions: int = 3, config: dict[str, str] | None = None) -> None:
    """create_topic on any node, secure ones as the admin user."""
    create_topic(node.bootstrap, name, partitions, config, client=node.client_config())


def allow_producer(node: KafkaNode, topic: str, user: str = "cryptomon-producer") -> None:
    """The producer's ACLs of the bundle (Write + Describe on the topic, IdempotentWrite)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    acls = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{user}", "*", op,
                       AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    acls.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, f"User:{user}", "*",
                           AclOperation.IDEMPOTENT_WRITE, AclPermissionType.ALLOW))
    admin = AdminClient(node.client_config())
    for future in admin.create_acls(acls).values():
        future.result(30)


def create_topic(bootstrap: str, name: str, partitions: int = 3, config: dict[str, str] | None = None,
                 client: dict[str, str] | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client or {"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
    fut.result(30)
    # Wait until the metadata shows every partition with a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if md and not md.error and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {name} has no leaders after 30s")


def consume_all(bootstrap: str, topic: str, expected: int | None = None, timeout: float = 30,
                idle: float = 3.0) -> list:
    """Read a topic from the beginning until `expected` messages arrived or it stayed idle."""
    from confluent_kafka import Consumer

    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            if expected is None and out and time.monotonic() - last > idle:
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                continue
            out.append(msg)
            last = time.monotonic()
    finally:
        c.close()
    return out


# --- Flink -------------------------------------------------------------------------------

def flink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def connector_jar() -> Path:
    d = _defaults("flink")
    jar = ARTIFACTS / "flink" / f"{d['flink_kafka_connector_artifact']}-{d['flink_kafka_connector_version']}.jar"
    if not jar.exists():
        raise RuntimeError(f"{jar} missing: run `make cache` first")
    return jar


@dataclass
class FlinkCluster:
    rest_url: str
    workdir: Path
    env: dict[str, str]
    procs: list[subprocess.Popen]

    def run_python_job(self, script: Path, *args: str, detached: bool = True, timeout: float = 180,
                       pyfs: list[Path] | None = None, options: list[str] | None = None,
                       env: dict[str, str] | None = None) -> str:
        """Submit a PyFlink job with `flink run [options] [-pyfs a,b] -py script args`; returns the job id.

        options: more `flink run` options (-s <savepoint>, -D...); env: the driver's extra variables.
        """
        cmd = [str(flink_home() / "bin" / "flink"), "run", "-m", self.rest_url.removeprefix("http://"),
               "-pyexec", sys.executable, "-pyclientexec", sys.executable]
        if detached:
            cmd.append("-d")
        cmd += options or []
        if pyfs:
            cmd += ["-pyfs", ",".join(str(p) for p in pyfs)]
        cmd += ["-py", str(script), *args]
        res = subprocess.run(cmd, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"flink run failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
        for line in res.stdout.splitlines():
            if "JobID" in line:
                return line.split()[-1]
        raise RuntimeError(f"no JobID in flink run output:\n{res.stdout[-4000:]}")

    def rest(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.rest_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def wait_job_state(self, job_id: str, state: str = "RUNNING", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.rest(f"/jobs/{job_id}")["state"]
            if seen == state:
                if state != "RUNNING":
                    return
                vertices = self.rest(f"/jobs/{job_id}")["vertices"]
                if all(v["status"] == "RUNNING" for v in vertices):
                    return
            if seen in ("FAILED", "CANCELED") and seen != state:
                exc = self.rest(f"/jobs/{job_id}/exceptions")
                raise RuntimeError(f"job {job_id} {seen}: {json.dumps(exc)[:4000]}")
            time.sleep(1)
        raise RuntimeError(f"job {job_id} not {state} after {timeout}s (last {seen})")

    def cancel_all(self) -> None:
        for job in self.rest("/jobs")["jobs"]:
            if job["status"] in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING"):
                self.rest(f"/jobs/{job['id']}", method="PATCH")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def start_flink(workdir: Path, slots: int = 4, timeout: float = 120,
                extra_conf: dict | None = None) -> FlinkCluster:
    """Standalone JobManager + one TaskManager, foreground processes, REST on a free port."""
    home = flink_home()
    workdir.mkdir(parents=True, exist_ok=True)
    lib = workdir / "lib"
    lib.mkdir(exist_ok=True)
    for jar in (home / "lib").glob("*.jar"):
        (lib / jar.name).symlink_to(jar)
    (lib / connector_jar().name).symlink_to(connector_jar())
    conf_dir = workdir / "conf"
    conf_dir.mkdir(exist_ok=True)
    for f in (home / "conf").iterdir():
        if f.name != "config.yaml" and f.is_file():
            shutil.copy(f, conf_dir / f.name)
    base = yaml.safe_load((home / "conf" / "config.yaml").read_text())
    rest_port, rpc_port = free_port(), free_port()
    conf = {
        "env": base["env"],
        "jobmanager": {"bind-host": "127.0.0.1", "rpc": {"address": "127.0.0.1", "port": rpc_port},
                       "memory": {"process": {"size": "1024m"}}},
        "taskmanager": {"bind-host": "127.0.0.1", "host": "127.0.0.1", "numberOfTaskSlots": slots,
                        "memory": {"process": {"size": "2048m"}}},
        "rest": {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": rest_port},
        "parallelism": {"default": 1},
        "execution": {"checkpointing": {"interval": "2s", "dir": f"file://{workdir}/checkpoints",
                                        "savepoint-dir": f"file://{workdir}/savepoints"}},
        "python": {"executable": sys.executable, "client": {"executable": sys.executable}},
    }
    for key, value in (extra_conf or {}).items():
        conf[key] = value
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(conf))
    env = {**os.environ, "FLINK_HOME": str(home), "FLINK_CONF_DIR": str(conf_dir),
           "FLINK_LIB_DIR": str(lib), "FLINK_LOG_DIR": str(workdir / "log"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    (workdir / "log").mkdir(exist_ok=True)
    procs = []
    for script in ("jobmanager.sh", "taskmanager.sh"):
        out = (workdir / "log" / f"{script}.out").open("wb")
        procs.append(subprocess.Popen([str(home / "bin" / script), "start-foreground"], env=env,
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    cluster = FlinkCluster(f"http://127.0.0.1:{rest_port}", workdir, env, procs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                cluster.stop()
                raise RuntimeError(f"Flink process exited {p.returncode}; logs in {workdir / 'log'}")
        try:
            if cluster.rest("/overview").get("slots-available", 0) >= slots:
                return cluster
        except OSError:
            pass
        time.sleep(1)
    cluster.stop()
    raise RuntimeError(f"Flink not ready after {timeout}s; logs in {workdir / 'log'}")
