"""The drills' load checker: runs on the services host while a drill happens, then reports.

  python load_checker.py <settings.json> <report.json> <stop-file>

From the moment it starts it reads trades.raw and the two signal topics (every partition, from
their current ends) and records each message's arrival. When <stop-file> appears it lets the
pipeline drain, then compares what arrived with what the sources made:

- trades: the replay servers' ids rise by one per trade per market, so every id from the first
  one seen to the newest one made (GET /replay/stats last_ids) must be in trades.raw exactly
  once: "lost" are the missing ids, "duplicated" the ones seen twice;
- alerts: every alert_id written to the signal topics must have been posted to the Discord
  stand-in (its footer names the id), once;
- the longest gap between two consecutive trade arrivals (delivery gap), per drill.

settings.json: {"client": {librdkafka settings}, "trades_topic", "signal_topics": [...],
"replays": {"binance": "http://127.0.0.1:9443", ...}, "discord": "http://127.0.0.1:8090",
"drain_s": 60}
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from collections import Counter, defaultdict

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

settings_path, report_path, stop_path = sys.argv[1:4]
with open(settings_path) as f:
    S = json.load(f)
# The id is the footer's last word (the alerter's _footer); a note before it may say "alert" too
# (a quote close: "update of the 12:00:00 UTC alert").
ALERT_IN_FOOTER = re.compile(r"\balert (\S+)$")


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def assign_from_end(consumer: Consumer, topics: list[str]) -> None:
    parts = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=20).topics[topic]
        parts += [TopicPartition(topic, p, OFFSET_END) for p in meta.partitions]
    consumer.assign(parts)


consumer = Consumer({**S["client"], "group.id": f"cryptomon-dashboard-drill-{os.getpid()}",
                     "enable.auto.commit": False, "isolation.level": "read_committed"})
assign_from_end(consumer, [S["trades_topic"], *S["signal_topics"]])
discord_before = {m["id"] for m in get_json(S["discord"] + "/messages")}

ids: dict[tuple[str, str], Counter] = defaultdict(Counter)   # (exchange, raw_symbol) -> id counts
first: dict[tuple[str, str], int] = {}
alerts: Counter = Counter()
arrivals: list[float] = []
started = time.time()
stop_seen_at = None
last_arrival = time.time()
while True:
    msg = consumer.poll(0.5)
    now = time.time()
    if msg is not None and not msg.error():
        if msg.topic() == S["trades_topic"]:
            trade = json.loads(msg.value())
            key = (trade["exchange"], trade["raw_symbol"])
            if trade["exchange"] in S["replays"]:
                tid = int(trade["trade_id"])
                ids[key][tid] += 1
                first.setdefault(key, tid)
            arrivals.append(now)
            last_arrival = now
        else:
            alerts[json.loads(msg.value())["alert_id"]] += 1
    if stop_seen_at is None and os.path.exists(stop_path):
        stop_seen_at = now
        # what the sources made up to now must all arrive: the drain target
        targets = {}
        for exchange, url in S["replays"].items():
            for raw, last in get_json(url + "/replay/stats").get("last_ids", {}).items():
                targets[(exchange, raw)] = last
    if stop_seen_at is not None:
        done = all(max(ids[k], default=0) >= last for k, last in targets.items() if k in first)
        if (done and now - last_arrival > 5) or now - stop_seen_at > S.get("drain_s", 60):
            break
consumer.close()

lost, duplicated = {}, {}
for key, last in targets.items():
    if key not in first:
        continue
    seen = ids[key]
    missing = [i for i in range(first[key], last + 1) if i not in seen]
    dups = sorted(i for i, n in seen.items() if n > 1)
    name = f"{key[0]}:{key[1]}"
    if missing:
        lost[name] = {"count": len(missing), "first": missing[:10]}
    if dups:
        duplicated[name] = {"count": len(dups), "first": dups[:10]}

# Alerts: give the alerter the same drain time to post what the jobs wrote.
deadline = time.time() + S.get("drain_s", 60)
while True:
    posted = Counter()
    for m in get_json(S["discord"] + "/messages"):
        if m["id"] in discord_before:
            continue
        for embed in m.get("embeds") or []:
            found = ALERT_IN_FOOTER.search((embed.get("footer") or {}).get("text", ""))
            if found:
                posted[found.group(1)] += 1
    alerts_lost = sorted(a for a in alerts if a not in posted)
    if not alerts_lost or time.time() > deadline:
        break
    time.sleep(3)
gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
report = {
    "seconds": round((stop_seen_at or time.time()) - started, 1),
    "markets_checked": sorted(f"{k[0]}:{k[1]}" for k in first),
    "trades_checked": sum(sum(c.values()) for c in ids.values()),
    "trades_lost": lost,
    "trades_duplicated": duplicated,
    "alerts_written": len(alerts),
    "alerts_lost": alerts_lost[:20],
    "alerts_lost_count": len(alerts_lost),
    "alerts_posted_twice": sorted(a for a, n in posted.items() if n > 1),
    "longest_delivery_gap_s": round(max(gaps, default=0.0), 2),
}
report["ok"] = (not lost and not duplicated and not alerts_lost and not report["alerts_posted_twice"]
                and report["trades_checked"] > 0)
with open(report_path, "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps(report))
sys.exit(0 if report["ok"] else 1)
