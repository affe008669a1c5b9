"""confluent-kafka (librdkafka) against a closed mesh's Kafka listener with SASL SCRAM.

Usage: confluent_sasl.py BOOTSTRAP TOPIC COUNT ok|refused [KEY=VALUE ...]
The KEY=VALUE pairs are client settings (what `meshlog mesh kafka-login` prints).
- ok: produce COUNT records, then read them back in a consumer group; exits non-zero
  unless all COUNT come back.
- refused: try to produce one record; exits 0 only if it was NOT delivered, printing the
  error the client saw (an authentication failure is expected).
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer

BUDGET_S = 60


def settings(bootstrap, pairs):
    conf = {"bootstrap.servers": bootstrap}
    for p in pairs:
        k, v = p.split("=", 1)
        conf[k] = v
    return conf


def ok(conf, topic, count):
    errors = []
    p = Producer({**conf, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda err, msg: err and errors.append(err))
    left = p.flush(BUDGET_S)
    if left or errors:
        sys.exit(f"produce: {left} undelivered, errors {errors}")
    print(f"produced {count}")
    c = Consumer({**conf, "group.id": "sasl-group", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    seen = set()
    deadline = time.time() + BUDGET_S
    while len(seen) < count and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consume: {m.error()}")
        seen.add(m.key().decode())
    c.close()
    if seen != {f"k{i}" for i in range(count)}:
        sys.exit(f"consume: {len(seen)} of {count} records")
    print(f"consumed {count}")


def refused(conf, topic):
    errors = []
    delivered = []
    p = Producer({**conf, "message.timeout.ms": 8000, "error_cb": lambda e: errors.append(e)})
    p.produce(topic, value=b"should not land",
              on_delivery=lambda err, msg: delivered.append(err is None))
    p.flush(15)
    if any(delivered):
        sys.exit("a record was delivered through a refused login")
    print(f"refused: {errors[0] if errors else 'not delivered'}")


def main():
    bootstrap, topic, count, mode, *pairs = sys.argv[1:]
    conf = settings(bootstrap, pairs)
    if mode == "ok":
        ok(conf, topic, int(count))
    else:
        refused(conf, topic)


if __name__ == "__main__":
    main()
