#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Worker processes of tests/72-stress.sh (stdlib only).

    cthelper_stress.py worker K SECONDS
        for SECONDS, random add / update / delete / GET / dump requests:
        on its own helpers "wK_0".."wK_5" (only this worker touches them, so
        every errno is predicted exactly: 0, ENOENT for a delete of an absent
        one, EEXIST for an exclusive create of a present one), on the shared
        helpers pinned by nft ("pin_tcp", "pin_udp": updates of queue,
        status and policy values must succeed, deletes must be EBUSY), and
        dumps (well-formed, ended by NLMSG_DONE 0).  Then a deterministic
        final phase: its helpers 0, 2, 4 exist, 1, 3, 5 do not.
        Prints "ops KIND=N ..." and "bad N" (unexpected answers), exits 1
        if any.
    cthelper_stress.py setup
        creates pin_tcp and pin_udp (queue 5, enabled)
    cthelper_stress.py final NWORKERS
        the dump must hold exactly pin_tcp, pin_udp and wK_0/2/4 for each
        worker, no duplicates; prints "ok"/"not ok" lines.
"""

import errno
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cthelper_nl import (  # noqa: E402
    AF_INET, IPPROTO_TCP, IPPROTO_UDP, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST, NlSocket, errname, filter_attrs, helper_attrs)

REQ = NLM_F_REQUEST | NLM_F_ACK
PINS = (("pin_tcp", IPPROTO_TCP), ("pin_udp", IPPROTO_UDP))
QUEUE = 5


def own_attrs(name, r, l4):
    return helper_attrs(name, l4=l4, priv=8, queue=r.choice((0, 1, QUEUE)),
                        status=r.choice((0, 1)),
                        policies=(("pol", r.randrange(1, 9), r.randrange(1, 300)),))


def worker(k, seconds):
    r = random.Random(1000 + k)
    s = NlSocket(seq_base=1 + k * 100000000, timeout=30)
    own = {}
    names = ["w%d_%d" % (k, i) for i in range(6)]
    ops = {}
    bad = 0

    def expect(kind, want, got):
        nonlocal bad
        ops[kind] = ops.get(kind, 0) + 1
        if got != want:
            bad += 1
            if bad <= 10:
                print("# worker %d: %s: expected %s, got %s" % (k, kind, errname(want), errname(got)))

    # start clean: own names may exist from an earlier run
    for n in names:
        s.delete(filter_attrs(n))
    end = time.monotonic() + seconds
    # a pause between requests leaves the 2-CPU TCG guest some time for the
    # traffic, the NFQUEUE listener and nfct
    pause = float(os.environ.get("STRESS_PAUSE", "0.05"))
    while time.monotonic() < end:
        time.sleep(pause)
        x = r.random()
        n = r.choice(names)
        l4 = IPPROTO_TCP if names.index(n) % 2 == 0 else IPPROTO_UDP
        if x < 0.25:
            excl = r.random() < 0.3
            flags = REQ | NLM_F_CREATE | (NLM_F_EXCL if excl else 0)
            res = s.new(own_attrs(n, r, l4), flags=flags)
            expect("add", errno.EEXIST if (excl and n in own) else 0, res.errno)
            if res.errno == 0:
                own[n] = True
        elif x < 0.45:
            res = s.delete(filter_attrs(n, AF_INET, l4))
            expect("del", 0 if n in own else errno.ENOENT, res.errno)
            own.pop(n, None)
        elif x < 0.65:
            pn, pl4 = r.choice(PINS)
            res = s.new(helper_attrs(pn, l4=pl4, priv=None, queue=r.choice((QUEUE, QUEUE, 6)),
                                     status=r.choice((0, 1, 1)),
                                     policies=(("pol", r.randrange(1, 9), r.randrange(1, 300)),)),
                        flags=REQ)
            expect("update-pinned", 0, res.errno)
        elif x < 0.70:
            pn, pl4 = r.choice(PINS)
            res = s.delete(filter_attrs(pn, AF_INET, pl4))
            expect("del-pinned", errno.EBUSY, res.errno)
        elif x < 0.85:
            res = s.get(filter_attrs(n, AF_INET, l4))
            got = [h["name"] for h in res.helpers]
            ops["get"] = ops.get("get", 0) + 1
            want = [n] if n in own else []
            if res.errno != 0 or got != want:
                bad += 1
                print("# worker %d: get %s: %s %r" % (k, n, errname(res.errno), got))
        else:
            res = s.dump()
            ops["dump"] = ops.get("dump", 0) + 1
            if res.errno is not None or res.done is None:
                bad += 1
                print("# worker %d: dump ended with %s" % (k, errname(res.errno)))
            else:
                mine = sorted(h["name"] for h in res.helpers if h["name"].startswith("w%d_" % k))
                if mine != sorted(own):
                    bad += 1
                    print("# worker %d: dump shows %r, expected %r" % (k, mine, sorted(own)))
    # final deterministic phase
    for i, n in enumerate(names):
        l4 = IPPROTO_TCP if i % 2 == 0 else IPPROTO_UDP
        if i % 2 == 0:
            res = s.new(own_attrs(n, r, l4))
            expect("final-add", 0, res.errno)
        else:
            res = s.delete(filter_attrs(n, AF_INET, l4))
            expect("final-del", 0 if n in own else errno.ENOENT, res.errno)
    s.close()
    print("ops " + " ".join("%s=%d" % kv for kv in sorted(ops.items())))
    print("bad %d" % bad)
    return 1 if bad else 0


def final(nworkers):
    with NlSocket() as s:
        res = s.dump()
    keys = [(h["name"], h["l3"], h["l4"]) for h in res.helpers]
    want = sorted([("pin_tcp", AF_INET, IPPROTO_TCP), ("pin_udp", AF_INET, IPPROTO_UDP)] +
                  [("w%d_%d" % (k, i), AF_INET, IPPROTO_TCP)
                   for k in range(nworkers) for i in (0, 2, 4)])
    dups = len(keys) - len(set(keys))
    print(("ok " if dups == 0 else "not ok ") + "final dump has no duplicates (%d)" % dups)
    ok = sorted(keys) == want
    print(("ok " if ok else "not ok ") + "final dump holds exactly the %d expected helpers (%d)"
          % (len(want), len(keys)))
    if not ok:
        print("# got: %r" % sorted(keys))


def setup():
    with NlSocket() as s:
        for name, l4 in PINS:
            e = s.add(name, l4=l4, queue=QUEUE, status=1)
            if e:
                print("create %s: %s" % (name, errname(e)))
                return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        sys.exit(setup())
    if sys.argv[1] == "worker":
        sys.exit(worker(int(sys.argv[2]), float(sys.argv[3])))
    final(int(sys.argv[2]))
