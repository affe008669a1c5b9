"""confluent-kafka (librdkafka) against a meshlog node: produce keyed records with
headers, read them back in a consumer group with manual commits, and check that a
second member of the group, started after the commit, gets nothing again.

Usage: confluent_group.py BOOTSTRAP TOPIC GROUP COUNT. Exits non-zero on any mismatch;
prints one line per phase.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer

BUDGET_S = 90


def produce(bootstrap, topic, count):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=f"k{i}", value=f"v{i}", headers=[("n", str(i).encode())],
                  on_delivery=lambda err, msg: err and errors.append(err))
    left = p.flush(BUDGET_S)
    if left or errors:
        sys.exit(f"produce: {left} undelivered, errors {errors}")
    print(f"produced {count}")


def consumer(bootstrap, group):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 10000})


def consume_all(bootstrap, topic, group, count):
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    seen = {}
    deadline = time.time() + BUDGET_S
    while len(seen) < count and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consume: {m.error()}")
        headers = dict(m.headers() or [])
        seen[m.key().decode()] = (m.value().decode(), headers.get("n", b"").decode())
        c.commit(message=m, asynchronous=False)
    c.close()
    want = {f"k{i}": (f"v{i}", str(i)) for i in range(count)}
    if seen != want:
        missing = sorted(set(want) - set(seen))
        sys.exit(f"consume: {len(seen)} of {count} records as written; missing {missing[:10]}")
    print(f"consumed {count} in group {group}, committed")


def nothing_left(bootstrap, topic, group):
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    got = 0
    assigned_at = None
    deadline = time.time() + BUDGET_S
    # Wait for the assignment, then poll a while longer: committed records stay read.
    while time.time() < deadline:
        m = c.poll(1.0)
        if c.assignment() and assigned_at is None:
            assigned_at = time.time()
        if m is not None and not m.error():
            got += 1
        if assigned_at is not None and time.time() - assigned_at > 3:
            break
    c.close()
    if assigned_at is None:
        sys.exit("second member: never assigned")
    if got:
        sys.exit(f"second member re-read {got} committed records")
    print("second member: nothing left to read")


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    produce(bootstrap, topic, count)
    consume_all(bootstrap, topic, group, count)
    nothing_left(bootstrap, topic, group)


if __name__ == "__main__":
    main()
