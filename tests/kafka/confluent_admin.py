"""confluent-kafka's AdminClient against a meshlog node: ListGroups, DescribeGroups and
DeleteGroups on a group with a live Kafka consumer, then on the same group once empty.

Usage: confluent_admin.py BOOTSTRAP TOPIC GROUP PARTITIONS. Exits non-zero on any
mismatch; prints one line per phase.
"""
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

BUDGET_S = 90


def fail(msg):
    sys.exit(msg)


def wait_assigned(c, partitions):
    deadline = time.time() + BUDGET_S
    while time.time() < deadline:
        c.poll(0.5)
        if len(c.assignment()) == partitions:
            return
    fail(f"consumer not assigned {partitions} partitions: {c.assignment()}")


def listed(admin):
    r = admin.list_consumer_groups(request_timeout=30).result()
    if r.errors:
        fail(f"list_consumer_groups errors: {r.errors}")
    return {g.group_id: g for g in r.valid}


def describe(admin, group):
    return admin.describe_consumer_groups([group], request_timeout=30)[group].result()


def main(bootstrap, topic, group, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "admin-test-member",
                  "partition.assignment.strategy": "range", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000})
    c.subscribe([topic])
    wait_assigned(c, partitions)
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    print(f"member assigned {partitions} partitions, offset committed")

    g = listed(admin).get(group)
    if g is None or g.state != ConsumerGroupState.STABLE:
        fail(f"list: {group} missing or not stable: {g}")
    print(f"listed: {group} {g.state}")

    d = describe(admin, group)
    assigned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
    if (d.state != ConsumerGroupState.STABLE or len(d.members) != 1 or d.partition_assignor != "range"
            or d.members[0].client_id != "admin-test-member" or assigned != list(range(partitions))):
        fail(f"describe: {d.state} {d.partition_assignor} {[(m.client_id, m.assignment.topic_partitions) for m in d.members]}")
    print(f"described: {d.state}, assignor {d.partition_assignor}, 1 member with {len(assigned)} partitions")

    r = admin.delete_consumer_groups([group], request_timeout=30)[group]
    try:
        r.result()
        fail("deleting a group with a member succeeded")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.NON_EMPTY_GROUP:
            fail(f"delete of a non-empty group: {e}")
    print("delete refused while a member is in the group: NON_EMPTY_GROUP")

    c.close()
    deadline = time.time() + BUDGET_S
    while listed(admin).get(group).state != ConsumerGroupState.EMPTY:
        if time.time() > deadline:
            fail("the group did not become empty after the member left")
        time.sleep(0.2)
    admin.delete_consumer_groups([group], request_timeout=30)[group].result()
    if group in listed(admin):
        fail("the deleted group is still listed")
    print("deleted once empty; no longer listed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
