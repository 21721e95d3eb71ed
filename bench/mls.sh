#!/usr/bin/env bash
# The MLS fast path, measured side by side in one run (bench/RESULTS.md, "MLS fast path"):
#
#  1. criterion (`cargo bench -p slim-microbench --bench mls`): a 1 KiB data message (encrypt +
#     decrypt), add and remove at 2, 16 and 128 members, on the fast path (`mls/…`, ring) and on
#     the provider it replaced (`mls_rustcrypto/…`), and each backend's floor for the same
#     message (`mls_floor/…`: one ECDSA P-256 signature and verification, AES-128-GCM both ways);
#  2. `slim-bench session --embedded`: a reliable p2p session without MLS, with MLS on ring and
#     with MLS on RustCrypto, rounds alternating so machine noise hits all three.
#
# Then prints one table with the ratios and the issue's targets. Not part of CI (about 6 minutes
# on 2 cores, plus the build).
#
#   bench/mls.sh [OUT]      OUT: where the results go (default: bench/results/mls)
#
# Environment: ROUNDS (session rounds per variant, default 3), MSGS (messages per session
# round, default 20000).
set -euo pipefail
OUT=$(mkdir -p "${1:-$(dirname "$0")/results/mls}" && cd "${1:-$(dirname "$0")/results/mls}" && pwd)
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
MSGS=${MSGS:-20000}
TARGET=${CARGO_TARGET_DIR:-target}
command -v python3 >/dev/null || { echo "error: python3 is needed to read the results" >&2; exit 1; }

echo "== build (release)"
cargo build --release --quiet -p slim-bench
cargo bench --quiet -p slim-microbench --bench mls --no-run

echo "== criterion: mls (ring), mls_rustcrypto, mls_floor"
rm -rf "$TARGET/criterion/mls" "$TARGET/criterion/mls_rustcrypto" "$TARGET/criterion/mls_floor"
cargo bench --quiet -p slim-microbench --bench mls -- --noplot 2>&1 | tee "$OUT/criterion.txt"
# Keep criterion's estimates (the medians the table is made of), not its raw samples.
rm -rf "$OUT/criterion"
for g in mls mls_rustcrypto mls_floor; do
  [ -d "$TARGET/criterion/$g" ] || continue
  (cd "$TARGET/criterion" && find "$g" -path '*/new/estimates.json') | while read -r f; do
    mkdir -p "$OUT/criterion/$(dirname "$f")" && cp "$TARGET/criterion/$f" "$OUT/criterion/$f"
  done
done

echo "== sessions: $ROUNDS rounds of $MSGS messages, 128 B, reliable p2p through the embedded relay"
FAILED=()
for r in $(seq 1 "$ROUNDS"); do
  for v in plain ring rustcrypto; do
    case $v in
      plain) args=() ;;
      ring) args=(--mls --mls-crypto ring) ;;
      rustcrypto) args=(--mls --mls-crypto rustcrypto) ;;
    esac
    rm -f "$OUT/session-$v-$r.json"
    "$TARGET/release/slim-bench" session --embedded --msgs "$MSGS" --size 128 "${args[@]}" \
      --json "$OUT/session-$v-$r.json" || FAILED+=("session-$v-$r")
  done
done

status=0
python3 - "$OUT" "$TARGET/criterion" "$ROUNDS" > "$OUT/summary.txt" <<'PY' || status=1
import glob, json, os, statistics, sys
out, crit, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

def est(*path):
    p = os.path.join(crit, *path, "new", "estimates.json")
    try:
        return json.load(open(p))["median"]["point_estimate"] / 1000.0  # µs
    except OSError:
        return None

def fmt(us):
    if us is None:
        return "n/a"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"

rows = []
print()
print("| operation | members | ring | rustcrypto | rustcrypto / ring |")
print("|---|---|---|---|---|")
for op in ["encrypt_decrypt_1KiB", "add_member", "remove_member"]:
    for n in ["2", "16", "128"]:
        a, b = est("mls", op, n), est("mls_rustcrypto", op, n)
        ratio = f"{b / a:.2f}x" if a and b else "n/a"
        print(f"| {op} | {n} | {fmt(a)} | {fmt(b)} | {ratio} |")
fa, fb = est("mls_floor", "ring"), est("mls_floor", "rustcrypto")
print(f"| floor: sign + verify + AES-128-GCM both ways | | {fmt(fa)} | {fmt(fb)} | "
      + (f"{fb / fa:.2f}x |" if fa and fb else "n/a |"))

def rates(v):
    got = []
    for f in sorted(glob.glob(os.path.join(out, f"session-{v}-*.json"))):
        d = json.load(open(f))
        got.append((d["delivered_per_sec"], d["delivered"], d["received"], d["msgs"],
                    d["duplicates_or_reordered"], d["failed"]))
    return got

print()
print("| session (reliable p2p, 128 B) | median msgs/s | rounds | delivered / sent, dup, failed |")
print("|---|---|---|---|")
med = {}
lossy = []
for v, label in [("plain", "no MLS"), ("ring", "MLS, ring"), ("rustcrypto", "MLS, rustcrypto")]:
    r = rates(v)
    if not r:
        print(f"| {label} | n/a | | |")
        continue
    med[v] = statistics.median(x[0] for x in r)
    span = f"{min(x[0] for x in r):,.0f} – {max(x[0] for x in r):,.0f}"
    ok = ", ".join(f"{x[1]}/{x[3]} {x[4]} {x[5]}" for x in r)
    for x in r:
        if x[1] != x[3] or x[2] != x[3] or x[4] or x[5]:
            lossy.append(f"{v}: {x}")
    print(f"| {label} | {med[v]:,.0f} | {span} | {ok} |")
print()
if "plain" in med and "ring" in med:
    print(f"MLS (ring) / no MLS: {med['ring'] / med['plain']:.2f}")
if "ring" in med and "rustcrypto" in med:
    print(f"MLS ring / MLS rustcrypto: {med['ring'] / med['rustcrypto']:.2f}x")
print()
print("targets:")
e2 = est("mls", "encrypt_decrypt_1KiB", "2")
e128 = est("mls", "encrypt_decrypt_1KiB", "128")
print(f"  encrypt+decrypt 1 KiB at 2 members <= 120 µs: {fmt(e2)}"
      + ("  met" if e2 and e2 <= 120 else "  NOT met"))
if "ring" in med:
    print(f"  MLS reliable p2p session >= 10 000 msgs/s: {med['ring']:,.0f}"
          + ("  met" if med["ring"] >= 10000 else "  NOT met"))
if e2 and e128:
    print(f"  per-message time 128 / 2 members <= 1.2: {e128 / e2:.2f}"
          + ("  met" if e128 / e2 <= 1.2 else "  NOT met"))
if lossy:
    print("loss, duplicates or failures:")
    for l in lossy:
        print("  " + l)
    sys.exit(1)
print("every session round delivered every message once, none failed")
PY
cat "$OUT/summary.txt"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "runs that failed (see above): ${FAILED[*]}"
  status=1
fi
exit $status
