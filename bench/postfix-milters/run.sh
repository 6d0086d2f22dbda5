#!/bin/bash
# bench/postfix-milters/run.sh — what does authgate cost a Postfix server, compared with the OpenDKIM +
# OpenDMARC milters such a server runs today? A private Postfix instance (postfix -c WORK/postfix/etc, its own
# queue and ports; /etc/postfix is never touched), one corpus, configurations alternated round by round,
# medians of the rounds. See README.md. Adapted from ../shared/bench-peers/postfix-milters (same bench.py).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
  cat <<'EOF'
usage: run.sh [options]                      (as root; see README.md)
  --authgate BIN         the authgate binary (default: target/release/authgate, built if missing); the default
                         --filter-cmd and --milter-cmd run it
  --authgate-b BIN       A/B run: a second binary, measured as the extra configurations milter-b / filter-b
                         (the same commands with {authgate} = BIN) beside each of milter / filter in --configs;
                         the two binaries take turns on the same socket/port (restarted when they swap) and the
                         report adds the B/A ratios, round by round
  --filter-cmd 'CMD'     the filter under test as a Postfix content_filter: CMD starts it listening on
                         127.0.0.1:{filter_port} (SMTP) and relaying to 127.0.0.1:{reinject_port}. Run with bash -c in the
                         background from the current directory, stopped by its PID (process group) at the end.
  --milter-cmd 'CMD'     the filter under test as a milter (Postfix smtpd_milters), started the same way
  --milter-socket SOCK   where that milter listens: unix:/path | inet:PORT@127.0.0.1 (required with --milter-cmd)
                         Tokens in CMD: {zone} = a zone file (RFC 1035) with the benchmark's DNS records,
                         {dns} = IP:PORT of the loopback DNS server serving the same records,
                         {work} = this run's directory (for the filter's own logs), {authgate} = the binary,
                         {conf} = an authgate.toml for the benchmark (written by this script),
                         {filter_port} {reinject_port} {milter_socket}
  --private-resolv       run the filter/milter in a private mount namespace whose /etc/resolv.conf names only
                         the loopback DNS server (for a filter that uses the system resolver)
  --configs LIST         comma-separated, from floor,milters-unix,milters-inet,filter,milter
                         (default: floor,milters-unix,milter,filter)
  -n N                   messages per round (default 1000)
  --rounds K             measured rounds (default 3); a round runs every configuration once, order rotated
  --work DIR             corpus cache, logs and results (default /var/tmp/authgate-pvm-bench; must be under /var,
                         where Postfix accepts its maillog_file, and traversable by users postfix and mail)
  --smtp-port P          the instance's smtpd (default 2625); the content_filter listens on P+8100 (10725) and
                         the reinjection smtpd on P+8101 (10726)
  --keep                 leave Postfix, unbound, the milters and the filter running at the end
  --ar-check MODE        what every copy delivered through the filter/milter under test must carry in its
                         Authentication-Results: dkim (dkim=pass; default), all (dkim=pass and spf= and dmarc=
                         results, as the OpenDKIM+OpenDMARC pair does), none (delivery check only)
  --conc C               concurrent SMTP sessions into :25 (default 8)
  --maxproc M            Postfix -> content_filter connections (scan transport maxproc; default 10)
  --timeout S            give up on a round after S seconds (default 120; also after 30 s without a delivery)
  --dns-addr IP          loopback address for the DNS server (default 127.0.78.53; port 53)
  --peer-parity          authgate does exactly the checks of the OpenDKIM + OpenDMARC pair (DKIM, SPF for MAIL FROM,
                         DMARC): iprev and the HELO SPF check, which the pair does not do, are switched off
Prints one line per round and configuration, then the table (medians) and the ratio lines.
Exit 0 when every round's delivery and A-R checks passed, non-zero otherwise. No goal is judged.
EOF
}
die() { echo "run.sh: $*" >&2; exit 2; }

FILTER_CMD="" MILTER_CMD="" MILTER_SOCKET="" PRIVATE_RESOLV=0 CONFIGS="" N=1000 ROUNDS=3 AUTHGATE="" PEER_PARITY=0
AUTHGATE_B=""
WORK=/var/tmp/authgate-pvm-bench KEEP=0 AR_CHECK=all CONC=8 MAXPROC=10 TIMEOUT=120 DNS_ADDR=127.0.78.53
SMTP_PORT=2625 FILTER_SET=0 MILTER_SET=0
while [ $# -gt 0 ]; do
  case $1 in
    --authgate) AUTHGATE=${2?}; shift ;;
    --authgate-b) AUTHGATE_B=${2?}; shift ;;
    --filter-cmd) FILTER_CMD=${2?}; FILTER_SET=1; shift ;;
    --milter-cmd) MILTER_CMD=${2?}; MILTER_SET=1; shift ;;
    --smtp-port) SMTP_PORT=${2?}; shift ;;
    --milter-socket) MILTER_SOCKET=${2?}; shift ;;
    --private-resolv) PRIVATE_RESOLV=1 ;;
    --configs) CONFIGS=${2?}; shift ;;
    --peer-parity) PEER_PARITY=1 ;;
    -n) N=${2?}; shift ;;
    --rounds) ROUNDS=${2?}; shift ;;
    --work) WORK=${2?}; shift ;;
    --keep) KEEP=1 ;;
    --ar-check) AR_CHECK=${2?}; shift ;;
    --conc) CONC=${2?}; shift ;;
    --maxproc) MAXPROC=${2?}; shift ;;
    --timeout) TIMEOUT=${2?}; shift ;;
    --dns-addr) DNS_ADDR=${2?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
  shift
done
# authgate, the default component under test (as a milter and as an after-queue content_filter)
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "$AUTHGATE" ]; then
  AUTHGATE=$ROOT/target/release/authgate
  [ -x "$AUTHGATE" ] || (cd "$ROOT" && cargo build --release --quiet --bin authgate) || die "cannot build authgate"
fi
AUTHGATE=$(realpath "$AUTHGATE")
if [ -n "$AUTHGATE_B" ]; then
  [ -x "$AUTHGATE_B" ] || die "--authgate-b: $AUTHGATE_B is not an executable"
  AUTHGATE_B=$(realpath "$AUTHGATE_B")
fi
FILTER_PORT=$((SMTP_PORT + 8100)) REINJECT_PORT=$((SMTP_PORT + 8101))
if [ $MILTER_SET = 0 ]; then
  MILTER_CMD='exec {authgate} milter --config {conf} --listen unix:{milter_socket} --socket-mode 0666 --dns-server {dns}'
  MILTER_SOCKET=unix:$(realpath -m "$WORK")/run/ag/milter.sock
fi
[ $FILTER_SET = 1 ] || FILTER_CMD='exec {authgate} serve --config {conf} --listen 127.0.0.1:{filter_port} --next-hop 127.0.0.1:{reinject_port} --role auto --mode after-queue --dns-server {dns}'
[ -n "$CONFIGS" ] || CONFIGS=floor,milters-unix,milter,filter
for v in N ROUNDS CONC MAXPROC TIMEOUT SMTP_PORT; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v,,} must be a positive integer"; done
case $AR_CHECK in dkim|all|none) ;; *) die "--ar-check must be dkim, all or none" ;; esac
[[ $DNS_ADDR =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--dns-addr must be a loopback IPv4 address (127.x.y.z)"
if [ -z "$CONFIGS" ]; then
  CONFIGS=floor,milters-unix,milters-inet
  [ -n "$FILTER_CMD" ] && CONFIGS+=,filter
  [ -n "$MILTER_CMD" ] && CONFIGS+=,milter
fi
IFS=, read -r -a CONF <<<"$CONFIGS"
declare -A WANT=()
for c in "${CONF[@]}"; do
  case $c in floor|milters-unix|milters-inet|filter|milter) WANT[$c]=1 ;; *) die "unknown configuration '$c' in --configs" ;; esac
done
if [ -n "$AUTHGATE_B" ]; then        # B runs right after A in each round's order (then rotated like the rest)
  B=()
  for c in "${CONF[@]}"; do B+=("$c"); case $c in filter|milter) B+=("$c-b") ;; esac; done
  [ ${#B[@]} -gt ${#CONF[@]} ] || die "--authgate-b needs milter or filter in --configs"
  CONF=("${B[@]}")
fi
[ -z "${WANT[filter]:-}" ] || [ -n "$FILTER_CMD" ] || die "--configs has filter: --filter-cmd is needed"
[ -z "${WANT[milter]:-}" ] || [ -n "$MILTER_CMD" ] || die "--configs has milter: --milter-cmd is needed"
[ -z "$FILTER_CMD" ] || [ -n "${WANT[filter]:-}" ] || echo "note: --filter-cmd given, but 'filter' is not in --configs"
[ -z "$MILTER_CMD" ] || [ -n "${WANT[milter]:-}" ] || echo "note: --milter-cmd given, but 'milter' is not in --configs"
MILTER_PF_SOCKET="" MILTER_WAIT=()
if [ -n "${WANT[milter]:-}" ]; then
  case $MILTER_SOCKET in
    unix:/*|local:/*) p=${MILTER_SOCKET#*:}; MILTER_PF_SOCKET="unix:$p"; MILTER_WAIT=(test -S "$p") ;;
    inet:[0-9]*@127.*) p=${MILTER_SOCKET#inet:}; MILTER_PF_SOCKET="inet:${p#*@}:${p%@*}"; MILTER_WAIT=(listening "${p#*@}" "${p%@*}") ;;
    *) die "--milter-socket must be unix:/absolute/path or inet:PORT@127.0.0.1 (got '$MILTER_SOCKET')" ;;
  esac
fi
[ "$(id -u)" = 0 ] || die "must run as root (Postfix, the mail uid, mount namespaces)"

# ---- the work directory; one run at a time (lock on this script; every daemon gets fd 9 closed)
exec 9<"$HERE/run.sh"
flock -n 9 || die "another run.sh is running"
mkdir -p "$WORK" || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
W=$WORK/run                       # this run's files (replaced by the next run)
rm -rf "$W"; mkdir -p "$W/dns" "$W/milters"
chmod 755 "$W"
GEN=$HERE/gen_corpus.py
PY=(python3 "$HERE/bench.py")
[ -f "$GEN" ] || die "cannot find gen_corpus.py beside this script"
case $WORK/ in /var/*) ;; *) die "--work must be under /var (Postfix writes its maillog_file only there)" ;; esac
# the private Postfix instance (lib.sh: pf_up, pf_down, pfc)
PF_STATE=$WORK/postfix
PFX=$PF_STATE/etc
MAILDIR=$PF_STATE/mail/example.test/user
mkdir -p "$PF_STATE"; chmod 755 "$WORK" "$PF_STATE"
[ ! -f "$PF_STATE/maillog" ] || : >"$PF_STATE/maillog"     # the last run's log only
. "$HERE/lib.sh"
FILTER_PID="" MILTER_PID="" MAIN_CF_UP=""
cleanup() {
  trap - EXIT INT TERM
  if [ $KEEP = 1 ]; then
    local pids kills
    pids=$(echo $DNS_PID $(milter_pids unix) $(milter_pids inet))
    kills="kill $pids${FILTER_PID:+; kill -- -$FILTER_PID}${MILTER_PID:+; kill -- -$MILTER_PID}"
    echo "--keep: left running: Postfix -c $PFX (content_filter = $(pfc postconf -h content_filter 2>/dev/null), smtpd_milters = $(pfc postconf -h smtpd_milters 2>/dev/null)), unbound + OpenDKIM/OpenDMARC pids $pids${FILTER_PID:+, filter process group $FILTER_PID}${MILTER_PID:+, milter process group $MILTER_PID}"
    echo "  stop them with: $kills; postfix -c $PFX stop"
    return
  fi
  cand_stop FILTER_PID; cand_stop MILTER_PID; milters_down; dns_down
  pf_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- installs (no-ops once done) and the corpus (cached in $WORK)
need=()
for p in postfix swaks opendkim opendmarc unbound; do command -v "$p" >/dev/null || need+=("$p"); done
[ ${#need[@]} = 0 ] || { echo "installing ${need[*]} (apt)"; apt_install "${need[@]}" 9<&-; }
for p in postfix opendkim opendmarc unbound unshare setsid flock openssl ss; do
  command -v "$p" >/dev/null || die "$p missing (apt-get install failed?)"
done
if ! python3 -c 'import dkim' 2>/dev/null; then
  echo "installing dkimpy (pip, else apt python3-dkim) for gen_corpus.py's signatures"
  pip install -q dkimpy >/dev/null 2>&1 || apt_install python3-dkim
  python3 -c 'import dkim' 2>/dev/null || die "python3 cannot import dkim (pip install dkimpy)"
fi
C=$WORK/corpus-$N
if [ ! -f "$C/manifest.json" ] || [ ! -d "$C/signed" ]; then
  echo "generating the corpus ($N messages) in $C"
  rm -rf "$C.tmp"
  python3 "$GEN" "$C.tmp" --count "$N" >/dev/null 2>"$W/corpus.log" || die "gen_corpus.py failed: $(tail -1 "$W/corpus.log")"
  rm -rf "$C"; mv "$C.tmp" "$C"
fi

# ---- DNS (unbound on loopback, and a zone file with the same records), the milters' configuration
"${PY[@]}" dns "$C" "$W/dns" mail.example.org 192.0.2.25 "$DNS_ADDR" >"$W/dns/records.log" 2>&1 \
  || die "writing the DNS records failed: $(tail -2 "$W/dns/records.log" | tr '\n' ' ')"
dns_up "$W/dns" || exit 1
milters_conf "$W/milters"
# Postfix's smtpd (user postfix) must reach the milters' unix sockets, virtual(8) (user mail) the Maildirs
if command -v runuser >/dev/null; then
  runuser -u postfix -- test -x "$W/milters/unix" 2>/dev/null || die "user postfix cannot enter $W/milters/unix: give --work a directory all users can traverse"
  runuser -u mail -- test -x "$PF_STATE" 2>/dev/null || die "user mail cannot enter $PF_STATE: give --work a directory all users can traverse"
fi

# ---- Postfix: :SMTP_PORT -> (content_filter: scan transport -> authgate :FILTER_PORT -> reinjection :REINJECT_PORT)
#      -> virtual(8) Maildir; the milters are switched in with smtpd_milters
for p in $SMTP_PORT $REINJECT_PORT; do
  listening 127.0.0.1 $p && ! pfc postfix status >/dev/null 2>&1 && die "127.0.0.1:$p is in use by something other than our Postfix"
done
pf_up >"$W/postfix-up.log" 2>&1 9<&- || die "starting Postfix failed: $(tail -3 "$W/postfix-up.log" | tr '\n' ' ')"
pfc postsuper -d ALL >/dev/null 2>&1

# ---- authgate's configuration: verify (DKIM, SPF for MAIL FROM and HELO, DMARC, iprev) for outside clients,
# sign for internal ones, as OpenDKIM Mode sv with its KeyTable/SigningTable; the same loopback DNS server
AG_DIR=$W/ag
mkdir -p "$AG_DIR"; chmod 755 "$AG_DIR"
install -m 0600 "$W/milters/keys/mail.private" "$AG_DIR/mail.private"
cat >"$AG_DIR/authgate.toml" <<EOF
# written by bench/postfix-milters/run.sh
authserv_id = "mx.example.test"
[trust]
internal_hosts = ["127.0.0.1/32"]
[[dkim.keys]]
name = "mail"
domain = "example.test"
selector = "mail"
file = "$AG_DIR/mail.private"
[[dkim.signing_table]]
pattern = "*@example.test"
keys = ["mail"]
EOF
if [ "$PEER_PARITY" = 1 ]; then
  printf '[iprev]\nenabled = false\n[spf]\nhelo = false\n' >>"$AG_DIR/authgate.toml"
fi
# ---- the filter / milter under test
subst() { # CMD: the tokens replaced
  local s=$1
  s=${s//'{zone}'/$(printf %q "$W/dns/bench.zone")}
  s=${s//'{dns}'/$DNS_ADDR:53}
  s=${s//'{work}'/$(printf %q "$W")}
  s=${s//'{authgate}'/$(printf %q "${2:-$AUTHGATE}")}
  s=${s//'{conf}'/$(printf %q "$AG_DIR/authgate.toml")}
  s=${s//'{filter_port}'/$FILTER_PORT}
  s=${s//'{reinject_port}'/$REINJECT_PORT}
  s=${s//'{milter_socket}'/$(printf %q "${MILTER_SOCKET#unix:}")}
  printf %s "$s"
}
RESOLV=""; [ $PRIVATE_RESOLV = 1 ] && RESOLV=$W/dns/resolv.conf
FILTER_CMD_B=$(subst "$FILTER_CMD" "$AUTHGATE_B"); MILTER_CMD_B=$(subst "$MILTER_CMD" "$AUTHGATE_B")
FILTER_CMD=$(subst "$FILTER_CMD"); MILTER_CMD=$(subst "$MILTER_CMD")
if [ -n "${WANT[filter]:-}" ] && listening 127.0.0.1 $FILTER_PORT; then
  die "127.0.0.1:$FILTER_PORT is in use before the filter starts: $(ss -Hltnp "sport = :$FILTER_PORT" 2>/dev/null)"
fi
if [ -n "${WANT[milter]:-}" ]; then
  if [ "${MILTER_WAIT[0]}" = test ]; then
    p=${MILTER_WAIT[2]}
    if [ -S "$p" ]; then
      [ -z "$(ss -Hxl 2>/dev/null | awk -v p="$p" '$5 == p')" ] || die "$p is in use before the milter starts"
      rm -f "$p"                  # a stale socket of an earlier run
    fi
  elif "${MILTER_WAIT[@]}"; then die "${MILTER_SOCKET} is in use before the milter starts"; fi
fi

# The milters and the filter run for the whole run (started once, as on a mail server; idle while another
# configuration is measured); each round checks that its component is still up and restarts it if it is not.
RESTARTS=0 FILTER_VAR="" MILTER_VAR=""
ensure() { # CONFIG
  local v cmd
  case $1 in
    milters-*) v=${1#milters-}
      milters_alive "$v" && return 0
      [ -z "$(milter_pids "$v" | tr -d ' ')" ] || { RESTARTS=$((RESTARTS + 1)); echo "  (a $v milter had exited: restarting the pair; logs in $W/milters/$v)"; milters_down "$v"; }
      milters_up "$v" "$W/dns/resolv.conf" || { milters_down "$v"; return 1; } ;;
    filter|filter-b) cmd=$FILTER_CMD; [ "$1" = filter ] || cmd=$FILTER_CMD_B
      if [ -n "$FILTER_PID" ] && [ "$FILTER_VAR" != "$1" ]; then cand_stop FILTER_PID    # A/B: the other binary's turn
      elif [ -n "$FILTER_PID" ] && kill -0 "$FILTER_PID" 2>/dev/null; then return 0
      elif [ -n "$FILTER_PID" ]; then RESTARTS=$((RESTARTS + 1)); echo "  (the filter had exited: restarting it; see $W/filter.log)"; cand_stop FILTER_PID; fi
      FILTER_VAR=$1
      cand_start FILTER_PID "$cmd" "$W/filter.log" "$RESOLV"
      wait_ready "$FILTER_PID" "$W/filter.log" "the filter (--filter-cmd)" 30 listening 127.0.0.1 $FILTER_PORT ;;
    milter|milter-b) cmd=$MILTER_CMD; [ "$1" = milter ] || cmd=$MILTER_CMD_B
      if [ -n "$MILTER_PID" ] && [ "$MILTER_VAR" != "$1" ]; then cand_stop MILTER_PID
      elif [ -n "$MILTER_PID" ] && kill -0 "$MILTER_PID" 2>/dev/null; then return 0
      elif [ -n "$MILTER_PID" ]; then RESTARTS=$((RESTARTS + 1)); echo "  (the milter had exited: restarting it; see $W/milter.log)"; cand_stop MILTER_PID; fi
      MILTER_VAR=$1
      [ "${MILTER_WAIT[0]}" != test ] || rm -f "${MILTER_WAIT[2]}"
      cand_start MILTER_PID "$cmd" "$W/milter.log" "$RESOLV"
      wait_ready "$MILTER_PID" "$W/milter.log" "the milter (--milter-cmd)" 30 "${MILTER_WAIT[@]}" ;;
  esac
}

# run_one ROUND CONFIG N OUT: one configuration, one timed push of N messages; prints one line
run_one() {
  local r=$1 c=$2 n=$3 out=$4 fp="" ar=none rc left
  ensure "$c" || { echo "round $r $c: it did not start (logs in $W)"; return 2; }
  postfix_mode "${c%-b}" || { echo "postfix reload for $c failed"; return 2; }
  pfc postsuper -d ALL >/dev/null 2>&1
  rm -rf "$MAILDIR"
  case $c in
    milters-*) fp=$(milter_pids "${c#milters-}" | tr ' ' ,); ar=all ;;
    filter|filter-b) fp=$FILTER_PID; ar=$AR_CHECK ;;
    milter|milter-b) fp=$MILTER_PID; ar=$AR_CHECK ;;
  esac
  "${PY[@]}" load --corpus "$C" --n "$n" --conc "$CONC" --maildir "$MAILDIR" --port "$SMTP_PORT" --config "$c" --round "$r" \
    --tag "r$r-$c" --ar-check "$ar" --postfix-pid "$(postfix_master)" --filter-pids "$fp" --dns-pid "$DNS_PID" \
    --timeout "$TIMEOUT" --out "$out" 9<&- 2>>"$W/load.err"
  rc=$?
  left=$(pfc postqueue -j 2>/dev/null | wc -l)
  [ "$left" = 0 ] || { echo "  ($left messages left in the queue after round $r $c; deleted)"; pfc postsuper -d ALL >/dev/null 2>&1; }
  return $rc
}

T0=$SECONDS
echo "postfix-milters: $(pfc postconf -h mail_version | sed 's/^/Postfix /'), $(opendkim -V | head -1 | sed 's/.*Filter //;s/^/OpenDKIM /'), $(opendmarc -V | head -1 | sed 's/.*Filter //;s/^/OpenDMARC /'), $(nproc) CPUs; configurations: ${CONF[*]}; DNS: unbound $DNS_ADDR:53 and $W/dns/bench.zone; work: $WORK"
[ -z "$FILTER_CMD" ] || echo "filter: $FILTER_CMD${RESOLV:+ (private resolv.conf)}"
[ -z "$MILTER_CMD" ] || echo "milter: $MILTER_CMD on $MILTER_SOCKET (Postfix: $MILTER_PF_SOCKET)${RESOLV:+ (private resolv.conf)}"
[ -z "$AUTHGATE_B" ] || echo "A/B: milter-b and filter-b run $AUTHGATE_B"
# ---- warm-up and smoke test: a short push through each configuration (not counted)
WN=$((N < 100 ? N : 100))
for c in "${CONF[@]}"; do
  run_one 0 "$c" "$WN" "$W/warmup.jsonl" || { echo "the $c path does not work (warm-up above; logs in $W and $WORK/harness/postfix/maillog): no measurement"; exit 1; }
done

# ---- measured rounds, configurations alternated (the order rotates each round)
FAILED=0
k=${#CONF[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < k; i++)); do
    run_one "$r" "${CONF[$(((i + r - 1) % k))]}" "$N" "$W/results.jsonl"
    [ $? = 2 ] && FAILED=1
  done
done
echo "rounds: $ROUNDS (each: ${CONF[*]}, order rotated); $((SECONDS - T0)) s in all; restarts of a milter or the filter: $RESTARTS; details in $W"
"${PY[@]}" report "$W/results.jsonl" --rounds "$ROUNDS" --summary "$W/summary.txt"
rc=$?
[ $FAILED = 0 ] && [ $RESTARTS = 0 ] || rc=1
exit $rc
