"""Cluster facts the drills need, as the admin user, from the services host. Prints one JSON line.

argv: <admin client settings JSON file>
"""

import json
import sys
from collections import Counter

from confluent_kafka.admin import AdminClient

with open(sys.argv[1]) as f:
    admin = AdminClient(json.load(f))
md = admin.list_topics(timeout=20)
leaders: Counter = Counter()
urp = 0
offline = 0
replicas_by_topic = {}
for name, topic in md.topics.items():
    if name.startswith("__"):
        continue
    replicas_by_topic[name] = {p.id: p.replicas for p in topic.partitions.values()}
    for p in topic.partitions.values():
        if p.leader < 0:
            offline += 1
        else:
            leaders[p.leader] += 1
        if len(p.isrs) < len(p.replicas):
            urp += 1
print(json.dumps({"brokers": sorted(md.brokers), "leaders": {str(k): v for k, v in leaders.items()},
                  "busiest_leader": leaders.most_common(1)[0][0] if leaders else None,
                  "under_replicated": urp, "offline": offline, "replicas": replicas_by_topic}))
