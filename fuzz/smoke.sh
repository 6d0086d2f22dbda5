#!/usr/bin/env bash
# Fuzz smoke run: build every target once, then run each for N seconds.
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]     (default 20 s, every target)
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). FUZZ_SANITIZER=none skips
# AddressSanitizer (faster; the library forbids unsafe code anyway).
# New corpus entries go to fuzz/corpus/<target> (ignored by git); the
# committed seeds in fuzz/seeds/<target> are read, never written. Crashes land
# in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

secs=${1:-20}
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
sanitizer=(${FUZZ_SANITIZER:+--sanitizer "$FUZZ_SANITIZER"})

cargo fuzz build "${sanitizer[@]}"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    dict=()
    [ -e "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    echo "== $t (${secs}s)"
    if cargo fuzz run "${sanitizer[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "${dict[@]}" \
        2>"corpus/$t.log"; then
        grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "corpus/$t.log" || true
    else
        echo "!! $t FAILED: see fuzz/corpus/$t.log and fuzz/artifacts/$t/"
        tail -n 30 "corpus/$t.log"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s without a crash"
