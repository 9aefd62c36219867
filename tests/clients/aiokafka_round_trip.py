"""aiokafka (asyncio) against strom: admin calls, produce, a consumer group that consumes and
commits. Usage: aiokafka_round_trip.py BOOTSTRAP TOPIC. Prints one JSON object."""
import asyncio
import json
import sys
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def main(boot, topic):
    group = "group-" + topic
    out = {}
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    out["listed"] = topic in await admin.list_topics()

    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
    await producer.start()
    for i in range(60):
        await producer.send(topic, b"value-%d" % i, key=b"key-%d" % i)
    await producer.flush()
    await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=boot,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    per_partition = Counter()
    values = set()
    async for m in consumer:
        per_partition[m.partition] += 1
        values.add(m.value.decode())
        if len(values) >= 60:
            break
    await consumer.commit()
    out["consumed"] = {str(p): n for p, n in sorted(per_partition.items())}
    out["distinct"] = len(values)
    ends = await consumer.end_offsets(list(consumer.assignment()))
    out["end_offsets"] = {str(tp.partition): o for tp, o in ends.items()}
    await consumer.stop()

    committed = await admin.list_consumer_group_offsets(group)
    out["committed"] = {str(tp.partition): meta.offset for tp, meta in committed.items()}
    out["groups"] = sorted(g[0] for g in await admin.list_consumer_groups())
    await admin.delete_topics([topic])
    await admin.close()
    print(json.dumps(out))


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 90))
