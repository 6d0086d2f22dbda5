# tests/e2e/lib.sh — helpers shared by the real-MTA end-to-end scripts
# (postfix.sh, dovecot.sh, exim.sh, run.sh). Sourced, never run.
#
# Everything runs on loopback, as root, with daemons started by hand (there is
# no init system in CI). DNS for authgate comes from zone files only.
#
# Layout:
#   $E2E_STATE/<mta>/       queues, logs, Maildirs, pid files (wiped by `clean`)
#   $E2E_LIBEXEC/           the authgate binary, its configs, keys and zones:
#                           a path the MTAs' delivery users (mail, Debian-exim)
#                           can read, unlike root's home or a cargo target dir
# shellcheck shell=bash disable=SC2034  # constants for the scripts that source this

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/../.." && pwd)
E2E_STATE=${E2E_STATE:-/var/tmp/authgate-e2e}
E2E_LIBEXEC=${E2E_LIBEXEC:-/usr/local/libexec/authgate-e2e}
TEST_DOMAIN=example.test     # our mailboxes (Postfix virtual, Dovecot, Exim local)
SENDER_DOMAIN=example.org    # outside senders; has mailboxes for bounces
SIGN_DOMAIN=example.com      # signed by authgate; keys in tests/fixtures/dkim/keys.zone
AUTHSERV_ID=mx.example.test  # authgate's authserv-id in every e2e config

say() { echo "${E2E_NAME:-e2e}: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# apt_install PKG...: install without recommends and without starting daemons;
# updates the package lists first if there are none, and retries once after an
# update (stale lists).
apt_install() {
    need_root
    [[ -n $(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null) ]] || apt-get update -qq >&2
    local own_policy=0 rc=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    # Postfix: leave main.cf to us instead of asking what kind of site this is.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || {
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    } || rc=$?
    ((own_policy == 0)) || rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

# listening HOST PORT: is a TCP listener there? (ss does not open a connection,
# so no "lost connection" lines in the MTA logs)
listening() { [[ -n $(ss -Hltn "src $1 and sport = :$2" 2>/dev/null) ]]; }
wait_port() { # HOST PORT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do listening "$1" "$2" && return 0; sleep 0.1; done
    return 1
}
wait_port_closed() { # HOST PORT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do listening "$1" "$2" || return 0; sleep 0.1; done
    return 1
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE runs a command line matching PATTERN
pid_alive() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(cat "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}
# stop_pid PIDFILE PATTERN: TERM the process we started (never by name), wait, KILL if needed
stop_pid() {
    local pid i
    if pid_alive "$1" "$2"; then
        pid=$(cat "$1")
        kill "$pid"
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$1"
}

# new_id: a unique X-Harness-Id value; every case finds its messages by it
new_id() { echo "e2e-$(date +%s%N)-$$-$RANDOM"; }

# find_mail DIR ID: delivered messages under DIR (Maildirs) carrying X-Harness-Id: ID
find_mail() {
    [[ -d $1 ]] || return 0
    grep -rlF "X-Harness-Id: $2" "$1" 2>/dev/null | grep -E '/(new|cur)/' || true
}
# wait_mail DIR ID SECONDS [COUNT]: wait for COUNT (default 1) copies; print the paths
wait_mail() {
    local i found n=${4:-1}
    for ((i = 0; i < $3 * 5; i++)); do
        found=$(find_mail "$1" "$2")
        if [[ -n $found ]] && (($(wc -l <<<"$found") >= n)); then echo "$found"; return 0; fi
        sleep 0.2
    done
    return 1
}
# latest_mail DIR: the newest delivered message under DIR
latest_mail() {
    find "$1" -type f \( -path '*/new/*' -o -path '*/cur/*' \) -printf '%T@ %p\n' 2>/dev/null |
        sort -n | tail -n1 | cut -d' ' -f2-
}

# python3 with dkimpy (scripts/test installs it); run as root, outside any MTA
dkimpy_verify() { # FILE: one line per DKIM-Signature, "pass" or "fail REASON"
    python3 "$REPO/tests/oracles/dkimpy_oracle.py" verify --zone "$E2E_LIBEXEC/zones/all.zone" <"$1"
}

# install_authgate BIN: copy the binary, keys, zones and configs to $E2E_LIBEXEC.
#   verify.toml  no keys: verifies only (any user can load it)
#   sign.toml    the example.com keys, owned by SIGN_USER (mode 0600, as authgate demands)
#   serve.toml   keys owned by root, for `authgate serve` started by run.sh
install_authgate() {
    local bin=$1 sign_user=${SIGN_USER:-mail}
    [[ -x $bin ]] || die "no authgate binary at $bin (cargo build first)"
    need_root
    mkdir -p "$E2E_LIBEXEC/zones" "$E2E_LIBEXEC/keys-sign" "$E2E_LIBEXEC/keys-root"
    chmod 0755 "$E2E_LIBEXEC" "$E2E_LIBEXEC/zones"
    install -m 0755 "$bin" "$E2E_LIBEXEC/authgate.new" && mv -f "$E2E_LIBEXEC/authgate.new" "$E2E_LIBEXEC/authgate"
    # One zone for authgate and dkimpy: the example.com/example.org test keys plus
    # the RFC 8463 keys of contrib/sample/signed.eml (that file sets $ORIGIN, so it goes last).
    cat "$REPO/tests/fixtures/dkim/keys.zone" "$REPO/contrib/sample/keys.zone" >"$E2E_LIBEXEC/zones/all.zone"
    # SPF and DMARC policies (example.org: -all, p=reject), for the cases that want them
    install -m 0644 "$REPO/tests/fixtures/policy/policy.zone" "$E2E_LIBEXEC/zones/policy.zone"
    chmod 0644 "$E2E_LIBEXEC/zones/all.zone"
    local k dir owner
    for dir in keys-sign keys-root; do
        owner=root
        [[ $dir == keys-sign ]] && owner=$sign_user
        for k in rsa2048 ed25519; do
            install -m 0600 -o "$owner" "$REPO/tests/fixtures/dkim/$k.pem" "$E2E_LIBEXEC/$dir/$k.pem"
        done
        chown "$owner" "$E2E_LIBEXEC/$dir"
        chmod 0700 "$E2E_LIBEXEC/$dir"
    done
    write_authgate_config verify.toml ""
    write_authgate_config sign.toml keys-sign
    write_authgate_config serve.toml keys-root
}

# write_authgate_config NAME KEYDIR: one config file (KEYDIR empty: no signing keys)
write_authgate_config() {
    local f=$E2E_LIBEXEC/$1
    cat >"$f" <<EOF
# written by tests/e2e/lib.sh — authgate under a real MTA, DNS from the zone file only
authserv_id = "$AUTHSERV_ID"

[dns]
zone_files = ["$E2E_LIBEXEC/zones/all.zone"]

[trust]
# the MTAs' own Received: fields give pipe mode the client address and HELO
trusted_received_by = ["mx.$TEST_DOMAIN", "exim.$TEST_DOMAIN"]
EOF
    if [[ -n $2 ]]; then
        cat >>"$f" <<EOF

[[dkim.keys]]
name = "rsa"
domain = "$SIGN_DOMAIN"
selector = "rsa2048"
file = "$E2E_LIBEXEC/$2/rsa2048.pem"

[[dkim.keys]]
name = "ed"
domain = "$SIGN_DOMAIN"
selector = "ed25519"
file = "$E2E_LIBEXEC/$2/ed25519.pem"

[[dkim.signing_table]]
pattern = "*@$SIGN_DOMAIN"
keys = ["rsa", "ed"]
EOF
    fi
    chmod 0644 "$f"
}

# headers_of FILE: the header block of a message
headers_of() { sed -n '1,/^\r\{0,1\}$/p' "$1"; }

# show_mail DIR [ID]: print the delivered message with that X-Harness-Id, or the newest one
show_mail() {
    local dir=$1 f
    if [[ -n ${2:-} ]]; then f=$(find_mail "$dir" "$2" | head -n1); else f=$(latest_mail "$dir"); fi
    [[ -n $f ]] || die "no delivered message"
    cat "$f"
}
