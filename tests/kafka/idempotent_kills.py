"""An idempotent confluent-kafka (librdkafka) producer through leader kills, then the
workload check of TESTING.md: every acknowledged record present exactly once, in order
per partition.

Usage: idempotent_kills.py BOOTSTRAP TOPIC STOP_FILE [COMPRESSION]

Produces unique values (`v<n>`, key `k<n>`) with enable.idempotence=true, acks=all,
until STOP_FILE exists (the test kills and restarts nodes meanwhile), printing
`acked <n>` lines as deliveries are confirmed; then flushes, reads every partition back
from the beginning with a Kafka consumer and prints the figures:
`figures: sent=S acked=A lost=L duplicated=D reordered=R failed=F`. Exits non-zero unless
lost, duplicated and reordered are 0 and every record sent was acknowledged.
"""
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

FLUSH_BUDGET_S = 180
READ_BUDGET_S = 120
RATE_PER_S = 2000
RUN_BUDGET_S = 900


def produce(bootstrap, topic, stop_file, compression):
    acked = {}  # value -> (partition, offset)
    failed = []
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": compression,
        "message.timeout.ms": 300000,
        "socket.timeout.ms": 10000,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
    })

    def delivered(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())

    sent, started, last_print = 0, time.time(), 0
    while not os.path.exists(stop_file):
        if time.time() - started > RUN_BUDGET_S:
            sys.exit(f"no stop file within {RUN_BUDGET_S} s")
        due = int((time.time() - started) * RATE_PER_S)
        while sent < due:
            try:
                p.produce(topic, key=f"k{sent}", value=f"v{sent}", on_delivery=delivered)
                sent += 1
            except BufferError:
                break
        p.poll(0.05)
        if len(acked) - last_print >= 500:
            last_print = len(acked)
            print(f"acked {last_print}", flush=True)
    left = p.flush(FLUSH_BUDGET_S)
    print(f"stopped: sent {sent}, acked {len(acked)}, undelivered {left}", flush=True)
    return sent, acked, failed


def read_back(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {}
    for pid in parts:
        _, high = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=30)
        ends[pid] = high
    c.assign([TopicPartition(topic, pid, 0) for pid in parts])
    seen = {pid: [] for pid in parts}
    done = set(pid for pid, high in ends.items() if high == 0)
    deadline = time.time() + READ_BUDGET_S
    while len(done) < len(parts) and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                if m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
                continue
            raise KafkaException(m.error())
        seen[m.partition()].append((m.offset(), m.value().decode()))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    if len(done) < len(parts):
        sys.exit(f"read back: partitions {sorted(set(parts) - done)} not read to their end {ends}")
    return seen


def check(sent, acked, failed, seen):
    count = {}
    reordered = 0
    for records in seen.values():
        last = -1
        for _, v in records:
            count[v] = count.get(v, 0) + 1
            n = int(v[1:])
            if n < last:
                reordered += 1
            last = max(last, n)
    lost = sum(1 for v in acked if v not in count)
    duplicated = sum(c - 1 for c in count.values() if c > 1)
    moved = sum(1 for v, (p, o) in acked.items() if (o, v) not in seen.get(p, []))
    print(f"figures: sent={sent} acked={len(acked)} lost={lost} duplicated={duplicated} "
          f"reordered={reordered} moved={moved} failed={len(failed)}", flush=True)
    if failed:
        print(f"delivery errors (first 5): {failed[:5]}", flush=True)
    return lost == 0 and duplicated == 0 and reordered == 0 and moved == 0 and len(acked) == sent


def main():
    bootstrap, topic, stop_file = sys.argv[1:4]
    compression = sys.argv[4] if len(sys.argv) > 4 else "none"
    sent, acked, failed = produce(bootstrap, topic, stop_file, compression)
    seen = read_back(bootstrap, topic)
    if not check(sent, acked, failed, seen):
        sys.exit(1)


if __name__ == "__main__":
    main()
