"""Feed the smoke job and wait for its output. Prints one JSON line; exit 1 on failure."""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

# argv: <client settings JSON file> <source topic> <sink topic>
with open(sys.argv[1]) as f:
    client = json.load(f)
source, sink = sys.argv[2:4]
word = f"hello-{uuid.uuid4().hex[:8]}"
producer = Producer(client)
consumer = Consumer({**client, "group.id": f"verify-{uuid.uuid4()}",
                     "auto.offset.reset": "earliest"})
consumer.subscribe([sink])
seen = []
deadline = time.time() + 120
while time.time() < deadline:
    producer.produce(source, value=word.encode())
    producer.flush(10)
    msg = consumer.poll(2)
    if msg is not None and not msg.error():
        seen.append(msg.value().decode())
        if f"{word.upper()}!" in seen:
            break
consumer.close()
ok = f"{word.upper()}!" in seen
print(json.dumps({"sent": word, "ok": ok, "seen": seen[-5:]}))
sys.exit(0 if ok else 1)
