#!/usr/bin/env bash
# End-to-end test of `authgate milter` with a real Postfix on loopback.
#
#   tests/e2e/milter.sh            # build (debug) if needed, run every check, clean up
#   E2E_AUTHGATE=target/release/authgate tests/e2e/milter.sh
#   KEEP=1 tests/e2e/milter.sh     # leave Postfix and authgate running afterwards
#
# Self-contained: installs postfix and swaks with apt if missing (daemons kept
# from starting by a temporary policy-rc.d), and runs its OWN Postfix instance
# (`postfix -c $STATE/etc`, own queue, ports SMTP_PORT=2626 and SUB_PORT=2687),
# so it leaves /etc/postfix and any other Postfix alone. Clients are made to
# look remote with XCLIENT (swaks --xclient), which Postfix allows from
# 127.0.0.0/8 here; DNS is an offline zone file (--dns-zone).
#
# Checks (each prints PASS/FAIL; exit status 1 if any failed):
#  1. inbound: dkim/spf/dmarc pass in our A-R, which is the topmost field of
#     the delivered message; Received-SPF added; a forged A-R with our
#     authserv-id removed, another A-R kept
#  2. outbound: internal client (internal_hosts), XCLIENT LOGIN ({auth_authen})
#     and the ORIGINATING submission service: signed, dkimpy verifies
#  3. non_smtpd_milters: sendmail(1) mail for a signing-table domain is signed
#  4. DMARC p=reject failure: swaks sees 550 5.7.1 at end of DATA
#  5. milter.quarantine = hold: p=quarantine failure lands in the HOLD queue
#  6. authgate stopped: milter_default_action=tempfail -> 451; =accept -> delivered unsigned
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE=${STATE:-/var/tmp/authgate-milter-e2e}
SMTP_PORT=${SMTP_PORT:-2626}
SUB_PORT=${SUB_PORT:-2687}
AUTHGATE=${E2E_AUTHGATE:-$ROOT/target/debug/authgate}
PFX="$STATE/etc"
SOCK="$STATE/run/milter.sock"
AG_PID=""
failed=0

say() { printf 'milter-e2e: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { # description, then a command; PASS if it succeeds
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

[ "$(id -u)" = 0 ] || die "run as root (Postfix master, mail uid for delivery)"

install_deps() {
    local missing=()
    command -v postfix >/dev/null || missing+=(postfix)
    command -v swaks >/dev/null || missing+=(swaks)
    [ "${#missing[@]}" = 0 ] && return 0
    say "apt-get install ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    python3 -c 'import dkim' 2>/dev/null || python3 -m pip install -q dkimpy 2>/dev/null ||
        python3 -m pip install -q --break-system-packages dkimpy
}

# --- keys, DNS zone, authgate config -------------------------------------------
zone_line() { # keygen output -> the BIND zone record (multi-line)
    sed -n '/^# 1. BIND zone file line:/,/^$/p' | sed '1d;/^$/d'
}

write_authgate_config() {
    mkdir -p "$STATE/keys" "$STATE/run"
    chmod 755 "$STATE" "$STATE/run"
    rm -f "$STATE/keys"/*
    "$AUTHGATE" keygen -d example.test -s e2e -o "$STATE/keys" | zone_line >"$STATE/own.zone"
    "$AUTHGATE" keygen -d example.org -s ext -o "$STATE/keys" | zone_line >"$STATE/ext.zone"
    cat >"$STATE/test.zone" <<'EOF'
$ORIGIN .
$TTL 300
example.org.               IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org.        IN TXT "v=DMARC1; p=reject"
reject.example.            IN TXT "v=spf1 ip4:198.51.100.1 -all"
_dmarc.reject.example.     IN TXT "v=DMARC1; p=reject"
quarantine.example.        IN TXT "v=spf1 ip4:198.51.100.1 -all"
_dmarc.quarantine.example. IN TXT "v=DMARC1; p=quarantine"
example.test.              IN TXT "v=spf1 -all"
_dmarc.example.test.       IN TXT "v=DMARC1; p=none"
10.2.0.192.in-addr.arpa.   IN PTR mail.example.org.
mail.example.org.          IN A   192.0.2.10
EOF
    cat "$STATE/own.zone" "$STATE/ext.zone" >>"$STATE/test.zone"
    cat >"$STATE/authgate.toml" <<EOF
authserv_id = "mx.example.test"
[trust]
internal_hosts = ["10.0.0.0/8"]
[[dkim.keys]]
name = "own"
domain = "example.test"
selector = "e2e"
file = "$STATE/keys/e2e.example.test.key"
[[dkim.signing_table]]
pattern = "*@example.test"
keys = ["own"]
[milter]
listen = "unix:$SOCK"
socket_mode = "0660"
socket_group = "postfix"
EOF
}

start_authgate() {
    stop_authgate
    RUST_LOG=${RUST_LOG:-info} "$AUTHGATE" milter --config "$STATE/authgate.toml" --dns-zone "$STATE/test.zone" \
        >>"$STATE/authgate.log" 2>&1 &
    AG_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do [ -S "$SOCK" ] && return 0; sleep 0.1; done
    cat "$STATE/authgate.log" >&2
    die "authgate did not create $SOCK"
}

stop_authgate() {
    [ -n "$AG_PID" ] || return 0
    kill "$AG_PID" 2>/dev/null || true
    wait "$AG_PID" 2>/dev/null || true
    AG_PID=""
}

# --- Postfix instance -------------------------------------------------------
postfix_up() {
    mkdir -p "$PFX" "$STATE/queue" "$STATE/data" "$STATE/mail"
    chown postfix "$STATE/data"
    chown mail:mail "$STATE/mail"
    printf '%s\n' "bob@example.test example.test/bob/" "alice@example.test example.test/alice/" \
        "postmaster@example.test example.test/postmaster/" >"$PFX/vmailbox"
    cat >"$PFX/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $STATE/queue
data_directory = $STATE/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_transport = error:no local delivery
default_transport = error:no outside delivery
virtual_mailbox_domains = example.test
virtual_mailbox_base = $STATE/mail
virtual_mailbox_maps = texthash:$PFX/vmailbox
virtual_uid_maps = static:$(id -u mail)
virtual_gid_maps = static:$(id -g mail)
virtual_minimum_uid = 1
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
maillog_file = $STATE/maillog
smtpd_milters = unix:$SOCK
non_smtpd_milters = unix:$SOCK
milter_default_action = tempfail
milter_command_timeout = 30s
milter_content_timeout = 60s
queue_run_delay = 20s
minimal_backoff_time = 20s
EOF
    cat >"$PFX/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SUB_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o milter_macro_daemon_name=ORIGINATING
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
    touch "$STATE/maillog"
    postfix -c "$PFX" check >&2 || die "postfix check failed"
    if postfix -c "$PFX" status >/dev/null 2>&1; then
        postfix -c "$PFX" reload >/dev/null 2>&1
    else
        postfix -c "$PFX" start >/dev/null 2>&1 || die "postfix start failed (see $STATE/maillog)"
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null && return 0
        sleep 0.1
    done
    die "postfix not listening on 127.0.0.1:$SMTP_PORT"
}

postfix_down() {
    postfix -c "$PFX" stop >/dev/null 2>&1 || true
}

set_default_action() {
    postconf -c "$PFX" -e "milter_default_action = $1"
    postfix -c "$PFX" reload >/dev/null 2>&1
    sleep 1
}

cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        say "KEEP=1: authgate pid ${AG_PID:-none}, postfix -c $PFX left running"
        return
    fi
    stop_authgate
    postfix_down
}

# --- sending and reading mail ---------------------------------------------------
# send ID [swaks args...]: one message with X-Test-Id: ID; transcript in $STATE/swaks-ID.txt
send() {
    local id=$1; shift
    swaks --server 127.0.0.1 --port "$SMTP_PORT" --add-header "X-Test-Id: $id" "$@" \
        >"$STATE/swaks-$id.txt" 2>&1 || true
}

# delivered ID: path of the delivered message (waits up to 20 s)
delivered() {
    local i f
    for ((i = 0; i < 100; i++)); do
        # Only new/ and cur/: virtual(8) writes to tmp/ first and renames when done.
        f=$(grep -rlF "X-Test-Id: $1" "$STATE/mail" 2>/dev/null | grep -E '/(new|cur)/' | head -n1 || true)
        [ -n "$f" ] && { echo "$f"; return 0; }
        sleep 0.2
    done
    return 1
}

# header block of a delivered message, unfolded, one field per line
headers_of() {
    sed '/^\r\?$/q' "$1" | tr -d '\r' | sed ':a;N;$!ba;s/\n[ \t]\+/ /g'
}

dkimpy_verifies() { # FILE: dkimpy verifies every signature with keys from the zone file
    python3 - "$1" "$STATE/test.zone" <<'EOF'
import re, sys, dkim
msg = open(sys.argv[1], 'rb').read()
zone = open(sys.argv[2]).read()
keys = {}
for m in re.finditer(r'^(\S+)\s+IN TXT \((.*?)\)', zone, re.M | re.S):
    keys[m.group(1).rstrip('.').lower()] = ''.join(re.findall(r'"([^"]*)"', m.group(2))).encode()
def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip('.').lower())
d = dkim.DKIM(msg)
ok = d.verify(dnsfunc=dnsfunc)
print('dkimpy:', ok, 'signatures:', msg.count(b'DKIM-Signature:'))
sys.exit(0 if ok else 1)
EOF
}

# --- the checks -------------------------------------------------------------------
test_inbound() {
    echo "== 1. inbound message verified"
    local msg="$STATE/in.eml" signed="$STATE/in-signed.eml"
    printf '%s\r\n' "From: Sender <sender@example.org>" "To: bob@example.test" "Subject: inbound" \
        "Date: Mon, 01 Jan 2024 00:00:00 +0000" "Message-ID: <in1@example.org>" "" "Hello Bob." >"$msg"
    "$AUTHGATE" sign -d example.org -s ext -k "$STATE/keys/ext.example.org.key" <"$msg" >"$signed"
    # Forged A-R with our authserv-id first (must go), a foreign one (must stay).
    { printf '%s\r\n' "Authentication-Results: mx.example.test; dkim=pass header.d=example.org" \
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=example.org"; cat "$signed"; } >"$msg"
    send in1 --from sender@example.org --to bob@example.test --data "$msg" \
        --xclient "ADDR=192.0.2.10 NAME=mail.example.org HELO=mail.example.org"
    local f
    if ! f=$(delivered in1); then fail "inbound message delivered"; cat "$STATE/swaks-in1.txt"; return; fi
    pass "inbound message delivered"
    local h first
    h=$(headers_of "$f")
    # The first field Postfix did not add at delivery (virtual(8) prepends these three).
    first=$(grep -vE '^(Return-Path|X-Original-To|Delivered-To):' <<<"$h" | head -n1)
    echo "$h" | grep -E '^(Authentication-Results|Received-SPF|Received):' | cut -c1-200
    check "our A-R is the topmost field" grep -q '^Authentication-Results: mx.example.test;' <<<"$first"
    check "A-R has dkim=pass header.d=example.org" grep -qE '^Authentication-Results: mx.example.test;.*dkim=pass[^;]*header.d=example.org' <<<"$h"
    check "A-R has spf=pass" grep -qE '^Authentication-Results: mx.example.test;.*spf=pass' <<<"$h"
    check "A-R has dmarc=pass" grep -qE '^Authentication-Results: mx.example.test;.*dmarc=pass' <<<"$h"
    check "Received-SPF: pass added" grep -q '^Received-SPF: pass' <<<"$h"
    check "exactly one A-R with our authserv-id (forged one removed)" \
        test "$(grep -c '^Authentication-Results: mx.example.test' <<<"$h")" = 1
    check "foreign A-R kept" grep -q '^Authentication-Results: other.example; spf=pass' <<<"$h"
    check "original DKIM signature still verifies after delivery" dkimpy_verifies "$f"
}

test_outbound() {
    echo "== 2. outbound message signed"
    local id how
    for how in internal login originating; do
        id="out-$how"
        local args=(--from alice@example.test --to bob@example.test --header "From: alice@example.test"
            --header "Subject: outbound $how" --body "Signed body, $how.")
        case $how in
        internal) send "$id" "${args[@]}" --xclient "ADDR=10.1.2.3 NAME=lan.example.test" ;;
        login) send "$id" "${args[@]}" --xclient "ADDR=198.51.100.7 NAME=roaming.example LOGIN=alice" ;;
        originating) swaks --server 127.0.0.1 --port "$SUB_PORT" --add-header "X-Test-Id: $id" "${args[@]}" \
            --xclient "ADDR=198.51.100.8 NAME=roaming2.example" >"$STATE/swaks-$id.txt" 2>&1 || true ;;
        esac
        local f
        if ! f=$(delivered "$id"); then fail "$how: delivered"; tail -5 "$STATE/swaks-$id.txt"; continue; fi
        check "$how: DKIM-Signature d=example.test added" grep -q 'd=example.test' <(headers_of "$f" | grep '^DKIM-Signature:')
        check "$how: no A-R (sign-only role)" bash -c "! grep -q '^Authentication-Results: mx.example.test' <(sed '/^\r\?$/q' '$f')"
        check "$how: dkimpy verifies the signature" dkimpy_verifies "$f"
    done
}

test_local_submission() {
    echo "== 3. non_smtpd_milters (sendmail -t) signed"
    printf '%s\n' "From: alice@example.test" "To: bob@example.test" "Subject: local" "X-Test-Id: local1" "" \
        "Submitted with sendmail(1)." | sendmail -C "$PFX" -t -f alice@example.test
    local f
    if ! f=$(delivered local1); then fail "local submission delivered"; tail -20 "$STATE/maillog"; return; fi
    check "local submission: DKIM-Signature added" grep -q '^DKIM-Signature:' <(headers_of "$f")
    check "local submission: dkimpy verifies" dkimpy_verifies "$f"
}

test_reject() {
    echo "== 4. DMARC p=reject failure is refused with 550"
    send rej1 --from ceo@reject.example --to bob@example.test --header "From: ceo@reject.example" \
        --header "Subject: spoofed" --xclient "ADDR=203.0.113.5 NAME=spoof.example"
    grep -E '^ *<\*\* +5' "$STATE/swaks-rej1.txt" || true
    check "swaks saw 550 5.7.1 at end of DATA" grep -qE '^ *<\*\* +550 5\.7\.1 .*DMARC' "$STATE/swaks-rej1.txt"
    check "nothing delivered" bash -c "! grep -rqF 'X-Test-Id: rej1' '$STATE/mail'"
}

test_hold() {
    echo "== 5. milter.quarantine = hold puts p=quarantine failures on HOLD"
    AUTHGATE_MILTER__QUARANTINE=hold start_authgate
    send q1 --from ceo@quarantine.example --to bob@example.test --header "From: ceo@quarantine.example" \
        --header "Subject: quarantined" --xclient "ADDR=203.0.113.6 NAME=spoof2.example"
    local i held=""
    for ((i = 0; i < 50; i++)); do
        held=$(postqueue -c "$PFX" -j 2>/dev/null | grep '"queue_name": *"hold"' || true)
        [ -n "$held" ] && break
        sleep 0.2
    done
    check "message is in the hold queue" test -n "$held"
    postsuper -c "$PFX" -d ALL hold >/dev/null 2>&1 || true
    start_authgate
}

test_default_action() {
    echo "== 6. authgate stopped: Postfix applies milter_default_action"
    stop_authgate
    set_default_action tempfail
    send down1 --from sender@example.org --to bob@example.test --xclient "ADDR=192.0.2.10 NAME=mail.example.org"
    grep -E '^ *<\*\* ' "$STATE/swaks-down1.txt" | head -2 || true
    check "tempfail: client sees 451 4.7.1" grep -qE '^ *<\*\* +451 4\.7\.1' "$STATE/swaks-down1.txt"
    set_default_action accept
    send down2 --from sender@example.org --to bob@example.test --xclient "ADDR=192.0.2.10 NAME=mail.example.org"
    local f
    if f=$(delivered down2); then
        pass "accept: delivered without the milter"
        check "accept: no A-R added" bash -c "! grep -q '^Authentication-Results: mx.example.test' '$f'"
    else
        fail "accept: delivered without the milter"
    fi
    set_default_action tempfail
    start_authgate
}

main() {
    install_deps
    [ -x "$AUTHGATE" ] || (cd "$ROOT" && cargo build --quiet) || die "cannot build authgate"
    trap cleanup EXIT
    postfix_down
    rm -rf "$STATE/mail" "$STATE/queue" "$STATE/maillog" "$STATE/authgate.log"
    write_authgate_config
    start_authgate
    postfix_up
    test_inbound
    test_outbound
    test_local_submission
    test_reject
    test_hold
    test_default_action
    echo "== authgate log (per-message lines)"
    grep -E 'message' "$STATE/authgate.log" | sed 's/^.*INFO //' | cut -c1-240 | tail -n 12 || true
    if [ "$failed" -gt 0 ]; then
        echo "milter e2e: $failed check(s) FAILED (logs: $STATE/authgate.log, $STATE/maillog)"
        exit 1
    fi
    echo "milter e2e: all checks passed"
}

main "$@"
