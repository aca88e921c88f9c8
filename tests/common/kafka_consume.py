#!/usr/bin/env python3
"""An independent Kafka consumer for flowhook's tests (librdkafka as
bundled in PyPI's confluent-kafka, not flowhook's client).

Reads the given topics from the beginning in a consumer group until
`--count` messages arrived or nothing came for `--idle` seconds (after the
first message, or `--wait` seconds before it), and prints one JSON line per
message: topic, partition, offset, key, and the value (text, or hex with
--hex)."""
import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException

ap = argparse.ArgumentParser()
ap.add_argument("--brokers", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--count", type=int, default=0)
ap.add_argument("--idle", type=float, default=5.0)
ap.add_argument("--wait", type=float, default=60.0)
ap.add_argument("--hex", action="store_true")
ap.add_argument("topics", nargs="+")
a = ap.parse_args()

c = Consumer({
    "bootstrap.servers": a.brokers,
    "group.id": a.group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
c.subscribe(a.topics)
n = 0
start = time.time()
last = None
try:
    while True:
        m = c.poll(0.5)
        now = time.time()
        if m is None:
            if a.count and n >= a.count:
                break
            if last is None and now - start > a.wait:
                break
            if last is not None and now - last > a.idle:
                break
            continue
        if m.error():
            print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        last = now
        v = m.value() or b""
        print(json.dumps({
            "topic": m.topic(),
            "partition": m.partition(),
            "offset": m.offset(),
            "key": (m.key() or b"").decode(),
            "value": v.hex() if a.hex else v.decode(),
        }), flush=True)
        n += 1
        if a.count and n >= a.count:
            break
except KafkaException as e:
    print(f"consumer failed: {e}", file=sys.stderr)
    sys.exit(1)
finally:
    c.close()
