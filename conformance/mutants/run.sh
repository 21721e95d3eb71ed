#!/usr/bin/env bash
# Measures the conformance runner's sensitivity: applies each seeded fault of the reference relay
# (reference/src/mutants.rs, listed in conformance/mutants/faults.tsv) in turn, runs the node
# profile of slim-conformance against the faulty relay, and prints which faults it catches.
#
#   conformance/mutants/run.sh [--only NAME...] [--no-build] [-- RUNNER_ARGS...]
#
# RUNNER_ARGS go to every `slim-conformance run` (baseline included), e.g. `-- --skip 'link/*'`.
# Modes (faults.tsv): strict (the full profile), lax, auth, jwt (JWT auth and a revocation list).
# A fault is KILLED when a case is FAIL or ERROR in one of its runs (or WARN, when the
# requirement the fault breaks is a SHOULD). Reports: target/mutants/reports/. Exit 0 when every
# fault was killed, 1 otherwise, 2 on a usage or setup error. See conformance/mutants/README.md.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2

LIST=conformance/mutants/faults.tsv
RELAY=target/mutants/release/slim-relay
RUNNER=target/release/slim-conformance
REPORTS=target/mutants/reports
AUTH_USER=conformance
AUTH_PASS=s3cret-pass
JWT_ISSUER=conformance-idp
JWT_AUDIENCE=slim
# Upper bound for one run of the runner (a hung target fails its case, not the run; this is a
# last resort). Override with SLIM_MUTANTS_RUN_TIMEOUT (seconds).
RUN_TIMEOUT=${SLIM_MUTANTS_RUN_TIMEOUT:-900}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

ONLY=()
EXTRA=()
BUILD=1
while (($#)); do
    case "$1" in
        --only)
            shift
            while (($#)) && [[ $1 != --* ]]; do ONLY+=("$1"); shift; done
            ((${#ONLY[@]})) || { echo "run.sh: --only needs at least one fault name" >&2; exit 2; }
            ;;
        --no-build) BUILD=0; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 2; }

STARTED=$(date +%s)
RELAY_PID=""
RUNNER_PID=""

stop_relay() {
    [[ -n $RELAY_PID ]] || return 0
    if kill -0 "$RELAY_PID" 2>/dev/null; then
        kill -TERM "$RELAY_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$RELAY_PID" 2>/dev/null
    fi
    wait "$RELAY_PID" 2>/dev/null
    RELAY_PID=""
}

cleanup() {
    if [[ -n $RUNNER_PID ]]; then
        kill -TERM "$RUNNER_PID" 2>/dev/null
        wait "$RUNNER_PID" 2>/dev/null
        RUNNER_PID=""
    fi
    stop_relay
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; cleanup; exit 130' INT TERM

# ---- build ----------------------------------------------------------------------------------
if ((BUILD)); then
    echo "building slim-relay (feature mutants) and slim-conformance ..." >&2
    cargo build --release -p slim-reference --features mutants --bin slim-relay \
        --target-dir target/mutants || { echo "run.sh: building slim-relay failed" >&2; exit 2; }
    cargo build --release -p slim-conformance --bin slim-conformance \
        || { echo "run.sh: building slim-conformance failed" >&2; exit 2; }
fi
[[ -x $RELAY && -x $RUNNER ]] || { echo "run.sh: $RELAY or $RUNNER missing (drop --no-build)" >&2; exit 2; }
mkdir -p "$REPORTS"

# ---- the fault list: faults.tsv must agree with what the relay implements -------------------
RELAY_LIST=$(SLIM_RELAY_MUTANT=list "$RELAY") \
    || { echo "run.sh: $RELAY does not list its faults (built without --features mutants?)" >&2; exit 2; }
SELECTED=$(python3 - "$LIST" "$RELAY_LIST" spec/requirements.yaml "${ONLY[@]}" <<'EOF'
import re, sys
list_path, relay_list, spec_path, only = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = [l.rstrip("\n").split("\t") for l in open(list_path) if l.strip() and not l.startswith("#")]
relay = [l.split("\t")[:2] for l in relay_list.splitlines() if l.strip()]
levels = dict(re.findall(r"- id: (SLIM-[A-Z]+-\d+)\s*\n\s+level: (\w+)", open(spec_path).read()))
errors = []
if [r[0] for r in rows] != [r[0] for r in relay]:
    errors.append("the faults in %s differ from the relay's list (SLIM_RELAY_MUTANT=list)" % list_path)
for r in rows:
    if len(r) != 5:
        errors.append("%s: expected 5 tab-separated columns: %r" % (list_path, r)); continue
    name, _cat, req, level, mode = r
    if [name, req] not in relay:
        errors.append("%s: requirement %s differs from the relay's" % (name, req))
    if levels.get(req) != level:
        errors.append("%s: level %s, but %s is %s in the spec" % (name, level, req, levels.get(req)))
    if mode not in ("strict", "lax", "auth", "jwt", "limits", "tls"):
        errors.append("%s: unknown mode %s" % (name, mode))
known = {r[0] for r in rows}
for o in only:
    if o not in known:
        errors.append("unknown fault %s; known: %s" % (o, ", ".join(sorted(known))))
if errors:
    print("\n".join("run.sh: " + e for e in errors), file=sys.stderr); sys.exit(1)
for r in rows:
    if not only or r[0] in only:
        print("\t".join(r))
EOF
) || exit 2

FAIL_FAST=()
if "$RUNNER" run --help 2>/dev/null | grep -q -- '--fail-fast'; then
    FAIL_FAST=(--fail-fast)
fi

# make_pki DIR: a CA, a node certificate for 127.0.0.1 and a client certificate (P-256, PKCS#8).
make_pki() {
    local d=$1
    mkdir -p "$d"
    (
        cd "$d" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -subj /CN=run-ca -days 1 -out ca.pem
        for who in node client; do
            local usage=serverAuth san="IP:127.0.0.1,DNS:localhost"
            [[ $who == client ]] && usage=clientAuth san="DNS:slim-conformance"
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$who.key" \
                -subj "/CN=$who" -out "$who.csr"
            printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$san" "$usage" >"$who.ext"
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                -extfile "$who.ext" -out "$who.pem"
        done
    ) >"$d/openssl.log" 2>&1 || { echo "run.sh: openssl could not make the TLS test certificates (see $d/openssl.log); install openssl" >&2; return 1; }
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# run_once LABEL FAULT MODE STRICT_WARN: starts the relay (FAULT empty = no fault) in MODE, runs
# the runner against it, stops the relay. Sets RUN_JSON and RUN_RC (the runner's exit code, or
# "relay" when the relay did not start).
run_once() {
    local label=$1 fault=$2 mode=$3 strict_warn=$4
    local port relay_args=() runner_args=()
    RUN_JSON="$REPORTS/$label.$mode.json"
    rm -f "$RUN_JSON"
    case "$mode" in
        strict) ;;
        lax) relay_args=(--require-header-mac false)
             runner_args=(--require-header-mac false --only 'mac/*') ;;
        auth) relay_args=(--auth-basic "$AUTH_USER:$AUTH_PASS")
              runner_args=(--auth "basic:$AUTH_USER:$AUTH_PASS" --only 'auth/*') ;;
        jwt) # A fresh HS256 secret and an empty revocation list the runner rewrites.
             local jwt_dir="$REPORTS/$label.jwt.d"
             mkdir -p "$jwt_dir"
             python3 -c 'import secrets; print(secrets.token_hex(32))' >"$jwt_dir/secret"
             printf 'revoked: []\n' >"$jwt_dir/revoked.yaml"
             relay_args=(--auth-jwt-hs256-secret-file "$jwt_dir/secret" --auth-jwt-issuer "$JWT_ISSUER"
                         --auth-jwt-audience "$JWT_AUDIENCE" --revocation-file "$jwt_dir/revoked.yaml")
             runner_args=(--jwt-hs256-secret-file "$jwt_dir/secret" --jwt-issuer "$JWT_ISSUER"
                          --jwt-audience "$JWT_AUDIENCE" --revoke-file "$jwt_dir/revoked.yaml"
                          --only 'revocation/*') ;;
        limits) # Small declared limits the connection cases can reach quickly.
             local lim_dir="$REPORTS/$label.limits.d"
             mkdir -p "$lim_dir"
             printf 'idle_connection_timeout_ms: 2000\nmax_connections_per_peer: 64\n' >"$lim_dir/relay.yaml"
             relay_args=(--config "$lim_dir/relay.yaml")
             runner_args=(--idle-timeout-ms 2000 --max-connections-per-peer 64 --only 'connection/*') ;;
        tls) # Mutual TLS on a CA made for this run (openssl).
             local tls_dir="$REPORTS/$label.tls.d"
             make_pki "$tls_dir" || { RUN_RC=relay; return; }
             relay_args=(--tls-cert "$tls_dir/node.pem" --tls-key "$tls_dir/node.key"
                         --tls-client-ca "$tls_dir/ca.pem")
             runner_args=(--ca "$tls_dir/ca.pem" --cert "$tls_dir/client.pem"
                          --key "$tls_dir/client.key" --only 'connection/*') ;;
    esac
    local scheme=http
    [[ $mode == tls ]] && scheme=https
    ((strict_warn)) && runner_args+=(--strict)
    port=$(free_port)
    if [[ -n $fault ]]; then
        SLIM_RELAY_MUTANT=$fault "$RELAY" --listen "127.0.0.1:$port" "${relay_args[@]}" \
            >"$REPORTS/$label.$mode.relay.log" 2>&1 &
    else
        env -u SLIM_RELAY_MUTANT "$RELAY" --listen "127.0.0.1:$port" "${relay_args[@]}" \
            >"$REPORTS/$label.$mode.relay.log" 2>&1 &
    fi
    RELAY_PID=$!
    local up=0
    for _ in $(seq 100); do
        kill -0 "$RELAY_PID" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if ((!up)); then
        RUN_RC=relay
        stop_relay
        return
    fi
    timeout --kill-after=10 "$RUN_TIMEOUT" "$RUNNER" run --target "$scheme://127.0.0.1:$port" \
        --json "$RUN_JSON" "${FAIL_FAST[@]}" "${runner_args[@]}" "${EXTRA[@]}" \
        >"$REPORTS/$label.$mode.runner.log" 2>&1 &
    RUNNER_PID=$!
    wait "$RUNNER_PID"
    RUN_RC=$?
    RUNNER_PID=""
    stop_relay
}

# judge JSON LEVEL: prints the ids of the cases that kill a fault of LEVEL (FAIL or ERROR; WARN
# too for a SHOULD), leaving out cases that were not clean in the baseline.
judge() {
    python3 - "$1" "$2" "$REPORTS/baseline.unclean" <<'EOF'
import json, sys
path, level, unclean_path = sys.argv[1:4]
try:
    unclean = set(open(unclean_path).read().split())
except OSError:
    unclean = set()
try:
    cases = json.load(open(path)).get("cases", [])
except (OSError, ValueError):
    sys.exit(0)
killing = {"FAIL", "ERROR"} | ({"WARN"} if level == "SHOULD" else set())
print(",".join(c["id"] for c in cases if c.get("verdict") in killing and c["id"] not in unclean))
EOF
}

# ---- baseline: the relay without a fault must pass every run --------------------------------
echo "baseline: the relay without a fault ..." >&2
: >"$REPORTS/baseline.unclean"
for mode in strict lax auth jwt limits tls; do
    cut -f5 <<<"$SELECTED" | grep -qx "$mode" || continue
    t0=$(date +%s)
    run_once baseline "" "$mode" 0
    if [[ $RUN_RC == relay ]]; then
        echo "run.sh: ABORT: the relay did not start (see $REPORTS/baseline.$mode.relay.log)" >&2
        exit 2
    fi
    bad=$(python3 - "$RUN_JSON" "$REPORTS/baseline.unclean" <<'EOF'
import json, sys
path, unclean_path = sys.argv[1:3]
try:
    report = json.load(open(path))
except (OSError, ValueError) as e:
    print("no usable report (%s)" % e); sys.exit(0)
cases = report.get("cases", [])
bad = [c["id"] + " " + c["verdict"] for c in cases if c.get("verdict") in ("FAIL", "ERROR")]
warn = [c["id"] for c in cases if c.get("verdict") == "WARN"]
with open(unclean_path, "a") as f:
    f.write("".join(w + "\n" for w in warn))
if not cases:
    print("the report has no cases")
print("; ".join(bad))
EOF
)
    if [[ -n $bad || $RUN_RC != 0 ]]; then
        echo "run.sh: ABORT: the relay WITHOUT a fault does not pass the $mode run (runner exit $RUN_RC): ${bad:-see the log}" >&2
        echo "run.sh: every fault would look killed; fix the baseline first ($REPORTS/baseline.$mode.runner.log)" >&2
        exit 2
    fi
    echo "baseline $mode: pass ($(($(date +%s) - t0)) s)" >&2
done
STRICT_WARN=1
if [[ -s $REPORTS/baseline.unclean ]]; then
    echo "baseline: WARN in $(tr '\n' ' ' <"$REPORTS/baseline.unclean")- these cases are not counted" >&2
    STRICT_WARN=0
fi

# ---- every fault ------------------------------------------------------------------------------
TOTAL=$(grep -c . <<<"$SELECTED")
KILLED=0
SURVIVORS=()
i=0
while IFS=$'\t' read -r name _category requirement level mode; do
    i=$((i + 1))
    t0=$(date +%s)
    echo "[$i/$TOTAL] $name ($requirement, $level, $mode) ..." >&2
    sw=0
    [[ $level == SHOULD ]] && sw=$STRICT_WARN
    # A lax, auth or jwt fault's hook cannot fire in the default strict run: only its own run counts.
    run_once "$name" "$name" "$mode" "$sw"
    by=""
    if [[ $RUN_RC == relay ]]; then
        echo "  the faulty relay did not start (see $REPORTS/$name.$mode.relay.log)" >&2
    else
        [[ $RUN_RC == 0 || $RUN_RC == 1 ]] \
            || echo "  runner exit $RUN_RC (see $REPORTS/$name.$mode.runner.log)" >&2
        by=$(judge "$RUN_JSON" "$level")
    fi
    if [[ -n $by ]]; then
        KILLED=$((KILLED + 1))
        echo "KILLED $name  by ${by//,/, }"
    else
        SURVIVORS+=("$name ($requirement)")
        echo "SURVIVED $name ($requirement)"
    fi
    echo "  ($(($(date +%s) - t0)) s)" >&2
done <<<"$SELECTED"

# ---- score ------------------------------------------------------------------------------------
echo
echo "mutation score: $KILLED/$TOTAL ($(python3 -c "print(round(100*$KILLED/max($TOTAL,1)))")%)"
if ((${#SURVIVORS[@]})); then
    echo "survivors:"
    printf '  %s\n' "${SURVIVORS[@]}"
fi
ELAPSED=$(($(date +%s) - STARTED))
echo "wall time: $((ELAPSED / 60))m $((ELAPSED % 60))s (reports: $REPORTS/)" >&2
((${#SURVIVORS[@]} == 0))
