#!/usr/bin/env bash
# End-to-end check of this shim: starts the real SLIM node from the wheel on a free port, the shim
# through launch.sh, runs smoke.py against both, and stops everything it started (also on failure).
# Exit code: smoke.py's (0 iff ok). Usage: run-smoke.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
out="$repo/target/shims/slim-bindings"
logs="$(mktemp -d "${TMPDIR:-/tmp}/slim-shim-smoke.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_line() {  # wait_line FILE PATTERN SECONDS
  for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "run-smoke.sh: no '$2' in $1 within $3 s; logs in $logs" >&2
  return 1
}

start=$(date +%s%N)
"$here/launch.sh" --listen 127.0.0.1:0 >"$logs/shim.out" 2>"$logs/shim.err" &
pids+=($!)
wait_line "$logs/shim.out" "driver listening on" 300
driver="$(sed -n 's/^driver listening on //p' "$logs/shim.out")"
echo "shim up in $(( ($(date +%s%N) - start) / 1000000 )) ms at $driver"

port="$("$out/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
start=$(date +%s%N)
"$out/venv/bin/python" "$repo/reference/tests/interop/serve_real_node.py" --listen "127.0.0.1:$port" \
  >"$logs/node.out" 2>"$logs/node.err" &
pids+=($!)
wait_line "$logs/node.out" '"ready"' 30
echo "real node up in $(( ($(date +%s%N) - start) / 1000000 )) ms at 127.0.0.1:$port"

"$out/venv/bin/python" "$here/smoke.py" --driver "$driver" --node "http://127.0.0.1:$port"
