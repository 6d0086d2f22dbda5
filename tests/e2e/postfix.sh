#!/usr/bin/env bash
# tests/e2e/postfix.sh — real Postfix on loopback with authgate in one of the
# layouts of contrib/postfix/ (FILTER=..., saved by `up`):
#
#   content  :25 --content_filter (SMTP or LMTP: FILTER_PROTO) + XFORWARD--> authgate :10025
#            :587 (submission) --content_filter over SMTP--> authgate :10027 (outbound: signs)
#            authgate --SMTP--> reinjection smtpd :10026 (no filter, no checks) --> virtual(8) Maildir
#            (REINJECT=off leaves :10026 out: authgate's next hop is down)
#   proxy    :25 (-o smtpd_proxy_filter=127.0.0.1:10025) ==before the queue==> authgate :10025
#            --SMTP--> smtpd :10026 --> queue --> Maildir (authgate's 550 reaches the client)
#   pipe     :25 (-o content_filter=authgate-pipe:) --> pipe(8) `authgate pipe --reinject
#            -f ${sender} -- ${recipient}` --> sendmail --> pickup (no filter) --> Maildir
#   milter   :25 (smtpd_milters = authgate milter :MILTER_PORT, milter_default_action
#            = tempfail) --> queue --content_filter over SMTP--> HOP_PORT (default the
#            reinjection smtpd :10026; the fault matrix puts its fault proxy there)
#            --> reinjection smtpd :10026 (no milters) --> Maildir
#   lmtp     :25 --> virtual_transport = lmtp:inet:[127.0.0.1]:10024 (authgate LMTP)
#            --> Dovecot LMTP :24 (dovecot.sh); every recipient of the domains is accepted
#            at RCPT here, Dovecot decides
#   off      no filter at all
#
# Writes /etc/postfix/{main,master}.cf (a config not written by this script is
# first kept as *.e2e-orig). Nothing leaves the machine: every domain but the test
# domains goes to the error transport.
#
# Usage: postfix.sh install|up|down|clean|send|wait-delivered|wait-deferred|show-last|queue|flush|logs|count
set -euo pipefail
E2E_NAME=postfix
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$E2E_STATE/postfix
FILTER=${FILTER:-content}          # content | proxy | pipe | lmtp | off
FILTER_PROTO=${FILTER_PROTO:-smtp} # content mode: smtp | lmtp
FILTER_PORT=${FILTER_PORT:-10025}  # authgate's listener (content mode)
LMTP_FILTER_PORT=${LMTP_FILTER_PORT:-10024} # authgate's LMTP listener (lmtp mode)
OUTBOUND_PORT=${OUTBOUND_PORT:-10027} # authgate's signing listener (content mode, submission)
REINJECT_PORT=${REINJECT_PORT:-10026}
MILTER_PORT=${MILTER_PORT:-10028}     # authgate milter (milter mode)
HOP_PORT=${HOP_PORT:-10026}           # milter mode: where the queue relays to
REINJECT=${REINJECT:-on}             # off: no reinjection smtpd (next hop down)
SUBMISSION_PORT=${SUBMISSION_PORT:-587}
MAILDIR=$STATE/mail
MAILLOG=$STATE/maillog
PFX=/etc/postfix
# the pipe layout's filter reads its own copy of the e2e config, so a test can break it alone
PIPE_CONF=$E2E_LIBEXEC/postfix-pipe.toml
MAILBOXES="user alice bob postmaster"

running() { postfix status >/dev/null 2>&1; }

cmd_install() {
    local missing=()
    command -v postfix >/dev/null || missing+=(postfix)
    command -v swaks >/dev/null || missing+=(swaks)
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

# The filter part of main.cf for each layout.
main_cf_filter() {
    case $FILTER in
    content)
        local nexthop="[127.0.0.1]:$FILTER_PORT"
        [[ $FILTER_PROTO == lmtp ]] && nexthop="inet:[127.0.0.1]:$FILTER_PORT"
        cat <<EOF
content_filter = authgate:$nexthop
# address mappings happen once, after the filter, in the reinjection smtpd
receive_override_options = no_address_mappings
authgate_destination_recipient_limit = 50
EOF
        ;;
    milter)
        cat <<EOF
smtpd_milters = inet:127.0.0.1:$MILTER_PORT
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = 10s
milter_content_timeout = 60s
content_filter = hop:[127.0.0.1]:$HOP_PORT
receive_override_options = no_address_mappings
EOF
        ;;
    lmtp)
        cat <<EOF
# every mailbox lives in Dovecot, behind authgate's LMTP listener
virtual_transport = lmtp:inet:[127.0.0.1]:$LMTP_FILTER_PORT
EOF
        ;;
    proxy | pipe | off) echo "# no content_filter in main.cf ($FILTER)" ;;
    *) die "FILTER must be content, proxy, pipe, milter, lmtp or off" ;;
    esac
}

write_mailbox_map() {
    {
        echo "# written by tests/e2e/postfix.sh"
        if [[ $FILTER == lmtp ]]; then
            # Dovecot decides which users exist (a 550 from it must reach Postfix)
            echo "@$TEST_DOMAIN lmtp"
            echo "@$SENDER_DOMAIN lmtp"
        else
            for u in $MAILBOXES; do echo "$u@$TEST_DOMAIN $TEST_DOMAIN/$u/"; done
            echo "sender@$SENDER_DOMAIN $SENDER_DOMAIN/sender/"
            echo "postmaster@$SENDER_DOMAIN $SENDER_DOMAIN/postmaster/"
        fi
    } >"$PFX/e2e-vmailbox"
}

write_main_cf() {
    cat >"$PFX/main.cf" <<EOF
# written by tests/e2e/postfix.sh — test only (FILTER=$FILTER FILTER_PROTO=$FILTER_PROTO)
compatibility_level = 3.6
myhostname = mx.$TEST_DOMAIN
mydomain = $TEST_DOMAIN
myorigin = \$mydomain
mydestination =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery disabled in e2e
# nothing may leave the machine
default_transport = error:5.4.4 e2e: no outbound delivery
relay_transport = \$default_transport
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
biff = no
append_dot_mydomain = no
2bounce_notice_recipient = postmaster@$TEST_DOMAIN
virtual_mailbox_domains = $TEST_DOMAIN, $SENDER_DOMAIN
virtual_mailbox_base = $MAILDIR
virtual_mailbox_maps = texthash:$PFX/e2e-vmailbox
virtual_uid_maps = static:$(id -u mail)
virtual_gid_maps = static:$(id -g mail)
virtual_minimum_uid = $(id -u mail)
maillog_file = $MAILLOG
# short retry timers: a deferred message comes back within a test's patience
queue_run_delay = 20s
minimal_backoff_time = 20s
maximal_backoff_time = 60s
$(main_cf_filter)
EOF
}

# The reinjection smtpd (content and milter layouts): no filter, no checks, no milters.
reinject_service() {
    [[ $REINJECT == off ]] && { echo "# reinjection smtpd left out (REINJECT=off)"; return 0; }
    cat <<EOF
127.0.0.1:$REINJECT_PORT inet n  -       n       -       -       smtpd
  -o syslog_name=postfix/reinject
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=
  -o smtpd_end_of_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
EOF
}

# The service that hands mail to authgate, per layout.
master_cf_filter() {
    case $FILTER in
    content)
        cat <<EOF
authgate          unix  -       -       n       -       2       $FILTER_PROTO
  -o ${FILTER_PROTO}_send_xforward_command=yes
  -o ${FILTER_PROTO}_data_done_timeout=1200
  -o ${FILTER_PROTO}_tls_security_level=none
  -o disable_mime_output_conversion=yes
  -o max_use=20
authgate-out      unix  -       -       n       -       2       smtp
  -o smtp_send_xforward_command=yes
  -o smtp_data_done_timeout=1200
  -o smtp_tls_security_level=none
  -o disable_mime_output_conversion=yes
  -o max_use=20
127.0.0.1:$SUBMISSION_PORT inet n -     n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o content_filter=authgate-out:[127.0.0.1]:$OUTBOUND_PORT
EOF
        reinject_service
        ;;
    milter)
        cat <<EOF
hop               unix  -       -       n       -       4       smtp
  -o smtp_send_xforward_command=yes
  -o smtp_data_done_timeout=10s
  -o smtp_tls_security_level=none
  -o disable_mime_output_conversion=yes
EOF
        reinject_service
        ;;
    proxy)
        # the after-filter smtpd of SMTPD_PROXY_README (contrib/postfix/before-queue.cf)
        cat <<EOF
127.0.0.1:$REINJECT_PORT inet n  -       n       -       -       smtpd
  -o syslog_name=postfix/after-filter
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
EOF
        ;;
    pipe)
        # user=mail: pipe(8) never runs a command as root; flags R: Return-Path:
        # header, q: quote ${sender}/${recipient}; null_sender= : <> stays empty
        cat <<EOF
authgate-pipe     unix  -       n       n       -       4       pipe
  flags=Rq user=mail null_sender=
  argv=$E2E_LIBEXEC/authgate pipe --reinject --config $PIPE_CONF -f \${sender} -- \${recipient}
EOF
        ;;
    *) echo "# no filter service ($FILTER)" ;;
    esac
}

write_master_cf() {
    local smtpd_opts=""
    # pipe layout: only mail arriving over SMTP is filtered, so what authgate
    # hands back through sendmail/pickup is not filtered again
    [[ $FILTER == pipe ]] && smtpd_opts="  -o content_filter=authgate-pipe:dummy"
    # proxy layout: every SMTP command goes through authgate while the client waits
    [[ $FILTER == proxy ]] && smtpd_opts="  -o smtpd_proxy_filter=127.0.0.1:$FILTER_PORT
  -o smtpd_proxy_options=speed_adjust
  -o smtpd_proxy_timeout=300s"
    cat >"$PFX/master.cf" <<EOF
# written by tests/e2e/postfix.sh — test only. Nothing chrooted (column 5 = n).
127.0.0.1:25      inet  n       -       n       -       -       smtpd
$smtpd_opts
pickup            unix  n       -       n       60      1       pickup
cleanup           unix  n       -       n       -       0       cleanup
qmgr              unix  n       -       n       300     1       qmgr
rewrite           unix  -       -       n       -       -       trivial-rewrite
bounce            unix  -       -       n       -       0       bounce
defer             unix  -       -       n       -       0       bounce
trace             unix  -       -       n       -       0       bounce
verify            unix  -       -       n       -       1       verify
flush             unix  n       -       n       1000?   0       flush
proxymap          unix  -       -       n       -       -       proxymap
smtp              unix  -       -       n       -       -       smtp
relay             unix  -       -       n       -       -       smtp
showq             unix  n       -       n       -       -       showq
error             unix  -       -       n       -       -       error
retry             unix  -       -       n       -       -       error
discard           unix  -       -       n       -       -       discard
virtual           unix  -       n       n       -       -       virtual
lmtp              unix  -       -       n       -       -       lmtp
anvil             unix  -       -       n       -       1       anvil
scache            unix  -       -       n       -       1       scache
postlog           unix-dgram n  -       n       -       1       postlogd
$(master_cf_filter)
EOF
}

cmd_up() {
    need_root
    cmd_install
    local f
    for f in main.cf master.cf; do
        if [[ -f $PFX/$f && ! -f $PFX/$f.e2e-orig ]] && ! grep -q 'written by tests/e2e/postfix.sh' "$PFX/$f"; then
            cp -p "$PFX/$f" "$PFX/$f.e2e-orig"
        fi
    done
    mkdir -p "$MAILDIR"
    chown mail:mail "$MAILDIR"
    touch "$MAILLOG"
    [[ -f $PIPE_CONF ]] || install -m 0644 "$E2E_LIBEXEC/verify.toml" "$PIPE_CONF"
    write_mailbox_map
    write_main_cf
    write_master_cf
    postfix check >&2 || die "postfix check failed"
    if running; then
        postfix reload >/dev/null 2>&1
        sleep 1
    else
        postfix start </dev/null >>"$STATE/postfix.stderr" 2>&1 ||
            { cat "$STATE/postfix.stderr" >&2; die "postfix start failed"; }
    fi
    wait_port 127.0.0.1 25 20 || die "smtpd not listening on 127.0.0.1:25 (see $MAILLOG)"
    if [[ $FILTER == proxy || ($FILTER =~ ^(content|milter)$ && $REINJECT == on) ]]; then
        wait_port 127.0.0.1 "$REINJECT_PORT" 20 || die "reinjection smtpd not listening on 127.0.0.1:$REINJECT_PORT"
    elif [[ $FILTER =~ ^(content|milter)$ ]]; then
        wait_port_closed 127.0.0.1 "$REINJECT_PORT" 20 || die "reinjection smtpd still listening on 127.0.0.1:$REINJECT_PORT"
    fi
    say "up: FILTER=$FILTER FILTER_PROTO=$FILTER_PROTO REINJECT=$REINJECT"
}

cmd_down() {
    if command -v postfix >/dev/null && running; then
        postfix stop >/dev/null 2>&1
        local i
        for ((i = 0; i < 100; i++)); do running || break; sleep 0.1; done
        running && die "postfix did not stop"
        say "postfix stopped"
    fi
    return 0
}

cmd_clean() {
    cmd_down
    if command -v postsuper >/dev/null; then postsuper -d ALL >/dev/null 2>&1 || true; fi
    rm -rf "$STATE" "$PIPE_CONF"
}

# send ID FROM TO [swaks args...]: submit on :25 (SEND_PORT=587: submission) with
# X-Harness-Id: ID (TO may list several recipients, comma-separated)
cmd_send() {
    local id=$1 from=$2 to=$3
    shift 3
    mkdir -p "$STATE"
    swaks --server 127.0.0.1 --port "${SEND_PORT:-25}" --helo "client.$SENDER_DOMAIN" \
        --from "$from" --to "$to" --add-header "X-Harness-Id: $id" "$@" >"$STATE/last-send.txt" 2>&1 ||
        { cat "$STATE/last-send.txt" >&2; return 1; }
}

# wait-delivered ID [SECONDS] [DIR]: print the delivered file(s)
cmd_wait_delivered() {
    wait_mail "${3:-$MAILDIR}" "$1" "${2:-30}" || {
        say "timeout: $1 not delivered"; postqueue -p >&2 || true; tail -n 20 "$MAILLOG" >&2 || true; return 1; }
}

# queued ID: "QUEUE_ID QUEUE_NAME" for each queued message carrying X-Harness-Id: ID
cmd_queued() {
    local qid qname
    postqueue -j 2>/dev/null | python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    print(m["queue_id"], m["queue_name"])' | while read -r qid qname; do
        postcat -hq "$qid" 2>/dev/null | grep -qF "X-Harness-Id: $1" && echo "$qid $qname"
    done
    return 0
}

# wait-deferred ID [SECONDS]: wait until ID is in the deferred queue; print its queue id
cmd_wait_deferred() {
    local i hit
    for ((i = 0; i < ${2:-30} * 2; i++)); do
        hit=$(cmd_queued "$1" | awk '$2 == "deferred" {print $1; exit}')
        [[ -n $hit ]] && { echo "$hit"; return 0; }
        sleep 0.5
    done
    say "timeout: $1 not deferred"; postqueue -p >&2 || true; return 1
}

cmd_show_last() { show_mail "$MAILDIR" "$@"; }

case ${1:-help} in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
clean) cmd_clean ;;
send) shift; cmd_send "$@" ;;
wait-delivered) shift; cmd_wait_delivered "$@" ;;
wait-deferred) shift; cmd_wait_deferred "$@" ;;
queued) shift; cmd_queued "$@" ;;
show-last) shift; cmd_show_last "$@" ;;
queue) postqueue -p ;;
flush) postqueue -f ;;
logs) cat "$MAILLOG" ;;
*) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; [[ ${1:-help} == help ]] ;;
esac
