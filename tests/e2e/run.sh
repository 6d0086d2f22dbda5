#!/usr/bin/env bash
# tests/e2e/run.sh — authgate under real MTAs (Exim, Postfix, Dovecot) on loopback.
#
#   tests/e2e/run.sh              every case
#   tests/e2e/run.sh exim         only the cases whose name contains "exim"
#   AUTHGATE_BIN=target/release/authgate tests/e2e/run.sh
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

AUTHGATE_BIN=${AUTHGATE_BIN:-$REPO/target/debug/authgate}
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
    f=$("$EXIM" wait-delivered "$id" 30 | head -n1) || fail "not delivered (see exim mainlog)"
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
    f=$("$EXIM" wait-delivered "$id" 30 sink | head -n1) || fail "not delivered to the sink (see exim mainlog)"
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
    f=$("$POSTFIX" wait-delivered "$id" 30 "$PF_MAIL" | head -n1) || fail "null-sender message not delivered"
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

# --- runner ---------------------------------------------------------------------
CASES=(
    exim_local_delivery_verifies
    exim_remote_smtp_signs
    exim_filter_tempfail_keeps_the_message_queued
    postfix_pipe_reinject
    postfix_pipe_reinject_tempfail_defers
)

stop_all() {
    "$EXIM" down >/dev/null 2>&1
    "$POSTFIX" down >/dev/null 2>&1
    [[ -x $DOVECOT ]] && "$DOVECOT" down >/dev/null 2>&1
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
    { "$EXIM" install && "$POSTFIX" install; } || die "install failed"
    say "tools ready in $(($(date +%s) - t0))s"
    SIGN_USER=Debian-exim install_authgate "$AUTHGATE_BIN"
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
