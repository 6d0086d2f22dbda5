#!/usr/bin/env bash
# bench/sessions/run.sh — N concurrent sessions against `authgate serve` (SMTP, with
# a loopback sink as next hop) and `authgate milter`, once with server.max_sessions
# below N and once above it (RELIABILITY.md, "500 concurrent sessions").
#
#   bench/sessions/run.sh [--sessions 500] [--below 100] [--above 1000]
#                         [--authgate BIN] [--timeout 30] [--out FILE]
#
# Without --authgate it builds the release binary (cargo build --release). Every run
# is bench/sessions/load.py (see its header): one JSON line each, also appended to
# --out (default target/bench/sessions-DATE.jsonl), and a table at the end. Exit
# status 1 if any run was not clean (a hang, a session without a valid answer,
# descriptors not back to their start value, a message not delivered exactly once).
# Ports: 31000-31999 on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SESSIONS=500 BELOW=100 ABOVE=1000 AG="" TIMEOUT=30 OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --sessions) SESSIONS=$2; shift ;;
    --below) BELOW=$2; shift ;;
    --above) ABOVE=$2; shift ;;
    --authgate) AG=$(realpath "$2"); shift ;;
    --timeout) TIMEOUT=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cd "$ROOT"
if [ -z "$AG" ]; then
    cargo build --release --quiet --bin authgate
    AG=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/authgate
fi
OUT=${OUT:-target/bench/sessions-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$OUT")"
echo "authgate: $AG; $(nproc) cores; results: $OUT" >&2
rc=0
for front in serve milter; do
    for max in "$BELOW" "$ABOVE"; do
        python3 bench/sessions/load.py --authgate "$AG" --front "$front" \
            --sessions "$SESSIONS" --max-sessions "$max" --timeout "$TIMEOUT" --json "$OUT" \
            2> >(grep -v 'too many sessions; refusing' >&2) >/dev/null || rc=1
    done
done
python3 - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| front | sessions | max_sessions | answered | refused at limit | hangs | errors | delivered | fds start / during / end / settled | peak RSS (VmHWM) | time | clean |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    f = r["fds"]
    print(f"| {r['front']} | {r['sessions']} | {r['max_sessions']} | {r['answered']} | {r['refused_at_limit']} "
          f"| {r['hangs']} | {r['errors']} | {r.get('delivered', '—')} "
          f"| {f['start']} / {f['during']} / {f['end']} / {f['settled']} | {r['rss_kib']['peak_vmhwm'] / 1024:.1f} MiB "
          f"| {r['elapsed_s']} s | {'yes' if r['clean'] else 'NO'} |")
EOF
exit $rc
