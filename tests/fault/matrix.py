#!/usr/bin/env python3
"""tests/fault/matrix.py - the fault matrix: uniquely numbered messages through
real MTAs and authgate under each fault, then per message: where did it end?

    tests/fault/matrix.py                      # short: 6 messages a cell (CI)
    tests/fault/matrix.py --full               # the full matrix: 100 messages a cell
    tests/fault/matrix.py --modes milter --faults dns_down,sigterm
    tests/fault/matrix.py --authgate target/release/authgate --out table.md

Modes (the three fronts):
    content  Postfix content_filter -> authgate serve -> [fault proxy] -> Postfix
             reinjection smtpd -> Maildir
    milter   Postfix smtpd_milters = authgate milter (milter_default_action =
             tempfail); the queue relays through [fault proxy] to the reinjection
             smtpd -> Maildir
    pipe     Exim transport_filter = authgate pipe: local deliveries verify
             (Maildir), remote ones sign and go through [fault proxy] to Exim's
             sink listener

Faults (each a cell per mode): kill9 (authgate killed with SIGKILL while
messages are in flight), not_running, hop_down, hop_stall (past authgate's and
the MTA's data timeouts), hop_reset (mid-DATA), hop_reset_after_accept (the
duplicate SMTP cannot prevent, counted apart), dns_down, dns_servfail,
spool_full (a full tmpfs under authgate's spool), sighup_valid and
sighup_invalid under load, sigterm under load.

The client is a retrying one, like a sending MTA: a 4xx (or a lost connection)
is tried again after the fault is healed. At the end every message is
"delivered" (exactly once), "duplicate" (more than once), "queued" (still in
the MTA's queue), "bounced", "rejected" (5xx the client saw) or "lost"
(none of those). A cell passes with every message delivered once, no bounce,
no 5xx, and the duplicates no more than the resets after acceptance the proxy
made. For serve and milter the cell also checks authgate's metrics: the
tempfails it counted carry the fault's cause and no other.

Needs root; uses tests/e2e/postfix.sh and exim.sh (real Postfix and Exim on
loopback), tests/fault/dnsd.py and faultproxy.py. Prints a Markdown table and
exits 1 if a cell failed.
"""
import argparse
import collections
import concurrent.futures
import glob
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from email.utils import formatdate, make_msgid

import dkim

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
E2E = os.path.join(REPO, "tests", "e2e")
E2E_STATE = os.environ.get("E2E_STATE", "/var/tmp/authgate-e2e")
LIBEXEC = os.environ.get("E2E_LIBEXEC", "/usr/local/libexec/authgate-e2e")
STATE = "/var/tmp/authgate-fault"
SPOOL = STATE + "/spool"  # a small tmpfs while the matrix runs
PROXY_PORT, DNS_PORT, METRICS_PORT, MILTER_PORT, SERVE_PORT = 10030, 5300, 9931, 10028, 10025
REINJECT_PORT, EXIM_PORT, SINK_PORT, POSTFIX_PORT = 10026, 2525, 2526, 25
DATA_TIMEOUT = 10  # authgate's next-hop data timeout and the MTAs' data timeouts here

MODES = ["content", "milter", "pipe"]
FAULTS = [
    "kill9", "not_running", "hop_down", "hop_stall", "hop_reset", "hop_reset_after_accept",
    "dns_down", "dns_servfail", "spool_full", "sighup_valid", "sighup_invalid", "sigterm",
]
# the tempfail cause authgate must count for each fault (serve and milter); None: none at all
CAUSE = {
    ("content", "hop_down"): "next_hop", ("content", "hop_stall"): "next_hop",
    ("content", "hop_reset"): "next_hop", ("content", "hop_reset_after_accept"): "next_hop",
    ("content", "dns_down"): "dns", ("content", "dns_servfail"): "dns",
    ("content", "spool_full"): "spool",
    ("milter", "dns_down"): "dns", ("milter", "dns_servfail"): "dns",
}


def log(*a):
    print("fault:", *a, file=sys.stderr, flush=True)


def run(cmd, env=None, check=True, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(cond, secs, what):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timeout: {what}")


def write(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


# --- authgate's configs -------------------------------------------------------

def config(kind, marker=0, soak=False):
    """kind: content (serve) | milter | pipe-verify | pipe-sign. marker changes a harmless
    value (a SIGHUP that really loads something new). soak: the daemons sign
    (example.com, root's keys) and verify every message."""
    keys = ""
    role = "both" if soak else "inbound"
    if kind == "pipe-sign" or soak:
        keydir = "keys-sign" if kind == "pipe-sign" else "keys-root"
        keys = f"""
[[dkim.keys]]
name = "rsa"
domain = "example.com"
selector = "rsa2048"
file = "{LIBEXEC}/{keydir}/rsa2048.pem"

[[dkim.signing_table]]
pattern = "*@example.com"
keys = ["rsa"]
"""
    if soak:  # the defaults' threshold, on disk: the corpus has 5 MB messages
        spool = f'spool_dir = "{STATE}/spool-disk"'
    else:
        spool = f'spool_threshold = 0                # every body goes to the spool (the spool_full cell)\nspool_dir = "{SPOOL}"'
    c = f"""# written by tests/fault/matrix.py
authserv_id = "mx.example.test"

[message]
{spool}

[dns]
servers = ["127.0.0.1:{DNS_PORT}"]
timeout_ms = {1000 + marker}
attempts = 1

[dmarc]
temperror_action = "tempfail"      # DNS trouble is a 4xx: the demanding path

[trust]
trusted_received_by = ["mx.example.test", "exim.example.test"]

[server]
next_hop_timeout_secs = {DATA_TIMEOUT}
next_hop_data_timeout_secs = {DATA_TIMEOUT}
connect_timeout_secs = 5
shutdown_timeout_secs = 20
{keys}"""
    if kind in ("content", "milter"):
        c += f"""
[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[milter]
listen = "127.0.0.1:{MILTER_PORT}"
role = "{role}"

[[listener]]
listen = "127.0.0.1:{SERVE_PORT}"
protocol = "smtp"
next_hop = "127.0.0.1:{PROXY_PORT}"
next_hop_protocol = "smtp"
role = "{role}"
mode = "after-queue"
"""
    return c


# --- the parts ------------------------------------------------------------------

class Proc:
    """A background process we started (never found by name)."""

    def __init__(self, name, cmd):
        self.name, self.cmd, self.p = name, cmd, None
        self.log = os.path.join(STATE, name + ".log")

    def start(self):
        f = open(self.log, "a")
        self.p = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        f.close()

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def send(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, secs=30):
        if not self.alive():
            return None
        self.p.send_signal(sig)
        try:
            return self.p.wait(secs)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return "killed"


class Matrix:
    def __init__(self, args):
        self.a = args
        self.bin = os.path.join(LIBEXEC, "authgate")
        self.proxy_ctl = STATE + "/proxy.mode"
        self.dns_ctl = STATE + "/dns.mode"
        self.proxy = None
        self.dnsd = None
        self.daemon = None
        self.mode = None
        self.trickle = False
        self.seen = {}  # delivered file -> the ids in it
        self.soaking = False
        self.corpus = []
        self.key = open(os.path.join(REPO, "tests/fixtures/dkim/rsa2048.pem"), "rb").read()
        self.body = ("".join(f"line {i:04d} of the fault matrix's message body, long enough to take a while\r\n"
                             for i in range(400))).encode()

    # -- set-up
    def setup(self):
        os.makedirs(STATE, exist_ok=True)
        # Exim's remote_smtp runs the signing filter as Debian-exim: the keys are its own
        run(["bash", "-c", f'. "{E2E}/lib.sh"; install_authgate "$0"', os.path.abspath(self.a.authgate)],
            env={"SIGN_USER": "Debian-exim"})
        run([E2E + "/postfix.sh", "install"])
        run([E2E + "/exim.sh", "install"])
        os.makedirs(SPOOL, exist_ok=True)
        if not os.path.ismount(SPOOL):
            run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=1777", "tmpfs", SPOOL])
        os.chmod(SPOOL, 0o1777)
        os.makedirs(STATE + "/spool-disk", mode=0o1777, exist_ok=True)
        zones = [LIBEXEC + "/zones/all.zone", LIBEXEC + "/zones/policy.zone"]
        write(self.dns_ctl, "ok\n")
        write(self.proxy_ctl, "pass\n")
        self.dnsd = Proc("dnsd", [sys.executable, HERE + "/dnsd.py", "--listen", f"127.0.0.1:{DNS_PORT}",
                                  "--control", self.dns_ctl] + zones)
        self.dnsd.start()
        time.sleep(0.5)
        if not self.dnsd.alive():
            raise RuntimeError("dnsd did not start: " + open(self.dnsd.log).read()[-2000:])

    def teardown(self):
        """Stops everything we started; one step failing does not skip the others."""
        steps = [self.stop_daemon] + [p.stop for p in (self.proxy, self.dnsd) if p] + [
            lambda: run([E2E + "/postfix.sh", "down"], check=False),
            lambda: run([E2E + "/exim.sh", "down"], check=False),
            lambda: os.path.ismount(SPOOL) and run(["umount", SPOOL], check=False),
            self.restore_binary,
            # the pipe filters' configs are the e2e's again (exim.sh rewrites them at `up`)
            lambda: [os.unlink(f) for f in (LIBEXEC + "/exim-verify.toml", LIBEXEC + "/exim-sign.toml")
                     if os.path.exists(f)]]
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - report and go on stopping the rest
                log(f"teardown: {e}")

    def start_proxy(self, target):
        if self.proxy:
            self.proxy.stop()
        self.proxy = Proc("proxy", [sys.executable, HERE + "/faultproxy.py", "--listen", f"127.0.0.1:{PROXY_PORT}",
                                    "--target", f"127.0.0.1:{target}", "--control", self.proxy_ctl])
        self.proxy.start()
        wait_for(lambda: listening(PROXY_PORT), 10, "fault proxy listening")

    def enter_mode(self, mode):
        """Bring up the MTA layout for a mode (once per mode)."""
        self.stop_daemon()
        self.mode = mode
        if mode == "pipe":
            run([E2E + "/postfix.sh", "down"], check=False)
            write(LIBEXEC + "/exim-verify.toml", config("pipe-verify"))
            write(LIBEXEC + "/exim-sign.toml", config("pipe-sign"))
            run([E2E + "/exim.sh", "up"], env={"REMOTE_PORT": str(PROXY_PORT),
                                              "REMOTE_DATA_TIMEOUT": f"{DATA_TIMEOUT}s"})
            self.start_proxy(SINK_PORT)
        else:
            run([E2E + "/exim.sh", "down"], check=False)
            env = {"FILTER": mode, "REINJECT": "on", "HOP_PORT": str(PROXY_PORT), "MILTER_PORT": str(MILTER_PORT)}
            run([E2E + "/postfix.sh", "up"], env=env)
            self.start_proxy(REINJECT_PORT)

    # -- authgate
    def conf_path(self):
        return f"{STATE}/authgate-{self.mode}.toml"

    def write_conf(self, marker=0, broken=False):
        if self.mode == "pipe":
            v, s = config("pipe-verify", marker), config("pipe-sign", marker)
            if broken:
                v += "\nnot_a_setting = 1   # the fault matrix: an invalid config\n"
                s += "\nnot_a_setting = 1\n"
            write(LIBEXEC + "/exim-verify.toml", v)
            write(LIBEXEC + "/exim-sign.toml", s)
            return
        c = config(self.mode, marker, soak=self.soaking)
        if broken:
            c += "\nnot_a_setting = 1   # the fault matrix: an invalid config\n"
        write(self.conf_path(), c)

    def start_daemon(self):
        if self.mode == "pipe":
            return
        self.daemon = Proc(f"authgate-{self.mode}", [self.bin, "serve" if self.mode == "content" else "milter",
                                                      "--config", self.conf_path()])
        self.daemon.start()
        port = SERVE_PORT if self.mode == "content" else MILTER_PORT
        wait_for(lambda: listening(port) and listening(METRICS_PORT), 20, f"authgate {self.mode} listening")

    def stop_daemon(self):
        if self.daemon:
            self.daemon.stop()
            self.daemon = None
        wait_for(lambda: not listening(METRICS_PORT), 20,
                 f"127.0.0.1:{METRICS_PORT} free (an authgate left from an earlier run?)")

    def pipe_pids(self):
        r = run(["pgrep", "-f", f"^{self.bin} pipe"], check=False)
        return [int(x) for x in r.stdout.split()]

    def restore_binary(self):
        if os.path.exists(self.bin + ".off"):
            os.rename(self.bin + ".off", self.bin)

    def metrics(self):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
        except OSError:
            return None
        m = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
        return m

    # -- mail
    def message(self, mid):
        local = self.mode != "pipe" or int(mid.rsplit("-", 1)[1]) % 2 == 0
        if local:
            rcpt, frm = "user@example.test", "sender@example.org"
        else:
            rcpt, frm = "bob@example.net", "alice@example.com"
        head = (f"From: Sender <{frm}>\r\nTo: <{rcpt}>\r\nSubject: fault matrix {mid}\r\n"
                f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='example.org')}\r\n"
                f"X-Fault-Id: {mid}\r\n").encode()
        body = self.body
        if self.soaking:  # the gen_corpus mix; every other message is ours to sign
            body = self.corpus[int(mid.rsplit("-", 1)[1]) % len(self.corpus)]
            if int(mid.rsplit("-", 1)[1]) % 2:
                head = head.replace(b"Sender <sender@example.org>", b"Alice <alice@example.com>")
                return "alice@example.com", rcpt, head + b"\r\n" + body
        msg = head + b"\r\n" + body
        if local:  # DKIM-signed by example.org: DMARC passes when DNS works
            sig = dkim.sign(msg, b"rsa2048", b"example.org", self.key,
                            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
            msg = sig + msg
        return frm, rcpt, msg

    def send_one(self, mid):
        """One attempt: 'ok', 'temp' (4xx or a lost connection) or 'perm' (5xx).
        With self.trickle the message's lines go out over about two seconds (the
        client is mid-DATA when the milter is killed)."""
        frm, rcpt, msg = self.message(mid)
        port = EXIM_PORT if self.mode == "pipe" else POSTFIX_PORT
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=120) as s:
                if not self.trickle:
                    s.sendmail(frm, [rcpt], msg)
                    return "ok", ""
                s.ehlo()
                for code, text in (s.mail(frm), s.rcpt(rcpt)):
                    if code >= 400:
                        raise smtplib.SMTPResponseException(code, text)
                code, text = s.docmd("DATA")
                if code != 354:
                    raise smtplib.SMTPResponseException(code, text)
                lines = msg.split(b"\r\n")
                step = max(1, len(lines) // 20)
                for i in range(0, len(lines), step):
                    s.send(b"".join(l.replace(b".", b"..", 1) if l.startswith(b".") else l
                                    for l in (x + b"\r\n" for x in lines[i:i + step])))
                    time.sleep(0.1)
                s.send(b".\r\n")
                code, text = s.getreply()
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
            return "ok", ""
        except smtplib.SMTPRecipientsRefused as e:
            code, text = list(e.recipients.values())[0]
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPResponseException) as e:
            code, text = e.smtp_code, e.smtp_error
        except (OSError, smtplib.SMTPException) as e:
            return "temp", f"{type(e).__name__}: {e}"
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return ("perm" if 500 <= code < 600 else "temp"), f"{code} {text}"

    def send_all(self, ids, status):
        """Send (or resend) ids concurrently; status[id] collects every attempt."""
        def one(mid):
            r = self.send_one(mid)
            status[mid].append(r)
        with concurrent.futures.ThreadPoolExecutor(self.a.concurrency) as ex:
            list(ex.map(one, ids))

    def send_in_background(self, ids, status):
        t = threading.Thread(target=self.send_all, args=(ids, status))
        t.start()
        return t

    def maildirs(self):
        if self.mode == "pipe":
            return [E2E_STATE + "/exim/mail", E2E_STATE + "/exim/sink"], []
        return [E2E_STATE + "/postfix/mail/example.test"], [E2E_STATE + "/postfix/mail/example.org"]

    def scan(self, dirs):
        """X-Fault-Id -> number of delivered files under dirs (a bounce carries
        the id in its attached header). Files are read once (self.seen)."""
        c = collections.Counter()
        for d in dirs:
            for root, _, files in os.walk(d):
                if not (root.endswith("/new") or root.endswith("/cur")):
                    continue
                for f in files:
                    path = os.path.join(root, f)
                    ids = self.seen.get(path)
                    if ids is None:
                        try:
                            with open(path, "rb") as fh:
                                data = fh.read(1 << 20)
                        except OSError:
                            continue
                        ids = self.seen[path] = {m.decode() for m in re.findall(rb"X-Fault-Id: ([\w-]+)", data)}
                    for m in ids:
                        c[m] += 1
        return c

    def clear_mail(self):
        delivered, bounces = self.maildirs()
        for d in delivered + bounces:
            for root, _, files in os.walk(d):
                if root.endswith("/new") or root.endswith("/cur"):
                    for f in files:
                        os.unlink(os.path.join(root, f))
        self.seen = {}

    def queued(self):
        """X-Fault-Id -> 'queued' or 'bounce' for each message in the MTA's queue."""
        q = {}
        if self.mode == "pipe":
            spool = E2E_STATE + "/exim/spool/input"
            for root, _, files in os.walk(spool):
                for f in files:
                    if not f.endswith("-H"):
                        continue
                    try:
                        data = open(os.path.join(root, f), "rb").read()
                    except OSError:
                        continue
                    lines = data.split(b"\n")
                    bounce = len(lines) > 2 and lines[2].strip() == b"<>"
                    for m in re.findall(rb"X-Fault-Id: ([\w-]+)", data):
                        q[m.decode()] = "bounce" if bounce else "queued"
            return q
        r = run(["postqueue", "-j"], check=False)
        qdir = run(["postconf", "-h", "queue_directory"]).stdout.strip()
        for line in r.stdout.splitlines():
            j = json.loads(line)
            bounce = j.get("sender", "") == "" or "MAILER-DAEMON" in j.get("sender", "")
            # the file itself (postcat -q waits a second for a message delivered meanwhile)
            files = glob.glob(f"{qdir}/{j['queue_name']}/**/{j['queue_id']}", recursive=True)
            if not files:
                continue
            # the id is a header of the message, and in a bounce's body
            c = run(["postcat", "-q" if bounce else "-h", files[0]], check=False).stdout
            for m in set(re.findall(r"X-Fault-Id: ([\w-]+)", c)):
                q[m] = "bounce" if bounce else "queued"
        return q

    def clear_queue(self):
        if self.mode == "pipe":
            run([E2E + "/exim.sh", "clear-queue"], check=False)
        else:
            run(["postsuper", "-d", "ALL"], check=False)

    def flush(self):
        if self.mode == "pipe":
            run([E2E + "/exim.sh", "flush"], check=False, timeout=120)
        else:
            run(["postqueue", "-f"], check=False)

    # -- one cell
    def mta_log(self):
        return E2E_STATE + ("/exim/log/mainlog" if self.mode == "pipe" else "/postfix/maillog")

    def deferrals(self, since):
        """What the MTA logged as deferred since offset `since`: reason -> count."""
        c = collections.Counter()
        try:
            with open(self.mta_log(), "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return c
        for line in text.splitlines():
            if self.mode == "pipe":
                m = re.search(r" defer \(-?\d+\)(?: H=\S+ \[\S+\])?: (.*)", line)
                if m:
                    c[re.sub(r" while writing to .*", "", m.group(1))[:60]] += 1
            elif "status=deferred" in line:
                m = re.search(r"status=deferred \((.*)\)$", line)
                reason = m.group(1) if m else "?"
                m = re.search(r"said: (\d{3} [\d.]+)", reason)
                c[("said " + m.group(1)) if m else reason[:60]] += 1
            elif "milter-reject: " in line:
                m = re.search(r"milter-reject: (\S+) from \S+: (?:\d{3} )?(\d\.\d\.\d+ [^;]{0,30})", line)
                c[f"milter-reject at {m.group(1)}: {m.group(2)}" if m else "milter-reject"] += 1
            elif "NOQUEUE: " in line and " 4" in line:
                m = re.search(r"NOQUEUE: \S+: (\S+ from \S+: \d{3} \d\.\d\.\d+)", line)
                c[m.group(1) if m else "NOQUEUE 4xx"] += 1
        return c

    def reset_state(self):
        write(self.proxy_ctl, "pass\n")
        write(self.dns_ctl, "ok\n")
        for f in os.listdir(SPOOL):
            os.unlink(os.path.join(SPOOL, f))
        try:
            os.unlink(self.proxy_ctl + ".count")
        except FileNotFoundError:
            pass
        self.restore_binary()
        self.stop_daemon()
        self.clear_queue()
        self.clear_mail()
        self.write_conf()
        self.start_daemon()

    def fault_events(self):
        try:
            return collections.Counter(open(self.proxy_ctl + ".count").read().split())
        except FileNotFoundError:
            return collections.Counter()

    def wait_events(self, secs, n=1):
        end = time.time() + secs
        while time.time() < end and sum(self.fault_events().values()) < n:
            time.sleep(0.2)

    def kill_pipes(self, sig, secs):
        """Signal every running `authgate pipe` for secs seconds; returns how many."""
        hit = set()
        end = time.time() + secs
        while time.time() < end:
            for pid in self.pipe_pids():
                try:
                    os.kill(pid, sig)
                    hit.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        return len(hit)

    def cell(self, fault, run_id):
        mode = self.mode
        n = self.a.messages
        ids = [f"{run_id}-{mode}-{fault}-{i}" for i in range(n)]
        status = collections.defaultdict(list)
        notes = []
        t0 = time.time()
        self.reset_state()
        log_start = os.path.getsize(self.mta_log()) if os.path.exists(self.mta_log()) else 0
        restarted = False
        daemon_exit = None

        if fault in ("kill9", "sigterm"):
            if mode == "pipe":
                # every `authgate pipe` that runs while the messages arrive is signalled
                hit = []
                sig = signal.SIGKILL if fault == "kill9" else signal.SIGTERM
                k = threading.Thread(target=lambda: hit.append(self.kill_pipes(sig, 4)))
                k.start()
                self.send_all(ids, status)
                k.join()
                notes.append(f"{hit[0]} pipe processes signalled")
            else:
                # messages in flight mid-DATA: the proxy's bodies trickle to the next hop, the
                # milter's clients trickle theirs to Postfix
                write(self.proxy_ctl, "slow\n")
                self.trickle = mode == "milter"
                t = self.send_in_background(ids, status)
                time.sleep(1.5)
                daemon_exit = self.daemon.stop(signal.SIGKILL if fault == "kill9" else signal.SIGTERM)
                notes.append(f"authgate exit {daemon_exit}")
                restarted = True
                time.sleep(1)
                t.join()
                self.trickle = False
                write(self.proxy_ctl, "pass\n")
                self.start_daemon()
        elif fault == "not_running":
            if mode == "pipe":
                os.rename(self.bin, self.bin + ".off")
            else:
                self.stop_daemon()
                restarted = True
            self.send_all(ids, status)
            time.sleep(2)
            if mode == "pipe":
                self.restore_binary()
            else:
                self.start_daemon()
        elif fault.startswith("hop_"):
            write(self.proxy_ctl, {"hop_down": "down", "hop_stall": "stall", "hop_reset": "reset",
                                   "hop_reset_after_accept": "reset_after_accept"}[fault] + "\n")
            time.sleep(0.3)
            t = self.send_in_background(ids, status)
            if fault == "hop_down":
                time.sleep(3)
            else:
                self.wait_events(DATA_TIMEOUT + 20, min(2, n))
                if fault == "hop_stall":
                    time.sleep(DATA_TIMEOUT + 2)  # let the timeouts fire
            t.join()
            write(self.proxy_ctl, "pass\n")
        elif fault.startswith("dns_"):
            write(self.dns_ctl, ("down" if fault == "dns_down" else "servfail") + "\n")
            self.send_all(ids, status)
            time.sleep(3)
            write(self.dns_ctl, "ok\n")
        elif fault == "spool_full":
            fill = os.path.join(SPOOL, "filler")
            with open(fill, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            self.send_all(ids, status)
            time.sleep(3)
            os.unlink(fill)
        elif fault in ("sighup_valid", "sighup_invalid"):
            t = self.send_in_background(ids, status)
            for i in range(5):
                time.sleep(0.3)
                self.write_conf(marker=i + 1, broken=fault == "sighup_invalid")
                if self.daemon:
                    self.daemon.send(signal.SIGHUP)
            t.join()
            if fault == "sighup_invalid":
                time.sleep(2)
                self.write_conf()
                if self.daemon:
                    self.daemon.send(signal.SIGHUP)
        else:
            raise RuntimeError(f"unknown fault {fault}")

        events = self.fault_events()
        m = self.settle(ids, status)
        if m is not None:  # kept for tests/e2e/keygrep.py, which scans every output
            text = "\n".join(f"{k} {v:g}" for k, v in sorted(m.items()))
            write(f"{STATE}/metrics-{mode}-{fault}.txt", text + "\n")
        row = self.account(fault, ids, status, events, notes)
        row["mta_deferrals"] = dict(self.deferrals(log_start))
        row["seconds"] = round(time.time() - t0, 1)
        if mode != "pipe":
            row["metrics"] = self.check_metrics(fault, m, restarted, daemon_exit)
        else:
            row["metrics"] = "n/a (one process a message)"
        if row["metrics"] not in ("ok", "n/a (one process a message)"):
            row["ok"] = False
        return row

    def settle(self, ids, status):
        """Heal is done: let the MTA retry and the client resend its 4xx'd messages
        until everything is accounted for or the patience runs out."""
        delivered, _ = self.maildirs()
        end = time.time() + self.a.patience
        while time.time() < end:
            got = self.scan(delivered)
            resend = [i for i in ids if status[i] and status[i][-1][0] == "temp" and got[i] == 0]
            if resend:
                self.send_all(resend, status)
            q = self.queued()
            pending = [i for i in ids if got[i] == 0 and status[i][-1][0] != "perm"]
            if not pending and not any(i in q for i in ids):
                break
            self.flush()
            time.sleep(2)
        time.sleep(1)  # a duplicate would land now
        return self.metrics() if self.mode != "pipe" else None

    def account(self, fault, ids, status, events, notes):
        delivered, bounce_dirs = self.maildirs()
        got = self.scan(delivered)
        bounced_mail = self.scan(bounce_dirs)
        q = self.queued()
        c = collections.Counter()
        for i in ids:
            attempts = status[i]
            c["sent"] += 1
            c["client_4xx"] += sum(1 for s, _ in attempts if s == "temp")
            if got[i] == 1:
                c["delivered"] += 1
            elif got[i] > 1:
                c["duplicate"] += got[i] - 1
                c["delivered"] += 1
            elif q.get(i) == "queued":
                c["queued"] += 1
            elif bounced_mail[i] or q.get(i) == "bounce":
                c["bounced"] += 1
            elif attempts and attempts[-1][0] == "perm":
                c["rejected"] += 1
            else:
                c["lost"] += 1
        smtp_dups = sum(v for k, v in events.items() if k.startswith("reset_after_accept:2"))
        row = dict(mode=self.mode, fault=fault, **{k: c[k] for k in (
            "sent", "client_4xx", "delivered", "duplicate", "queued", "bounced", "rejected", "lost")})
        row["smtp_duplicates_expected"] = smtp_dups
        row["fault_events"] = dict(events)
        row["notes"] = "; ".join(notes)
        perm = [a[-1][1] for a in status.values() if a and a[-1][0] == "perm"]
        if perm:
            row["notes"] += f"; 5xx: {perm[0]}"
        row["ok"] = (c["delivered"] == len(ids) and c["lost"] == 0 and c["queued"] == 0 and c["bounced"] == 0
                     and c["rejected"] == 0 and c["duplicate"] <= smtp_dups)
        return row

    def check_metrics(self, fault, m, restarted, daemon_exit):
        if m is None:
            return "no metrics endpoint"
        problems = []
        causes = {k: v for k, v in m.items() if k.startswith("authgate_tempfails_total{")}
        want = CAUSE.get((self.mode, fault))
        for k, v in causes.items():
            cause = re.search(r'cause="(\w+)"', k).group(1)
            if v and cause != want:
                problems.append(f"tempfails{{cause={cause}}} = {v:g}, expected none")
        if want and not restarted and not m.get(f'authgate_tempfails_total{{cause="{want}"}}'):
            problems.append(f"tempfails{{cause={want}}} not counted")
        ok_reloads = m.get('authgate_config_reloads_total{result="ok"}', 0)
        bad_reloads = m.get('authgate_config_reloads_total{result="failed"}', 0)
        if fault == "sighup_valid" and (ok_reloads < 5 or bad_reloads):
            problems.append(f"reloads ok={ok_reloads:g} failed={bad_reloads:g}, expected 5/0")
        if fault == "sighup_invalid" and (bad_reloads < 5 or ok_reloads < 1):
            problems.append(f"reloads ok={ok_reloads:g} failed={bad_reloads:g}, expected >=1/5")
        if fault == "sigterm" and daemon_exit != 0:
            problems.append(f"SIGTERM: exit {daemon_exit}, expected 0 after the drain")
        return "; ".join(problems) or "ok"


def proc_status(pid):
    """(VmRSS KiB, VmHWM KiB, open descriptors) of a process."""
    st = open(f"/proc/{pid}/status").read()
    kib = lambda k: int(re.search(rf"^{k}:\s+(\d+)", st, re.M).group(1))
    return kib("VmRSS"), kib("VmHWM"), len(os.listdir(f"/proc/{pid}/fd"))


def soak(mx, n, run_id):
    """n messages (the gen_corpus mix, half signed by us, all verified) through
    the mode's MTA and daemon: throughput, RSS after the first 1000 and at the
    end, peak RSS, descriptors before and after."""
    corpus_dir = STATE + "/corpus"
    if not os.path.isdir(corpus_dir + "/msgs"):
        # ../shared beside the checkout (as in CI) has the benchmarks' corpus generator
        gen = os.path.join(os.path.dirname(REPO), "shared", "bench-peers", "gen_corpus.py")
        run([sys.executable, gen, corpus_dir, "--count", "2000", "--no-sign"], timeout=900)
    mx.corpus = []
    for f in sorted(os.listdir(corpus_dir + "/msgs")):
        data = open(os.path.join(corpus_dir, "msgs", f), "rb").read()
        mx.corpus.append(data.split(b"\r\n\r\n", 1)[1])
    # the files sort by size class (all the 5 MB ones last): send them mixed, in
    # a fixed order, so the first 1000 messages already are the mix
    random.Random(42).shuffle(mx.corpus)
    mx.soaking = True
    try:
        mx.reset_state()
        pid = mx.daemon.p.pid
        time.sleep(1)
        _, _, fd0 = proc_status(pid)
        ids = [f"{run_id}-{mx.mode}-soak-{i}" for i in range(n)]
        status = collections.defaultdict(list)
        delivered, _ = mx.maildirs()
        t0 = time.time()
        t = mx.send_in_background(ids, status)
        rss1000 = None
        trail = []  # (delivered, RSS KiB) every 1000 messages: a plateau or a slope
        while t.is_alive():
            time.sleep(1)
            done = sum(1 for v in mx.scan(delivered).values() if v)
            if done >= 1000 * (len(trail) + 1):
                trail.append((done, proc_status(pid)[0]))
                if rss1000 is None:
                    rss1000 = trail[0][1]
        t.join()
        mx.settle(ids, status)
        elapsed = time.time() - t0
        if rss1000 is None:
            rss1000 = proc_status(pid)[0]
        time.sleep(8)  # idle next-hop connections close (next_hop_idle_secs = 5)
        rss_end, hwm, fd_end = proc_status(pid)
        row = mx.account("soak", ids, status, collections.Counter(), [])
        row.update(seconds=round(elapsed, 1), msgs_per_s=round(n / elapsed, 1), rss_after_1000_kib=rss1000,
                   rss_end_kib=rss_end, peak_rss_kib=hwm, fds_start=fd0, fds_end=fd_end,
                   rss_trail=" ".join(f"{d // 1000}k:{r / 1024:.1f}M" for d, r in trail))
        row["ok"] = row["ok"] and rss_end <= rss1000 * 1.10 and fd_end <= fd0
        return row
    finally:
        mx.soaking = False


def table(rows):
    cols = ["mode", "fault", "sent", "client_4xx", "delivered", "duplicate", "smtp_duplicates_expected",
            "queued", "bounced", "rejected", "lost", "fault_events", "mta_deferrals", "metrics", "seconds", "ok"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        r = dict(r, fault_events=", ".join(f"{k} {v}" for k, v in sorted(r["fault_events"].items())) or "-",
                 mta_deferrals=", ".join(f"{k}: {v}" for k, v in sorted(r["mta_deferrals"].items())) or "-",
                 notes=r["notes"] or "-")
        if r["notes"] != "-":
            r["fault_events"] += f" ({r['notes']})"
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def soak_table(rows):
    cols = ["mode", "sent", "delivered", "duplicate", "queued", "lost", "seconds", "msgs_per_s",
            "rss_after_1000_kib", "rss_end_kib", "peak_rss_kib", "rss_trail", "fds_start", "fds_end", "ok"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authgate", default=os.path.join(REPO, "target/debug/authgate"))
    p.add_argument("--messages", type=int, default=6, help="messages per cell (default 6)")
    p.add_argument("--full", action="store_true", help="the full matrix: 100 messages a cell")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--patience", type=int, default=120, help="seconds a cell may take to settle")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--faults", default=",".join(FAULTS))
    p.add_argument("--soak", type=int, metavar="N",
                   help="instead of the faults: N messages (the gen_corpus mix) through each mode, "
                        "with throughput, RSS and descriptors (the issue's 10000; content and milter)")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--json", help="also write one JSON line per cell here")
    a = p.parse_args()
    if a.full:
        a.messages = max(a.messages, 100)
        a.patience = max(a.patience, 600)
    if os.geteuid() != 0:
        sys.exit("tests/fault/matrix.py: run as root (real Postfix and Exim)")
    mx = Matrix(a)
    rows = []
    run_id = f"f{int(time.time())}"
    try:
        mx.setup()
        for mode in a.modes.split(","):
            mx.enter_mode(mode)
            if a.soak:
                log(f"{mode} / soak of {a.soak} messages ...")
                row = soak(mx, a.soak, run_id)
                rows.append(row)
                log(("ok " if row["ok"] else "FAIL ") + json.dumps(row))
                continue
            for fault in a.faults.split(","):
                log(f"{mode} / {fault} ...")
                row = mx.cell(fault, run_id)
                rows.append(row)
                log(("ok " if row["ok"] else "FAIL ") + json.dumps(row))
    finally:
        mx.teardown()
    t = soak_table(rows) if a.soak else table(rows)
    print(t)
    if a.out:
        write(a.out, t + "\n")
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)} cells passed, {len(bad)} failed", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
