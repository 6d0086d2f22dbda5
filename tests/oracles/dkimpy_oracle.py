#!/usr/bin/env python3
"""Interop oracle: dkimpy (pip install dkimpy pynacl) behind the uniform command line.

    dkimpy_oracle.py sign --domain D --selector S --key PEM [--algorithm rsa-sha256|ed25519-sha256]
                          [--canon relaxed/simple] [--headers a:b:c]  < msg > signed
    dkimpy_oracle.py verify --zone ZONEFILE [--now UNIX]             < msg

sign writes the DKIM-Signature header (in the message's own line ending) followed by the
unchanged message. Ed25519 keys are PKCS#8 PEM; dkimpy wants the base64 32-byte seed, so
the seed is extracted here. verify prints one line per DKIM-Signature, in header order:
`pass` or `fail <reason>`, and exits 0. DNS comes only from the zone file (dnsfunc);
a name not in it is answered as "no record". --now replaces dkimpy's clock (t=, x=).
"""
import base64
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oraclelib  # noqa: E402

import dkim  # noqa: E402


def sign(a, msg):
    with open(a.key, "rb") as f:
        pem = f.read()
    if a.algorithm == "ed25519-sha256":
        key = base64.b64encode(oraclelib.ed25519_seed(pem))
    else:
        key = pem
    sep = oraclelib.linesep_of(msg)
    sig = dkim.sign(msg, a.selector.encode(), a.domain.encode(), key,
                    canonicalize=tuple(c.encode() for c in a.canon_pair),
                    signature_algorithm=a.algorithm.encode(),
                    include_headers=[h.encode() for h in a.header_list],
                    linesep=sep)
    if not sig:
        sys.exit("dkimpy_oracle: dkim.sign returned nothing")
    out = sys.stdout.buffer
    out.write(oraclelib.with_linesep(sig, sep))
    out.write(msg)
    out.flush()


class _Last(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.errors = []

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())


def verify(a, msg):
    zone = oraclelib.read_zone(a.zone)

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        vals = zone.get(n.lower().rstrip(".") + ".")
        return vals[0].encode() if vals else None

    if a.now is not None:
        class _Clock:
            @staticmethod
            def time():
                return float(a.now)
        dkim.time = _Clock  # dkimpy reads time.time() for t= and x=

    count = oraclelib.count_dkim_signatures(msg)
    for idx in range(count):
        log = logging.getLogger("dkimpy_oracle.%d" % idx)
        log.propagate = False
        handler = _Last()
        log.addHandler(handler)
        try:
            d = dkim.DKIM(msg, logger=log, minkey=1024)
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            reason = handler.errors[-1] if handler.errors else "signature did not verify"
        except dkim.DKIMException as e:
            ok, reason = False, "%s: %s" % (type(e).__name__, e)
        except Exception as e:  # dkimpy raises plain errors on some malformed input
            ok, reason = False, "%s: %s" % (type(e).__name__, e)
        print("pass" if ok else "fail " + " ".join(str(reason).split()))


def main():
    a = oraclelib.parse_args()
    msg = sys.stdin.buffer.read()
    if a.op == "sign":
        sign(a, msg)
    else:
        verify(a, msg)


if __name__ == "__main__":
    main()
