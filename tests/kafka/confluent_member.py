"""One confluent-kafka (librdkafka) member of a consumer group: prints the key of every
record it reads, one per line, committing after each, and leaves the group once it has
read nothing for IDLE_S seconds (after its first assignment) or after 120 s in all.

Usage: confluent_member.py BOOTSTRAP TOPIC GROUP IDLE_S
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError

BUDGET_S = 120


def main(bootstrap, topic, group, idle_s):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "kafka-member",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 10000})
    c.subscribe([topic])
    started = time.time()
    last = None
    while time.time() - started < BUDGET_S:
        m = c.poll(0.5)
        if m is None:
            if last is None and c.assignment():
                last = time.time()
            if last is not None and time.time() - last > idle_s:
                break
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consume: {m.error()}")
        print(m.key().decode(), flush=True)
        c.commit(message=m, asynchronous=False)
        last = time.time()
    c.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
