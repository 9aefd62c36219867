"""Python clients over SASL_SSL, one command per invocation, for the Rust security tests.

  secured.py add-user BOOTSTRAP CA ADMIN ADMIN_PASSWORD USER PASSWORD
      confluent-kafka as ADMIN (SCRAM-SHA-512): AlterUserScramCredentials for USER, then
      DescribeUserScramCredentials of it
  secured.py round-trip BOOTSTRAP CA MECHANISM USER PASSWORD TOPIC COUNT
      kafka-python: produce COUNT records, consume them in a group, commit, read the commit;
      then the same user with a wrong password must be refused

  secured.py acls BOOTSTRAP PROTOCOL ADMIN ADMIN_PASSWORD JSON [CA]
      confluent-kafka as ADMIN (SCRAM-SHA-512): CreateAcls for the JSON list of
      [type, name, pattern, principal, operation, permission], then DescribeAcls of all

Prints one JSON object with what the client reported.
"""
import json
import sys

cmd, boot, ca = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
if cmd == "add-user":
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin_user, admin_pw, user, pw = sys.argv[4:8]
    admin = AdminClient(
        {
            "bootstrap.servers": boot,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca,
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": admin_user,
            "sasl.password": admin_pw,
        }
    )
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(user, info, pw.encode())
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(timeout=30)
    futures = admin.describe_user_scram_credentials([user])
    described = {name: f.result(timeout=30) for name, f in futures.items()}
    out["described"] = {
        name: [[str(i.mechanism), i.iterations] for i in d.scram_credential_infos]
        for name, d in described.items()
    }
elif cmd == "acls":
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    protocol, admin_user, admin_pw, wanted = sys.argv[3:7]
    settings = {
        "bootstrap.servers": boot,
        "security.protocol": protocol,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": admin_user,
        "sasl.password": admin_pw,
    }
    if len(sys.argv) > 7:
        settings["ssl.ca.location"] = sys.argv[7]
    admin = AdminClient(settings)
    bindings = [
        AclBinding(
            ResourceType[t],
            name,
            ResourcePatternType[pattern],
            principal,
            "*",
            AclOperation[op],
            AclPermissionType[permission],
        )
        for t, name, pattern, principal, op, permission in json.loads(wanted)
    ]
    for f in admin.create_acls(bindings).values():
        f.result(timeout=30)
    every = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    out["described"] = len(admin.describe_acls(every).result(timeout=30))
elif cmd == "round-trip":
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    mechanism, user, pw, topic, count = sys.argv[4:9]
    count = int(count)

    def settings(password):
        return dict(
            bootstrap_servers=boot,
            security_protocol="SASL_SSL",
            ssl_cafile=ca,
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
            request_timeout_ms=20000,
        )

    producer = KafkaProducer(**settings(pw))
    for i in range(count):
        producer.send(topic, f"py-{i}".encode())
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        group_id="py-secured",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
        **settings(pw),
    )
    got = 0
    for _ in consumer:
        got += 1
        if got == count:
            break
    consumer.commit()
    parts = consumer.partitions_for_topic(topic) or set()
    out["consumed"] = got
    out["committed"] = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in parts)
    consumer.close()
    try:
        bad = KafkaProducer(**settings(pw + "-wrong"), max_block_ms=5000)
        bad.partitions_for(topic)
        bad.close()
        out["wrong_password_refused"] = False
    except KafkaError:
        out["wrong_password_refused"] = True
print(json.dumps(out))
