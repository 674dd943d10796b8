#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The table of `make bench`: reads the log scripts/bench wrote (the guest's
"R MODULE ROUND METRIC VALUE" lines, the host's "S ..." size lines and
"H ..." help() lines) and prints, per metric, the median and min-max of each
module over the rounds and the Rust/C ratio of the medians, as Markdown.

Ratios are Rust / C of the figure itself: above 1 is better for rates,
below 1 is better for sizes.  A packet-path case is also shown as a ratio
to the baseline of the same module and round (median over the rounds).

usage: scripts/bench_report.py LOG
       scripts/bench_report.py --help-insns C_KO RUST_KO
           the "H" lines: help()'s instruction count in each .ko, from
           objdump -dr, with the module's own functions it calls (one level)
"""

import re
import statistics
import subprocess
import sys
from collections import defaultdict

CP = [
    ("cp_create", "NEW-create of {n} helpers", "ops/s"),
    ("cp_update", "NEW-update (queue + status) of each", "ops/s"),
    ("cp_get", "GET by name, {n} present", "ops/s"),
    ("cp_del", "DEL one by one ({dels}, {n} present at first)", "ops/s"),
    ("cp_flush", "flush of {n}", "ops/s"),
    ("dump_rate", "complete dump of {n}", "dumps/s"),
]
PKT = [
    ("tcp", "TCP bulk", "Mbit/s"),
    ("udp", "UDP 64-byte packets", "pkts/s"),
]
CASES = [
    ("base", "no helper rule (baseline)"),
    ("disabled", "helper disabled (help() -> ACCEPT)"),
    ("bypass", "enabled, nobody on the queue (QUEUE + BYPASS)"),
    ("listener", "enabled, listener accepting everything"),
]


def fmt(v):
    if v is None:
        return "missing"
    if float(v).is_integer():
        return "{:,}".format(int(v))
    a = abs(v)
    if a >= 100:
        return "{:,.0f}".format(v)
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fmt_ratio(v):
    return "missing" if v is None else "%.3f" % v


def med_range(vals, f=fmt):
    if not vals:
        return None, "missing"
    m = statistics.median(vals)
    return m, "%s (%s–%s)" % (f(m), f(min(vals)), f(max(vals)))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(r, op, goal):
    if r is None:
        return "missing"
    ok = r >= goal if op == ">=" else r <= goal
    return "%s %s %s: %s" % ("ratio", op, goal, "met" if ok else "**not met**")


def main():
    data = defaultdict(lambda: defaultdict(dict))  # metric -> module -> round -> value
    info = []
    sizes = {}
    helpfn = {}
    cfg = {}
    for line in open(sys.argv[1], errors="replace"):
        w = line.split()
        if not w:
            continue
        if w[0] == "R" and len(w) == 5:
            try:
                data[w[3]][w[1]][int(w[2])] = float(w[4])
            except ValueError:
                pass
        elif w[0] == "S" and len(w) == 5:
            sizes[w[1]] = tuple(int(x) for x in w[2:])
        elif w[0] == "H" and len(w) >= 3:
            helpfn[w[1]] = w[2:]
        elif w[0] == "I" and len(w) >= 2:
            if w[1] == "config":
                cfg = dict(kv.split("=", 1) for kv in w[2:])
            if w[1] in ("kernel", "config", "guest_seconds"):
                info.append(" ".join(w[1:]))
            elif len(w) >= 4 and w[3] == "slab_growth":
                info.append(" ".join(w[1:]))
    n = cfg.get("helpers", "?")
    dels = cfg.get("dels", "?")

    def vals(metric, m):
        return list(data[metric][m].values())

    def row(metric, label, unit, op, goal):
        cm, cs = med_range(vals(metric, "c"))
        rm, rs = med_range(vals(metric, "rust"))
        r = ratio(rm, cm)
        c, rr = data[metric]["c"], data[metric]["rust"]
        pairs = [rr[k] / c[k] for k in c if k in rr and c[k]]
        _, ps = med_range(pairs, fmt_ratio)
        return "| %s | %s | %s | %s | %s | %s | %s |" % (
            label, unit, cs, rs, fmt_ratio(r), ps, verdict(r, op, goal))

    rounds = max((len(d) for md in data.values() for d in md.values()), default=0)
    print("rounds: %d per module, alternating (C, Rust, Rust, C, ...); %s"
          % (rounds, "; ".join(info[:2])))
    print()
    print("| metric | unit | C median (min–max) | Rust median (min–max) | Rust/C | Rust/C of each round: median (min–max) | goal |")
    print("|---|---|---|---|---|---|---|")
    for metric, label, unit in CP:
        print(row(metric, label.format(n=n, dels=dels), unit, ">=", 1.0))
    dm = [statistics.median(vals(k, m)) if vals(k, m) else None
          for k in ("dump_msgs", "dump_bytes", "dump_datagrams") for m in ("c", "rust")]
    print("| dump: helper messages / bytes / datagrams | count | %s / %s / %s | %s / %s / %s | | | exactly %s, once each (checked) |"
          % (fmt(dm[0]), fmt(dm[2]), fmt(dm[4]), fmt(dm[1]), fmt(dm[3]), fmt(dm[5]), n))
    for proto, plabel, unit in PKT:
        for case, clabel in CASES:
            print(row("pkt_%s_%s" % (proto, case), "%s: %s" % (plabel, clabel), unit, ">=", 0.98))
    print(row("conn_base", "new TCP connections, no helper rule", "conn/s", ">=", 0.98))
    print(row("conn_helper", "new TCP connections, helper-bound rule (disabled)", "conn/s", ">=", 0.98))
    print(row("mem_per_helper", "slab growth per helper (kmalloc caches, %s helpers)" % n,
              "bytes", "<=", 1.0))
    print(row("module_size", "module size loaded (/proc/modules)", "bytes", "<=", 1.5)
          .rsplit("|", 2)[0] + "| (information) |")
    print(row("mem_per_helper_all", "slab growth per helper, all caches", "bytes", "<=", 1.0)
          .rsplit("|", 2)[0] + "| (information) |")
    for i, part in enumerate(("text", "data", "bss")):
        c = sizes.get("c", (None,) * 3)[i]
        r = sizes.get("rust", (None,) * 3)[i]
        rr = ratio(r, c)
        print("| .ko %s (`size`) | bytes | %s | %s | %s | | %s |" % (
            part, fmt(c), fmt(r), fmt_ratio(rr),
            verdict(rr, "<=", 1.5) if part == "text" else "(information)"))
    if helpfn:
        c = helpfn.get("c", ["missing"])
        r = helpfn.get("rust", ["missing"])
        print("| help(): instructions (objdump -d), with the module's functions it calls | count | %s | %s | %s | | (information) |"
              % (c[0], r[0], fmt_ratio(ratio(float(r[0]), float(c[0]))) if c[0] != "missing" and r[0] != "missing" else "missing"))
    print()
    print("Packet path and connections, as a ratio to the same module's baseline (median of the rounds):")
    print()
    print("| case | C | Rust |")
    print("|---|---|---|")
    for proto, plabel, _ in PKT:
        base = "pkt_%s_base" % proto
        for case, clabel in CASES[1:]:
            cells = []
            for m in ("c", "rust"):
                rs = [data["pkt_%s_%s" % (proto, case)][m][k] / data[base][m][k]
                      for k in data[base][m]
                      if k in data["pkt_%s_%s" % (proto, case)][m] and data[base][m][k]]
                cells.append(fmt_ratio(statistics.median(rs)) if rs else "missing")
            print("| %s: %s | %s | %s |" % (plabel, clabel, cells[0], cells[1]))
    cells = []
    for m in ("c", "rust"):
        rs = [data["conn_helper"][m][k] / data["conn_base"][m][k] for k in data["conn_base"][m]
              if k in data["conn_helper"][m] and data["conn_base"][m][k]]
        cells.append(fmt_ratio(statistics.median(rs)) if rs else "missing")
    print("| connections: helper-bound rule | %s | %s |" % tuple(cells))
    slab = [i for i in info[2:]]
    if slab:
        print()
        print("Slab growth by cache while creating the helpers (last round of each module):")
        last = {}
        for s in slab:
            w = s.split()
            last[w[0]] = " ".join(w[3:])
        for m in ("c", "rust"):
            print("- %s: %s" % (m, last.get(m, "missing")))


def functions(ko):
    """{name: (instruction count, [names of called symbols])} of a .ko."""
    dis = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", ko], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    funcs = {}
    cur = None
    for line in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            cur = m.group(1)
            funcs[cur] = [0, []]
            continue
        if cur is None or not line.strip():
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+R_X86_64_\w+\s+([^+-]+)", line)
        if m:
            funcs[cur][1].append(m.group(1))
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(\S+)(.*)", line)
        # Alignment padding after the last instruction is not code.
        if m and not re.match(r"(nop|xchg\s+%ax,%ax|data16|cs nop|int3)", m.group(1) + m.group(2)):
            funcs[cur][0] += 1
            t = re.search(r"\bcall\s+[0-9a-f]+ <([^+>]+)>", line)
            if t and t.group(1) != cur:
                funcs[cur][1].append(t.group(1))
    return funcs


def help_insns(c_ko, rust_ko):
    for mod, ko, pat in (("c", c_ko, r"^nfnl_userspace_cthelper$"),
                         ("rust", rust_ko, r"help_callback.*UserspaceCthelper")):
        funcs = functions(ko)
        names = [f for f in funcs if re.search(pat, f)]
        if not names:
            print("H %s missing" % mod)
            continue
        f = names[0]
        parts = ["%s=%d" % ("help_callback" if mod == "rust" else f, funcs[f][0])]
        total = funcs[f][0]
        ext = []
        for callee in dict.fromkeys(funcs[f][1]):
            if callee in funcs and callee != f:
                total += funcs[callee][0]
                parts.append("%s=%d" % (callee, funcs[callee][0]))
            elif callee not in ("__x86_return_thunk", "__fentry__") and not callee.startswith("."):
                ext.append(callee)
        print("H %s %d %s calls-out=%s" % (mod, total, " ".join(parts), ",".join(ext) or "none"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--help-insns":
        help_insns(sys.argv[2], sys.argv[3])
    else:
        main()
