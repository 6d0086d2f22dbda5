#!/usr/bin/env python3
"""Interop oracle: OpenDKIM 2.11 (apt-get install opendkim opendkim-tools), offline,
behind the uniform command line.

    opendkim_oracle.py sign --domain D --selector S --key PEM [--algorithm rsa-sha256|ed25519-sha256]
                            [--canon relaxed/simple] [--headers a:b:c]  < msg > signed
    opendkim_oracle.py verify --zone ZONEFILE [--now UNIX]             < msg

Both run the filter's own test mode, `opendkim -x CONF -t FILE`, with a generated
config in a temporary directory:
- sign: Mode s, KeyTable `k1 D:S:KEY`, SigningTable `refile:` with `* k1` (so any From
  domain is signed), SignHeaders from --headers. The DKIM-Signature that -t prints is
  re-terminated with the message's line ending and put in front of the unchanged message.
- verify: Mode v, TestPublicKeys built from the zone file (no DNS), AlwaysAddARHeader,
  and -vv, which prints the Authentication-Results header the filter would insert
  (`### INSHEADER ... hvalue='...'`). Its dkim= entries, one per signature in header
  order, become `pass` or `fail <result>: <reason>` lines. Exit 0.

Line endings: the message is handed to opendkim in wire form (bare LF -> CRLF). In -t
mode OpenDKIM keeps bare LFs inside folded header values, so under `simple` header
canonicalization it would disagree with dkimpy and mail-auth on LF files; an MTA puts
CRLF on the wire anyway. The signed output keeps the input's own bytes.

Debian's 2.11.0~beta2 signs and verifies ed25519-sha256 (RFC 8463) with PKCS#8 PEM keys
(checked with openssl-generated keys). --now is accepted but ignored: OpenDKIM reads the
system clock and has no option to override it.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oraclelib  # noqa: E402


def run(conf, path, *extra):
    p = subprocess.run(["opendkim", "-x", conf, *extra, "-t", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout + p.stderr


def sign(a, msg, tmp):
    path = os.path.join(tmp, "msg.eml")
    with open(path, "wb") as f:
        f.write(oraclelib.to_crlf(msg))
    key = os.path.abspath(a.key)
    with open(os.path.join(tmp, "keytable"), "w") as f:
        f.write("k1 %s:%s:%s\n" % (a.domain, a.selector, key))
    with open(os.path.join(tmp, "signingtable"), "w") as f:
        f.write("* k1\n")
    conf = os.path.join(tmp, "opendkim.conf")
    with open(conf, "w") as f:
        f.write("Syslog no\nRequireSafeKeys no\nMode s\n"
                "Canonicalization %s/%s\n" % a.canon_pair +
                "KeyTable file:%s/keytable\nSigningTable refile:%s/signingtable\n" % (tmp, tmp) +
                "SignatureAlgorithm %s\nSignHeaders %s\n" % (a.algorithm, ",".join(a.header_list)))
    rc, out = run(conf, path)
    i = out.find(b"DKIM-Signature:")
    if rc != 0 or i < 0:
        sys.exit("opendkim_oracle: opendkim did not sign (rc=%d):\n%s" % (rc, out.decode(errors="replace")))
    # The header runs to the end of the output (it is the only thing -t prints).
    header = out[i:].strip()
    sep = oraclelib.linesep_of(msg)
    sys.stdout.buffer.write(oraclelib.with_linesep(header, sep) + msg)
    sys.stdout.buffer.flush()


AR_ENTRY = re.compile(r'\bdkim=(\w+)(?:\s+reason="((?:[^"\\]|\\.)*)")?([^;]*)')


def verify(a, msg, tmp):
    path = os.path.join(tmp, "msg.eml")
    with open(path, "wb") as f:
        f.write(oraclelib.to_crlf(msg))
    tpk = os.path.join(tmp, "testpublickeys")
    with open(tpk, "w") as f:
        for name, values in oraclelib.read_zone(a.zone).items():
            f.write("%s %s\n" % (name.rstrip("."), values[0]))
    conf = os.path.join(tmp, "opendkim.conf")
    with open(conf, "w") as f:
        f.write("Syslog no\nMode v\nTestPublicKeys %s\nAlwaysAddARHeader yes\n"
                "AuthservID oracle\nMaximumSignaturesToVerify 20\n" % tpk)
    count = oraclelib.count_dkim_signatures(msg)
    rc, out = run(conf, path, "-vv")
    text = out.decode(errors="replace")
    m = re.search(r"hname='Authentication-Results' hvalue='(.*?)'\n", text, re.S)
    if rc != 0 or (count and not m):
        sys.exit("opendkim_oracle: no Authentication-Results from opendkim (rc=%d):\n%s" % (rc, text))
    lines = []
    for result, reason, rest in AR_ENTRY.findall(m.group(1) if m else ""):
        if result == "pass":
            lines.append("pass")
        else:
            who = " ".join(re.findall(r"header\.[ds]=\S+", rest))
            lines.append(("fail %s: %s %s" % (result, reason or "no reason", who and "(%s)" % who)).strip())
    lines += ["fail unparsable (opendkim gave no result)"] * (count - len(lines))
    for line in lines[:count]:
        print(line)


def main():
    a = oraclelib.parse_args()
    msg = sys.stdin.buffer.read()
    with tempfile.TemporaryDirectory(prefix="opendkim-oracle") as tmp:
        if a.op == "sign":
            sign(a, msg, tmp)
        else:
            verify(a, msg, tmp)


if __name__ == "__main__":
    main()
