"""What a secured cluster must refuse, checked from inside a host. Prints one JSON line per check
and exits 1 if anything that must be refused was accepted.

argv: <settings JSON file>, written by verify.yml (0600):
  {"bootstrap": "h:9092", "controller": "h:9093", "internal": "h:9094", "ca": "/path/ca.crt",
   "users": {"producer": {"username", "password"}, ...}, "trades": "...", "arbitrage": "..."}
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

with open(sys.argv[1]) as f:
    s = json.load(f)
results: dict[str, bool] = {}  # check -> passed


def sasl(user: str, password: str | None = None) -> dict:
    cred = s["users"][user]
    return {"bootstrap.servers": s["bootstrap"], "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": cred["username"],
            "sasl.password": password if password is not None else cred["password"],
            "ssl.ca.location": s["ca"], "log_level": 2}


def connects(conf: dict) -> bool:
    admin = AdminClient(conf)
    try:
        admin.list_topics(timeout=6)
        return True
    except KafkaException:
        return False


# 1. Who may connect at all.
results["plaintext to the client listener is refused"] = not connects(
    {"bootstrap.servers": s["bootstrap"], "log_level": 2})
results["plaintext to the controller listener is refused"] = not connects(
    {"bootstrap.servers": s["controller"], "log_level": 2})
results["TLS without a client certificate to the controller listener is refused"] = not connects(
    {"bootstrap.servers": s["controller"], "security.protocol": "SSL", "ssl.ca.location": s["ca"], "log_level": 2})
results["TLS without a client certificate to the internal listener is refused"] = not connects(
    {"bootstrap.servers": s["internal"], "security.protocol": "SSL", "ssl.ca.location": s["ca"], "log_level": 2})
results["SASL with a wrong password is refused"] = not connects(sasl("producer", "not-the-password"))
results["SASL with the right password is accepted"] = connects(sasl("producer"))

# 2. What the producer's principal may do: not delete trades, not read arbitrage signals.
admin = AdminClient(sasl("producer"))
try:
    admin.delete_topics([s["trades"]], operation_timeout=10)[s["trades"]].result(15)
    results["producer is denied DeleteTopics on trades"] = False
except KafkaException as exc:
    results["producer is denied DeleteTopics on trades"] = exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

consumer = Consumer({**sasl("producer"), "group.id": "cryptomon-alerter", "enable.auto.commit": False})
meta = consumer.list_topics(s["arbitrage"], timeout=10).topics[s["arbitrage"]]
denied = meta.error is not None and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
if not denied:  # describe allowed: then reading must fail
    consumer.assign([TopicPartition(s["arbitrage"], 0, 0)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not denied:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() and msg.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            denied = True
        elif msg is not None and not msg.error():
            break
consumer.close()
results["producer is denied Read on arbitrage signals"] = denied

# 3. The dashboard's principal may not write anywhere.
producer = Producer({**sasl("dashboard"), "enable.idempotence": True, "message.timeout.ms": 8000})
reports: list = []
try:
    producer.produce(s["trades"], b"forged", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(10)
    results["dashboard is denied Write"] = len(reports) == 1 and reports[0] is not None
except (KafkaException, SystemError) as exc:
    cause = exc if isinstance(exc, KafkaException) else (exc.__cause__ or exc.__context__)
    results["dashboard is denied Write"] = (isinstance(cause, KafkaException)
                                            and "AUTHORIZATION" in cause.args[0].name())

for check, ok in results.items():
    print(json.dumps({"check": check, "ok": ok}))
sys.exit(0 if all(results.values()) else 1)
