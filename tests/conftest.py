"""Shared fixtures: a real Kafka broker and a real Flink cluster, started once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "services"))
sys.path.insert(0, str(REPO))

import harness  # noqa: E402

# Every role gets the cryptomon role's plugins (the cryptomon_files action) through its meta
# dependency on it; a test that runs one role's task file directly gets them here.
os.environ.setdefault("ANSIBLE_ACTION_PLUGINS", str(REPO / "roles" / "cryptomon" / "action_plugins"))
os.environ.setdefault("ANSIBLE_LIBRARY", str(REPO / "roles" / "cryptomon" / "library"))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory):
    """A single-node KRaft Kafka 4 broker; yields the KafkaNode (use .bootstrap)."""
    node = harness.start_kafka(tmp_path_factory.mktemp("kafka"))
    yield node
    node.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka) -> str:
    return kafka.bootstrap


@pytest.fixture(scope="session")
def flink(tmp_path_factory: pytest.TempPathFactory):
    """A standalone Flink cluster (JobManager + TaskManager with 4 slots, Kafka connector)."""
    cluster = harness.start_flink(tmp_path_factory.mktemp("flink"))
    yield cluster
    cluster.stop()


@pytest.fixture
def flink_clean(flink):
    """The session Flink cluster, with every job cancelled after the test."""
    yield flink
    flink.cancel_all()


@pytest.fixture(scope="session")
def kafka_secure(tmp_path_factory: pytest.TempPathFactory):
    """A single KRaft node with the bundle's security model (SASL_SSL clients, mTLS between
    nodes, StandardAuthorizer) and the service users; see harness.start_kafka(secure=True)."""
    node = harness.start_kafka(tmp_path_factory.mktemp("kafka-secure"), secure=True)
    yield node
    node.stop()
