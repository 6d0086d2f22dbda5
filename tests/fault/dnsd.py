#!/usr/bin/env python3
"""tests/fault/dnsd.py - an authoritative DNS server on loopback (UDP and TCP)
answering from zone files, with the fault matrix's DNS faults.

    dnsd.py --listen 127.0.0.1:5300 --control FILE ZONEFILE...

The mode is the first word of FILE, read for every query:
    ok         answer from the zones (NXDOMAIN / NODATA as a real server would)
    servfail   answer every query with SERVFAIL
    down       answer nothing (the client's timeout must fire)
"""
import argparse
import socket
import socketserver
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from control import mode_of


class Zones:
    def __init__(self, files):
        self.records = {}  # (name, type) -> rrset
        self.names = set()
        for path in files:
            z = dns.zone.from_file(path, origin=dns.name.root, relativize=False, check_origin=False)
            for name, node in z.nodes.items():
                self.names.add(name)
                for rds in node.rdatasets:
                    rr = dns.rrset.RRset(name, rds.rdclass, rds.rdtype)
                    rr.update(rds)
                    key = (name, rds.rdtype)
                    if key in self.records:
                        self.records[key].union_update(rr)
                    else:
                        self.records[key] = rr

    def answer(self, query, control):
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        mode = mode_of(control, "ok")
        if mode == "down":
            return None
        if mode == "servfail":
            resp.set_rcode(dns.rcode.SERVFAIL)
            return resp
        q = query.question[0]
        name = q.name
        for _ in range(8):  # follow CNAMEs inside our zones
            cname = self.records.get((name, dns.rdatatype.CNAME))
            if cname is None or q.rdtype == dns.rdatatype.CNAME:
                break
            resp.answer.append(cname)
            name = cname[0].target
        rr = self.records.get((name, q.rdtype))
        if rr is not None:
            resp.answer.append(rr)
        elif name not in self.names:
            resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp


def serve(zones, listen, control):
    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            try:
                r = zones.answer(dns.message.from_wire(data), control)
            except Exception:
                return
            if r is None:
                return
            try:
                wire = r.to_wire(max_size=1232 if r.edns >= 0 else 512)
            except dns.exception.TooBig:  # the client retries over TCP
                r.answer = []
                r.flags |= dns.flags.TC
                wire = r.to_wire()
            sock.sendto(wire, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(10)
            try:
                while True:
                    head = self.request.recv(2)
                    if len(head) < 2:
                        return
                    (n,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < n:
                        more = self.request.recv(n - len(data))
                        if not more:
                            return
                        data += more
                    r = zones.answer(dns.message.from_wire(data), control)
                    if r is None:
                        return
                    wire = r.to_wire()
                    self.request.sendall(struct.pack("!H", len(wire)) + wire)
            except (OSError, Exception):
                return

    class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
        daemon_threads = True
        allow_reuse_address = True

    class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    u = UdpServer(listen, Udp)
    t = TcpServer(listen, Tcp)
    threading.Thread(target=t.serve_forever, daemon=True).start()
    u.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:5300")
    p.add_argument("--control", required=True)
    p.add_argument("zones", nargs="+")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    serve(Zones(a.zones), (host, int(port)), a.control)
