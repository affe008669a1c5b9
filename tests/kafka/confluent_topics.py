"""confluent-kafka's AdminClient against a meshlog node: CreatePartitions (validate-only,
for real, a count not above the current one) and DeleteTopics (a topic, then an unknown
one), each checked against Metadata.

Usage: confluent_topics.py BOOTSTRAP TOPIC PARTITIONS. Exits non-zero on any mismatch;
prints one line per phase.
"""
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions

BUDGET_S = 60


def fail(msg):
    sys.exit(msg)


def partitions_of(admin, topic):
    """The topic's partition count in Metadata, or None if it is not listed."""
    t = admin.list_topics(timeout=30).topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_for(what, check):
    deadline = time.time() + BUDGET_S
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    fail(f"not within {BUDGET_S} s: {what}")


def error_code(future):
    try:
        future.result()
        return None
    except KafkaException as e:
        return e.args[0].code()


def main():
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if partitions_of(admin, topic) != n:
        fail(f"{topic} does not have {n} partitions to start with")

    fs = admin.create_partitions([NewPartitions(topic, n + 2)], validate_only=True, request_timeout=30)
    if error_code(fs[topic]) is not None:
        fail("validate-only CreatePartitions refused")
    if partitions_of(admin, topic) != n:
        fail("validate-only CreatePartitions changed the topic")
    print(f"validate-only: ok, still {n} partitions")

    fs = admin.create_partitions([NewPartitions(topic, n + 2)], request_timeout=30)
    if (code := error_code(fs[topic])) is not None:
        fail(f"CreatePartitions refused: {code}")
    wait_for(f"{topic} has {n + 2} partitions", lambda: partitions_of(admin, topic) == n + 2)
    print(f"create partitions: {n} -> {n + 2}")

    fs = admin.create_partitions([NewPartitions(topic, n)], request_timeout=30)
    if (code := error_code(fs[topic])) != KafkaError.INVALID_PARTITIONS:
        fail(f"shrinking answered {code}, not INVALID_PARTITIONS")
    print("shrink: INVALID_PARTITIONS")

    fs = admin.delete_topics([topic], request_timeout=30)
    if (code := error_code(fs[topic])) is not None:
        fail(f"DeleteTopics refused: {code}")
    wait_for(f"{topic} is gone from Metadata", lambda: partitions_of(admin, topic) is None)
    print("delete: gone")

    fs = admin.delete_topics(["never-was"], request_timeout=30)
    if (code := error_code(fs["never-was"])) != KafkaError.UNKNOWN_TOPIC_OR_PART:
        fail(f"deleting an unknown topic answered {code}")
    print("delete unknown: UNKNOWN_TOPIC_OR_PARTITION")


if __name__ == "__main__":
    main()
