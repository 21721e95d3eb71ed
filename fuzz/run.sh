#!/usr/bin/env bash
# The long fuzz run: every target under libFuzzer, one after another, RUNS inputs each
# (default 10 000 000), then a summary per target: inputs run, inputs/s, wall time, crashes.
#
# Needs a nightly toolchain (libFuzzer's coverage instrumentation) and cargo-fuzz, which it
# installs from crates.io when missing. CI machines only have stable: they run the smoke test
# instead (cargo test -p slim-fuzz). See fuzz/README.md.
#
#   fuzz/run.sh                       # every target, 10 000 000 inputs each
#   fuzz/run.sh relay frame           # some targets
#   RUNS=100000 fuzz/run.sh           # a shorter run
#   MAX_TOTAL_TIME_session=3600 fuzz/run.sh session   # stop a target after N seconds
#   SANITIZER=address fuzz/run.sh     # with AddressSanitizer (slower; default: none)
#   MAX_LEN_relay=8192 fuzz/run.sh relay             # libFuzzer -max_len for a target
#   JOBS=2 fuzz/run.sh session        # libFuzzer jobs in parallel, RUNS/JOBS inputs each
#   SEEDS=keep fuzz/run.sh session    # reuse libfuzzer/seeds/ instead of regenerating them
#
# Output under fuzz/libfuzzer/ (git-ignored): corpus/<target>/ (the growing corpus, reused by
# the next run), artifacts/<target>/ (crashing inputs), logs/<target>.log, seeds/ (generated).
# Exit status: 0 when no target crashed.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
lf="$here/libfuzzer"
RUNS="${RUNS:-10000000}"
SANITIZER="${SANITIZER:-none}"
TOOLCHAIN="${TOOLCHAIN:-nightly}"
JOBS="${JOBS:-1}"
ALL_TARGETS=(frame link relay session reliable jwt config)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${ALL_TARGETS[@]}"); fi

if ! cargo "+$TOOLCHAIN" --version >/dev/null 2>&1; then
    echo "run.sh: no $TOOLCHAIN toolchain (rustup toolchain install nightly); CI runs the smoke test instead" >&2
    exit 2
fi
if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz || exit 2
fi

if [ "${SEEDS:-generate}" = keep ] && [ -d "$lf/seeds" ]; then
    echo "== seeds: keeping $lf/seeds (SEEDS=keep)"
else
    echo "== seeds (from vectors/ and by hand) -> $lf/seeds"
    (cd "$root" && cargo run -q -p slim-fuzz --bin slim-fuzz-seeds -- "$lf/seeds") || exit 2
fi

echo "== build (cargo +$TOOLCHAIN fuzz build -O, sanitizer $SANITIZER; assertions per libfuzzer/Cargo.toml)"
(cd "$here" && cargo "+$TOOLCHAIN" fuzz build -O --fuzz-dir libfuzzer -s "$SANITIZER") || exit 2

mkdir -p "$lf/logs"
bin_dir="${CARGO_TARGET_DIR:-$lf/target}/$(rustc "+$TOOLCHAIN" -vV | sed -n 's/^host: //p')/release"
summary=()
failed=0
# Crashes, timeouts, leaks and out-of-memory inputs of target $t fail the run; slow-unit-* files
# are libFuzzer's notes of inputs that took over 10 s (a paused or overloaded machine writes them
# too), reported but not failed.
findings() { find "$lf/artifacts/$t" -type f ! -name 'slow-unit-*' | wc -l; }
slow() { find "$lf/artifacts/$t" -type f -name 'slow-unit-*' | wc -l; }
for t in "${targets[@]}"; do
    mkdir -p "$lf/corpus/$t" "$lf/artifacts/$t"
    dirs=("$lf/corpus/$t")
    [ -d "$here/corpus/$t" ] && dirs+=("$here/corpus/$t")
    [ -d "$lf/seeds/$t" ] && dirs+=("$lf/seeds/$t")
    limit_var="MAX_TOTAL_TIME_$t"
    limit="${!limit_var:-${MAX_TOTAL_TIME:-0}}"
    # Longest input libFuzzer makes (0: its default, the larger of 4096 and the longest seed).
    # The reliable receiver reads at most 128 operations: longer inputs only cost time.
    len_var="MAX_LEN_$t"
    case "$t" in reliable) default_len=640 ;; *) default_len=0 ;; esac
    max_len="${!len_var:-$default_len}"
    log="$lf/logs/$t.log"
    echo "== $t: $RUNS inputs (max_total_time ${limit}s), log $log"
    before=$(findings)
    slow_before=$(slow)
    start=$(date +%s.%N)
    # The binary cargo fuzz built, run directly: with -jobs, libFuzzer writes each job's log as
    # fuzz-<n>.log in its working directory, here $jobs_dir.
    jobs_dir="$lf/logs/$t.jobs"
    rm -rf "$jobs_dir" && mkdir -p "$jobs_dir"
    parallel=()
    [ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
    (cd "$jobs_dir" && "$bin_dir/$t" "${parallel[@]}" "${dirs[@]}" \
        -runs="$(( (RUNS + JOBS - 1) / JOBS ))" -max_total_time="$limit" -max_len="$max_len" \
        -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$lf/artifacts/$t/") >"$log" 2>&1
    status=$?
    end=$(date +%s.%N)
    after=$(findings)
    crashes=$((after - before))
    slow_units=$(( $(slow) - slow_before ))
    # Inputs: the sum over jobs; inputs/s: the sum of the jobs' rates.
    stats=("$log")
    [ "$JOBS" -gt 1 ] && stats=("$jobs_dir"/fuzz-*.log)
    inputs=$(cat "${stats[@]}" | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{ n += $1 } END { if (NR) print n }')
    rate=$(cat "${stats[@]}" | sed -n 's/^stat::average_exec_per_sec: *//p' | awk '{ n += $1 } END { if (NR) print n }')
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="? (exit $status, see log)"
    if [ "$status" -ne 0 ] || [ "$crashes" != "0" ]; then failed=1; fi
    line=$(printf "%-9s inputs %-10s inputs/s %-7s wall %6ss  crashes %s  slow units %s" \
        "$t" "${inputs:-?}" "${rate:-?}" "$wall" "$crashes" "$slow_units")
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (RUNS=$RUNS, JOBS=$JOBS, sanitizer $SANITIZER)"
printf '%s\n' "${summary[@]}"
exit "$failed"
