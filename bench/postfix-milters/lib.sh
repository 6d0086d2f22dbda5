# Helpers for run.sh (sourced; bash). Everything here acts only on processes this run started (by PID) and on
# files under the run's work directory; Postfix is a private instance (postfix -c $PFX) with its own queue.
#
# The peers as a mail admin runs them: OpenDKIM (Mode sv, KeyTable/SigningTable, TrustedHosts) and OpenDMARC
# (SPFSelfValidate true), wired into Postfix with smtpd_milters and milter_default_action = accept. Two socket
# variants, each a pair of milter processes of its own:
#   unix  Socket local:DIR/opendkim.sock / local:DIR/opendmarc.sock (Debian's packaged configs use local: sockets)
#   inet  Socket inet:8891@127.0.0.1 / inet:8893@127.0.0.1 (what the tutorials write)
# DNS: unbound on $DNS_ADDR:53 (an address on loopback) answers the bench records only: "." is a static local
# zone, so every other name is NXDOMAIN and unbound never recurses. OpenDKIM is pointed at it with Nameservers;
# OpenDMARC and libspf2 use the system resolver, so each milter runs in a private mount namespace (unshare -m) in
# which /etc/resolv.conf is a bind mount of our resolv.conf. Nothing outside those processes changes.
DNS_ADDR=${DNS_ADDR:-127.0.77.53}
DKIM_PORT=8891
DMARC_PORT=8893
MILTER_BASE=""                           # set by milters_conf: BASE/inet, BASE/unix
DNS_PID=""
DKIM_PID_inet="" DMARC_PID_inet="" DKIM_PID_unix="" DMARC_PID_unix=""

say() { echo "$*"; }

listening() { # HOST PORT
  if command -v ss >/dev/null; then [ -n "$(ss -Hltn "src $1 and sport = :$2" 2>/dev/null)" ]
  else (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; fi
}

apt_install() { # PKG...: install what is missing (debconf answers so that nothing asks or is configured)
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -q >/dev/null 2>&1
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "opendmarc opendmarc/dbconfig-install boolean false" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; }
}

# ns_exec RESOLV CMD...: exec CMD in a new mount namespace whose /etc/resolv.conf is RESOLV (the PID stays)
ns_exec() {
  local resolv=$1; shift
  exec unshare -m --propagation private sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$resolv" "$@"
}

# wait_ready PID LOG NAME SECONDS CHECK...: wait until CHECK succeeds; fail if PID exits first
wait_ready() {
  local pid=$1 log=$2 name=$3 secs=$4 i; shift 4
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { say "$name exited at start: $(tail -3 "$log" 2>/dev/null | tr '\n' ' ')"; return 1; }
    "$@" && return 0
    sleep 0.1
  done
  say "$name is not ready after $secs s ($*): $(tail -3 "$log" 2>/dev/null | tr '\n' ' ')"
  return 1
}

# stop_pids PID...: SIGTERM to all at once (libmilter can take seconds to leave its accept loop), SIGKILL whatever
# is still there after 10 s, reap
stop_pids() {
  local p i alive
  for p in "$@"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for p in "$@"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    [ -n "$p" ] || continue
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  return 0
}

# ---------------------------------------------------------------- DNS

# dns_up DIR: DIR holds unbound-data.conf (from bench.py dns); starts unbound in the foreground, sets DNS_PID
dns_up() {
  local d=$1
  if listening "$DNS_ADDR" 53; then say "$DNS_ADDR:53 is already in use (--dns-addr picks another loopback address)"; return 1; fi
  cat >"$d/unbound.conf" <<EOF
# bench-peers/postfix-milters: answers for the bench records only; never recurses
server:
  interface: $DNS_ADDR
  port: 53
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$d"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: yes
  local-zone: "." static
$(cat "$d/unbound-data.conf")
EOF
  unbound-checkconf "$d/unbound.conf" >"$d/unbound.log" 2>&1 || { say "unbound-checkconf: $(tail -2 "$d/unbound.log" | tr '\n' ' ')"; return 1; }
  unbound -d -c "$d/unbound.conf" >>"$d/unbound.log" 2>&1 </dev/null 9<&- &
  DNS_PID=$!
  wait_ready "$DNS_PID" "$d/unbound.log" unbound 10 listening "$DNS_ADDR" 53
}

dns_down() { stop_pids "$DNS_PID"; DNS_PID=""; }

# ---------------------------------------------------------------- OpenDKIM + OpenDMARC

# milter_socket VARIANT NAME PORT milter|postfix: the socket in the milter's or in Postfix's syntax
milter_socket() {
  case $1:$4 in
    unix:milter) echo "local:$MILTER_BASE/unix/$2.sock" ;;
    unix:postfix) echo "unix:$MILTER_BASE/unix/$2.sock" ;;
    inet:milter) echo "inet:$3@127.0.0.1" ;;
    inet:postfix) echo "inet:127.0.0.1:$3" ;;
  esac
}

# milters_conf BASE: OpenDKIM + OpenDMARC configuration for both variants under BASE/inet and BASE/unix
milters_conf() {
  local b=$1 v d psl="" umask_k umask_m
  MILTER_BASE=$b
  mkdir -p "$b/keys"
  chmod 755 "$b"
  # a signing key of our own (example.test, used only for mail from TrustedHosts): Mode sv as usually deployed
  [ -f "$b/keys/mail.private" ] || openssl genrsa -out "$b/keys/mail.private" 2048 >/dev/null 2>&1
  chmod 600 "$b/keys/mail.private"
  printf '127.0.0.1\n::1\nlocalhost\n' >"$b/TrustedHosts"
  printf 'mail._domainkey.example.test example.test:mail:%s\n' "$b/keys/mail.private" >"$b/KeyTable"
  printf '*@example.test mail._domainkey.example.test\n' >"$b/SigningTable"
  [ -f /usr/share/publicsuffix/public_suffix_list.dat ] && psl="PublicSuffixList        /usr/share/publicsuffix/public_suffix_list.dat"
  for v in inet unix; do
    d=$b/$v; mkdir -p "$d"; chmod 755 "$d"
    # the unix sockets must be writable by Postfix's smtpd (user postfix)
    if [ $v = unix ]; then umask_k=000 umask_m=0000; else umask_k=007 umask_m=0002; fi
    cat >"$d/opendkim.conf" <<EOF
# bench-peers/postfix-milters: Debian's opendkim.conf + the usual tutorial lines; no TrustAnchorFile
Syslog                  yes
SyslogSuccess           yes
UMask                   $umask_k
Mode                    sv
Canonicalization        relaxed/simple
OversignHeaders         From
AuthservID              mx.example.test
KeyTable                $b/KeyTable
SigningTable            refile:$b/SigningTable
ExternalIgnoreList      refile:$b/TrustedHosts
InternalHosts           refile:$b/TrustedHosts
Socket                  $(milter_socket $v opendkim $DKIM_PORT milter)
Nameservers             $DNS_ADDR
EOF
    cat >"$d/opendmarc.conf" <<EOF
# bench-peers/postfix-milters: Debian's opendmarc.conf + the usual lines
AuthservID              mx.example.test
TrustedAuthservIDs      mx.example.test
$psl
Socket                  $(milter_socket $v opendmarc $DMARC_PORT milter)
Syslog                  true
UMask                   $umask_m
SPFSelfValidate         true
RejectFailures          false
IgnoreHosts             $b/TrustedHosts
EOF
  done
}

milter_pids() { local k="DKIM_PID_$1" m="DMARC_PID_$1"; echo "${!k} ${!m}"; }

# milters_up VARIANT RESOLV: start the variant's two milters (foreground, each in its own mount namespace)
milters_up() {
  local v=$1 resolv=$2 d=$MILTER_BASE/$1 dk dm p
  if [ $v = inet ]; then
    for p in $DKIM_PORT $DMARC_PORT; do
      if listening 127.0.0.1 "$p"; then say "127.0.0.1:$p is already in use before the milters start"; return 1; fi
    done
  fi
  rm -f "$d/opendkim.sock" "$d/opendmarc.sock"
  (ns_exec "$resolv" opendkim -f -x "$d/opendkim.conf") >>"$d/opendkim.log" 2>&1 </dev/null 9<&- &
  dk=$!
  (ns_exec "$resolv" opendmarc -f -c "$d/opendmarc.conf") >>"$d/opendmarc.log" 2>&1 </dev/null 9<&- &
  dm=$!
  printf -v "DKIM_PID_$v" %s "$dk"; printf -v "DMARC_PID_$v" %s "$dm"
  if [ $v = unix ]; then
    wait_ready "$dk" "$d/opendkim.log" opendkim 10 test -S "$d/opendkim.sock" || return 1
    wait_ready "$dm" "$d/opendmarc.log" opendmarc 10 test -S "$d/opendmarc.sock" || return 1
  else
    wait_ready "$dk" "$d/opendkim.log" opendkim 10 listening 127.0.0.1 $DKIM_PORT || return 1
    wait_ready "$dm" "$d/opendmarc.log" opendmarc 10 listening 127.0.0.1 $DMARC_PORT || return 1
  fi
}

milters_alive() { local p; p=$(milter_pids "$1"); [ -n "${p// /}" ] && kill -0 ${p% *} 2>/dev/null && kill -0 ${p#* } 2>/dev/null; }

milters_down() { # [VARIANT...] (default: both)
  local v pids=() vs="${*:-inet unix}"
  for v in $vs; do
    pids+=($(milter_pids "$v"))
    printf -v "DKIM_PID_$v" %s ""; printf -v "DMARC_PID_$v" %s ""
  done
  [ ${#pids[@]} = 0 ] || stop_pids "${pids[@]}"
}

# ---------------------------------------------------------------- the component under test (--filter-cmd, --milter-cmd)

# cand_start VAR CMD LOG [RESOLV]: run CMD (a shell command line) in the background from the directory run.sh was
# started in, in a session and process group of its own (setsid: its PID is the group's id, so cand_stop reaches
# its children too); with RESOLV, inside a private mount namespace whose /etc/resolv.conf is RESOLV. Sets the
# variable VAR to its PID. Readiness is checked by the caller.
cand_start() {
  local var=$1 cmd=$2 log=$3 resolv=${4:-}
  echo "=== $(date '+%F %T') starting: $cmd" >>"$log"
  if [ -n "$resolv" ]; then
    setsid unshare -m --propagation private sh -c 'mount --bind "$0" /etc/resolv.conf && exec bash -c "$1"' \
      "$resolv" "$cmd" >>"$log" 2>&1 </dev/null 9<&- &
  else
    setsid bash -c "$cmd" >>"$log" 2>&1 </dev/null 9<&- &
  fi
  printf -v "$var" %s "$!"
}

# group_alive PGID: does the process group have a member that is not a zombie?
group_alive() {
  ps -e -o pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}

# cand_stop VAR: SIGTERM to the process group started by cand_start, SIGKILL after 10 s
cand_stop() {
  local var=$1 pid i
  pid=${!var}
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do group_alive "$pid" || break; sleep 0.1; done
  group_alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  printf -v "$var" %s ""
}

# ---------------------------------------------------------------- Postfix (a private instance)

# pfc CMD ARGS...: a Postfix command (postfix, postconf, postsuper, postqueue) on our instance
pfc() { local c=$1; shift; "$c" -c "$PFX" "$@"; }

# pf_up: write $PFX/{main,master}.cf and start the instance (as tests/e2e/milter.sh does):
#   127.0.0.1:SMTP_PORT smtpd (XCLIENT from loopback) -> [content_filter = scan:] -> virtual(8) Maildir
#   scan: smtp client with XFORWARD to 127.0.0.1:FILTER_PORT (maxproc MAXPROC), as contrib/postfix/after-queue-smtp.cf
#   127.0.0.1:REINJECT_PORT: the reinjection smtpd (no filter, no milters, no checks)
pf_up() {
  local st=$PF_STATE
  mkdir -p "$PFX" "$st/queue" "$st/data" "$st/mail"
  chown postfix "$st/data"; chown mail:mail "$st/mail"
  echo "user@example.test example.test/user/" >"$PFX/vmailbox"
  cat >"$PFX/main.cf" <<EOF
# written by bench/postfix-milters (lib.sh pf_up); switched per configuration with postconf -c
compatibility_level = 3.6
queue_directory = $st/queue
data_directory = $st/data
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
relay_transport = error:no outside delivery
virtual_mailbox_domains = example.test
virtual_mailbox_base = $st/mail
virtual_mailbox_maps = texthash:$PFX/vmailbox
virtual_uid_maps = static:$(id -u mail)
virtual_gid_maps = static:$(id -g mail)
virtual_minimum_uid = 1
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
maillog_file = $st/maillog
biff = no
receive_override_options = no_address_mappings
milter_default_action = accept
milter_protocol = 6
queue_run_delay = 20s
minimal_backoff_time = 20s
content_filter =
smtpd_milters =
non_smtpd_milters =
EOF
  cat >"$PFX/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$REINJECT_PORT inet n - n - - smtpd
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
  -o smtpd_error_sleep_time=0
  -o smtpd_client_connection_count_limit=0
  -o smtpd_client_connection_rate_limit=0
scan      unix - - n - $MAXPROC smtp
  -o smtp_send_xforward_command=yes
  -o smtp_data_done_timeout=1200
  -o smtp_tls_security_level=none
  -o disable_mime_output_conversion=yes
  -o max_use=20
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
  touch "$st/maillog"
  pfc postfix check || return 1
  if pfc postfix status >/dev/null 2>&1; then pfc postfix reload; else pfc postfix start; fi || return 1
  local i
  for ((i = 0; i < 100; i++)); do listening 127.0.0.1 "$SMTP_PORT" && listening 127.0.0.1 "$REINJECT_PORT" && return 0; sleep 0.1; done
  say "Postfix is not listening on 127.0.0.1:$SMTP_PORT and :$REINJECT_PORT"; return 1
}

pf_down() { [ -n "${PFX:-}" ] && [ -f "$PFX/main.cf" ] && pfc postfix stop >/dev/null 2>&1 9<&-; return 0; }

postfix_master() { tr -d ' \n' <"$PF_STATE/queue/pid/master.pid" 2>/dev/null; }
postfix_children() { local m; m=$(postfix_master); [ -n "$m" ] && ps -o pid= --ppid "$m" 2>/dev/null; }

# postfix_mode CONFIG: main.cf for the configuration, `postfix reload`, then wait until every Postfix process that
# ran the old configuration has exited (the master stays, so its CPU accounting goes on)
postfix_mode() {
  local old i p left m v
  case $1 in
    floor) pfc postconf -e 'content_filter =' 'smtpd_milters =' 'non_smtpd_milters =' ;;
    milters-*) v=${1#milters-}
      pfc postconf -e 'content_filter =' \
        "smtpd_milters = $(milter_socket $v opendkim $DKIM_PORT postfix), $(milter_socket $v opendmarc $DMARC_PORT postfix)" \
        'non_smtpd_milters = $smtpd_milters' ;;
    filter) pfc postconf -e "content_filter = scan:[127.0.0.1]:$FILTER_PORT" 'smtpd_milters =' 'non_smtpd_milters =' ;;
    milter) pfc postconf -e 'content_filter =' "smtpd_milters = $MILTER_PF_SOCKET" 'non_smtpd_milters = $smtpd_milters' ;;
    *) say "postfix_mode: unknown configuration $1"; return 1 ;;
  esac
  m=$(postfix_master)
  old=$(postfix_children)
  pfc postfix reload >/dev/null 2>&1 9<&- || return 1
  for ((i = 0; i < 150; i++)); do
    left=0
    for p in $old; do [ -d "/proc/$p" ] && [ "$(cut -d' ' -f4 "/proc/$p/stat" 2>/dev/null)" = "$m" ] && left=1 && break; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  listening 127.0.0.1 "$SMTP_PORT" || sleep 1
}
