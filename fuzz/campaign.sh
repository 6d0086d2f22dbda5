#!/usr/bin/env bash
# Fuzz campaign: run targets one after another until each reaches 10 million
# executions or SECONDS seconds, and print a FUZZING.md table row for each.
#
#   fuzz/campaign.sh SECONDS TARGET...       (e.g. fuzz/campaign.sh 1800 dmarc_record spf_record)
#
# The corpus of each target lives in $FUZZ_CORPUS/<target> (default
# /var/tmp/fuzzcorp), seeded from fuzz/seeds/<target> and kept between runs, so
# a second campaign continues where the first stopped. libFuzzer's output goes
# to $FUZZ_LOGS/<target>.log (default /var/tmp/fuzzlogs); the rows go to stdout
# and to $FUZZ_LOGS/rows.md. AddressSanitizer (the cargo-fuzz default), release
# profile, nice 19, -rss_limit_mb=2048. Exit status 1 when a target found a
# crash (the input is in fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if [ "$#" -lt 2 ]; then
    echo "usage: fuzz/campaign.sh SECONDS TARGET..." >&2
    exit 2
fi
secs=$1
shift
corpus_root=${FUZZ_CORPUS:-/var/tmp/fuzzcorp}
logs=${FUZZ_LOGS:-/var/tmp/fuzzlogs}
mkdir -p "$logs"

# FUZZ_TOOLCHAIN=nightly uses `cargo +nightly`; without it, stable with RUSTC_BOOTSTRAP.
cargo=(cargo ${FUZZ_TOOLCHAIN:++$FUZZ_TOOLCHAIN})
"${cargo[@]}" fuzz build -O

found=0
for t in "$@"; do
    mkdir -p "$corpus_root/$t"
    cp -rn "seeds/$t/." "$corpus_root/$t/" 2>/dev/null || true
    dict=()
    [ -e "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    log="$logs/$t.log"
    # Built (again, if the sources changed since) before the clock starts.
    "${cargo[@]}" fuzz build -O "$t"
    start=$(date +%s)
    rc=0
    nice -n 19 "${cargo[@]}" fuzz run -O "$t" "$corpus_root/$t" -- \
        -runs=10000000 -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
        "${dict[@]}" >"$log" 2>&1 || rc=$?
    elapsed=$(($(date +%s) - start))
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse)' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([0-9]*\)\/\([^ ]*\).*/\1 (\2)/p' <<<"$last")
    finding=none
    if [ "$rc" -ne 0 ] || grep -qE 'SUMMARY|panicked|deadly signal' "$log"; then
        finding="**crash** (rc $rc, see $log)"
        found=1
    fi
    row="| $t | $(date -u +%F) | $((elapsed / 60)) min $((elapsed % 60)) s | $(stat number_of_executed_units) | $(stat average_exec_per_sec) | $cov | $ft | $corp | $(stat peak_rss_mb) MB | $finding |"
    echo "$row" | tee -a "$logs/rows.md"
done
exit "$found"
