#!/usr/bin/env python3
"""DMARC oracle: authheaders (PyPI `authheaders`) answering from zone files.

    authheaders_oracle.py --zone FILE [--zone FILE...] [--spf RESULT --mail-from ADDR] < msg.eml
        prints one line: dmarc=RESULT [policy.dmarc=POLICY] [header.from=DOMAIN] dkim=RESULT

authheaders is RFC 7489 DMARC: the Organizational Domain comes from its
bundled Public Suffix List, the record from `_dmarc.<From domain>` or else
`_dmarc.<Organizational Domain>` (dmarcbis=False). It verifies the message's
first DKIM-Signature itself (dkimpy); SPF is not evaluated here: `--spf` and
`--mail-from` are handed in as a previous Authentication-Results field
(`spf=RESULT smtp.mailfrom=ADDR`), the way authheaders takes results from an
earlier hop.

DNS comes only from the zone files (tests/oracles/pyspf_oracle.py reads
them). authheaders calls one `dnsfunc` for three kinds of name:
- `_dmarc.X` (str): the TXT string, unquoted (lookup_receiver_record wraps it);
  one string only, so several DMARC records are answered as none, which is
  what authheaders makes of them with real DNS (RFC 7489 §6.6.3);
- `sel._domainkey.D.` (bytes, from dkimpy): the key record as bytes;
- the bare From domain (str), only to test existence for `np=`: any record
  of any type at the name counts.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import authheaders  # noqa: E402
from authres import AuthenticationResultsHeader  # noqa: E402
from pyspf_oracle import read_zone  # noqa: E402


def make_dnsfunc(records):
    def dnsfunc(name, timeout=5):
        raw = isinstance(name, bytes)
        text = name.decode("ascii") if raw else name
        rrs = records.get(text.lower().rstrip(".") + ".", [])
        txts = [b"".join(v) for t, v in rrs if t == "TXT"]
        if raw:
            return txts[0] if txts else None
        if text.lower().startswith("_dmarc."):
            dmarc = [t for t in txts if t.startswith(b"v=DMARC1")]
            if len(dmarc) > 1:
                return None
            pick = dmarc or txts
            return pick[0].decode("latin-1") if pick else None
        return "exists" if rrs else None
    return dnsfunc


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", action="append", required=True)
    ap.add_argument("--spf", help="SPF result from an earlier check: pass, fail, ...")
    ap.add_argument("--mail-from", default="", help="MAIL FROM address the SPF result is for")
    a = ap.parse_args(argv)
    records = {}
    for path in a.zone:
        zone, _failing = read_zone(path)
        for name, rrs in zone.items():
            records.setdefault(name, []).extend(rrs)
    prev = None
    if a.spf:
        # authres only parses a whole field, name included.
        prev = "Authentication-Results: oracle.invalid; spf=%s smtp.mailfrom=%s" % (
            a.spf, a.mail_from or "postmaster@invalid")
    msg = sys.stdin.buffer.read()
    field = authheaders.authenticate_message(
        msg, "oracle.invalid", prev=prev, spf=False, dkim=True, dmarc=True,
        dnsfunc=make_dnsfunc(records), dmarcbis=False)
    # Parsed without the DMARC extension: a generic result with properties.
    results = AuthenticationResultsHeader.parse(field).results
    dmarc = next((r for r in results if r.method == "dmarc"), None)
    dkim = next((r for r in results if r.method == "dkim"), None)
    out = ["dmarc=%s" % (dmarc.result if dmarc else "none")]
    for p in dmarc.properties if dmarc else []:
        if (p.type, p.name) in (("policy", "dmarc"), ("header", "from")) and p.value:
            out.append("%s.%s=%s" % (p.type, p.name, p.value))
    out.append("dkim=%s" % (dkim.result if dkim else "none"))
    print(" ".join(out))


if __name__ == "__main__":
    main()
