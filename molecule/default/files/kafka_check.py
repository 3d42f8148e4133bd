"""Verify Kafka from inside a host: a message round-trips through confluent-kafka, and the
declared topics exist with their partitions and configs. Prints one JSON line; exit 1 on failure.

argv: <client settings JSON file (librdkafka settings of the admin user)> <expected topics JSON>"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

with open(sys.argv[1]) as f:
    client = json.load(f)
expected = json.loads(sys.argv[2])  # [{"name", "partitions", "configs": {...}}]
admin = AdminClient(client)
errors: list[str] = []

# 1. Round trip on a scratch topic (never on the product topics).
topic = "cryptomon.verify"
if topic not in admin.list_topics(timeout=10).topics:
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    time.sleep(2)
payload = f"verify-{uuid.uuid4()}".encode()
producer = Producer({**client, "enable.idempotence": True, "acks": "all"})
producer.produce(topic, key=b"verify", value=payload)
if producer.flush(30) != 0:
    errors.append("produce did not complete")
consumer = Consumer({**client, "group.id": f"verify-{uuid.uuid4()}",
                     "auto.offset.reset": "earliest"})
consumer.subscribe([topic])
got = False
deadline = time.time() + 30
while time.time() < deadline and not got:
    msg = consumer.poll(1)
    got = msg is not None and not msg.error() and msg.value() == payload
consumer.close()
if not got:
    errors.append("message produced to cryptomon.verify was not consumed back")

# 2. Declared topics.
md = admin.list_topics(timeout=10).topics
for spec in expected:
    name = spec["name"]
    if name not in md:
        errors.append(f"topic {name} missing")
        continue
    if len(md[name].partitions) != spec["partitions"]:
        errors.append(f"topic {name}: {len(md[name].partitions)} partitions, want {spec['partitions']}")
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    actual = admin.describe_configs([res])[res].result(30)
    for key, want in spec.get("configs", {}).items():
        have = actual[key].value if key in actual else None
        if str(have) != str(want):
            errors.append(f"topic {name}: {key}={have}, want {want}")

print(json.dumps({"roundtrip": got, "errors": errors}))
sys.exit(1 if errors else 0)
