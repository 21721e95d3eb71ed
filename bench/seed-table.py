#!/usr/bin/env python3
"""Writes the tables of bench/SEED.md from the JSON results of bench/seed.sh.

    bench/seed-table.py OUT RATE ROUNDS SEED_MD     (SEED_MD "-": write OUT only)

Reads OUT/<system>-<scenario>.json (slim-bench/result/v1) and OUT/<node>-session.json, writes
OUT/table.md (every system, every scenario) and OUT/claims.md (the seed's claims beside what
was measured), and replaces the blocks between the seed:table, seed:claims and seed:log markers
of SEED_MD (seed:log: OUT/<system>-log-<n>.json, the log-based systems at growing lengths).
Every number comes from the files; nothing is typed in by hand.
"""
import json, os, re, sys
out, rate, rounds, seed_md = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
systems = ["slim-relay", "slim-node", "nats", "jetstream", "mqtt-qos0", "mqtt-qos1", "mqtt-qos2",
           "amqp", "amqp-confirm", "kafka"]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
def target(doc):
    return doc["targets"][0] if doc else None
def num(v, unit=""):
    if v is None:
        return "n/m"
    if v >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.1f}{unit}"
def loss(t):
    # Every round's loss and duplicates, added up: never the median alone, which could hide one.
    lost = sum(r["lost"] for r in t["rounds"])
    dup = sum(r["duplicates"] for r in t["rounds"])
    unconf = sum(r.get("unconfirmed") or 0 for r in t["rounds"])
    s = f"{lost}/{dup}"
    return s + (f" ({unconf} unconfirmed)" if unconf else "")
rows = []
rows.append("| system | p2p 128 B msgs/s | p2p 16 KiB msgs/s | fan-out 1→16 deliveries/s | request/reply round trips/s "
            f"| p50 / p99 µs at {int(float(rate)):,} msgs/s | wire B/msg (p2p 128 B) | broker CPU µs/msg (p2p 128 B) | broker peak RSS MiB | lost/duplicated (all runs) |")
rows.append("|---|---|---|---|---|---|---|---|---|---|")
for sid in systems:
    docs = {s: target(load(f"{sid}-{s}.json")) for s in ["p2p-128", "p2p-16k", "fanout16", "reqrep", "rate"]}
    name = next((t.get("system") for t in docs.values() if t), None)
    if not name:
        continue
    def m(s, key):
        t = docs[s]
        return t["summary"].get(key) if t else None
    rate_t = docs["rate"]
    lat = f"{num(m('rate','p50_us'))} / {num(m('rate','p99_us'))}" if rate_t else "n/m"
    rss = [t["summary"].get("target_peak_rss_kib") for t in docs.values() if t]
    rss = max([r for r in rss if r is not None], default=None)
    losses = "; ".join(f"{s}: {loss(t)}" for s, t in docs.items() if t and loss(t) != "0/0")
    rows.append(f"| {name} | {num(m('p2p-128','msgs_per_s'))} | {num(m('p2p-16k','msgs_per_s'))} | "
                f"{num(m('fanout16','msgs_per_s'))} | {num(m('reqrep','msgs_per_s'))} | {lat} | "
                f"{num(m('p2p-128','wire_bytes_per_msg'))} | {num(m('p2p-128','target_cpu_us_per_msg'))} | "
                f"{num(rss / 1024 if rss is not None else None)} | {losses or 'none'} |")
session = []
for sid, label in [("slim-relay", "slim-relay (this repository)"), ("slim-node", "SLIM node 3.4.6")]:
    d = load(f"{sid}-session.json")
    if d:
        lost = d["msgs"] - d["received"]
        session.append(f"| {label}, reliable session (reference client) | {num(d['delivered_per_sec'])} | "
                       f"{lost}/{d['duplicates_or_reordered']} | {d['failed']} |")
table = "\n".join(rows)

# The seed's claims, each beside what was measured (same files, same medians).
def val(sid, s, key):
    t = target(load(f"{sid}-{s}.json"))
    return t["summary"].get(key) if t else None
def wire(sid):
    # p2p is two hops (publisher to broker, broker to subscriber): half the bytes per hop, less
    # the 128 B payload, is what the protocol adds to one message on one connection.
    w = val(sid, "p2p-128", "wire_bytes_per_msg")
    if w is None:
        return "n/m"
    return f"{num(w, ' B')} ({w / 2 - 128:,.0f} B per hop besides the payload)"
def tput(sid, s="p2p-128"):
    return num(val(sid, s, "msgs_per_s"))
def lat(sid):
    return f"{num(val(sid, 'rate', 'p50_us'))} / {num(val(sid, 'rate', 'p99_us'))} µs"
def losses(sid):
    docs = [target(load(f"{sid}-{s}.json")) for s in ["p2p-128", "p2p-16k", "fanout16", "reqrep", "rate"]]
    docs = [d for d in docs if d]
    if not docs:
        return "n/m"
    lost = sum(r["lost"] for d in docs for r in d["rounds"])
    dup = sum(r["duplicates"] for d in docs for r in d["rounds"])
    runs = sum(len(d["rounds"]) for d in docs)
    acked = any("confirmed" in r for d in docs for r in d["rounds"])
    if not acked:
        return f"{lost} lost, {dup} duplicated in {runs} runs"
    unconf = sum(r.get("unconfirmed") or 0 for d in docs for r in d["rounds"])
    return f"{lost} lost, {dup} duplicated, {unconf} unacknowledged in {runs} runs"
sess = {sid: load(f"{sid}-session.json") for sid in ["slim-relay", "slim-node"]}
def session_cell(sid):
    d = sess.get(sid)
    if not d:
        return "n/m"
    return (f"{num(d['delivered_per_sec'])} acknowledged msgs/s, "
            f"{d['msgs'] - d['received']} lost, {d['duplicates_or_reordered']} duplicated or reordered")
claims = [
    "| seed's row | system | the seed says | measured (p2p 128 B unless stated) |",
    "|---|---|---|---|",
    f"| Protocol Overhead | AMQP (RabbitMQ) | Higher (rich feature set) | {wire('amqp')} on the wire per message (128 B payload), {wire('amqp-confirm')} with confirms |",
    f"| | MQTT (mosquitto) | Very low | {wire('mqtt-qos0')} at QoS 0, {wire('mqtt-qos1')} at QoS 1, {wire('mqtt-qos2')} at QoS 2 |",
    f"| | NATS | Very low | {wire('nats')} core, {wire('jetstream')} JetStream |",
    f"| | Kafka | Moderate | {wire('kafka')} (Kafka protocol, Tansu) |",
    f"| | SLIM | Low (protocol buffers) | {wire('slim-node')} through the SLIM node, {wire('slim-relay')} through slim-relay |",
    f"| QoS / Delivery | MQTT | QoS 0 (at-most-once), 1, 2 (exactly-once) | QoS 0: {losses('mqtt-qos0')}; QoS 1: {losses('mqtt-qos1')}; QoS 2: {losses('mqtt-qos2')}. msgs/s {tput('mqtt-qos0')} / {tput('mqtt-qos1')} / {tput('mqtt-qos2')} |",
    f"| | NATS | At-most-once (core), at-least-once with JetStream | core: {losses('nats')}; JetStream: {losses('jetstream')}. msgs/s {tput('nats')} / {tput('jetstream')} |",
    f"| | AMQP | At-least-once | transient: {losses('amqp')}; confirms: {losses('amqp-confirm')}. msgs/s {tput('amqp')} / {tput('amqp-confirm')} |",
    f"| | Kafka | At-least-once default | {losses('kafka')}; {tput('kafka')} msgs/s (Tansu, memory storage; see *Stream length*) |",
    f"| | SLIM | Fire&forget (at-most-once); reliable (exactly-once) | fire-and-forget through the node: {losses('slim-node')}, {tput('slim-node')} msgs/s; reliable session: {session_cell('slim-node')} (node), {session_cell('slim-relay')} (slim-relay) |",
    f"| Latency (prose) | Kafka | \"may introduce latency through their log-based architecture\" | p50 / p99 at {int(float(rate)):,} msgs/s: {lat('kafka')} (Tansu) against {lat('nats')} NATS core, {lat('mqtt-qos0')} mosquitto QoS 0, {lat('amqp')} RabbitMQ, {lat('slim-node')} SLIM node |",
    f"| | SLIM | \"balances throughput and latency\" | SLIM node {tput('slim-node')} msgs/s, {lat('slim-node')}; slim-relay {tput('slim-relay')} msgs/s, {lat('slim-relay')} |",
    f"| Throughput (prose) | Kafka | \"excel at raw throughput\" | {tput('kafka')} msgs/s p2p, {tput('kafka', 'fanout16')} deliveries/s fan-out (Tansu; not Apache Kafka) |",
]
claims_md = "\n".join(claims)

# The log-based systems at growing stream lengths (OUT/<system>-log-<n>.json).
lengths = sorted({int(m.group(1)) for f in os.listdir(out) if (m := re.fullmatch(r".+-log-(\d+)\.json", f))})
log_rows = []
if lengths:
    log_rows.append("| system | " + " | ".join(f"{n:,} records" for n in lengths) + " |")
    log_rows.append("|---|" + "---|" * len(lengths))
    for sid in ["jetstream", "kafka"]:
        cells, name = [], None
        for n in lengths:
            t = target(load(f"{sid}-log-{n}.json"))
            name = name or (t and t.get("system"))
            cell = "n/m"
            if t:
                cell = (f"{num(t['summary'].get('msgs_per_s'))} msgs/s, "
                        f"{num(t['summary'].get('target_cpu_us_per_msg'))} µs CPU/msg")
                if loss(t) != "0/0":
                    cell += f"; lost/duplicated {loss(t)} over {len(t['rounds'])} rounds"
            cells.append(cell)
        if name:
            log_rows.append(f"| {name} | " + " | ".join(cells) + " |")
log_md = "\n".join(log_rows) if lengths else "Not measured: LOG_LENGTHS was empty."
open(os.path.join(out, "claims.md"), "w").write(claims_md + "\n")
if session:
    table += ("\n\nSLIM's strongest guarantee, a reliable point-to-point session (each message counted when "
              "the sender has the receiver's acknowledgement):\n\n| system | acknowledged msgs/s | lost/duplicated | failed |\n"
              "|---|---|---|---|\n" + "\n".join(session))
open(os.path.join(out, "table.md"), "w").write(table + "\n")
open(os.path.join(out, "log.md"), "w").write(log_md + "\n")
text = open(seed_md).read() if seed_md != "-" else ""
note = f"\n<!-- written by bench/results.sh seed: {rounds} rounds each, medians; do not edit by hand -->\n"
for marker, block in [("table", table), ("claims", claims_md), ("log", log_md)]:
    begin, end = f"<!-- seed:{marker}:begin -->", f"<!-- seed:{marker}:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + begin + note + block + "\n" + end + tail
    elif seed_md != "-":
        print(f"warning: {seed_md} has no seed:{marker} markers; see {out}/{marker}.md", file=sys.stderr)
if seed_md != "-":
    open(seed_md, "w").write(text)
print(table)
print()
print(claims_md)
print()
print(log_md)
