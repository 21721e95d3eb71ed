#!/usr/bin/env bash
# Judges the real SLIM node binary (`slim` from the agntcy-slim crate, strict header MAC) with
# slim-conformance and its expectations file. Not part of CI: the first run compiles the node
# (about 10 minutes on 2 cores) into target/agntcy-slim; later runs reuse it.
#
#   conformance/scripts/real-slim-node.sh [extra slim-conformance run flags, e.g. --json out.json]
#
# Exit status is the runner's (0: the node deviates exactly as expectations/agntcy-slim-3.4.6.yaml
# says; 1: a new failure or a stale expectation; see conformance/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=3.4.6
ROOT=target/agntcy-slim
BIN=$ROOT/bin/slim
if ! "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
  command -v cmake >/dev/null || {
    echo "error: building agntcy-slim needs cmake and libclang (for aws-lc-sys); on Debian: apt-get install cmake libclang-dev" >&2
    exit 2
  }
  echo "installing agntcy-slim $VERSION into $ROOT (cargo install --locked)..."
  cargo install --locked --quiet agntcy-slim --version "$VERSION" --root "$ROOT"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CONFIG=$ROOT/conformance-config.yaml
cat > "$CONFIG" <<YAML
tracing: { log_level: warn }
runtime: { n_cores: 0, thread_name: "slim-data-plane", drain_timeout: 10s }
services:
  slim/0:
    node_id: slim-conformance-target
    dataplane:
      servers:
        - endpoint: "127.0.0.1:$PORT"
          tls: { insecure: true }
      clients: []
YAML

"$BIN" --config "$CONFIG" > "$ROOT/node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null; wait $NODE 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.2
done

cargo run --quiet --release --bin slim-conformance -- run \
  --target "http://127.0.0.1:$PORT" \
  --expect conformance/expectations/agntcy-slim-$VERSION.yaml "$@"
