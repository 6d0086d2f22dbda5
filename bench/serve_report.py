#!/usr/bin/env python3
"""Tables for bench/serve.sh: medians over rounds of the JSON lines of `smtp_load load`."""
import json
import statistics
import sys
from collections import defaultdict

SIZES = ["2k", "20k", "1m"]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    by = defaultdict(list)
    for r in rows:
        by[(r["label"], r["mode"], r["size"], r["conc"], r["rtt_ms"])].append(r)
    rounds = max((r["round"] for r in rows), default=0)

    tput = [k for k in by if k[0] in ("sink", "authgate")]
    if tput:
        print(f"### Throughput and latency (median of {rounds} rounds; DNS from a zone file)\n")
        print("| mode | size | sessions | msgs | sink msgs/s | authgate msgs/s | ratio | sink p50 ms | authgate p50 / p95 / p99 ms | authgate end-of-data→reply p50 / p99 ms | checks |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for mode in ("verify", "sign"):
            for size in SIZES:
                for conc in (1, 64):
                    a, s = by.get(("authgate", mode, size, conc, 0)), by.get(("sink", mode, size, conc, 0))
                    if not a or not s:
                        continue
                    # ratio: per round, then the median
                    rs = {r["round"]: r["msgs_per_s"] for r in s}
                    ratio = med([r["msgs_per_s"] / rs[r["round"]] for r in a if r["round"] in rs])
                    g = lambda rr, k: med([r[k] for r in rr])
                    errors = sum(r["errors"] for r in a)
                    last = a[-1]["sink"]
                    if mode == "verify":
                        ok = "dkim/spf/dmarc=pass: " + "/".join(
                            part.split("=")[1] for part in last.split() if part.split("=")[0] in ("dkim_pass", "spf_pass", "dmarc_pass"))
                    else:
                        ok = "signed: " + next((p.split("=")[1] for p in last.split() if p.startswith("signed=")), "?")
                    ok += f" of {a[-1]['msgs']}" + (f", {errors} errors" if errors else "")
                    print(f"| {mode} | {size} | {conc} | {a[-1]['msgs']} | {g(s, 'msgs_per_s'):.0f} | {g(a, 'msgs_per_s'):.0f} | **{ratio:.2f}** | "
                          f"{g(s, 'lat_p50'):.2f} | {g(a, 'lat_p50'):.2f} / {g(a, 'lat_p95'):.2f} / {g(a, 'lat_p99'):.2f} | "
                          f"{g(a, 'e2r_p50'):.2f} / {g(a, 'e2r_p99'):.2f} | {ok} |")
        print()

    dns = sorted({k for k in by if k[0].startswith("dns50")}, key=lambda k: (SIZES.index(k[2]), k[3], k[4], k[0]))
    if dns:
        print(f"### Every DNS answer 50 ms late (verify; median of {rounds} rounds; no lookup is a cache hit)\n")
        print("| binary | size | sessions | client RTT ms | msgs | msgs/s | end-of-data→reply p50 / p95 / p99 ms | latency p50 ms | checks |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k in dns:
            rr = by[k]
            g = lambda key: med([r[key] for r in rr])
            last = rr[-1]["sink"]
            ok = "/".join(p.split("=")[1] for p in last.split() if p.split("=")[0] in ("dkim_pass", "spf_pass", "dmarc_pass"))
            print(f"| {k[0].replace('dns50-', '')} | {k[2]} | {k[3]} | {k[4]} | {rr[-1]['msgs']} | {g('msgs_per_s'):.1f} | "
                  f"**{g('e2r_p50'):.1f}** / {g('e2r_p95'):.1f} / {g('e2r_p99'):.1f} | {g('lat_p50'):.1f} | {ok} |")
        print()
    loads = [float(r.get("load", "nan")) for r in rows]
    print(f"Load average during the runs: {min(loads):.1f}–{max(loads):.1f}.")


if __name__ == "__main__":
    main(sys.argv[1])
