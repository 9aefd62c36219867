"""kafka-python against strom: admin calls, produce, a consumer group that consumes and commits.

Usage: kafka_python_round_trip.py BOOTSTRAP API_VERSION TOPIC
API_VERSION is "negotiated" or dotted ("2.6.0"), which pins kafka-python to that broker version.
Prints one JSON object; the Rust test checks it.
"""
import json
import sys
from collections import Counter

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

boot, api, topic = sys.argv[1], sys.argv[2], sys.argv[3]
pin = {} if api == "negotiated" else {"api_version": tuple(int(x) for x in api.split("."))}
group = "group-" + topic
out = {}

admin = KafkaAdminClient(bootstrap_servers=boot, request_timeout_ms=20000, **pin)
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
admin.create_partitions({topic: NewPartitions(total_count=3)})
out["listed"] = topic in admin.list_topics()
described = admin.describe_topics([topic])
out["partitions"] = len(described[0]["partitions"])

producer = KafkaProducer(bootstrap_servers=boot, acks="all", **pin)
for i in range(60):
    producer.send(topic, key=b"key-%d" % i, value=b"value-%d" % i)
producer.flush()
producer.close()

consumer = KafkaConsumer(
    topic,
    bootstrap_servers=boot,
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    session_timeout_ms=6000,
    heartbeat_interval_ms=500,
    consumer_timeout_ms=20000,
    **pin,
)
per_partition = Counter()
values = set()
for m in consumer:
    per_partition[m.partition] += 1
    values.add(m.value.decode())
    if len(values) >= 60:
        break
consumer.commit()
out["consumed"] = {str(p): n for p, n in sorted(per_partition.items())}
out["distinct"] = len(values)
out["end_offsets"] = {
    str(tp.partition): o for tp, o in consumer.end_offsets(list(consumer.assignment())).items()
}
consumer.close()

out["committed"] = {
    str(tp.partition): meta.offset
    for tp, meta in admin.list_consumer_group_offsets(group).items()
}
out["groups"] = sorted(g[0] for g in admin.list_consumer_groups())
out["group_state"] = admin.describe_consumer_groups([group])[0].state
configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
out["described_configs"] = len(configs)
admin.delete_topics([topic])
out["deleted"] = topic not in admin.list_topics()
admin.close()
print(json.dumps(out))
