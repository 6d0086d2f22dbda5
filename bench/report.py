#!/usr/bin/env python3
"""Markdown tables and target checks from bench/compare.sh's results.jsonl.

Figures are medians over rounds; a ratio is the median of the per-round ratios
(A and B ran back to back in each round), so machine noise cancels out as far as
it can on a shared box.
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(dict)  # (mode, op, subset, label) -> {round: record}
for r in rows:
    by[(r["mode"], r["op"], r["subset"], r["label"])][r["round"]] = r


def med(key, field):
    v = [r[field] for r in by.get(key, {}).values()]
    return statistics.median(v) if v else None


def ratio(a, b, field="msgs_per_s", invert=False):
    ra, rb = by.get(a, {}), by.get(b, {})
    v = [(rb[i][field] / ra[i][field]) if invert else (ra[i][field] / rb[i][field])
         for i in ra if i in rb and ra[i][field] and rb[i][field]]
    return (statistics.median(v), len(v)) if v else (None, 0)


def f(x, fmt="{:.0f}"):
    return "–" if x is None else fmt.format(x)


def mb(kb):
    return None if kb is None else kb / 1024


targets = []
out = []

# In-process throughput.
out += ["### In process (one process over the corpus; msgs/s and MB/s: median of rounds)", "",
        "| op | subset | msgs | authgate msgs/s | mail-auth msgs/s | authgate MB/s | mail-auth MB/s "
        "| authgate RSS MB | mail-auth RSS MB | authgate/mail-auth (msgs/s) | rounds |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
for op in ("sign", "verify"):
    for sub in ("all", "s2k", "s5m"):
        a, b = ("inproc", op, sub, "authgate"), ("inproc", op, sub, "mail-auth")
        if a not in by and b not in by:
            continue
        rat, n = ratio(a, b)
        msgs = next(iter(by.get(a, by.get(b)).values()))["msgs"]
        oks = {r["ok"] for r in by.get(a, {}).values()} | {r["ok"] for r in by.get(b, {}).values()}
        bad = "" if oks == {msgs} else f" (ok: {sorted(oks)})"
        out.append(f"| {op} | {sub} | {msgs}{bad} | {f(med(a, 'msgs_per_s'))} | {f(med(b, 'msgs_per_s'))} "
                   f"| {f(med(a, 'MB_per_s'), '{:.1f}')} | {f(med(b, 'MB_per_s'), '{:.1f}')} "
                   f"| {f(mb(med(a, 'maxrss_kb')), '{:.1f}')} | {f(mb(med(b, 'maxrss_kb')), '{:.1f}')} "
                   f"| **{f(rat, '{:.2f}')}×** | {n} |")
        if sub == "all":
            goal = 1.1 if op == "sign" else 1.5
            targets.append((f"in-process {op} ≥ {goal}× mail-auth msgs/s (whole corpus)",
                            f(rat, "{:.2f}×"), rat is not None and rat >= goal))

# One process per message.
pp = [("sign", "authgate sign", "opendkim-testmsg"), ("sign", "authgate sign", "mail-auth filter-sign"),
      ("verify", "authgate pipe", "opendkim -t"), ("verify", "authgate pipe", "mail-auth filter-verify"),
      ("verify", "authgate verify", "opendkim -t"), ("verify", "authgate verify", "mail-auth filter-verify")]
lines = []
for op, la, lb in pp:
    a, b = ("perproc", op, "s2k", la), ("perproc", op, "s2k", lb)
    if a not in by or b not in by:
        continue
    rat, n = ratio(a, b, invert=True)  # wall-time ratio A/B = B msgs/s over A msgs/s
    ma, mb_ = med(a, "msgs_per_s"), med(b, "msgs_per_s")
    oka = {r["ok"] for r in by[a].values()}
    okb = {r["ok"] for r in by[b].values()}
    msgs = next(iter(by[a].values()))["msgs"]
    lines.append(f"| {op} | {la} | {lb} | {msgs} ok {max(oka)}/{max(okb)} | {f(1000 / ma, '{:.2f}')} "
                 f"| {f(1000 / mb_, '{:.2f}')} | {f(mb(med(a, 'maxrss_kb')), '{:.1f}')} "
                 f"| {f(mb(med(b, 'maxrss_kb')), '{:.1f}')} | **{f(rat, '{:.2f}')}** | {n} |")
    if la == "authgate pipe" and lb == "opendkim -t":
        targets.append(("one process per message: `authgate pipe` ≤ 0.5× OpenDKIM wall time (s2k)",
                        f(rat, "{:.2f}×"), rat is not None and rat <= 0.5))
if lines:
    out += ["", "### One process per message (small messages, s2k; wall ms per message incl. process start)", "",
            "| op | authgate (A) | peer (B) | msgs, ok A/B | A ms/msg | B ms/msg | A peak RSS MB | B peak RSS MB "
            "| wall A/B | rounds |", "|---|---|---|---|---|---|---|---|---|---|"] + lines

# Peak RSS on a 100 MB message.
big = [r for r in rows if r["mode"] == "rss"]
if big:
    out += ["", f"### Peak RSS, one {big[0]['bytes'] / 1e6:.0f} MB message (GNU time, max RSS)", "",
            "| command | peak RSS MB | wall s | ok |", "|---|---|---|---|"]
    for r in big:
        out.append(f"| {r['label']} | {r['maxrss_kb'] / 1024:.1f} | {r['secs']:.2f} | {'yes' if r['ok'] else 'NO'} |")
        if r["label"].startswith("authgate"):
            targets.append((f"`{r['label']}` peak RSS ≤ 16 MB at 100 MB", f"{r['maxrss_kb'] / 1024:.1f} MB",
                            r["ok"] and r["maxrss_kb"] <= 16 * 1024))

out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
for name, val, ok in targets:
    out.append(f"| {name} | {val} | {'yes' if ok else '**no**'} |")
print("\n".join(out))
