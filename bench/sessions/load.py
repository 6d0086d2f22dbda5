#!/usr/bin/env python3
"""N concurrent sessions against one `authgate serve` or `authgate milter`.

    bench/sessions/load.py --authgate BIN --front serve|milter
                           [--sessions 500] [--max-sessions 100]
                           [--timeout 30] [--json FILE] [--quiet]

Starts the given authgate binary on a free loopback port (31000-31999) with
its own configuration (DNS from a zone file written here: fully offline;
`server.max_sessions` = --max-sessions) and, for `serve`, an SMTP sink on
another such port as its next hop. Then opens --sessions client connections
at once and holds every one that was accepted until all of them are open (a
barrier), so exactly min(sessions, max_sessions) run at the same time and
the rest meet the limit. Each accepted session then sends one message:

  serve   EHLO, XFORWARD, MAIL, RCPT, DATA, the message (X-Load-Id: <i>), QUIT
  milter  OPTNEG, CONNECT, HELO, MAIL, RCPT, HEADER..., EOH, BODY, EOM, QUIT

Every read and write has a --timeout; a session still unfinished then is a
hang. Measured on the authgate process: open descriptors (/proc/PID/fd)
before the first connection, while every session is open, just after the
last one ended and once settled (the proxy keeps up to 16 idle next-hop
connections for `server.next_hop_idle_secs`, set to 1 here), VmHWM (peak
RSS). The sink counts each message by its X-Load-Id.

Exit status 0 when the run is clean: no hang, every session either answered
normally or refused at the limit (421 4.3.2 / connection closed, which the
MTA turns into milter_default_action), descriptors back to the start value,
each accepted message delivered exactly once (serve), and the number
accepted equal to min(sessions, max_sessions). 1 otherwise, with the
reasons on stderr. The JSON summary goes to stdout (and --json FILE).
"""

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ZONE = """\
example.org.              300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.org.       300 IN TXT "v=DMARC1; p=reject"
mail.example.org.         300 IN A   192.0.2.1
1.2.0.192.in-addr.arpa.   300 IN PTR mail.example.org.
"""

MESSAGE = (
    "From: Load <a@example.org>\r\n"
    "To: b@example.test\r\n"
    "Subject: session {i}\r\n"
    "Message-ID: <load-{i}@example.org>\r\n"
    "X-Load-Id: {i}\r\n"
    "\r\n" + "a line of body text to hash, about sixty bytes long....\r\n" * 40
)


def free_port():
    """A free loopback port in 31000-31999 (the range this machine leaves us)."""
    for _ in range(200):
        port = random.randint(31000, 31999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port in 31000-31999")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def vm(pid, field):
    """A /proc/PID/status field in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Barrier:
    """Released once `n` sessions have reported (open or refused)."""

    def __init__(self, n):
        self.left, self.event = n, asyncio.Event()

    def arrive(self):
        self.left -= 1
        if self.left <= 0:
            self.event.set()


# --- the sink (serve's next hop) ------------------------------------------------


class Sink:
    def __init__(self):
        self.delivered = {}  # X-Load-Id -> count
        self.connections = 0

    async def session(self, r, w):
        self.connections += 1
        try:
            w.write(b"220 sink.load ESMTP\r\n")
            while True:
                line = await r.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"LHLO"):
                    w.write(b"250-sink.load\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                            b"250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n")
                elif verb == b"DATA":
                    w.write(b"354 go\r\n")
                    ident = None
                    while True:
                        d = await r.readline()
                        if not d or d == b".\r\n":
                            break
                        if ident is None and d.lower().startswith(b"x-load-id:"):
                            ident = int(d.split(b":", 1)[1])
                    if ident is not None:
                        self.delivered[ident] = self.delivered.get(ident, 0) + 1
                    w.write(b"250 2.0.0 Ok: queued\r\n")
                elif verb == b"QUIT":
                    w.write(b"221 2.0.0 Bye\r\n")
                    await w.drain()
                    return
                else:
                    w.write(b"250 2.0.0 Ok\r\n")
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()


# --- SMTP client ------------------------------------------------------------------


async def smtp_reply(r, timeout):
    """(code, text) of one complete reply; raises on EOF."""
    lines = []
    while True:
        line = await asyncio.wait_for(r.readline(), timeout)
        if not line:
            raise EOFError("closed")
        lines.append(line.decode(errors="replace").rstrip())
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), "\n".join(lines)


async def smtp_session(i, port, barrier, timeout):
    """'ok', 'refused' (421 at the limit), 'hang: STAGE' or 'error: ...'."""
    w = None
    stage = "connect"
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        stage = "greeting"
        code, text = await smtp_reply(r, timeout)
        if code == 421:
            barrier.arrive()
            return "refused" if "4.3.2" in text else f"error: 421 {text}"
        barrier.arrive()
        if code != 220:
            return f"error: greeting {text}"
        stage = "barrier"
        # Longer than one step, so a session stuck before the barrier is
        # reported as itself and the others go on.
        await asyncio.wait_for(barrier.event.wait(), 2 * timeout)

        async def cmd(line, want):
            nonlocal stage
            stage = line[:4].decode()
            w.write(line)
            await asyncio.wait_for(w.drain(), timeout)
            c, t = await smtp_reply(r, timeout)
            if c != want:
                raise ValueError(f"{line[:20]!r} -> {t}")

        await cmd(b"EHLO load.example\r\n", 250)
        await cmd(f"XFORWARD ADDR=192.0.2.{i % 250 + 1} IDENT=LOAD{i}\r\n".encode(), 250)
        await cmd(b"MAIL FROM:<a@example.org>\r\n", 250)
        await cmd(b"RCPT TO:<b@example.test>\r\n", 250)
        await cmd(b"DATA\r\n", 354)
        await cmd(MESSAGE.format(i=i).encode() + b".\r\n", 250)
        await cmd(b"QUIT\r\n", 221)
        return "ok"
    except asyncio.TimeoutError:
        if stage in ("connect", "greeting"):
            barrier.arrive()
        return f"hang: {stage}"
    except (EOFError, ConnectionError, OSError, ValueError) as e:
        if stage in ("connect", "greeting"):
            barrier.arrive()
        return f"error: {stage}: {e!r}"
    finally:
        if w is not None:
            w.close()


# --- milter client ------------------------------------------------------------------

NR = {b"C": 0x1000, b"H": 0x2000, b"M": 0x4000, b"R": 0x8000, b"L": 0x80, b"N": 0x40000, b"B": 0x80000}
NO = {b"C": 0x01, b"H": 0x02, b"M": 0x04, b"R": 0x08, b"L": 0x20, b"N": 0x40, b"B": 0x10}
FINAL = {b"a": "accept", b"c": "continue", b"r": "reject", b"t": "tempfail", b"d": "discard", b"y": "reply"}


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


async def milter_reply(r, timeout):
    n = struct.unpack(">I", await asyncio.wait_for(r.readexactly(4), timeout))[0]
    body = await asyncio.wait_for(r.readexactly(n), timeout)
    return body[:1], body[1:]


async def milter_session(i, port, barrier, timeout):
    """'ok', 'refused' (closed before the negotiation reply), 'hang: STAGE'
    or 'error: ...'."""
    w = None
    arrived = False
    stage = "connect"
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        stage = "optneg"
        w.write(packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
        try:
            await asyncio.wait_for(w.drain(), timeout)
            cmd, data = await milter_reply(r, timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            # Past max_sessions the milter closes the connection: Postfix
            # then applies milter_default_action (tempfail).
            barrier.arrive()
            return "refused"
        arrived = True
        barrier.arrive()
        if cmd != b"O":
            return f"error: negotiation reply {cmd!r}"
        proto = struct.unpack(">III", data[:12])[2]
        stage = "barrier"
        # Longer than one step, so a session stuck before the barrier is
        # reported as itself and the others go on.
        await asyncio.wait_for(barrier.event.wait(), 2 * timeout)

        async def send(c, d=b""):
            nonlocal stage
            stage = c.decode()
            w.write(packet(c, d))
            await asyncio.wait_for(w.drain(), timeout)
            if c in NR and not proto & (NR[c] | NO[c]):
                rc, _ = await milter_reply(r, timeout)
                if rc != b"c":
                    raise ValueError(f"{c!r} -> {rc!r}")

        ip = f"192.0.2.{i % 250 + 1}"
        await send(b"C", b"mail.example.org\x004" + struct.pack(">H", 25) + ip.encode() + b"\x00")
        await send(b"H", b"mail.example.org\x00")
        await send(b"M", b"<a@example.org>\x00")
        await send(b"R", b"<b@example.test>\x00")
        text = MESSAGE.format(i=i)
        head, body = text.split("\r\n\r\n", 1)
        for field in head.split("\r\n"):
            name, value = field.split(":", 1)
            await send(b"L", name.encode() + b"\x00" + value.encode() + b"\x00")
        await send(b"N")
        await send(b"B", body.encode())
        w.write(packet(b"D", b"Ei\x00" + f"LOAD{i}".encode() + b"\x00") + packet(b"E"))
        await asyncio.wait_for(w.drain(), timeout)
        stage = "end of message"
        while True:
            rc, _ = await milter_reply(r, timeout)
            if rc in FINAL:
                break
        w.write(packet(b"Q"))
        await asyncio.wait_for(w.drain(), timeout)
        return "ok" if rc in (b"a", b"c") else f"error: end of message {FINAL[rc]}"
    except asyncio.TimeoutError:
        if not arrived:
            barrier.arrive()
        return f"hang: {stage}"
    except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
        if not arrived:
            barrier.arrive()
        return f"error: {stage}: {e!r}"
    finally:
        if w is not None:
            w.close()


# --- the run ---------------------------------------------------------------------------


async def wait_port(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"authgate exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"authgate did not listen on {port}")


async def run(a, work):
    sink, sink_server = None, None
    zone = os.path.join(work, "load.zone")
    with open(zone, "w") as f:
        f.write(ZONE)
    port = free_port()
    conf = os.path.join(work, "authgate.toml")
    with open(conf, "w") as f:
        f.write(
            f'authserv_id = "load.authgate"\n'
            f"[server]\nmax_sessions = {a.max_sessions}\nnext_hop_idle_secs = 1\n"
            f"[dns]\nzone_files = [{json.dumps(zone)}]\n"
        )
    if a.front == "serve":
        sink = Sink()
        sink_port = free_port()
        sink_server = await asyncio.start_server(sink.session, "127.0.0.1", sink_port, backlog=4096)
        args = ["serve", "--listen", f"127.0.0.1:{port}", "--next-hop", f"127.0.0.1:{sink_port}"]
    else:
        args = ["milter", "--listen", f"inet:{port}@127.0.0.1"]
    log = open(os.path.join(work, "authgate.log"), "w")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    proc = subprocess.Popen([a.authgate, *args, "--config", conf], stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        await wait_port(port, proc, time.monotonic() + 30)
        pid = proc.pid
        # The probe's session ends and (serve) its next-hop connection, kept
        # idle for next_hop_idle_secs = 1, is closed by the 1 s sweep.
        await asyncio.sleep(0.3)
        fds_start, still = fd_count(pid), time.monotonic()
        while time.monotonic() - still < 2.5:
            await asyncio.sleep(0.1)
            if fd_count(pid) != fds_start:
                fds_start, still = fd_count(pid), time.monotonic()
        rss_start = vm(pid, "VmRSS")
        barrier = Barrier(a.sessions)
        session = smtp_session if a.front == "serve" else milter_session
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(session(i, port, barrier, a.timeout)) for i in range(a.sessions)]
        fds_during = None
        try:
            await asyncio.wait_for(barrier.event.wait(), 2 * a.timeout)
            fds_during = fd_count(pid)
        except asyncio.TimeoutError:
            pass
        # Bounded: every session's steps are, and this is the backstop.
        done, pending = await asyncio.wait(tasks, timeout=a.timeout * 12)
        for t in pending:
            t.cancel()
        elapsed = time.monotonic() - t0
        results = [t.result() if t in done else "hang: unbounded" for t in tasks]
        fds_end = fd_count(pid)
        settle_deadline = time.monotonic() + 15
        while fd_count(pid) != fds_start and time.monotonic() < settle_deadline:
            await asyncio.sleep(0.1)
        fds_settled = fd_count(pid)
        settled_s = round(time.monotonic() - t0 - elapsed, 1)
        out = {
            "front": a.front,
            "sessions": a.sessions,
            "max_sessions": a.max_sessions,
            "answered": results.count("ok"),
            "refused_at_limit": results.count("refused"),
            "hangs": len([x for x in results if x.startswith("hang")]),
            "errors": len([x for x in results if x.startswith("error")]),
            "elapsed_s": round(elapsed, 2),
            "fds": {"start": fds_start, "during": fds_during, "end": fds_end, "settled": fds_settled,
                    "settled_after_s": settled_s},
            "rss_kib": {"start": rss_start, "peak_vmhwm": vm(pid, "VmHWM")},
            "authgate_alive": proc.poll() is None,
        }
        if sink is not None:
            out["delivered"] = sum(sink.delivered.values())
            out["delivered_twice"] = len([k for k, n in sink.delivered.items() if n > 1])
            out["next_hop_connections"] = sink.connections
        return out, results
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if sink_server is not None:
            sink_server.close()


def problems(out, results, want_ok):
    bad = []
    if out["hangs"]:
        stages = {}
        for x in results:
            if x.startswith("hang"):
                stages[x] = stages.get(x, 0) + 1
        bad.append(f"{out['hangs']} sessions hung: {stages}")
    errs = sorted({x for x in results if x.startswith("error")})
    if errs:
        bad.append(f"{out['errors']} sessions without a valid answer, e.g. {errs[:3]}")
    if out["answered"] != want_ok:
        bad.append(f"{out['answered']} sessions answered, expected min(sessions, max_sessions) = {want_ok}")
    if out["fds"]["settled"] != out["fds"]["start"]:
        bad.append(f"descriptors {out['fds']['start']} at start, {out['fds']['settled']} after")
    if not out["authgate_alive"]:
        bad.append("authgate died")
    if "delivered" in out:
        ok_ids = {i for i, x in enumerate(results) if x == "ok"}
        if out["delivered"] != len(ok_ids) or out["delivered_twice"]:
            bad.append(f"{out['delivered']} delivered ({out['delivered_twice']} twice) for {len(ok_ids)} accepted")
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--authgate", required=True)
    p.add_argument("--front", choices=["serve", "milter"], required=True)
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--max-sessions", type=int, default=100)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per read/write")
    p.add_argument("--json", help="also write the summary here")
    a = p.parse_args()
    # Our sockets, the sink's and authgate's (inherited) all count.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.sessions * 3 + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    work = tempfile.mkdtemp(prefix="authgate-load-")
    try:
        out, results = asyncio.run(run(a, work))
        bad = problems(out, results, min(a.sessions, a.max_sessions))
        if bad:
            with open(os.path.join(work, "authgate.log")) as f:
                tail = f.read()[-3000:]
            print(f"authgate log tail:\n{tail}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["clean"] = not bad
    text = json.dumps(out)
    print(text)
    if a.json:
        with open(a.json, "a") as f:
            f.write(text + "\n")
    for b in bad:
        print(f"load.py: FAIL: {b}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
