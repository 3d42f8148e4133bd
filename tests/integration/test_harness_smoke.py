"""The harness itself: a message goes through the real broker; Flink has free slots."""

import harness
import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration


def test_kafka_roundtrip(kafka_bootstrap):
    harness.create_topic(kafka_bootstrap, "smoke", partitions=2)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    p.produce("smoke", key=b"k", value=b"hello")
    assert p.flush(10) == 0
    msgs = harness.consume_all(kafka_bootstrap, "smoke", expected=1)
    assert [m.value() for m in msgs] == [b"hello"]


def test_flink_has_free_slots(flink):
    overview = flink.rest("/overview")
    assert overview["taskmanagers"] >= 1
    assert overview["slots-available"] >= 1
