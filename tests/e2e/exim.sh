#!/usr/bin/env bash
# tests/e2e/exim.sh — real Exim with authgate as transport_filter, on loopback:
#
#   client -> exim 127.0.0.1:2525
#     local domain example.test -> local_maildir (appendfile) with
#         transport_filter = authgate pipe --verify     -> Maildir with Authentication-Results
#     example.net (the "outside")  -> remote_smtp (smtp) with
#         transport_filter = authgate pipe --sign       -> 127.0.0.1:2526 (this same Exim)
#   exim 127.0.0.1:2526 receives example.net mail into the sink Maildir (no filter), where
#   the test checks the signatures with dkimpy.
#
# exim4-daemon-light conflicts with postfix (both are mail-transport-agent), so it is
# not installed: `install` downloads exim4-daemon-light and exim4-base, unpacks them
# into $EXIM_ROOT with dpkg -x, installs the missing shared libraries and creates the
# Debian-exim user. Exim runs from its own config (-C); of /etc/exim4 only
# trusted_configs is written.
#
# Usage: exim.sh install|up|down|clean|send|wait-delivered|wait-queued|show-last|queue|flush|clear-queue|logs
set -euo pipefail
E2E_NAME=exim
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$E2E_STATE/exim
EXIM_ROOT=${EXIM_ROOT:-/opt/authgate-e2e/exim}
EXIM_PORT=${EXIM_PORT:-2525}
SINK_PORT=${SINK_PORT:-2526}
REMOTE_PORT=${REMOTE_PORT:-$SINK_PORT}         # remote_smtp's destination (the fault matrix: its proxy)
REMOTE_DATA_TIMEOUT=${REMOTE_DATA_TIMEOUT:-5m} # remote_smtp's data_timeout
REMOTE_DOMAIN=example.net
USERS="user alice bob postmaster"
CONF=$STATE/exim.conf
PIDFILE=$STATE/exim.pid
MAINLOG=$STATE/log/mainlog
MAILDIR=$STATE/mail   # local deliveries (verified)
SINKDIR=$STATE/sink   # what remote_smtp sent out (signed)
# The filters read copies of the e2e configs, so a test can break these alone.
VERIFY_CONF=$E2E_LIBEXEC/exim-verify.toml
SIGN_CONF=$E2E_LIBEXEC/exim-sign.toml

exim_bin() {
    if [[ -x /usr/sbin/exim4 ]]; then echo /usr/sbin/exim4
    elif [[ -x $EXIM_ROOT/usr/sbin/exim4 ]]; then echo "$EXIM_ROOT/usr/sbin/exim4"
    else return 1; fi
}
EXIM() { "$(exim_bin)" -C "$CONF" "$@"; }

cmd_install() {
    need_root
    command -v swaks >/dev/null || apt_install swaks
    getent passwd Debian-exim >/dev/null ||
        useradd --system --user-group --no-create-home --home-dir /var/spool/exim4 \
            --shell /usr/sbin/nologin Debian-exim
    exim_bin >/dev/null && return 0
    say "unpacking exim4-daemon-light and exim4-base into $EXIM_ROOT (not installed: conflicts with postfix)"
    [[ -n $(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null) ]] || apt-get update -qq >&2
    local tmp deb l libs=()
    tmp=$(mktemp -d)
    chown _apt "$tmp" 2>/dev/null || true # apt-get download drops privileges to _apt
    (cd "$tmp" && apt-get download -qq exim4-daemon-light exim4-base >&2) ||
        { apt-get update -qq >&2 && (cd "$tmp" && apt-get download -qq exim4-daemon-light exim4-base >&2); }
    mkdir -p "$EXIM_ROOT"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$EXIM_ROOT"; done
    rm -rf "$tmp"
    # the shared libraries (the package's lib* Depends) not installed yet, only those
    for l in $(apt-cache depends exim4-daemon-light | awk '$1 == "Depends:" && $2 ~ /^lib/ {print $2}' | sort -u); do
        dpkg-query -W -f='${Status}' "$l" 2>/dev/null | grep -q 'ok installed' || libs+=("$l")
    done
    ((${#libs[@]} == 0)) || apt_install "${libs[@]}"
    if ldd "$EXIM_ROOT/usr/sbin/exim4" | grep -q 'not found'; then
        ldd "$EXIM_ROOT/usr/sbin/exim4" | grep 'not found' >&2
        die "exim4 has unresolved libraries"
    fi
}

write_config() {
    local bin u lp=""
    bin=$(exim_bin) || die "no exim binary (run install)"
    [[ -x $E2E_LIBEXEC/authgate ]] || die "authgate not installed in $E2E_LIBEXEC (run.sh does that)"
    mkdir -p "$STATE/spool" "$STATE/log" "$MAILDIR" "$SINKDIR"
    chown Debian-exim:Debian-exim "$STATE/spool" "$STATE/log"
    chmod 0750 "$STATE/spool"
    chown mail:mail "$MAILDIR" "$SINKDIR"
    # fresh copies at every `up`: a broken or foreign copy left by an earlier run
    # (a failed case, the fault matrix) must not fail this one
    install -m 0644 "$E2E_LIBEXEC/verify.toml" "$VERIFY_CONF"
    install -m 0644 "$E2E_LIBEXEC/sign.toml" "$SIGN_CONF"
    for u in $USERS; do lp+="${lp:+ : }$u"; done
    # Taint (Exim >= 4.94): no $sender_address, $local_part, $domain... in the
    # transport_filter command: Exim would fail the delivery permanently. authgate
    # reads the envelope from Return-path: (return_path_add) and our own topmost
    # Received: (trust.trusted_received_by = exim.example.test).
    cat >"$CONF" <<EOF
# written by tests/e2e/exim.sh — test only
exim_path = $bin
spool_directory = $STATE/spool
log_file_path = $STATE/log/%slog
primary_hostname = exim.$TEST_DOMAIN
qualify_domain = $TEST_DOMAIN
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = $EXIM_PORT : $SINK_PORT
domainlist local_domains = $TEST_DOMAIN
domainlist relay_to_domains = $REMOTE_DOMAIN
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
never_users = root
keep_environment =
log_selector = +delivery_size +received_recipients +smtp_confirmation +subject +received_sender
timeout_frozen_after = 1h
# a port taken by someone else is an error now, not nine 30-second retries
daemon_startup_retries = 0

begin acl
acl_check_rcpt:
  accept  hosts = :
  accept  domains = +local_domains
          verify = recipient
  # loopback clients may send to the "outside" (example.net, which is us on :$SINK_PORT)
  accept  domains = +relay_to_domains
          hosts = 127.0.0.1
  deny    message = relay not permitted (e2e: loopback test domains only)

begin routers
# what arrives on the sink port is the "remote" side: store it, do not route it again
sink:
  driver = accept
  domains = +relay_to_domains
  condition = \${if eq{\$received_port}{$SINK_PORT}}
  transport = sink_maildir

outbound:
  driver = manualroute
  domains = +relay_to_domains
  route_list = * 127.0.0.1 byname
  self = send
  transport = remote_smtp

local_user:
  driver = accept
  domains = +local_domains
  local_parts = $lp
  transport = local_maildir

begin transports
# outgoing: sign
remote_smtp:
  driver = smtp
  port = $REMOTE_PORT
  data_timeout = $REMOTE_DATA_TIMEOUT
  allow_localhost
  hosts_try_fastopen =
  transport_filter = $E2E_LIBEXEC/authgate pipe --sign --config $SIGN_CONF
  transport_filter_timeout = 5m

# incoming: verify, Authentication-Results
local_maildir:
  driver = appendfile
  directory = $MAILDIR/\$domain_data/\$local_part_data/
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = mail
  group = mail
  transport_filter = $E2E_LIBEXEC/authgate pipe --verify --config $VERIFY_CONF
  transport_filter_timeout = 5m

sink_maildir:
  driver = appendfile
  directory = $SINKDIR/
  maildir_format
  create_directory
  return_path_add
  user = mail
  group = mail

begin retry
*   *   F,2h,15s
EOF
    chmod 0644 "$CONF"
    # Exim re-executes itself with -C for deliveries and keeps root (needed to switch
    # to the transport's user) only for a config listed in TRUSTED_CONFIG_LIST.
    mkdir -p /etc/exim4
    touch /etc/exim4/trusted_configs
    chmod 0644 /etc/exim4/trusted_configs
    grep -qxF "$CONF" /etc/exim4/trusted_configs || echo "$CONF" >>/etc/exim4/trusted_configs
}

daemon_running() { pid_alive "$PIDFILE" -bd; }

cmd_up() {
    need_root
    cmd_install
    write_config
    EXIM -bV >/dev/null || die "exim rejected $CONF"
    if daemon_running; then
        kill -HUP "$(cat "$PIDFILE")"
        sleep 1
    else
        local port
        for port in "$EXIM_PORT" "$SINK_PORT"; do
            ! listening 127.0.0.1 "$port" || die "127.0.0.1:$port is taken: $(ss -Hltnp "sport = :$port" | awk '{print $NF}')"
        done
        EXIM -bd -q15s -oP "$PIDFILE" </dev/null >>"$STATE/exim.stderr" 2>&1 ||
            { cat "$STATE/exim.stderr" >&2; die "exim failed to start"; }
    fi
    wait_port 127.0.0.1 "$EXIM_PORT" 20 || die "exim not listening on 127.0.0.1:$EXIM_PORT (see $STATE/log)"
    wait_port 127.0.0.1 "$SINK_PORT" 20 || die "exim not listening on 127.0.0.1:$SINK_PORT"
    say "up: exim pid $(cat "$PIDFILE") on 127.0.0.1:$EXIM_PORT (+ sink :$SINK_PORT)"
}

cmd_down() {
    if daemon_running; then stop_pid "$PIDFILE" -bd; say "exim stopped"; fi
    rm -f "$PIDFILE"
}

cmd_clean() { cmd_down; rm -rf "$STATE" "$VERIFY_CONF" "$SIGN_CONF"; }

# send ID FROM TO [swaks args...]: submit on :$EXIM_PORT with X-Harness-Id: ID
cmd_send() {
    local id=$1 from=$2 to=$3
    shift 3
    mkdir -p "$STATE"
    swaks --server 127.0.0.1 --port "$EXIM_PORT" --helo client.$SENDER_DOMAIN \
        --from "$from" --to "$to" --add-header "X-Harness-Id: $id" "$@" >"$STATE/last-send.txt" 2>&1 ||
        { cat "$STATE/last-send.txt" >&2; return 1; }
}

# wait-delivered ID [SECONDS] [local|sink]: print the delivered file
cmd_wait_delivered() {
    local dir=$MAILDIR
    [[ ${3:-local} == sink ]] && dir=$SINKDIR
    wait_mail "$dir" "$1" "${2:-30}" || {
        say "timeout: $1 not delivered"; EXIM -bp >&2 || true; tail -n 20 "$MAINLOG" >&2 || true; return 1; }
}

# queued-id ID: the Exim message id of the queued message carrying X-Harness-Id: ID
cmd_queued_id() {
    grep -lF "X-Harness-Id: $1" "$STATE"/spool/input/*-H 2>/dev/null | head -n1 | xargs -r basename | sed 's/-H$//'
}

# wait-queued ID [SECONDS]: wait until a delivery of ID was deferred; print its Exim id
cmd_wait_queued() {
    local i mid
    for ((i = 0; i < ${2:-30} * 5; i++)); do
        mid=$(cmd_queued_id "$1")
        if [[ -n $mid ]] && grep -qE "$mid == .*defer" "$MAINLOG"; then echo "$mid"; return 0; fi
        sleep 0.2
    done
    say "timeout: $1 not deferred"; return 1
}

cmd_show_last() { show_mail "$STATE" "$@"; }

case ${1:-help} in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
clean) cmd_clean ;;
send) shift; cmd_send "$@" ;;
wait-delivered) shift; cmd_wait_delivered "$@" ;;
wait-queued) shift; cmd_wait_queued "$@" ;;
queued-id) shift; cmd_queued_id "$@" ;;
show-last) shift; cmd_show_last "$@" ;;
queue) EXIM -bp ;;
flush) EXIM -qff ;;
clear-queue) EXIM -bpru | awk 'NF >= 3 && $3 ~ /^[[:alnum:]]+-[[:alnum:]]+-[[:alnum:]]+$/ {print $3}' |
    xargs -r "$(exim_bin)" -C "$CONF" -Mrm >/dev/null ;;
logs) cat "$MAINLOG" ;;
*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [[ ${1:-help} == help ]] ;;
esac
