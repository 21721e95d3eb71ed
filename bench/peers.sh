#!/usr/bin/env bash
# Starts the peers slim-bench compares, on loopback: slim-relay, the null relay, the real SLIM node
# (agntcy-slim) and a NATS server (Debian's nats-server). Not part of CI. See bench/LOAD.md "Peers".
#
#   bench/peers.sh          start them all, print URLs and PIDs, stop them on Ctrl-C or exit
#   bench/peers.sh start    start them in the background and write target/peers.env, then return
#   bench/peers.sh stop     stop what `start` started (the PIDs in target/peers.env)
#
# Each server is pinned to core 0 when `taskset` exists; pin the load generator to core 1:
#   . target/peers.env && taskset -c 1 target/release/slim-bench run --target "$NATS_URL" --target-pid "$NATS_PID" ...
#
# Ports (override with the environment): SLIM_RELAY_PORT=46357 NULL_RELAY_PORT=46358
# SLIM_NODE_PORT=46400 NATS_PORT=4222.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-run}
TARGET=${CARGO_TARGET_DIR:-target}
ENV_FILE=target/peers.env
LOGS=target/peers
SLIM_RELAY_PORT=${SLIM_RELAY_PORT:-46357}
NULL_RELAY_PORT=${NULL_RELAY_PORT:-46358}
SLIM_NODE_PORT=${SLIM_NODE_PORT:-46400}
NATS_PORT=${NATS_PORT:-4222}
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
  local name=$1 port=$2 pid=$3
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "error: $name exited; see $LOGS/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "error: $name does not listen on 127.0.0.1:$port after 10 s; see $LOGS/$name.log" >&2
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
  wait_port "$name" "$port" "$pid"
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
if [ "$MODE" != start ] && [ "$MODE" != run ]; then
  echo "usage: bench/peers.sh [run|start|stop]" >&2
  exit 2
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
