#!/usr/bin/env python3
"""A real SMTP submission server for the report-sending tests (aiosmtpd).

    smtp_sink.py --port P --dir OUT [--tls CERT KEY] [--user U --password W]
                 [--stall-at greeting|data|dot] [--reject-at rcpt]

Each accepted message is written to OUT/<n>.eml (the envelope in OUT/<n>.env
as JSON). With --tls, STARTTLS is required before MAIL (and AUTH); with
--user, AUTH PLAIN/LOGIN is required. --stall-at makes the server stop
answering at that point (the test kills the client there). Prints "ready"
on stdout once listening.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, args):
        self.args = args
        self.n = len([f for f in os.listdir(args.dir) if f.endswith(".eml")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.reject_at == "rcpt":
            return "450 4.2.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.stall_at == "dot":
            await asyncio.sleep(3600)
        self.n += 1
        base = os.path.join(self.args.dir, str(self.n))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".env", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "tls": session.ssl is not None,
                       "auth": session.authenticated}, f)
        return "250 2.0.0 queued as %d" % self.n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--stall-at", choices=["greeting", "data", "dot"])
    p.add_argument("--reject-at", choices=["rcpt"])
    args = p.parse_args()

    kwargs = {}
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        kwargs.update(tls_context=ctx, require_starttls=True)
    if args.user:
        def auth(server, session, envelope, mechanism, data):
            ok = (isinstance(data, LoginPassword)
                  and data.login.decode() == args.user
                  and data.password.decode() == args.password)
            return AuthResult(success=ok)
        kwargs.update(authenticator=auth, auth_required=True,
                      auth_require_tls=bool(args.tls))
    handler = Sink(args)
    if args.stall_at == "data":
        async def stall(server, session, envelope):
            await asyncio.sleep(3600)
        handler.handle_DATA = stall
    controller = Controller(handler, hostname="127.0.0.1", port=args.port,
                            server_hostname="sink.test", **kwargs)
    if args.stall_at == "greeting":
        # Accept and say nothing.
        import socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", args.port))
        s.listen(16)
        print("ready", flush=True)
        conns = []
        while True:
            c, _ = s.accept()
            conns.append(c)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the test closes stdin or kills us
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
