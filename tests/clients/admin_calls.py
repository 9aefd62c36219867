"""Admin calls through real client libraries, one per invocation, for the Rust tests.

  admin_calls.py incremental BOOTSTRAP TOPIC NAME VALUE   confluent-kafka incremental_alter_configs (SET)
  admin_calls.py cluster-default BOOTSTRAP NAME VALUE     kafka-python alter_configs on BROKER ""
  admin_calls.py delete-records BOOTSTRAP TOPIC PARTITION OFFSET   confluent-kafka delete_records
  admin_calls.py elect-preferred BOOTSTRAP TOPIC PARTITION         confluent-kafka elect_leaders

Prints one JSON object with what the client reported.
"""
import json
import sys

cmd, boot = sys.argv[1], sys.argv[2]
out = {}
if cmd == "cluster-default":
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    name, value = sys.argv[3], sys.argv[4]
    admin = KafkaAdminClient(bootstrap_servers=boot, request_timeout_ms=20000)
    resp = admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "", configs={name: value})])
    out["errors"] = [r[0] for r in resp.resources]
    admin.close()
else:
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": boot})
    if cmd == "incremental":
        topic, name, value = sys.argv[3], sys.argv[4], sys.argv[5]
        entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=30)
        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
        for f in described.values():
            entry = f.result(timeout=30)[name]
            out["value"] = entry.value
            out["source"] = int(entry.source)
    elif cmd == "delete-records":
        topic, partition, offset = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        futures = admin.delete_records([TopicPartition(topic, partition, offset)], request_timeout=30)
        for f in futures.values():
            out["low_watermark"] = f.result(timeout=30).low_watermark
    elif cmd == "elect-preferred":
        topic, partition = sys.argv[3], int(sys.argv[4])
        f = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, partition)])
        result = f.result(timeout=30)
        out["errors"] = [str(e) if e else None for e in result.values()]
    else:
        raise SystemExit("unknown command " + cmd)
print(json.dumps(out))
