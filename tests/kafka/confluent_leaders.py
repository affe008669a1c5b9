"""confluent-kafka (librdkafka) against a three-node meshlog mesh in `leader` mode: the
client finds every node as a broker and talks to each partition's leader.

Usage:
  confluent_leaders.py spread BOOTSTRAP TOPIC COUNT
      Metadata lists every node; leaders are spread; COUNT keyed records produced and
      read back, every partition through its own leader.
  confluent_leaders.py failover BOOTSTRAP TOPIC COUNT
      Produce COUNT records to partition 0 one by one, printing "acked N" as they are
      acknowledged (the caller kills the leader meanwhile), then read the partition back:
      prints "lost L duplicated D leader_start S leader_end E".
  confluent_leaders.py admin BOOTSTRAP
      The admin APIs: DescribeCluster, CreateTopics (validate-only and real, with errors
      per topic), DescribeConfigs, CreatePartitions and DeleteTopics (errors per topic).

Exits non-zero on any mismatch; prints one line per phase.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

BUDGET_S = 120


def metadata(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + BUDGET_S
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return md
        time.sleep(0.5)
    sys.exit(f"metadata: {topic} has no leader for every partition within {BUDGET_S} s")


def read_back(bootstrap, topic, partitions, want):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got, eof = [], set()
    deadline = time.time() + BUDGET_S
    while time.time() < deadline and (len(got) < want or len(eof) < len(partitions)):
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            sys.exit(f"consume: {m.error()}")
        eof.discard(m.partition())
        got.append((m.partition(), m.key().decode() if m.key() else None, m.value().decode()))
    c.close()
    return got


def spread(bootstrap, topic, count):
    md = metadata(bootstrap, topic)
    brokers = sorted(md.brokers)
    leaders = {p.id: p.leader for p in md.topics[topic].partitions.values()}
    if len(brokers) != 3:
        sys.exit(f"metadata: {len(brokers)} brokers, want 3: {md.brokers}")
    if set(leaders.values()) - set(brokers):
        sys.exit(f"metadata: a leader is not a listed broker: {leaders} vs {brokers}")
    if len(set(leaders.values())) < 2:
        sys.exit(f"metadata: every partition led by one broker: {leaders}")
    print(f"metadata: {len(brokers)} brokers, {len(leaders)} partitions led by {len(set(leaders.values()))} of them")
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda err, msg: err and errors.append(err))
    left = p.flush(BUDGET_S)
    if left or errors:
        sys.exit(f"produce: {left} undelivered, errors {errors[:5]}")
    print(f"produced {count}")
    got = read_back(bootstrap, topic, sorted(leaders), count)
    values = sorted(v for _, _, v in got)
    if values != sorted(f"v{i}" for i in range(count)):
        sys.exit(f"consume: {len(got)} records, not the {count} written")
    used = len({part for part, _, _ in got})
    print(f"consumed {count} over {used} partitions led by {len(set(leaders.values()))} brokers")


def failover(bootstrap, topic, count):
    start = metadata(bootstrap, topic).topics[topic].partitions[0].leader
    acked, failed = [], []

    def on_delivery(err, msg):
        if err:
            failed.append(str(err))
        else:
            acked.append(msg.value().decode())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": 90000, "retry.backoff.ms": 200,
                  "topic.metadata.refresh.interval.ms": 2000})
    last = 0
    for i in range(count):
        p.produce(topic, partition=0, value=f"r{i}", on_delivery=on_delivery)
        p.poll(0.005)
        if len(acked) >= last + 50:
            last = len(acked)
            print(f"acked {last}", flush=True)
    left = p.flush(BUDGET_S)
    print(f"acked {len(acked)}", flush=True)
    if left or failed:
        sys.exit(f"produce: {left} undelivered, {len(failed)} failed: {failed[:5]}")
    end = metadata(bootstrap, topic).topics[topic].partitions[0].leader
    got = [v for _, _, v in read_back(bootstrap, topic, [0], len(acked))]
    lost = len(set(acked) - set(got))
    duplicated = len(got) - len(set(got))
    print(f"lost {lost} duplicated {duplicated} leader_start {start} leader_end {end}")
    if lost:
        sys.exit(f"{lost} acknowledged records are missing")


def wait(futures):
    out = {}
    for key, f in futures.items():
        try:
            out[key] = ("ok", f.result(timeout=BUDGET_S))
        except KafkaException as e:
            out[key] = (e.args[0].name(), e.args[0].str())
    return out


def admin(bootstrap):
    a = AdminClient({"bootstrap.servers": bootstrap})
    cluster = a.describe_cluster(request_timeout=30).result(timeout=BUDGET_S)
    if len(cluster.nodes) != 3 or cluster.controller is None:
        sys.exit(f"describe_cluster: {cluster.nodes} controller {cluster.controller}")
    print(f"describe_cluster: {len(cluster.nodes)} nodes, cluster id {cluster.cluster_id}")

    checked = wait(a.create_topics([NewTopic("adm", 4, 3, config={"retention.ms": "60000"}),
                                    NewTopic("bad/name", 1, 1),
                                    NewTopic("toowide", 1, 9)], validate_only=True))
    if checked["adm"][0] != "ok" or checked["bad/name"][0] != "TOPIC_EXCEPTION" \
            or checked["toowide"][0] != "INVALID_REPLICATION_FACTOR":
        sys.exit(f"create_topics validate_only: {checked}")
    if "adm" in a.list_topics(timeout=10).topics:
        sys.exit("create_topics validate_only created the topic")
    made = wait(a.create_topics([NewTopic("adm", 4, 3, config={"retention.ms": "60000"})]))
    again = wait(a.create_topics([NewTopic("adm", 4, 3)]))
    if made["adm"][0] != "ok" or again["adm"][0] != "TOPIC_ALREADY_EXISTS":
        sys.exit(f"create_topics: {made} then {again}")
    print("create_topics: validate_only checks without creating; created once, then TOPIC_ALREADY_EXISTS")

    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = wait(a.describe_configs([res]))[res]
    if configs[0] != "ok":
        sys.exit(f"describe_configs: {configs}")
    entries = configs[1]
    retention, policy = entries["retention.ms"], entries["cleanup.policy"]
    if retention.value != "60000" or retention.is_default or policy.value != "delete" or not policy.is_default:
        sys.exit(f"describe_configs: retention {retention} policy {policy}")
    if entries["min.insync.replicas"].value != "2":
        sys.exit(f"describe_configs: {entries['min.insync.replicas']}")
    print(f"describe_configs: {len(entries)} entries, retention.ms set, cleanup.policy default")

    grown = wait(a.create_partitions([NewPartitions("adm", 8), NewPartitions("nope", 2)]))
    if grown["adm"][0] != "ok" or grown["nope"][0] != "UNKNOWN_TOPIC_OR_PART":
        sys.exit(f"create_partitions: {grown}")
    # Metadata for all topics, never for "adm" by name: librdkafka would keep a handle for
    # it and refresh it after the delete, and a named Metadata request from a producer-type
    # handle (AdminClient is one) creates a missing topic while auto-creation is on.
    deadline = time.time() + BUDGET_S
    while len(a.list_topics(timeout=10).topics["adm"].partitions) != 8:
        if time.time() > deadline:
            sys.exit("create_partitions: adm never showed 8 partitions")
        time.sleep(0.2)
    deleted = wait(a.delete_topics(["adm", "nope"]))
    if deleted["adm"][0] != "ok" or deleted["nope"][0] != "UNKNOWN_TOPIC_OR_PART":
        sys.exit(f"delete_topics: {deleted}")
    while "adm" in a.list_topics(timeout=10).topics:
        if time.time() > deadline:
            sys.exit("delete_topics: adm is still listed")
        time.sleep(0.2)
    print("create_partitions: 4 -> 8; delete_topics: deleted; unknown topics UNKNOWN_TOPIC_OR_PART")


def main():
    mode = sys.argv[1]
    if mode == "spread":
        spread(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "failover":
        failover(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "admin":
        admin(sys.argv[2])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
