#!/usr/bin/env bash
# tests/e2e/run.sh — authgate under real MTAs (Exim, Postfix, Dovecot) on loopback.
#
#   tests/e2e/run.sh              every case
#   tests/e2e/run.sh exim         only the cases whose name contains "exim"
#   E2E_AUTHGATE=target/release/authgate tests/e2e/run.sh
#
# Needs root (Postfix's master, Exim's privilege switch, the `mail` user for
# delivery). Installs what is missing (scripts/test does it beforehand). Prints
# `ok NAME` or `FAIL NAME: reason` per case and ends with `N passed, M failed`;
# exits non-zero on any failure. Every daemon it started is stopped on exit.
# Each case finds its messages by a unique X-Harness-Id header, so mail left
# over from earlier runs never confuses it.
set -uo pipefail
E2E_NAME=e2e
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E_AUTHGATE=${E2E_AUTHGATE:-$REPO/target/debug/authgate}
POSTFIX="$E2E_DIR/postfix.sh"
DOVECOT="$E2E_DIR/dovecot.sh"
EXIM="$E2E_DIR/exim.sh"
LOGDIR=$E2E_STATE/logs
REASON_FILE=$E2E_STATE/reason

# --- case helpers (run inside the case's subshell, under set -e) -------------
# fail REASON: end the case with that reason
fail() { echo "$*" >"$REASON_FILE"; exit 1; }
# expect DESCRIPTION COMMAND...: the command must succeed, else fail with DESCRIPTION
expect() { local d=$1; shift; "$@" >/dev/null 2>&1 || fail "$d"; }
# has FILE REGEX: the message's header block matches REGEX
has() { headers_of "$1" | grep -qE -- "$2"; }
count_mail() { find_mail "$1" "$2" | grep -c . || true; }

# --- Exim: authgate pipe as transport_filter ----------------------------------
EXIM_MAIL=$E2E_STATE/exim/mail

case_exim_local_delivery_verifies() {
    local id f
    id=$(new_id)
    "$EXIM" send "$id" "sender@$SENDER_DOMAIN" "user@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml"
    f=$("$EXIM" wait-delivered "$id" 30) || fail "not delivered (see exim mainlog)"
    f=${f%%$'\n'*} # the first one
    has "$f" "^Authentication-Results: $AUTHSERV_ID;" || fail "no Authentication-Results from $AUTHSERV_ID"
    [[ $(headers_of "$f" | grep -c 'dkim=pass header.d=football.example.com') == 2 ]] ||
        fail "expected dkim=pass for both RFC 8463 signatures"
    # the envelope came from Return-path: and the trusted Received: (no tainted variables)
    has "$f" "smtp.mailfrom=sender@$SENDER_DOMAIN" || fail "MAIL FROM not taken from Return-path:"
    has "$f" "client-ip=127.0.0.1;.*helo=client.$SENDER_DOMAIN" || fail "client not taken from our Received:"
}

case_exim_remote_smtp_signs() {
    local id f v
    id=$(new_id)
    "$EXIM" send "$id" "alice@$SIGN_DOMAIN" bob@example.net --header "From: Alice <alice@$SIGN_DOMAIN>"
    f=$("$EXIM" wait-delivered "$id" 30 sink) || fail "not delivered to the sink (see exim mainlog)"
    f=${f%%$'\n'*} # the first one
    [[ $(headers_of "$f" | grep -c "^DKIM-Signature: .*d=$SIGN_DOMAIN") == 2 ]] ||
        fail "expected an RSA and an Ed25519 signature for $SIGN_DOMAIN"
    v=$(dkimpy_verify "$f") || fail "dkimpy did not run"
    [[ $v == $'pass\npass' ]] || fail "dkimpy: $(tr '\n' ' ' <<<"$v")"
}

case_exim_filter_tempfail_keeps_the_message_queued() {
    local id mid conf=$E2E_LIBEXEC/exim-verify.toml
    cp "$E2E_LIBEXEC/verify.toml" "$conf"
    echo 'not_a_setting = 1   # e2e: authgate refuses this config and exits 75' >>"$conf"
    id=$(new_id)
    "$EXIM" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN"
    mid=$("$EXIM" wait-queued "$id" 30) || { cp "$E2E_LIBEXEC/verify.toml" "$conf"; fail "no deferral logged"; }
    grep -qF "$mid == alice@$TEST_DOMAIN R=local_user T=local_maildir defer (-24): transport filter process failed (75)" \
        "$E2E_STATE/exim/log/mainlog" || { cp "$E2E_LIBEXEC/verify.toml" "$conf"; fail "no 'transport filter process failed (75)' deferral"; }
    "$EXIM" queue | grep -qF "$mid" || { cp "$E2E_LIBEXEC/verify.toml" "$conf"; fail "$mid not in exim -bp"; }
    [[ $(count_mail "$EXIM_MAIL" "$id") == 0 ]] || fail "delivered although the filter failed"
    cp "$E2E_LIBEXEC/verify.toml" "$conf" # fault fixed
    "$EXIM" flush
    "$EXIM" wait-delivered "$id" 30 >/dev/null || fail "not delivered after the fix and exim -qff"
    [[ $(count_mail "$EXIM_MAIL" "$id") == 1 ]] || fail "delivered $(count_mail "$EXIM_MAIL" "$id") times"
    "$EXIM" queue | grep -qF "$mid" && fail "$mid still queued after delivery"
    return 0
}

# --- Postfix pipe(8) + authgate pipe --reinject + sendmail --------------------
PF_MAIL=$E2E_STATE/postfix/mail

case_postfix_pipe_reinject() {
    local id f
    FILTER=pipe "$POSTFIX" up
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN,bob@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml"
    "$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL" >/dev/null || fail "not delivered"
    sleep 1 # a second copy would arrive now
    [[ $(count_mail "$PF_MAIL" "$id") == 2 ]] || fail "expected 2 copies (alice, bob), got $(count_mail "$PF_MAIL" "$id")"
    for f in $(find_mail "$PF_MAIL" "$id"); do
        [[ $(headers_of "$f" | grep -c "^Authentication-Results: $AUTHSERV_ID;") == 1 ]] ||
            fail "$f: not exactly one A-R (filtered twice, or not at all)"
        [[ $(headers_of "$f" | grep -c 'dkim=pass header.d=football.example.com') == 2 ]] || fail "$f: no dkim=pass"
        has "$f" "^Return-Path: <sender@$SENDER_DOMAIN>" || fail "$f: envelope sender not kept by sendmail -f"
    done
    grep -qE "to=<alice@$TEST_DOMAIN>, relay=authgate-pipe.*status=sent" "$E2E_STATE/postfix/maillog" ||
        fail "pipe(8) did not log status=sent"
    # the null sender survives (pipe null_sender=, sendmail -f '')
    id=$(new_id)
    "$POSTFIX" send "$id" '<>' "alice@$TEST_DOMAIN"
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL") || fail "null-sender message not delivered"
    f=${f%%$'\n'*} # the first one
    has "$f" '^Return-Path: <>' || fail "null sender became $(headers_of "$f" | grep '^Return-Path')"
    has "$f" "^Authentication-Results: $AUTHSERV_ID;" || fail "null-sender message not filtered"
}

case_postfix_pipe_reinject_tempfail_defers() {
    local id qid conf=$E2E_LIBEXEC/postfix-pipe.toml
    FILTER=pipe "$POSTFIX" up
    echo 'not_a_setting = 1   # e2e: authgate exits 75' >>"$conf"
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN"
    qid=$("$POSTFIX" wait-deferred "$id" 30) || { cp "$E2E_LIBEXEC/verify.toml" "$conf"; fail "not deferred"; }
    grep -qE "$qid: to=<alice@$TEST_DOMAIN>, relay=authgate-pipe.*status=deferred" "$E2E_STATE/postfix/maillog" ||
        { cp "$E2E_LIBEXEC/verify.toml" "$conf"; fail "no status=deferred from pipe(8)"; }
    [[ $(count_mail "$PF_MAIL" "$id") == 0 ]] || fail "delivered although the filter failed"
    cp "$E2E_LIBEXEC/verify.toml" "$conf"
    "$POSTFIX" flush
    "$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL" >/dev/null || fail "not delivered after the fix and postqueue -f"
    sleep 1
    [[ $(count_mail "$PF_MAIL" "$id") == 1 ]] || fail "delivered $(count_mail "$PF_MAIL" "$id") times"
}

# --- authgate serve under Postfix (and Dovecot) --------------------------------
DC_MAIL=$E2E_STATE/dovecot/mail

# serve_up NAME PORT ARGS...: start `authgate serve ARGS` in the background (pid
# file, log in $LOGDIR) and wait for PORT. One instance at a time: any other
# is stopped first, so a case never talks to the previous case's listener.
serve_up() {
    local name=$1 port=$2 pidf=$E2E_STATE/serve-$1.pid
    shift 2
    serve_stop_all
    wait_port_closed 127.0.0.1 "$port" 10 || fail "127.0.0.1:$port is taken by another process"
    # a clean environment: AUTHGATE_* variables would be read as configuration
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin RUST_LOG=authgate=info nohup "$E2E_LIBEXEC/authgate" serve "$@" </dev/null >>"$LOGDIR/serve-$name.log" 2>&1 &
    echo $! >"$pidf"
    wait_port 127.0.0.1 "$port" 20 || fail "authgate serve ($name) not listening on :$port (see $LOGDIR/serve-$name.log)"
}
serve_down() { stop_pid "$E2E_STATE/serve-$1.pid" "authgate serve"; }
serve_stop_all() {
    local f
    for f in "$E2E_STATE"/serve-*.pid; do [[ -e $f ]] && stop_pid "$f" "authgate serve"; done
    return 0
}

# serve_config PROTO: serve.toml plus the two listeners of contrib/postfix's
# content_filter layout: inbound on :10025 (PROTO), outbound (signing) on :10027
serve_config() {
    local f=$E2E_LIBEXEC/serve-content-$1.toml
    cat "$E2E_LIBEXEC/serve.toml" - >"$f" <<EOF

[[listener]]
listen = "127.0.0.1:10025"
protocol = "$1"
next_hop = "127.0.0.1:10026"
next_hop_protocol = "smtp"
role = "inbound"
mode = "after-queue"

[[listener]]
listen = "127.0.0.1:10027"
protocol = "smtp"
next_hop = "127.0.0.1:10026"
next_hop_protocol = "smtp"
role = "outbound"
mode = "after-queue"
EOF
    echo "$f"
}

# content_layout PROTO: Postfix content_filter (PROTO) to authgate serve's two listeners
content_layout() {
    FILTER=content FILTER_PROTO=$1 REINJECT=on "$POSTFIX" up
    serve_up content 10025 --config "$(serve_config "$1")"
    wait_port 127.0.0.1 10027 10 || fail "outbound listener :10027 not up"
}

# inbound_checks FILE: our A-R with both RFC 8463 signatures passing
inbound_checks() {
    [[ $(headers_of "$1" | grep -c "^Authentication-Results: $AUTHSERV_ID;") == 1 ]] || fail "$1: not exactly one A-R from $AUTHSERV_ID"
    [[ $(headers_of "$1" | grep -c 'dkim=pass header.d=football.example.com') == 2 ]] || fail "$1: no dkim=pass for both signatures"
    has "$1" "smtp.mailfrom=sender@$SENDER_DOMAIN" || fail "$1: no SPF for the envelope sender"
}

# outbound_checks: a message submitted on :587 is signed by the outbound listener; dkimpy verifies
outbound_checks() {
    local id f v
    id=$(new_id)
    SEND_PORT=587 "$POSTFIX" send "$id" "alice@$SIGN_DOMAIN" "user@$TEST_DOMAIN" --header "From: Alice <alice@$SIGN_DOMAIN>"
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL") || fail "submission message not delivered"
    f=${f%%$'\n'*} # the first one
    [[ $(headers_of "$f" | grep -c "^DKIM-Signature: .*d=$SIGN_DOMAIN") == 2 ]] || fail "submission message not dual-signed"
    v=$(dkimpy_verify "$f") || fail "dkimpy did not run"
    [[ $v == $'pass\npass' ]] || fail "dkimpy: $(tr '\n' ' ' <<<"$v")"
}

case_postfix_content_filter_smtp() {
    local id f
    content_layout smtp
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml"
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL") || fail "not delivered through authgate"
    f=${f%%$'\n'*} # the first one
    inbound_checks "$f"
    # authgate passed Postfix's XFORWARD on to the reinjection smtpd
    grep -qE "postfix/reinject/smtpd.*orig_queue_id=[0-9A-F]+, orig_client=localhost\[127.0.0.1\]" "$E2E_STATE/postfix/maillog" ||
        fail "reinjection smtpd did not log orig_client (XFORWARD not passed on)"
    outbound_checks
}

case_postfix_content_filter_lmtp() {
    local id f
    content_layout lmtp
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN,bob@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml"
    "$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL" >/dev/null || fail "not delivered through authgate (LMTP)"
    sleep 1
    [[ $(count_mail "$PF_MAIL" "$id") == 2 ]] || fail "expected 2 copies, got $(count_mail "$PF_MAIL" "$id")"
    for f in $(find_mail "$PF_MAIL" "$id"); do inbound_checks "$f"; done
    grep -qE "to=<alice@$TEST_DOMAIN>, relay=127.0.0.1\[127.0.0.1\]:10025.*status=sent" "$E2E_STATE/postfix/maillog" ||
        fail "Postfix's lmtp client did not log status=sent for alice"
    outbound_checks
}

case_postfix_lmtp_to_dovecot_per_recipient_replies() {
    local id f log=$E2E_STATE/postfix/maillog
    "$DOVECOT" up
    FILTER=lmtp "$POSTFIX" up
    serve_up lmtp 10024 --config "$E2E_LIBEXEC/serve.toml" --listen 127.0.0.1:10024 --protocol lmtp \
        --next-hop 127.0.0.1:24 --next-hop-protocol lmtp --role inbound
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN,nosuchuser@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml"
    # (the bounce for nosuchuser, in sender's mailbox, carries the same X-Harness-Id)
    f=$(wait_mail "$DC_MAIL/$TEST_DOMAIN/alice" "$id" 30) || fail "alice's copy not in Dovecot"
    inbound_checks "$f"
    wait_log() { local i; for ((i = 0; i < 100; i++)); do grep -qE "$1" "$log" && return 0; sleep 0.2; done; return 1; }
    wait_log "to=<alice@$TEST_DOMAIN>, relay=127.0.0.1\[127.0.0.1\]:10024.*status=sent \(250" ||
        fail "no 250 for alice in the Postfix log"
    wait_log "to=<nosuchuser@$TEST_DOMAIN>, relay=127.0.0.1\[127.0.0.1\]:10024.*status=bounced .*said: 5[0-9][0-9]" ||
        fail "no 5xx for nosuchuser in the Postfix log"
    sleep 1
    [[ $(count_mail "$DC_MAIL/$TEST_DOMAIN/alice" "$id") == 1 ]] || fail "alice got $(count_mail "$DC_MAIL/$TEST_DOMAIN/alice" "$id") copies"
    serve_down lmtp
}

# before the queue: a DMARC reject reaches the SMTP client as 550, nothing is queued
case_postfix_before_queue_proxy_rejects_with_550() {
    local id f conf=$E2E_LIBEXEC/serve-proxy.toml sent=$E2E_STATE/postfix/last-send.txt
    # example.org publishes SPF -all and DMARC p=reject (tests/fixtures/policy/policy.zone)
    sed "s|^zone_files = .*|zone_files = [\"$E2E_LIBEXEC/zones/all.zone\", \"$E2E_LIBEXEC/zones/policy.zone\"]|" \
        "$E2E_LIBEXEC/serve.toml" >"$conf"
    FILTER=proxy "$POSTFIX" up
    serve_up proxy 10025 --config "$conf" --listen 127.0.0.1:10025 --protocol smtp \
        --next-hop 127.0.0.1:10026 --next-hop-protocol smtp --role inbound --mode before-queue
    id=$(new_id)
    "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "alice@$TEST_DOMAIN" --data "$REPO/contrib/sample/signed.eml" ||
        fail "a DMARC-neutral message was refused: $(grep -E '^<\*\*' "$sent" | head -n1)"
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL") || fail "not delivered through the proxy"
    f=${f%%$'\n'*} # the first one
    has "$f" "^Authentication-Results: $AUTHSERV_ID;" || fail "no Authentication-Results"
    id=$(new_id)
    if "$POSTFIX" send "$id" "ceo@$SENDER_DOMAIN" "alice@$TEST_DOMAIN" --header "From: CEO <ceo@$SENDER_DOMAIN>" 2>/dev/null; then
        fail "the DMARC spoof was accepted"
    fi
    grep -qE '^<\*\* +550[ -]5\.7\.1' "$sent" || fail "client did not get 550 5.7.1: $(grep -E '^<\*\*' "$sent" | head -n1)"
    sleep 1
    [[ $(count_mail "$PF_MAIL" "$id") == 0 ]] || fail "the spoof was delivered"
    [[ -z $("$POSTFIX" queued "$id") ]] || fail "the spoof was queued"
    serve_down proxy
}

# account IDS...: every message is delivered or queued, exactly once. Prints "delivered queued".
account() {
    local id d q delivered=0 queued=0
    for id in "$@"; do
        d=$(count_mail "$PF_MAIL" "$id")
        q=$("$POSTFIX" queued "$id" | grep -c . || true)
        ((d + q == 1)) || fail "$id: delivered $d times and queued $q times (lost or duplicated)"
        delivered=$((delivered + d))
        queued=$((queued + q))
    done
    echo "$delivered $queued"
}

# send_batch N: N messages over :25; prints their ids
send_batch() {
    local i id
    for ((i = 0; i < $1; i++)); do
        id=$(new_id)
        "$POSTFIX" send "$id" "sender@$SENDER_DOMAIN" "user@$TEST_DOMAIN" >/dev/null
        echo "$id"
    done
}

# wait_all_delivered IDS...
wait_all_delivered() {
    local id
    for id in "$@"; do "$POSTFIX" wait-delivered "$id" 60 "$PF_MAIL" >/dev/null || fail "$id not delivered"; done
}

case_postfix_authgate_down_defers_then_delivers() {
    local ids id n=4
    content_layout smtp
    serve_down content
    mapfile -t ids < <(send_batch "$n")
    for id in "${ids[@]}"; do "$POSTFIX" wait-deferred "$id" 30 >/dev/null || fail "$id not deferred with authgate down"; done
    grep -qE "status=deferred \(connect to 127.0.0.1\[127.0.0.1\]:10025: Connection refused" "$E2E_STATE/postfix/maillog" ||
        fail "no 'Connection refused' deferral logged"
    [[ $(account "${ids[@]}") == "0 $n" ]] || fail "while authgate is down: $(account "${ids[@]}") (delivered queued), want 0 $n"
    content_layout smtp
    "$POSTFIX" flush
    wait_all_delivered "${ids[@]}"
    sleep 2 # duplicates would show up now
    [[ $(account "${ids[@]}") == "$n 0" ]] || fail "after restart + postqueue -f: $(account "${ids[@]}"), want $n 0"
}

case_postfix_next_hop_down_keeps_mail_queued() {
    local ids id n=4
    content_layout smtp
    FILTER=content FILTER_PROTO=smtp REINJECT=off "$POSTFIX" up # :10026 gone, authgate still up
    mapfile -t ids < <(send_batch "$n")
    for id in "${ids[@]}"; do "$POSTFIX" wait-deferred "$id" 30 >/dev/null || fail "$id not deferred with the next hop down"; done
    grep -qE "relay=127.0.0.1\[127.0.0.1\]:10025.*status=deferred \(host 127.0.0.1\[127.0.0.1\] (said|refused to talk to me): 4[0-9][0-9]" "$E2E_STATE/postfix/maillog" ||
        fail "authgate did not answer 4xx (no 4xx deferral in the Postfix log)"
    [[ $(account "${ids[@]}") == "0 $n" ]] || fail "while the next hop is down: $(account "${ids[@]}") (delivered queued), want 0 $n"
    FILTER=content FILTER_PROTO=smtp REINJECT=on "$POSTFIX" up
    "$POSTFIX" flush
    wait_all_delivered "${ids[@]}"
    sleep 2
    [[ $(account "${ids[@]}") == "$n 0" ]] || fail "after the next hop is back: $(account "${ids[@]}"), want $n 0"
}

# The milter case brings up its own Postfix instance (postfix -c, ports
# 2626/2687, own queue) and checks inbound A-R, outbound and sendmail(1)
# signing verified by dkimpy, 550 on DMARC reject, HOLD, and
# milter_default_action with authgate stopped.
case_postfix_milter() {
    E2E_AUTHGATE="$E2E_AUTHGATE" bash "$REPO/tests/e2e/milter.sh" || fail "tests/e2e/milter.sh failed (its log above)"
}

# --- runner ---------------------------------------------------------------------
# --- switching a guide-style OpenDKIM + OpenDMARC Postfix to authgate ----------
# The files the OpenDKIM guides write (opendkim.conf with refile: KeyTable,
# SigningTable, TrustedHosts; opendmarc.conf; the key 0600 owned by opendkim)
# under $GUIDE. Real OpenDKIM signs first; then `authgate import opendkim`
# writes the config, authgate milter takes over OpenDKIM's socket (main.cf
# unchanged but for dropping the OpenDMARC milter) as the opendkim user, and
# then the same with the tables read in place. dkimpy verifies every copy.
GUIDE=$E2E_LIBEXEC/opendkim-guide # OpenDKIM refuses keys under a world-writable directory (/var/tmp)
GUIDE_PORT=10029
write_guide_files() {
    rm -rf "$GUIDE"
    mkdir -p "$GUIDE/etc/opendkim/keys/$SIGN_DOMAIN" "$GUIDE/etc/opendmarc" "$GUIDE/run"
    install -m 0600 -o opendkim -g opendkim "$REPO/tests/fixtures/dkim/rsa2048.pem" \
        "$GUIDE/etc/opendkim/keys/$SIGN_DOMAIN/rsa2048.private"
    chown -R opendkim:opendkim "$GUIDE/etc/opendkim/keys" "$GUIDE/run"
    chmod 0700 "$GUIDE/etc/opendkim/keys"
    printf 'rsa2048._domainkey.%s %s:rsa2048:%s\n' "$SIGN_DOMAIN" "$SIGN_DOMAIN" \
        "$GUIDE/etc/opendkim/keys/$SIGN_DOMAIN/rsa2048.private" >"$GUIDE/etc/opendkim/KeyTable"
    printf '*@%s rsa2048._domainkey.%s\n' "$SIGN_DOMAIN" "$SIGN_DOMAIN" >"$GUIDE/etc/opendkim/SigningTable"
    printf '127.0.0.1\nlocalhost\n192.168.0.1/24\n*.%s\n' "$SIGN_DOMAIN" >"$GUIDE/etc/opendkim/TrustedHosts"
    printf '127.0.0.1\n::1\n' >"$GUIDE/etc/opendmarc/ignore.hosts"
    cat >"$GUIDE/etc/opendkim.conf" <<EOF
Syslog                  yes
UMask                   002
Canonicalization        relaxed/simple
Mode                    sv
SubDomains              no
OversignHeaders         From
Background              no
UserID                  opendkim
PidFile                 $GUIDE/run/opendkim.pid
Socket                  inet:$GUIDE_PORT@127.0.0.1
KeyTable                refile:$GUIDE/etc/opendkim/KeyTable
SigningTable            refile:$GUIDE/etc/opendkim/SigningTable
ExternalIgnoreList      refile:$GUIDE/etc/opendkim/TrustedHosts
InternalHosts           refile:$GUIDE/etc/opendkim/TrustedHosts
EOF
    cat >"$GUIDE/etc/opendmarc.conf" <<EOF
AuthservID              $AUTHSERV_ID
TrustedAuthservIDs      $AUTHSERV_ID
IgnoreHosts             $GUIDE/etc/opendmarc/ignore.hosts
RejectFailures          true
SPFSelfValidate         true
Socket                  inet:8893@127.0.0.1
EOF
    chmod -R a+rX "$GUIDE/etc/opendkim.conf" "$GUIDE/etc/opendmarc.conf" "$GUIDE/etc/opendkim/KeyTable" \
        "$GUIDE/etc/opendkim/SigningTable" "$GUIDE/etc/opendkim/TrustedHosts"
}

# send_signed_and_verify WHO: one message from alice@example.com; the delivered
# copy must carry exactly one DKIM-Signature of example.com that dkimpy verifies
send_signed_and_verify() {
    local id f v
    id=$(new_id)
    "$POSTFIX" send "$id" "alice@$SIGN_DOMAIN" "user@$TEST_DOMAIN" --header "From: Alice <alice@$SIGN_DOMAIN>" ||
        fail "$1: Postfix refused the message"
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL") || fail "$1: not delivered"
    f=${f%%$'\n'*}
    [[ $(headers_of "$f" | grep -c "^DKIM-Signature: .*d=$SIGN_DOMAIN") == 1 ]] ||
        fail "$1: expected one DKIM-Signature for $SIGN_DOMAIN"
    v=$(dkimpy_verify "$f") || fail "$1: dkimpy did not run"
    [[ $v == pass ]] || fail "$1: dkimpy: $v"
}

case_postfix_switch_from_opendkim_keeps_signing() {
    local pidfile=$E2E_STATE/guide-milter.pid conf=$GUIDE/authgate.toml
    write_guide_files
    FILTER=milter MILTER_PORT=$GUIDE_PORT "$POSTFIX" up
    # 1. OpenDKIM as the guides run it
    opendkim -x "$GUIDE/etc/opendkim.conf" -f >"$LOGDIR/guide-opendkim.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port 127.0.0.1 "$GUIDE_PORT" 20 || fail "opendkim not listening (see $LOGDIR/guide-opendkim.log)"
    send_signed_and_verify "OpenDKIM"
    stop_pid "$pidfile" opendkim
    wait_port_closed 127.0.0.1 "$GUIDE_PORT" 20 || fail "opendkim still listening"
    # 2. authgate import + authgate milter on OpenDKIM's socket, as the opendkim user
    "$E2E_LIBEXEC/authgate" import opendkim "$GUIDE/etc/opendkim.conf" --opendmarc "$GUIDE/etc/opendmarc.conf" \
        >"$conf" 2>"$LOGDIR/guide-import.log" || fail "import exited $? ($(tail -n 3 "$LOGDIR/guide-import.log"))"
    grep -q "^listen = \"inet:$GUIDE_PORT@127.0.0.1\"" "$conf" || fail "import did not keep OpenDKIM's socket"
    chmod 0644 "$conf"
    setpriv --reuid opendkim --regid opendkim --init-groups \
        "$E2E_LIBEXEC/authgate" milter --config "$conf" >"$LOGDIR/guide-authgate.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port 127.0.0.1 "$GUIDE_PORT" 20 || fail "authgate milter not listening (see $LOGDIR/guide-authgate.log)"
    send_signed_and_verify "authgate (imported config)"
    stop_pid "$pidfile" "authgate milter"
    wait_port_closed 127.0.0.1 "$GUIDE_PORT" 20 || fail "authgate still listening"
    # 3. the same files read in place
    cat >"$conf" <<EOF
authserv_id = "$AUTHSERV_ID"
[dkim]
opendkim_key_table = "refile:$GUIDE/etc/opendkim/KeyTable"
opendkim_signing_table = "refile:$GUIDE/etc/opendkim/SigningTable"
opendkim_trusted_hosts = "refile:$GUIDE/etc/opendkim/TrustedHosts"
[milter]
listen = "inet:$GUIDE_PORT@127.0.0.1"
EOF
    setpriv --reuid opendkim --regid opendkim --init-groups \
        "$E2E_LIBEXEC/authgate" milter --config "$conf" >>"$LOGDIR/guide-authgate.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port 127.0.0.1 "$GUIDE_PORT" 20 || fail "authgate milter (in place) not listening (see $LOGDIR/guide-authgate.log)"
    send_signed_and_verify "authgate (tables in place)"
    stop_pid "$pidfile" "authgate milter"
}

CASES=(
    exim_local_delivery_verifies
    exim_remote_smtp_signs
    exim_filter_tempfail_keeps_the_message_queued
    postfix_pipe_reinject
    postfix_pipe_reinject_tempfail_defers
    postfix_content_filter_smtp
    postfix_content_filter_lmtp
    postfix_lmtp_to_dovecot_per_recipient_replies
    postfix_before_queue_proxy_rejects_with_550
    postfix_authgate_down_defers_then_delivers
    postfix_next_hop_down_keeps_mail_queued
    postfix_milter
    postfix_switch_from_opendkim_keeps_signing
)

stop_all() {
    serve_stop_all
    stop_pid "$E2E_STATE/guide-milter.pid" opendkim # OpenDKIM, or authgate on the guide's files
    "$EXIM" down >/dev/null 2>&1
    "$POSTFIX" down >/dev/null 2>&1
    "$DOVECOT" down >/dev/null 2>&1
    return 0
}

main() {
    need_root
    local patterns=("$@") name selected=() passed=0 failed=0 t0 t rc
    for name in "${CASES[@]}"; do
        if ((${#patterns[@]} == 0)); then selected+=("$name"); continue; fi
        for p in "${patterns[@]}"; do [[ $name == *"$p"* ]] && { selected+=("$name"); break; }; done
    done
    ((${#selected[@]})) || die "no case matches: ${patterns[*]}"
    trap stop_all EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$LOGDIR"
    t0=$(date +%s)
    { "$EXIM" install && "$POSTFIX" install && "$DOVECOT" install; } || die "install failed"
    say "tools ready in $(($(date +%s) - t0))s"
    SIGN_USER=Debian-exim install_authgate "$E2E_AUTHGATE"
    # what `config check` prints for a config with keys: scanned by tests/e2e/keygrep.py
    "$E2E_LIBEXEC/authgate" config check --config "$E2E_LIBEXEC/serve.toml" >"$LOGDIR/config-check.txt" 2>&1 || true
    "$EXIM" up >"$LOGDIR/exim-up.log" 2>&1 || { cat "$LOGDIR/exim-up.log" >&2; die "exim did not start"; }
    for name in "${selected[@]}"; do
        rm -f "$REASON_FILE"
        t=$(date +%s)
        (set -e; "case_$name") >"$LOGDIR/$name.log" 2>&1
        rc=$?
        if ((rc == 0)); then
            echo "ok   $name ($(($(date +%s) - t))s)"
            passed=$((passed + 1))
        else
            echo "FAIL $name ($(($(date +%s) - t))s): $(cat "$REASON_FILE" 2>/dev/null || echo "a step failed (exit $rc)")"
            sed 's/^/    | /' "$LOGDIR/$name.log" | tail -n 15
            failed=$((failed + 1))
        fi
    done
    echo "e2e: $(($(date +%s) - t0))s, logs in $LOGDIR"
    echo "$passed passed, $failed failed"
    ((failed == 0))
}

main "$@"
