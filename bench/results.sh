#!/usr/bin/env bash
# Re-runs every side-by-side measurement of bench/RESULTS.md, draws its plots, runs the two
# revocation benchmarks, and prints where slim-relay stands against the targets of the benchmarks
# issue. Not part of CI: it needs the real SLIM node (see bench/README.md) and takes about 3
# minutes on 2 cores, plus the build.
#
#   bench/results.sh [OUT]      OUT: where the JSON results and plots go (default: bench/results)
#   bench/results.sh seed [OUT] the seed's protocol comparison (bench/seed.sh, bench/SEED.md)
#
# Environment: ROUNDS (default 5, at least 5) for every `vs`, RATE_ROUNDS (default 7) for the
# fixed-rate latency runs, RATE to force their rate (default: half the real node's p2p maximum,
# as measured by this script's own first run, rounded to 1 000 msgs/s).
#
# The peers come from bench/peers.sh (servers pinned to core 0); the generator runs on core 1.
# They are stopped when this script ends, also on failure or Ctrl-C. Every run is made even when
# one fails; the exit status is 1 if any run failed or lost or duplicated a message.
set -euo pipefail
# `bench/results.sh seed [OUT]`: the seed's protocol comparison instead (bench/seed.sh, SEED.md).
if [ "${1:-}" = seed ]; then
  shift
  exec "$(dirname "$0")/seed.sh" "$@"
fi
# OUT is taken relative to where the script was started, before moving to the repository.
OUT=$(mkdir -p "${1:-$(dirname "$0")/results}" && cd "${1:-$(dirname "$0")/results}" && pwd)
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
RATE_ROUNDS=${RATE_ROUNDS:-7}
TARGET=${CARGO_TARGET_DIR:-target}

command -v python3 >/dev/null || { echo "error: python3 is needed to read the JSON results" >&2; exit 1; }
[ -x target/agntcy-slim/bin/slim ] || {
  echo "error: the real SLIM node is missing (target/agntcy-slim/bin/slim); build it once with:" >&2
  echo "  cargo install --locked agntcy-slim --version 3.4.6 --root target/agntcy-slim" >&2
  exit 1
}
command -v taskset >/dev/null || { echo "error: taskset (util-linux) is needed to pin the generator" >&2; exit 1; }

# Started first, so a failed start (ports taken by peers someone else runs) stops nothing.
bench/peers.sh start >/dev/null
trap 'bench/peers.sh stop >/dev/null' EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC1091
. target/peers.env

FAILED=()
# What B is, in the plots and tables: the system, never its URL.
NATS_VERSION=$(nats-server --version 2>/dev/null | sed 's/.*v//')
system_of() {
  case $1 in
    "$SLIM_NODE_URL") echo "SLIM node 3.4.6" ;;
    "$NULL_RELAY_URL") echo "null relay (transport floor)" ;;
    "$NATS_URL") echo "NATS ${NATS_VERSION:-server} core" ;;
    *) echo "$1" ;;
  esac
}
vs() { # vs NAME B_URL B_PID ARGS...: one interleaved run of slim-relay (A) against B
  local name=$1 url=$2 pid=$3; shift 3
  echo "== $name"
  rm -f "$OUT/$name.json" # never read a previous run's file as this one's
  taskset -c 1 "$TARGET/release/slim-bench" vs --quiet --size 128 --rounds "$ROUNDS" \
    --a "$SLIM_RELAY_URL" --a-pid "$SLIM_RELAY_PID" --b "$url" --b-pid "$pid" \
    --a-system slim-relay --b-system "$(system_of "$url")" \
    "$@" --json "$OUT/$name.json" || FAILED+=("$name")
}

summary() { # summary FILE LABEL KEY: the median of KEY for target LABEL
  python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
t = next(t for t in doc["targets"] if t["label"] == sys.argv[2])
print(t["summary"][sys.argv[3]])
PY
}

vs vs-relay-node-p2p "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario p2p --msgs 100000
vs vs-relay-node-fanout16 "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario fanout --subscribers 16 --msgs 20000
vs vs-relay-null-p2p "$NULL_RELAY_URL" "$NULL_RELAY_PID" --scenario p2p --msgs 100000
vs vs-relay-null-fanout16 "$NULL_RELAY_URL" "$NULL_RELAY_PID" --scenario fanout --subscribers 16 --msgs 20000
vs vs-relay-nats-p2p "$NATS_URL" "$NATS_PID" --scenario p2p --msgs 100000
vs vs-relay-nats-fanout16 "$NATS_URL" "$NATS_PID" --scenario fanout --subscribers 16 --msgs 20000
vs vs-relay-node-anycast4 "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario anycast --subscribers 4 --msgs 100000
vs vs-relay-node-reqrep "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario reqrep --msgs 50000

if [ -z "${RATE:-}" ]; then
  NODE_MAX=$(summary "$OUT/vs-relay-node-p2p.json" B msgs_per_s) || {
    echo "error: no p2p result of the real node to take half its maximum from; set RATE=msgs/s" >&2
    exit 1
  }
  RATE=$(python3 -c "print(round($NODE_MAX / 2 / 1000) * 1000)")
  echo "real node p2p maximum: $NODE_MAX msgs/s; fixed-rate runs at half of it, $RATE msgs/s"
else
  echo "fixed-rate runs at RATE=$RATE msgs/s"
fi
ROUNDS=$RATE_ROUNDS vs vs-relay-node-p2p-rate "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario p2p --msgs 200000 --rate "$RATE"
ROUNDS=$RATE_ROUNDS vs vs-relay-node-p2p-rate-timer "$SLIM_NODE_URL" "$SLIM_NODE_PID" --scenario p2p --msgs 200000 --rate "$RATE" --pacing timer
ROUNDS=$RATE_ROUNDS vs vs-relay-null-p2p-rate "$NULL_RELAY_URL" "$NULL_RELAY_PID" --scenario p2p --msgs 200000 --rate "$RATE"

# The plots of RESULTS.md: the real node (old) against slim-relay (new), one vs file each.
for f in p2p fanout16; do
  "$TARGET/release/slim-bench" compare "$OUT/vs-relay-node-$f.json" "$OUT/vs-relay-node-$f.json" \
    --old-label B --new-label A --plot "$OUT/relay-vs-node-$f.svg" >/dev/null || FAILED+=("plot-$f")
done

# Revocation (RESULTS.md, "Revocation"): the embedded relay and the embedded reference client,
# one process on both cores (not pinned: the node is in the generator's process).
revocation() { # revocation NAME ARGS...: one revocation benchmark, its JSON in $OUT/NAME.json
  local name=$1; shift
  echo "== $name"
  rm -f "$OUT/$name.json"
  "$TARGET/release/slim-bench" "$@" --json "$OUT/$name.json" || FAILED+=("$name")
}
revocation revocation revocation --streams 100 --revocations 100
revocation revocation-epoch revocation-epoch --members 16 --rounds 20

ratio() { # ratio FILE KEY: median of A / median of B, or why there is none
  local a b
  a=$(summary "$1" A "$2" 2>/dev/null) && b=$(summary "$1" B "$2" 2>/dev/null) \
    || { echo "n/a (no $2 in $1)"; return; }
  python3 -c "print(f'{$a / $b:.2f}' if $b else 'n/a (B is 0)')"
}
echo
echo "targets (medians; every file in $OUT):"
echo "  relay / node, p2p msgs/s          $(ratio "$OUT/vs-relay-node-p2p.json" msgs_per_s)  (target >= 1.5)"
echo "  relay / node, fanout 1->16        $(ratio "$OUT/vs-relay-node-fanout16.json" msgs_per_s)  (target >= 1.5)"
echo "  relay / null, p2p msgs/s          $(ratio "$OUT/vs-relay-null-p2p.json" msgs_per_s)  (target >= 0.8)"
echo "  relay / null, fanout 1->16        $(ratio "$OUT/vs-relay-null-fanout16.json" msgs_per_s)  (target >= 0.8)"
echo "  relay / node, p99 at $RATE msgs/s  $(ratio "$OUT/vs-relay-node-p2p-rate.json" p99_us) smooth, $(ratio "$OUT/vs-relay-node-p2p-rate-timer.json" p99_us) timer pacing  (target <= 0.5)"
percentiles() { # percentiles FILE: "p50 / p99 / max ms" of its latency_ms
  python3 - "$1" <<'PY' 2>/dev/null || echo "n/a (no $1)"
import json, sys
p = json.load(open(sys.argv[1]))["latency_ms"]
print(f"p50 {p['p50']:.1f} / p99 {p['p99']:.1f} / max {p['max']:.1f} ms")
PY
}
echo "  revocation to stream end, 100 live    $(percentiles "$OUT/revocation.json")  (target p99 <= 100 ms)"
echo "  revocation to next epoch, group of 16 $(percentiles "$OUT/revocation-epoch.json")  (target <= 1 s)"
lossy=$(python3 - "$OUT"/vs-*.json <<'PY'
import json, sys
bad = []
for path in sys.argv[1:]:
    for t in json.load(open(path))["targets"]:
        for i, r in enumerate(t["rounds"]):
            if r["lost"] or r["duplicates"]:
                bad.append(f"{path} {t['label']} round {i + 1}: {r['lost']} lost, {r['duplicates']} duplicates")
print("\n".join(bad))
PY
)
status=0
if [ -n "$lossy" ]; then
  echo "  loss or duplicates:"; echo "$lossy" | sed 's/^/    /'
  status=1
else
  echo "  zero loss and zero duplicates in every round of every run"
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "  runs that failed (see their output above): ${FAILED[*]}"
  status=1
fi
exit "$status"
