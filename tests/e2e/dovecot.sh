#!/usr/bin/env bash
# tests/e2e/dovecot.sh — real Dovecot LMTP on 127.0.0.1:24 (and a unix socket),
# the next hop of authgate's LMTP listener:
#
#   postfix :25 --lmtp--> authgate 127.0.0.1:10024 --lmtp--> dovecot 127.0.0.1:24 --> Maildir
#
# Dovecot runs from its own config under $E2E_STATE/dovecot (/etc/dovecot is not
# touched): protocols = lmtp, no TLS, users in a passwd-file passdb (so an unknown
# recipient gets "550 5.1.1 User doesn't exist"), a static userdb (uid/gid mail,
# Maildir under $E2E_STATE/dovecot/mail/DOMAIN/USER).
#
# Usage: dovecot.sh install|up|down|clean|send|wait-delivered|show-last|logs
set -euo pipefail
E2E_NAME=dovecot
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$E2E_STATE/dovecot
LMTP_PORT=${LMTP_PORT:-24}
USERS="user@$TEST_DOMAIN alice@$TEST_DOMAIN bob@$TEST_DOMAIN postmaster@$TEST_DOMAIN sender@$SENDER_DOMAIN postmaster@$SENDER_DOMAIN"
CONF=$STATE/dovecot.conf
RUN=$STATE/run
LOG=$STATE/dovecot.log
MAILDIR=$STATE/mail

running() { pid_alive "$RUN/master.pid" dovecot; }

cmd_install() {
    local missing=()
    command -v dovecot >/dev/null || missing+=(dovecot-core)
    [[ -x /usr/lib/dovecot/lmtp ]] || missing+=(dovecot-lmtpd)
    command -v swaks >/dev/null || missing+=(swaks)
    ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

write_config() {
    local u
    mkdir -p "$STATE" "$RUN" "$MAILDIR" "$STATE/state"
    chown mail:mail "$MAILDIR"
    : >"$STATE/users"
    for u in $USERS; do echo "$u:{PLAIN}e2e::::::" >>"$STATE/users"; done
    chmod 0640 "$STATE/users"
    chgrp dovecot "$STATE/users"
    cat >"$CONF" <<EOF
# written by tests/e2e/dovecot.sh — test only
protocols = lmtp
listen = 127.0.0.1
base_dir = $RUN
state_dir = $STATE/state
instance_name = authgate-e2e
log_path = $LOG
ssl = no
disable_plaintext_auth = no
first_valid_uid = $(id -u mail)
first_valid_gid = $(id -g mail)
mail_location = maildir:~/Maildir
# an LMTP RCPT looks the user up in the passdb (the static userdb below has no
# allow_all_users), so an unknown recipient is refused with 550 5.1.1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $STATE/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$MAILDIR/%d/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@$TEST_DOMAIN
  hostname = lmtp.$TEST_DOMAIN
}
EOF
}

cmd_up() {
    need_root
    cmd_install
    write_config
    doveconf -c "$CONF" -n >/dev/null || die "doveconf rejected $CONF"
    if running; then
        doveadm -c "$CONF" reload
    else
        # the master keeps the stderr it was started with: never give it a pipe
        dovecot -c "$CONF" </dev/null >>"$STATE/dovecot.stderr" 2>&1 ||
            { cat "$STATE/dovecot.stderr" >&2; die "dovecot failed to start"; }
    fi
    wait_port 127.0.0.1 "$LMTP_PORT" 20 || die "dovecot LMTP not listening on 127.0.0.1:$LMTP_PORT (see $LOG)"
    say "up: LMTP on 127.0.0.1:$LMTP_PORT and $RUN/lmtp"
}

cmd_down() {
    if running; then stop_pid "$RUN/master.pid" dovecot; say "dovecot stopped"; fi
    return 0
}

cmd_clean() { cmd_down; rm -rf "$STATE"; }

# send ID RCPT[,RCPT...] [swaks args...]: one LMTP transaction straight to Dovecot;
# prints the transcript (one reply per recipient after DATA)
cmd_send() {
    local id=$1 to=$2
    shift 2
    swaks --protocol LMTP --server 127.0.0.1 --port "$LMTP_PORT" --helo client.$SENDER_DOMAIN \
        --from "sender@$SENDER_DOMAIN" --to "$to" --add-header "X-Harness-Id: $id" "$@"
}

cmd_wait_delivered() {
    wait_mail "$MAILDIR" "$1" "${2:-30}" "${3:-1}" || { say "timeout: $1 not delivered"; tail -n 20 "$LOG" >&2; return 1; }
}

cmd_show_last() { show_mail "$MAILDIR" "$@"; }

case ${1:-help} in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
clean) cmd_clean ;;
send) shift; cmd_send "$@" ;;
wait-delivered) shift; cmd_wait_delivered "$@" ;;
show-last) shift; cmd_show_last "$@" ;;
logs) cat "$LOG" ;;
*) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; [[ ${1:-help} == help ]] ;;
esac
