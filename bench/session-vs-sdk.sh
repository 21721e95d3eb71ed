#!/usr/bin/env bash
# Reliable point-to-point session throughput, 128 B, 1 → 1, through the same node: our client
# (`slim-bench session`, pipelined window) against the real SDK (`slimctl bench pub --reliable`,
# which waits for each acknowledgement before the next message). Rounds alternate (ours, SDK,
# ours, SDK, …) so machine noise hits both; the medians and their ratio are printed.
# Not part of CI: the first run builds slimctl (agntcy-slimctl 3.4.6, about 25 minutes on
# 2 cores; needs cmake and libclang-dev for aws-lc-sys) into target/agntcy-slimctl.
#
#   bench/session-vs-sdk.sh [ROUNDS] [MSGS]          (defaults: 5 rounds, 20000 messages)
#
# The node is slim-relay (release) on a free loopback port, pinned to core 0; both benchmark
# clients run pinned to core 1 when taskset exists. Results go to target/session-vs-sdk/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
MSGS=${2:-20000}
SLIMCTL_VERSION=3.4.6
ROOT=target/agntcy-slimctl
SLIMCTL=$ROOT/bin/slimctl
OUT=target/session-vs-sdk
mkdir -p "$OUT"

if [ ! -x "$SLIMCTL" ]; then
  command -v cmake >/dev/null || {
    echo "error: building slimctl needs cmake and libclang (for aws-lc-sys); on Debian: apt-get install cmake libclang-dev" >&2
    exit 2
  }
  echo "installing agntcy-slimctl $SLIMCTL_VERSION into $ROOT (cargo install --locked)..."
  cargo install --locked --quiet agntcy-slimctl --version "$SLIMCTL_VERSION" --root "$ROOT"
fi
cargo build --release --quiet -p slim-reference -p slim-bench

PIN0=() PIN1=()
if command -v taskset >/dev/null; then PIN0=(taskset -c 0); PIN1=(taskset -c 1); fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"${PIN0[@]}" target/release/slim-relay --listen "127.0.0.1:$PORT" > "$OUT/relay.log" 2>&1 &
RELAY=$!
trap 'kill $RELAY 2>/dev/null || true; wait $RELAY 2>/dev/null || true' EXIT
sleep 1

ours=() sdk_sub=() sdk_pub=()
for r in $(seq 1 "$ROUNDS"); do
  "${PIN1[@]}" target/release/slim-bench session --target "$URL" --msgs "$MSGS" --size 128 \
      --json "$OUT/ours-$r.json" | tee "$OUT/ours-$r.txt"
  ours+=("$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['delivered_per_sec'])" "$OUT/ours-$r.json")")

  # slimctl: the subscriber reports the rate at which messages arrived; the ack-gated publisher
  # sends the next message only after the previous one's ack, so that is its delivery rate. The
  # publisher's own figure also counts its wait for the last acknowledgement.
  "${PIN1[@]}" timeout 600 "$SLIMCTL" bench sub --server "$URL" --msgs "$MSGS" --size 128 > "$OUT/sdk-sub-$r.txt" 2>&1 &
  SUB=$!
  sleep 2
  "${PIN1[@]}" timeout 600 "$SLIMCTL" bench pub --server "$URL" --msgs "$MSGS" --size 128 --reliable > "$OUT/sdk-pub-$r.txt" 2>&1
  wait $SUB || true
  s=$(grep -o 'Sub stats: [0-9,.]* msgs/sec' "$OUT/sdk-sub-$r.txt" | grep -o '[0-9][0-9,.]*' | tr -d , || true)
  p=$(grep -o 'Pub stats: [0-9,.]* msgs/sec' "$OUT/sdk-pub-$r.txt" | grep -o '[0-9][0-9,.]*' | tr -d , || true)
  [ -n "$s" ] || { echo "error: slimctl bench sub printed no rate; see $OUT/sdk-sub-$r.txt" >&2; exit 1; }
  echo "slimctl round $r: sub $s msgs/s, pub $p msgs/s"
  sdk_sub+=("$s"); sdk_pub+=("${p:-0}")
done

python3 - "${ours[*]}" "${sdk_sub[*]}" "${sdk_pub[*]}" "$MSGS" <<'PY' | tee "$OUT/summary.txt"
import statistics, sys
ours, sub, pub = ([float(x) for x in a.split()] for a in sys.argv[1:4])
m = lambda v: statistics.median(v)
print(f"reliable p2p 128 B, {sys.argv[4]} msgs, {len(ours)} rounds through slim-relay (medians):")
print(f"  slim-client (pipelined)          {m(ours):>10,.0f} msg/s acknowledged   rounds {[round(x) for x in ours]}")
print(f"  slimctl bench pub --reliable     {m(sub):>10,.0f} msg/s received       rounds {[round(x) for x in sub]}")
print(f"  (slimctl's own pub figure        {m(pub):>10,.0f} msg/s, including its wait for the last ack)")
print(f"  ratio ours / SDK: {m(ours)/m(sub):.1f}x")
PY
