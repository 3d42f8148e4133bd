"""Big artifacts are verified once, then a stamp stands for the check: the Kafka tarball, the JMX
exporter agent, Flink's Kafka connector and the admin client venv. A converge with the same
versions and checksums reads the stamp and skips the copy, the hashing (and unpack, pip); a
missing, different or tampered stamp, another pinned checksum or a missing artifact takes the
full path, which still refuses a file that does not match. Each block runs as the role has it,
on this machine, against a tmp dir (the rest of the role, users and units, is left out)."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from unit.playbook_runner import localhost_play, run_playbook

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role's tasks chown to root")


def role_task(path: str, name: str) -> dict:
    for task in yaml.safe_load((REPO / path).read_text()):
        if task.get("name") == name:
            return copy.deepcopy(task)
    raise AssertionError(f"{path} has no task {name!r}")


def run(tmp_path: Path, task: dict, variables: dict, *, check: bool = False,
        vars_files: list[str] | None = None) -> dict[str, dict]:
    """Task name -> this host's result, for every task the play reached."""
    play = localhost_play([task], vars_files=[str(REPO / f) for f in vars_files or []],
                          handlers=[{"name": n, "ansible.builtin.debug": {"msg": n}}
                                    for n in ("Restart kafka", "Restart flink")])
    res = run_playbook(play, workdir=tmp_path, extra_vars={"ansible_python_interpreter": sys.executable, **variables},
                       env={"ANSIBLE_LIBRARY": str(REPO / "roles" / "kafka" / "library")}, check=check,
                       json_output=True)
    return res.task_results()


def changed(results: dict[str, dict]) -> list[str]:
    return [name for name, host in results.items() if host.get("changed")]


def done(results: dict[str, dict]) -> list[str]:
    return [name for name, host in results.items() if host and not host.get("skipped")]


def failures(results: dict[str, dict]) -> list[str]:
    return [host.get("msg", "") for host in results.values() if host.get("failed")]


def assert_refused(results: dict[str, dict], message: str) -> None:
    """The run failed, first with `message`."""
    msgs = failures(results)
    assert msgs and message in msgs[0], msgs


# --- Kafka tarball -------------------------------------------------------------------------------
# The role reads both stamps with one probe (kafka_host_probe) before the blocks; its defaults
# and vars give the stamps' paths and texts.
KAFKA_FILE = "roles/kafka/tasks/install.yml"
PROBE = "Read what the node already has (stamps, symlink, metadata, TLS files, unit, private address)"
KAFKA_TASK = (KAFKA_FILE, "Install the Kafka release")
KAFKA_HASH = "Checksum the tarball (the official release's algorithm, and sha256 for the Maven rebuild)"
KAFKA_VARS = ["roles/kafka/defaults/main.yml", "roles/kafka/vars/main.yml"]


def run_kafka(tmp_path: Path, block: tuple[str, str], variables: dict, *, check: bool = False) -> dict[str, dict]:
    """The role's probe, then the block, with the role's defaults and vars under `variables`."""
    task = {"name": "kafka", "block": [role_task(KAFKA_FILE, PROBE), role_task(*block)]}
    return run(tmp_path, task, variables, check=check, vars_files=KAFKA_VARS)


def probe_vars(tmp_path: Path) -> dict:
    """What the probe reads besides the stamps, kept inside tmp_path (no TLS, no private address)."""
    return {"cryptomon_kafka_plaintext": True, "cryptomon_kafka_jmx_exporter_address": "127.0.0.1",
            "kafka_metadata_dir": str(tmp_path / "meta")}


@pytest.fixture
def kafka(tmp_path: Path) -> dict:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"PK\x03\x04 kafka-clients"
        info = tarfile.TarInfo("kafka_2.13-9.9.9/libs/kafka-clients-9.9.9.jar")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tarball = buf.getvalue()
    (tmp_path / "cache" / "kafka").mkdir(parents=True)
    (tmp_path / "cache" / "kafka" / "kafka_2.13-9.9.9.tgz").write_bytes(tarball)
    install = tmp_path / "opt" / "kafka"
    return {**probe_vars(tmp_path), "cryptomon_kafka_jmx_exporter_enabled": False,
            "cryptomon_airgapped": True, "cryptomon_artifact_cache": str(tmp_path / "cache"),
            "kafka_install_dir": str(install), "kafka_archive_name": "kafka_2.13-9.9.9.tgz",
            "kafka_release_dir": str(install / "kafka_2.13-9.9.9"), "kafka_archive_url": "https://invalid/",
            "kafka_release": {"archive_checksum": "sha512:" + hashlib.sha512(tarball).hexdigest(),
                              "maven_dist_sha256": "0" * 64}}


def kafka_stamp(kafka: dict) -> Path:
    return Path(kafka["kafka_install_dir"]) / "dist" / "kafka_2.13-9.9.9.tgz.verified"


def test_the_tarball_is_verified_unpacked_and_stamped_once_and_another_pin_refused(tmp_path: Path,
                                                                                     kafka: dict) -> None:
    # a fresh host: the install and download dirs are made by the block itself
    first = run_kafka(tmp_path, KAFKA_TASK, kafka)
    assert not failures(first)
    assert {"Create install and download dirs", "Copy the Kafka tarball from the controller's artifact cache",
            "Unpack the Kafka release", "Stamp the verified tarball"} <= set(changed(first))
    assert kafka["kafka_release"]["archive_checksum"] in kafka_stamp(kafka).read_text()
    assert (Path(kafka["kafka_release_dir"]) / "libs" / "kafka-clients-9.9.9.jar").exists()
    for check in (False, True):
        again = run_kafka(tmp_path, KAFKA_TASK, kafka, check=check)
        assert done(again) == [PROBE]
        assert changed(again) == []
    pinned = {**kafka, "kafka_release": {"archive_checksum": "sha512:" + "1" * 128, "maven_dist_sha256": "2" * 64}}
    assert_refused(run_kafka(tmp_path, KAFKA_TASK, pinned), "Refusing to install it")
    # the stamp still names what was verified, not the new pin
    assert "1" * 128 not in kafka_stamp(kafka).read_text()


def test_without_a_valid_stamp_the_tarball_is_verified_again(tmp_path: Path, kafka: dict) -> None:
    run_kafka(tmp_path, KAFKA_TASK, kafka)

    def tampered() -> None:
        kafka_stamp(kafka).write_text("anything\n")

    def no_stamp() -> None:
        kafka_stamp(kafka).unlink()

    def no_unpacked_release() -> None:
        libs = Path(kafka["kafka_release_dir"]) / "libs"
        for lib in libs.iterdir():
            lib.unlink()
        libs.rmdir()

    for damage in (tampered, no_stamp, no_unpacked_release):
        damage()
        results = run_kafka(tmp_path, KAFKA_TASK, kafka)
        assert not failures(results), damage.__name__
        assert KAFKA_HASH in done(results), damage.__name__
        assert "Verify the tarball against the pinned checksums" in done(results)
        assert (Path(kafka["kafka_release_dir"]) / "libs").is_dir()
        assert kafka["kafka_release"]["archive_checksum"] in kafka_stamp(kafka).read_text()


# --- JMX exporter agent --------------------------------------------------------------------------
AGENT_TASK = (KAFKA_FILE, "Install the Prometheus JMX exporter agent")
AGENT = b"PK\x03\x04 jmx agent"


@pytest.fixture
def agent(tmp_path: Path) -> dict:
    (tmp_path / "cache" / "kafka").mkdir(parents=True)
    (tmp_path / "cache" / "kafka" / "agent-1.0.jar").write_bytes(AGENT)
    agent_dir = tmp_path / "opt" / "kafka" / "jmx-exporter"
    return {**probe_vars(tmp_path), "kafka_install_dir": str(tmp_path / "opt" / "kafka"),
            "cryptomon_airgapped": True, "cryptomon_artifact_cache": str(tmp_path / "cache"),
            "cryptomon_kafka_jmx_exporter_enabled": True, "kafka_jmx_exporter_jar": "agent-1.0.jar",
            "kafka_jmx_exporter_dir": str(agent_dir), "kafka_jmx_exporter_path": str(agent_dir / "agent-1.0.jar"),
            "kafka_jmx_exporter_url": "https://invalid/",
            "kafka_jmx_exporter_sha256": hashlib.sha256(AGENT).hexdigest()}


def test_the_agent_is_verified_once_and_again_for_another_checksum(tmp_path: Path, agent: dict) -> None:
    first = run_kafka(tmp_path, AGENT_TASK, agent)
    assert not failures(first) and "Stamp the verified agent" in changed(first)
    again = run_kafka(tmp_path, AGENT_TASK, agent)
    assert done(again) == [PROBE]
    assert_refused(run_kafka(tmp_path, AGENT_TASK, {**agent, "kafka_jmx_exporter_sha256": "3" * 64}),
                   "Refusing to run Kafka with it")


def test_a_missing_agent_is_copied_again(tmp_path: Path, agent: dict) -> None:
    run_kafka(tmp_path, AGENT_TASK, agent)
    Path(agent["kafka_jmx_exporter_path"]).unlink()
    results = run_kafka(tmp_path, AGENT_TASK, agent)
    assert "Copy the agent from the controller's artifact cache" in changed(results)
    assert Path(agent["kafka_jmx_exporter_path"]).read_bytes() == AGENT


# --- Flink's Kafka connector ----------------------------------------------------------------------
CONNECTOR_TASK = ("roles/flink/tasks/install.yml", "Install the Kafka connector into lib/")
JAR = b"PK\x03\x04 connector"


@pytest.fixture
def flink(tmp_path: Path) -> dict:
    (tmp_path / "cache" / "flink").mkdir(parents=True)
    (tmp_path / "cache" / "flink" / "connector-5.0.jar").write_bytes(JAR)
    (tmp_path / "pyflink" / "lib").mkdir(parents=True)
    (tmp_path / "opt" / "flink").mkdir(parents=True)
    return {"cryptomon_airgapped": True, "cryptomon_artifact_cache": str(tmp_path / "cache"),
            "flink_home": str(tmp_path / "pyflink"), "flink_base_dir": str(tmp_path / "opt" / "flink"),
            "flink_connector_jar": "connector-5.0.jar", "flink_kafka_connector_url": "https://invalid/",
            "flink_kafka_connector_sha256": hashlib.sha256(JAR).hexdigest()}


def test_the_connector_is_verified_once_and_again_for_another_home_or_checksum(tmp_path: Path,
                                                                                 flink: dict) -> None:
    first = run(tmp_path, role_task(*CONNECTOR_TASK), flink)
    assert not failures(first)
    assert "Copy the Kafka connector from the artifact cache into lib/" in changed(first)
    again = run(tmp_path, role_task(*CONNECTOR_TASK), flink)
    assert done(again) == ["Read the connector's verification stamp (only while the jar is there)"]
    # a new venv (another FLINK_HOME) has no jar yet: copied and verified there
    (tmp_path / "pyflink2" / "lib").mkdir(parents=True)
    moved = run(tmp_path, role_task(*CONNECTOR_TASK), {**flink, "flink_home": str(tmp_path / "pyflink2")})
    assert "Checksum the connector jar" in done(moved)
    assert (tmp_path / "pyflink2" / "lib" / "connector-5.0.jar").read_bytes() == JAR
    assert_refused(run(tmp_path, role_task(*CONNECTOR_TASK), {**flink, "flink_kafka_connector_sha256": "4" * 64}),
                   "Refusing to run with it")


# --- kafka_admin venv -----------------------------------------------------------------------------
ADMIN_FILE = "roles/kafka_admin/tasks/install.yml"
ADMIN_STAMP = (ADMIN_FILE, "Read the admin client venv's install stamp (only while the venv is there)")
ADMIN_TASK = (ADMIN_FILE, "Install the admin client when its requirements changed")
# stands in for python: `-m venv DIR` makes a venv whose python logs each pip run
FAKE_PYTHON = """#!/bin/sh
mkdir -p "$3/bin"
printf '#!/bin/sh\\necho pip >> "%s"\\necho Successfully installed confluent-kafka\\n' "$3/pip.log" > "$3/bin/python"
chmod +x "$3/bin/python"
"""


@pytest.fixture
def admin(tmp_path: Path) -> dict:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    (tmp_path / "requirements.txt").write_text("confluent-kafka==2.0 --hash=sha256:" + "5" * 64 + "\n")
    return {"cryptomon_airgapped": False, "kafka_admin_host": "localhost", "kafka_admin_python": str(python),
            "kafka_admin_venv": str(tmp_path / "venv"),
            "kafka_admin_requirements_file": str(tmp_path / "requirements.txt"),
            "kafka_admin_wheelhouse": str(tmp_path / "wheels")}


def run_admin(tmp_path: Path, variables: dict) -> dict[str, dict]:
    return run(tmp_path, {"name": "admin", "block": [role_task(*ADMIN_STAMP), role_task(*ADMIN_TASK)]}, variables)


def test_the_admin_venv_is_installed_once_per_requirements(tmp_path: Path, admin: dict) -> None:
    log = tmp_path / "venv" / "pip.log"
    assert not failures(run_admin(tmp_path, admin))
    assert log.read_text().count("pip") == 1
    again = run_admin(tmp_path, admin)
    assert done(again) == ["Read the admin client venv's install stamp (only while the venv is there)"]
    assert log.read_text().count("pip") == 1
    # new requirements (another version or hash): pip runs again and the stamp follows
    (tmp_path / "requirements.txt").write_text("confluent-kafka==2.1 --hash=sha256:" + "6" * 64 + "\n")
    assert "Install confluent-kafka into the admin client venv" in changed(run_admin(tmp_path, admin))
    assert log.read_text().count("pip") == 2
    stamp = (tmp_path / "venv" / ".cryptomon-requirements.sha256").read_text().strip()
    assert stamp == hashlib.sha256((tmp_path / "requirements.txt").read_text().rstrip().encode()).hexdigest()
