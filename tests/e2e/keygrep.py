#!/usr/bin/env python3
"""tests/e2e/keygrep.py - the private keys the tests use must appear in no
output: logs, delivered mail, queue files, metrics scrapes, `config check`.

    tests/e2e/keygrep.py DIR...

Looks for every private key under tests/fixtures/dkim/ in the forms a leak
would take: a line of its PEM, its DER in hex (32-byte pieces) or raw, and
for Ed25519 the 32-byte seed in hex, base64, raw bytes and as a Rust
`Debug` byte list. Prints each hit (file, key, form) and exits 1 if any;
otherwise prints how many files and bytes it read.
"""
import base64
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "..", "fixtures", "dkim")


def patterns():
    pats = []
    for name in sorted(os.listdir(KEYS)):
        if not name.endswith(".pem"):
            continue
        text = open(os.path.join(KEYS, name)).read()
        if "PRIVATE KEY" not in text:
            continue
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("-----")]
        der = base64.b64decode("".join(lines))
        for l in lines:
            if len(l) >= 40:
                pats.append((name, "PEM line", l.encode()))
        # skip the ASN.1 header: its bytes are the same in every key of a kind
        for i in range(16, len(der) - 32, 32):
            piece = der[i:i + 32]
            pats.append((name, "DER hex", piece.hex().encode()))
            pats.append((name, "DER hex", piece.hex().upper().encode()))
            pats.append((name, "DER raw", piece))
        if len(der) == 48:  # PKCS#8 Ed25519: the last 32 bytes are the seed
            seed = der[-32:]
            pats += [(name, "seed hex", seed.hex().encode()), (name, "seed base64", base64.b64encode(seed)[:40]),
                     (name, "seed raw", seed),
                     (name, "seed Debug", ("[" + ", ".join(str(b) for b in seed[:12])).encode())]
    return pats


def main(dirs):
    pats = patterns()
    files = size = 0
    hits = []
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in names:
                path = os.path.join(root, n)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                try:
                    data = open(path, "rb").read()
                except OSError:
                    continue
                files += 1
                size += len(data)
                for key, form, p in pats:
                    if p in data:
                        hits.append(f"{path}: {key} ({form})")
    for h in hits:
        print("LEAK:", h)
    print(f"keygrep: {len(pats)} patterns of the test keys over {files} files, {size} bytes: "
          f"{len(hits)} hits", file=sys.stderr)
    return 1 if hits else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main([d for d in sys.argv[1:] if os.path.isdir(d)]))
