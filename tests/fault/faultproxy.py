#!/usr/bin/env python3
"""tests/fault/faultproxy.py - a TCP proxy between an SMTP client and its next
hop that breaks the connection on demand (the fault matrix's "next hop" faults).

    faultproxy.py --listen 127.0.0.1:10030 --target 127.0.0.1:10026 --control FILE

The mode is the first word of FILE, read again for every new connection and
every chunk, so a test switches faults by rewriting it:

    pass                 forward everything
    down                 no listener at all (connection refused)
    stall                after the server's 354, forward nothing either way and
                         hold the connection (the client's timeout must fire)
    reset                after the 354, forward some of the message, then reset
                         both sides (RST) before the final dot reaches the server
    reset_after_accept   forward the whole message, then reset the client's side
                         instead of relaying the server's reply to the final dot
                         (the server has the message; SMTP cannot prevent the
                         client from sending it again: a duplicate)
    delay                relay the server's reply to the final dot one second late
    slow                 forward the message itself 4 KB every 0.1 s (the client
                         stays mid-DATA long enough to be killed there)

Each fault that fired is counted in FILE.count (one line per event), so the
matrix knows how many messages a fault touched.
"""
import argparse
import asyncio
import socket
import struct

from control import mode_of

CHUNK = 65536


def reset(writer):
    """Close with RST (SO_LINGER 0), not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()


class Conn:
    """One client connection and its server side; `in_data` is true between
    the server's 354 and its reply to the final dot."""

    def __init__(self, proxy, cr, cw, sr, sw):
        self.proxy, self.cr, self.cw, self.sr, self.sw = proxy, cr, cw, sr, sw
        self.in_data = False
        self.fired = None  # the fault this connection is in
        self.data_bytes = 0
        self.done = asyncio.Event()

    def count(self, what):
        with open(self.proxy.control + ".count", "a") as f:
            f.write(what + "\n")

    def kill(self):
        reset(self.cw)
        reset(self.sw)
        self.done.set()

    async def client_to_server(self):
        while not self.done.is_set():
            data = await self.cr.read(CHUNK)
            if not data:
                break
            if self.in_data:
                mode = self.fired or mode_of(self.proxy.control, "pass")
                if mode == "stall":
                    if self.fired is None:
                        self.fired = "stall"
                        self.count("stall")
                    continue  # swallow: nothing reaches the server
                if mode == "reset":
                    keep = max(0, 200 - self.data_bytes)
                    if keep:
                        self.sw.write(data[:keep])
                        await self.sw.drain()
                    self.count("reset")
                    self.kill()
                    return
                if mode == "slow":
                    if self.data_bytes == 0:
                        self.count("slow")
                    self.data_bytes += len(data)
                    for i in range(0, len(data), 4096):
                        if self.cr.at_eof() or self.cr.exception() is not None:
                            # the client died mid-DATA: what it had sent but we had not
                            # passed on yet must not reach the server (a direct
                            # connection would not have carried it either)
                            self.count("client_gone")
                            self.kill()
                            return
                        self.sw.write(data[i:i + 4096])
                        await self.sw.drain()
                        await asyncio.sleep(0.1)
                    continue
                self.data_bytes += len(data)
            self.sw.write(data)
            await self.sw.drain()
        # the client half-closed (Exim sends QUIT with the final dot, then shuts its
        # side): pass that on and let the server's replies still reach it
        if not self.done.is_set():
            try:
                self.sw.write_eof()
            except OSError:
                self.done.set()

    async def server_to_client(self):
        pending = b""
        while not self.done.is_set():
            data = await self.sr.read(CHUNK)
            if not data:
                break
            if self.fired == "stall":
                continue
            pending += data
            out = b""
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                line += b"\n"
                last = len(line) < 4 or line[3:4] != b"-"
                if line.startswith(b"354") and last:
                    self.in_data, self.data_bytes = True, 0
                elif self.in_data and last:
                    # the reply to the final dot
                    self.in_data = False
                    mode = mode_of(self.proxy.control, "pass")
                    if mode == "reset_after_accept":
                        self.count("reset_after_accept:" + line[:3].decode("ascii", "replace"))
                        if out:
                            self.cw.write(out)
                        reset(self.cw)
                        self.sw.close()
                        self.done.set()
                        return
                    if mode == "delay":
                        if out:
                            self.cw.write(out)
                            out = b""
                        await asyncio.sleep(1)
                out += line
            if out:
                self.cw.write(out)
                await self.cw.drain()
        self.done.set()

    async def run(self):
        tasks = [asyncio.ensure_future(self.client_to_server()), asyncio.ensure_future(self.server_to_client())]
        await self.done.wait()
        for t in tasks:
            t.cancel()
        for w in (self.cw, self.sw):
            try:
                w.close()
            except Exception:
                pass


class Proxy:
    def __init__(self, listen, target, control):
        self.listen, self.target, self.control = listen, target, control
        self.server = None

    async def handle(self, cr, cw):
        try:
            sr, sw = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, asyncio.TimeoutError):
            reset(cw)
            return
        try:
            await Conn(self, cr, cw, sr, sw).run()
        except (OSError, ConnectionError):
            pass

    async def main(self):
        while True:
            down = mode_of(self.control, "pass") == "down"
            if down and self.server is not None:
                self.server.close()
                await self.server.wait_closed()
                self.server = None
            elif not down and self.server is None:
                self.server = await asyncio.start_server(self.handle, *self.listen, reuse_address=True)
            await asyncio.sleep(0.1)


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=hostport, required=True)
    p.add_argument("--target", type=hostport, required=True)
    p.add_argument("--control", required=True)
    a = p.parse_args()
    asyncio.run(Proxy(a.listen, a.target, a.control).main())
