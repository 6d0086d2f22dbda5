"""Shared helpers for the Python DKIM oracles (dkimpy_oracle.py, opendkim_oracle.py).

- read_zone(path): minimal RFC 1035 master-file reader for TXT records
  (`name [ttl] [class] TXT "a" "b"`, parentheses across lines, `;` comments,
  $ORIGIN, `@`, blank owner = previous owner). Returns {fqdn_lowercase_with_dot: [value, ...]}
  with each record's character-strings concatenated (RFC 6376 §3.6.2.2).
- ed25519_seed(pem): the 32-byte private seed from a PKCS#8 "BEGIN PRIVATE KEY" PEM.
- common argument parser for the uniform oracle command line.
"""
import argparse
import base64
import re

DEFAULT_HEADERS = "From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type"


def parse_args(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="op", required=True)
    s = sub.add_parser("sign", help="sign stdin; write DKIM-Signature + message to stdout")
    s.add_argument("--domain", required=True)
    s.add_argument("--selector", required=True)
    s.add_argument("--key", required=True, help="PKCS#8 PEM private key")
    s.add_argument("--algorithm", default="rsa-sha256", choices=["rsa-sha256", "ed25519-sha256"])
    s.add_argument("--canon", default="relaxed/relaxed", help="header/body, e.g. relaxed/simple")
    s.add_argument("--headers", default=DEFAULT_HEADERS, help="colon-separated header names")
    v = sub.add_parser("verify", help="verify stdin; one line per DKIM-Signature: pass | fail <reason>")
    v.add_argument("--zone", required=True, help="BIND-style zone file with the key TXT records")
    v.add_argument("--now", type=int, help="UNIX time to verify at (t=/x= checks)")
    a = ap.parse_args(argv)
    if a.op == "sign":
        h, _, b = a.canon.partition("/")
        a.canon_pair = (h, b or "simple")  # RFC 6376 §3.5: body defaults to simple
        for c in a.canon_pair:
            if c not in ("relaxed", "simple"):
                ap.error("bad --canon %r" % a.canon)
        a.header_list = [x for x in a.headers.split(":") if x]
    return a


def linesep_of(msg):
    """CRLF if the message uses CRLF anywhere, else LF."""
    return b"\r\n" if b"\r\n" in msg else b"\n"


def to_crlf(msg):
    """Wire form: every bare LF becomes CRLF; existing CRLF pairs are kept."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", msg)


def with_linesep(header, sep):
    """Re-terminate every line of a (folded) header with sep; ends with sep."""
    lines = header.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    return sep.join(lines) + sep


def count_dkim_signatures(msg):
    n = 0
    for line in msg.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            break
        if line[:15].lower() == b"dkim-signature:":
            n += 1
    return n


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([()])|(;.*$)|([^\s()";]+)')


def _unescape(s):
    # \DDD decimal and \X escapes (RFC 1035 §5.1)
    return re.sub(r"\\(\d{3}|.)", lambda m: chr(int(m.group(1))) if m.group(1).isdigit() else m.group(1), s)


def read_zone(path):
    records = {}
    origin = ""
    owner = ""
    depth = 0
    cur = []  # tokens: (text, quoted)
    blank_start = False
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        if depth == 0:
            blank_start = line[:1] in (" ", "\t")
        for m in _TOKEN.finditer(line):
            q, paren, comment, word = m.groups()
            if comment is not None:
                break
            if paren == "(":
                depth += 1
            elif paren == ")":
                depth -= 1
            elif q is not None:
                cur.append((_unescape(q), True))
            elif word is not None:
                cur.append((word, False))
        if depth > 0 or not cur:
            continue
        toks, cur = cur, []
        first = toks[0][0]
        if first.upper() == "$ORIGIN" and len(toks) > 1:
            origin = _fqdn(toks[1][0], "")
            continue
        if first.startswith("$"):
            continue
        i = 0
        if not blank_start:
            owner = origin if first == "@" else _fqdn(first, origin)
            i = 1
        while i < len(toks) and not toks[i][1] and (toks[i][0].upper() in ("IN", "CH", "HS") or toks[i][0].isdigit()):
            i += 1
        if i < len(toks) and toks[i][0].upper() == "TXT":
            value = "".join(t for t, _ in toks[i + 1:])
            records.setdefault(owner.lower(), []).append(value)
    if depth != 0:
        raise ValueError("%s: unbalanced parentheses" % path)
    return records


def _fqdn(name, origin):
    if name.endswith("."):
        return name
    return name + "." + origin if origin else name + "."


def ed25519_seed(pem):
    """32-byte seed from a PKCS#8 (v1 or v2, RFC 8410) Ed25519 private key PEM."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    body = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
    der = base64.b64decode(body)
    oid = bytes.fromhex("06032b6570")  # id-Ed25519 1.3.101.112
    i = der.find(oid)
    if i < 0:
        raise ValueError("not an Ed25519 PKCS#8 key")
    j = der.find(b"\x04\x22\x04\x20", i)  # privateKey OCTET STRING { OCTET STRING (32) }
    if j < 0:
        raise ValueError("Ed25519 PKCS#8: no 32-byte private key")
    return der[j + 4:j + 36]
