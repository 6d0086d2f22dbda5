#!/usr/bin/env bash
# authgate against its peers, in ONE run, A and B alternated (see BENCHMARKS.md).
#
#   bench/compare.sh [--quick] [--corpus DIR] [--out DIR] [--repeat N] [--repeat-pp N]
#                    [--no-build] [--skip inproc|perproc|rss]...
#
#   --corpus DIR    corpus from gen_corpus.py; generated if missing (default /tmp/authgate-corpus)
#   --out DIR       raw JSON lines (results.jsonl), logs and table.md (default target/bench/<UTC time>)
#   --repeat N      in-process rounds (default 5); each round runs authgate then mail-auth
#                   (in-process runners with --repeat 2, the warm second pass is kept)
#   --repeat-pp N   one-process-per-message rounds (default 1), over the s2k messages
#   --quick         --repeat 3, and per-process runs over the first 200 s2k messages only
#   --skip PART     leave out a part (repeatable)
#
# Needs: python3, cargo, opendkim + opendkim-tools, dkimpy (corpus), GNU time
# (apt-get install opendkim opendkim-tools time; pip install dkimpy).
# The peers live in ../shared/bench-peers (BENCH_PEERS=...); mail-auth is built from
# there with AWS_LC_SYS_NO_JITTER_ENTROPY=1 into target/peers/ (see its README).
# Not part of `cargo test`; criterion micro-benches are `cargo bench`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=$(cd "${BENCH_PEERS:-$ROOT/../shared/bench-peers}" && pwd)
CORPUS=/tmp/authgate-corpus
OUT=""
REPEAT=5
REPEAT_PP=1
QUICK=0
BUILD=1
SKIP=" "
while [ $# -gt 0 ]; do
  case $1 in
    --corpus) CORPUS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --repeat-pp) REPEAT_PP=$2; shift ;;
    --quick) QUICK=1; REPEAT=3 ;;
    --no-build) BUILD=0 ;;
    --skip) SKIP="$SKIP$2 "; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
skip() { [[ "$SKIP" == *" $1 "* ]]; }
log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

OUT=${OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RES=$OUT/results.jsonl
: > "$RES"
ERR=$OUT/stderr.log
: > "$ERR"

# ---- (a) corpus ----------------------------------------------------------------
if [ ! -f "$CORPUS/manifest.json" ] || [ ! -d "$CORPUS/signed" ]; then
  log "generating corpus in $CORPUS (about 20 s)"
  python3 "$P/gen_corpus.py" "$CORPUS" > "$OUT/gen_corpus.log"
fi
CORPUS=$(cd "$CORPUS" && pwd)
DOMAIN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("domain","example.com"))' "$CORPUS/manifest.json")
SELECTOR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("selector","bench"))' "$CORPUS/manifest.json")

# ---- (b) builds ------------------------------------------------------------------
AG=$ROOT/target/release/authgate
AGB=$ROOT/target/release/examples/corpus_bench
MA_TARGET=$ROOT/target/peers/mailauth-nojit
MA=$MA_TARGET/release/mailauth-bench
if [ $BUILD = 1 ]; then
  log "building authgate and examples/corpus_bench (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin authgate --example corpus_bench)
  log "building mail-auth peer (aws-lc-rs, no jitter entropy) into $MA_TARGET"
  (cd "$P/mailauth-bench" && AWS_LC_SYS_NO_JITTER_ENTROPY=1 CARGO_TARGET_DIR=$MA_TARGET \
     cargo build --release --quiet --ignore-rust-version)
fi
for b in "$AG" "$AGB" "$MA"; do [ -x "$b" ] || { echo "compare.sh: missing $b" >&2; exit 1; }; done
[ -x /usr/bin/time ] || { echo "compare.sh: GNU time missing (apt-get install time)" >&2; exit 1; }

# The key record as a zone file for `authgate pipe|verify --dns-zone` (TXT in 255-byte strings).
ZONE=$OUT/bench.zone
python3 - "$CORPUS/key/dns.txt" "$SELECTOR._domainkey.$DOMAIN." > "$ZONE" <<'PY'
import sys
txt = open(sys.argv[1]).read().strip()
print(sys.argv[2], "3600 IN TXT", " ".join('"%s"' % txt[i:i + 255] for i in range(0, len(txt), 255)))
PY

# Tags a runner's JSON line: mode, subset, round, label (the tool as shown in the table).
# run MODE SUBSET ROUND LABEL PICK CMD...   PICK: last = last per-repeat line, median = median line
run() {
  local mode=$1 subset=$2 round=$3 label=$4 pick=$5; shift 5
  echo ">> [$mode $subset r$round $label] $*" >> "$ERR"
  local out line
  out=$("$@" 2>>"$ERR") || { log "FAILED: $label ($mode $subset), see $ERR"; return 0; }
  echo "$out" >> "$OUT/raw.log"
  if [ "$pick" = median ]; then line=$(grep '"median"' <<< "$out" | tail -1)
  else line=$(grep -v '"median"' <<< "$out" | tail -1); fi
  [ -n "$line" ] || { log "no result line: $label"; return 0; }
  sed "s/^{/{\"mode\":\"$mode\",\"subset\":\"$subset\",\"round\":$round,\"label\":\"$label\",/" <<< "$line" >> "$RES"
}

# ---- (c1) in-process: authgate vs mail-auth, alternated ----------------------------
if ! skip inproc; then
  for op in sign verify; do
    for sub in all s2k s5m; do
      p=(); [ $sub = all ] || p=(--prefix $sub)
      for ((i = 1; i <= REPEAT; i++)); do
        log "in-process $op $sub round $i/$REPEAT"
        run inproc $sub $i authgate last "$AGB" $op "$CORPUS" "${p[@]}" --repeat 2
        run inproc $sub $i mail-auth last "$MA" $op "$CORPUS" "${p[@]}" --repeat 2
      done
    done
  done
fi

# ---- (c2) one process per message, small messages ----------------------------------
if ! skip perproc; then
  PPC=$CORPUS
  if [ $QUICK = 1 ]; then
    # The first 200 s2k messages, as a corpus of symlinks.
    PPC=$OUT/pp-corpus
    mkdir -p "$PPC/msgs" "$PPC/signed"
    ln -sfn "$CORPUS/key" "$PPC/key"
    ln -sf "$CORPUS/manifest.json" "$PPC/manifest.json"
    for f in $(cd "$CORPUS/msgs" && ls | grep '^s2k' | sort | head -200); do
      ln -sf "$CORPUS/msgs/$f" "$PPC/msgs/$f"
      ln -sf "$CORPUS/signed/$f" "$PPC/signed/$f"
    done
  fi
  CB=(python3 "$P/cli_bench.py" "$PPC")
  HDRS=From,To,Cc,Subject,Date,Message-ID,MIME-Version,Content-Type,In-Reply-To,List-Unsubscribe
  for ((i = 1; i <= REPEAT_PP; i++)); do
    log "per-process sign round $i/$REPEAT_PP"
    run perproc s2k $i "authgate sign" median "${CB[@]}" sign --prefix s2k --repeat 1 --ok-regex DKIM-Signature -- \
      "$AG" sign --domain {domain} --selector {selector} --key {key} --headers "$HDRS" --oversign ""
    run perproc s2k $i "opendkim-testmsg" median python3 "$P/opendkim_bench.py" sign "$PPC" --prefix s2k --repeat 1 --per-process
    run perproc s2k $i "mail-auth filter-sign" median "${CB[@]}" sign --prefix s2k --repeat 1 --ok-regex DKIM-Signature -- \
      "$MA" filter-sign {corpus}
    log "per-process verify round $i/$REPEAT_PP"
    run perproc s2k $i "authgate pipe" median "${CB[@]}" verify --prefix s2k --repeat 1 --ok-regex dkim=pass -- \
      "$AG" pipe --dns-zone "$ZONE" --authserv-id bench.example
    run perproc s2k $i "opendkim -t" median python3 "$P/opendkim_bench.py" verify "$PPC" --prefix s2k --repeat 1 --per-process
    run perproc s2k $i "authgate verify" median "${CB[@]}" verify --prefix s2k --repeat 1 --ok-regex dkim=pass -- \
      "$AG" verify --dns-zone "$ZONE" --authserv-id bench.example
    run perproc s2k $i "mail-auth filter-verify" median "${CB[@]}" verify --prefix s2k --repeat 1 --ok-regex pass -- \
      "$MA" filter-verify {corpus}
  done
fi

# ---- (c3) peak RSS on a 100 MB message ------------------------------------------------
if ! skip rss; then
  BIG=$OUT/big-100mb.eml
  log "peak RSS on a 100 MB message"
  python3 - "$CORPUS" "$BIG" <<'PY'
import base64, os, random, sys
corpus, out = sys.argv[1:3]
src = sorted(f for f in os.listdir(os.path.join(corpus, "msgs")) if f.startswith("s2k"))[0]
head = open(os.path.join(corpus, "msgs", src), "rb").read().split(b"\r\n\r\n", 1)[0]
head = b"\r\n".join(l for l in head.split(b"\r\n") if not l.lower().startswith((b"content-type", b"content-transfer")))
rng = random.Random(7)
block = base64.b64encode(rng.randbytes(57 * 1000))
lines = b"\r\n".join(block[i:i + 76] for i in range(0, len(block), 76)) + b"\r\n"
with open(out, "wb") as f:
    f.write(head + b"\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    while f.tell() < 100_000_000:
        f.write(lines)
PY
  BIGS=$OUT/big-100mb.signed.eml
  "$AG" sign --domain "$DOMAIN" --selector "$SELECTOR" --key "$CORPUS/key/rsa2048.pem" < "$BIG" > "$BIGS"
  size=$(stat -c %s "$BIG")
  # rss LABEL OK_REGEX INPUT CMD...
  rss() {
    local label=$1 re=$2 input=$3; shift 3
    local t0=$EPOCHREALTIME kb ok
    # All output is read (so the writer never sees EPIPE); its head is checked.
    /usr/bin/time -v "$@" < "$input" 2> "$OUT/time.txt" | { head -c 20000 > "$OUT/head.txt"; cat > /dev/null; } || true
    local secs; secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    cat "$OUT/time.txt" >> "$ERR"
    kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/time.txt")
    ok=$(grep -q -- "$re" "$OUT/head.txt" && echo 1 || echo 0)
    printf '{"mode":"rss","subset":"100MB","round":1,"label":"%s","tool":"%s","op":"rss","msgs":1,"ok":%s,"bytes":%s,"secs":%s,"maxrss_kb":%s}\n' \
      "$label" "$label" "$ok" "$size" "$secs" "${kb:-0}" >> "$RES"
  }
  rss "authgate pipe" dkim=pass "$BIGS" "$AG" pipe --dns-zone "$ZONE" --authserv-id bench.example
  rss "authgate sign" DKIM-Signature "$BIG" "$AG" sign --domain "$DOMAIN" --selector "$SELECTOR" --key "$CORPUS/key/rsa2048.pem"
  rss "mail-auth filter-verify" pass "$BIGS" "$MA" filter-verify "$CORPUS"
  rss "mail-auth filter-sign" DKIM-Signature "$BIG" "$MA" filter-sign "$CORPUS"
  rm -f "$BIG" "$BIGS"
fi

# ---- (d) table ------------------------------------------------------------------------
python3 "$ROOT/bench/report.py" "$RES" > "$OUT/table.md"
cat "$OUT/table.md"
log "raw JSON lines: $RES; table: $OUT/table.md"
