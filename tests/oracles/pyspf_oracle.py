#!/usr/bin/env python3
"""SPF oracle: pyspf (PyPI `pyspf`, module `spf`) answering from a zone file.

    pyspf_oracle.py --zone FILE --ip IP --sender S --helo H [--receiver R]
        prints one line: RESULT<TAB>EXPLANATION
    pyspf_oracle.py --zone FILE --batch [--receiver R]
        reads IP<TAB>SENDER<TAB>HELO lines on stdin, prints one result line each

An empty sender means the null reverse-path (pyspf then checks
postmaster@HELO, RFC 7208 §2.4). DNS comes only from --zone: spf.DNSLookup is
replaced by a function that answers from the file (the same hook pyspf's own
test/testspf.py uses). Zone syntax: $ORIGIN, $TTL, @, blank owner, optional
TTL/class, parentheses, ; comments, quoted strings with \\DDD escapes; types
A AAAA MX TXT PTR CNAME (others are ignored). `;@servfail NAME`,
`;@refused NAME` and `;@timeout NAME` make lookups at NAME raise
spf.TempError, like authgate's ZoneResolver.
"""
import argparse
import re
import socket
import sys

import spf

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([()])|(;.*$)|([^\s()";]+)')
_DIRECTIVE = re.compile(r"^;@(servfail|refused|timeout)\s+(\S+)")


def _unescape(s):
    return re.sub(r"\\(\d{3}|.)",
                  lambda m: chr(int(m.group(1))) if m.group(1).isdigit() else m.group(1), s)


def _fqdn(name, origin):
    if name == "@":
        return origin
    if name.endswith("."):
        return name.lower()
    return (name + "." + origin if origin else name + ".").lower()


def read_zone(path):
    """Returns ({name: [(type, value)]}, {failing names}); names end in '.'."""
    records, failing = {}, set()
    origin, owner, depth, cur, blank_start = "", "", 0, [], False
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        d = _DIRECTIVE.match(line)
        if d:
            failing.add(_fqdn(d.group(2), origin))
            continue
        if depth == 0:
            blank_start = line[:1] in (" ", "\t")
        for m in _TOKEN.finditer(line):
            q, paren, comment, word = m.groups()
            if comment is not None:
                break
            if paren:
                depth += 1 if paren == "(" else -1
            elif q is not None:
                cur.append((_unescape(q), True))
            else:
                cur.append((word, False))
        if depth > 0 or not cur:
            continue
        toks, cur = cur, []
        first = toks[0][0]
        if first.upper() == "$ORIGIN":
            origin = _fqdn(toks[1][0], "")
            continue
        if first.startswith("$"):
            continue
        i = 0
        if not blank_start:
            owner = _fqdn(first, origin)
            i = 1
        while i < len(toks) and not toks[i][1] and (
                toks[i][0].upper() in ("IN", "CH", "HS") or toks[i][0].isdigit()):
            i += 1
        if i >= len(toks):
            continue
        rtype, rdata = toks[i][0].upper(), [t for t, _ in toks[i + 1:]]
        if rtype == "TXT":
            value = tuple(s.encode("latin-1") for s in rdata)
        elif rtype == "MX":
            value = (int(rdata[0]), _fqdn(rdata[1], origin).rstrip("."))
        elif rtype in ("PTR", "CNAME"):
            value = _fqdn(rdata[0], origin).rstrip(".")
        elif rtype == "AAAA":
            value = socket.inet_pton(socket.AF_INET6, rdata[0])
        elif rtype == "A":
            value = rdata[0]
        else:
            continue
        records.setdefault(owner, []).append((rtype, value))
    return records, failing


def install_dns(records, failing):
    def lookup(name, qtype, strict=True, timeout=None, *args, **kw):
        fq = name.lower().rstrip(".") + "."
        if fq in failing:
            raise spf.TempError("DNS timeout/SERVFAIL at %s" % name)
        out = []
        for rtype, value in records.get(fq, []):
            if rtype == qtype or rtype == "CNAME":
                out.append(((name, rtype), value))
        return out
    spf.DNSLookup = lookup


def check(ip, sender, helo, receiver):
    res, exp = spf.check2(i=ip, s=sender, h=helo, receiver=receiver)
    return "%s\t%s" % (res, exp)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", required=True)
    ap.add_argument("--ip")
    ap.add_argument("--sender", default="")
    ap.add_argument("--helo", default="")
    ap.add_argument("--receiver", default="receiver.example")
    ap.add_argument("--batch", action="store_true")
    a = ap.parse_args(argv)
    install_dns(*read_zone(a.zone))
    if a.batch:
        for line in sys.stdin:
            ip, sender, helo = (line.rstrip("\n").split("\t") + ["", ""])[:3]
            print(check(ip, sender, helo, a.receiver), flush=True)
    else:
        if not a.ip:
            ap.error("--ip is required without --batch")
        print(check(a.ip, a.sender, a.helo, a.receiver))


if __name__ == "__main__":
    main()
