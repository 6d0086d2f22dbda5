#!/usr/bin/env bash
# bench/serve.sh — `authgate serve` on loopback: throughput and latency against a fast sink,
# and the time from the client's final "." to authgate's reply when every DNS answer takes 50 ms.
#
#   bench/serve.sh [--rounds 3] [--quick] [--no-build] [--out DIR] [--before BIN] [--skip tput|dns]
#
# What runs (all from examples/smtp_load.rs, see its header):
#   sink      fast next hop: 250 at once, data discarded; counts dkim/spf/dmarc=pass in our A-R
#   dns       loopback DNS (UDP+TCP) answering from a zone file after --delay-ms (50)
#   load      N messages over C sessions; msgs/s, latency XFORWARD->final reply, end of data->reply
# and two authgate serve processes (role auto: 10.0.0.0/8 is internal and signed, the rest verified):
#   :2525  --dns-zone (offline answers)          throughput runs
#   :2527  --dns-server (the 50 ms DNS server)   latency runs; with --before BIN also BIN on :2528
# Throughput: every (size, sessions, mode) runs the load straight to the sink (the anchor) and
# through authgate, alternated round by round; medians over --rounds. Latency: verify only; every
# message has its own sender domain, DKIM d=, HELO and client address, so none of its lookups
# (iprev PTR+A, SPF MAIL FROM/HELO, DKIM key, _dmarc) is a cache hit.
# Raw JSON lines: OUT/results.jsonl; the tables: OUT/summary.md (and stdout).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3 QUICK=0 BUILD=1 OUT="" BEFORE="" SKIP=""
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    --before) BEFORE=$(realpath "$2"); shift ;;
    --skip) SKIP="$SKIP $2"; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cd "$ROOT"
OUT=${OUT:-target/bench/serve-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ $BUILD = 1 ]; then
    cargo build --release --quiet --bin authgate --example smtp_load
fi
AG=$ROOT/target/release/authgate
SL=$ROOT/target/release/examples/smtp_load
SINK=127.0.0.1:2526 AGZ=127.0.0.1:2525 AGD=127.0.0.1:2527 AGB=127.0.0.1:2528 DNS=127.0.0.1:5353
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# key (the test fixture, RSA-2048), its record, the config, the zones
install -m 0600 tests/fixtures/dkim/rsa2048.pem "$OUT/key.pem"
awk '/^rsa2048._domainkey.example.com/{f=1;next} f&&/\)/{exit} f' tests/fixtures/dkim/keys.zone |
    grep -o '"[^"]*"' | tr -d '"\n' >"$OUT/key.txt"
cat >"$OUT/authgate.toml" <<EOF
# bench/serve.sh: verify everything from outside, sign for internal clients (OpenDKIM Mode sv)
authserv_id = "bench.authgate"
[trust]
internal_hosts = ["10.0.0.0/8"]
[[dkim.keys]]
name = "bench"
domain = "%"
selector = "bench"
file = "$OUT/key.pem"
[[dkim.signing_table]]
pattern = "*"
keys = ["bench"]
EOF
"$SL" zone --tag t --count 4000 --key-record "$OUT/key.txt" >"$OUT/tput.zone"
"$SL" zone --tag d --count 40000 --key-record "$OUT/key.txt" >"$OUT/slow.zone"

wait_port() { local i; for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; return 1; }
start() { # LOG ADDR CMD...
    local log=$1 addr=$2; shift 2
    "$@" >"$OUT/$log" 2>&1 &
    PIDS+=($!)
    wait_port "$addr"
}
start sink.log $SINK "$SL" sink --listen $SINK
start dns.log $DNS "$SL" dns --listen $DNS --zone "$OUT/slow.zone" --delay-ms 50
export RUST_LOG=warn
start ag-zone.log $AGZ "$AG" serve --config "$OUT/authgate.toml" --listen $AGZ --next-hop $SINK --role auto --dns-zone "$OUT/tput.zone"
start ag-dns.log $AGD "$AG" serve --config "$OUT/authgate.toml" --listen $AGD --next-hop $SINK --role auto --dns-server $DNS
[ -z "$BEFORE" ] || start ag-before.log $AGB "$BEFORE" serve --config "$OUT/authgate.toml" --listen $AGB --next-hop $SINK --role auto --dns-server $DNS

echo "serve bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+dirty'), out $OUT" | tee "$OUT/machine.txt"
R=$OUT/results.jsonl
run() { # LABEL TO ROUND extra load args...
    local label=$1 to=$2 round=$3; shift 3
    "$SL" load --to "$to" --sink $SINK --key "$OUT/key.pem" --label "$label" "$@" |
        sed "s/^{/{\"round\":$round,\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",/" | tee -a "$R" | cut -c1-220
}

count_for() { # SIZE CONC -> messages per run
    local q=1; [ $QUICK = 1 ] && q=4
    case $1 in 2k) echo $((2000 / q)) ;; 20k) echo $((1000 / q)) ;; 1m) echo $((($2 > 1 ? 256 : 100) / q)) ;; esac
}
if [[ " $SKIP " != *" tput "* ]]; then
    for ((r = 1; r <= ROUNDS; r++)); do
        for size in 2k 20k 1m; do
            for conc in 1 64; do
                n=$(count_for $size $conc)
                for mode in verify sign; do
                    # alternate which side goes first
                    if ((r % 2)); then order="sink authgate"; else order="authgate sink"; fi
                    for side in $order; do
                        to=$SINK; [ $side = authgate ] && to=$AGZ
                        run "$side" $to $r --mode $mode --size $size --conc $conc --count "$n" --tag t
                    done
                done
            done
        done
    done
fi

# 50 ms DNS: fresh names for every message (FIRST moves on)
FIRST=0
if [[ " $SKIP " != *" dns "* ]]; then
    for ((r = 1; r <= ROUNDS; r++)); do
        for size in 2k 20k 1m; do
            for spec in "1 0" "1 25" "64 0"; do
                read -r conc rtt <<<"$spec"
                n=40; [ "$conc" = 64 ] && n=256
                [ $QUICK = 1 ] && n=$((n / 4))
                sides="after"; [ -n "$BEFORE" ] && { if ((r % 2)); then sides="after before"; else sides="before after"; fi; }
                for side in $sides; do
                    to=$AGD; [ $side = before ] && to=$AGB
                    run "dns50-$side" $to $r --mode verify --size $size --conc "$conc" --rtt-ms "$rtt" --count $n --tag d --first $FIRST
                    FIRST=$((FIRST + n))
                done
            done
        done
    done
fi
python3 "$ROOT/bench/serve_report.py" "$R" | tee "$OUT/summary.md"
