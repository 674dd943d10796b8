#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Helpers for tests/71-privilege.sh, run as whatever user calls them.

    cthelper_priv.py probe    one NEW (create), NEW (update), GET by name,
                              GET dump, DEL by name, DEL flush and a message
                              of unknown type 3; prints "WHAT errno" lines
    cthelper_priv.py setup    (root) creates the helpers the test guards
    cthelper_priv.py table    (root) the dumped table, one sorted line each
    cthelper_priv.py flush    (root) deletes every helper
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cthelper_nl import (  # noqa: E402
    AF_INET6, IPPROTO_UDP, NFCTH_NAME, NFCTH_QUEUE_NUM, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST, NlSocket, errname, filter_attrs, helper_attrs, nla_be32,
    nla_str, tuple_attr)

REQ = NLM_F_REQUEST | NLM_F_ACK


def probe(s):
    out = []
    out.append(("NEW-create", s.new(helper_attrs("intruder")).errno))
    out.append(("NEW-update", s.new(nla_str(NFCTH_NAME, "own") + tuple_attr()
                                    + nla_be32(NFCTH_QUEUE_NUM, 99)).errno))
    out.append(("GET", s.get(filter_attrs("own")).errno))
    out.append(("GET-dump", s.dump(flags=REQ | NLM_F_DUMP).errno))
    out.append(("DEL", s.delete(filter_attrs("own")).errno))
    out.append(("DEL-flush", s.delete().errno))
    out.append(("unknown-type", s.request(3, b"").errno))
    return out


def main(argv):
    with NlSocket() as s:
        if argv[0] == "probe":
            for what, e in probe(s):
                print("%s %s" % (what, errname(e)))
        elif argv[0] == "setup":
            for name, kw in (("own", {"status": 1, "queue": 3}),
                             ("own", {"l3": AF_INET6, "l4": IPPROTO_UDP}),
                             ("other", {"priv": 16})):
                e = s.add(name, **kw)
                if e:
                    print("create %s: %s" % (name, errname(e)))
                    return 1
        elif argv[0] == "table":
            for h in sorted(repr(sorted(h.items())) for h in s.helpers()):
                print(h)
        elif argv[0] == "flush":
            return 1 if s.flush() else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
