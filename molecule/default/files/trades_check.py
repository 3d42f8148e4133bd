"""Which markets have trades in the trades topic (read from the beginning). Prints one JSON
line {"keys": {...counts}}; exit 1 if any expected key is missing. An expected key
`exchange:*` is met by any market of that exchange. An optional fourth argument names the
fields every message must carry (default: a trade's), so the quotes topic is checked the same way."""

import json
import sys
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer

# argv: <client settings JSON file> <topic> <expected keys, comma separated> [<fields, comma separated>]
with open(sys.argv[1]) as f:
    client = json.load(f)
topic, expected = sys.argv[2], sys.argv[3].split(",")
fields = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else {"trade_id", "price", "size", "side",
                                                                 "exchange_ts", "received_ts"}
consumer = Consumer({**client, "group.id": f"verify-{uuid.uuid4()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
consumer.subscribe([topic])
keys: Counter = Counter()
bad = 0
deadline = time.time() + 90


def seen(expected_key: str) -> bool:
    if expected_key.endswith(":*"):
        return any(k.startswith(expected_key[:-1]) for k in keys)
    return keys[expected_key] > 0


while time.time() < deadline and not all(seen(k) for k in expected):
    msg = consumer.poll(1)
    if msg is None or msg.error():
        continue
    key = msg.key().decode()
    trade = json.loads(msg.value())
    # The key is exchange:symbol, and the value carries the normalized schema.
    if key != f"{trade['exchange']}:{trade['symbol']}" or not fields <= trade.keys():
        bad += 1
    keys[key] += 1
consumer.close()
missing = [k for k in expected if not seen(k)]
print(json.dumps({"keys": dict(keys), "missing": missing, "malformed": bad}))
sys.exit(1 if missing or bad else 0)
