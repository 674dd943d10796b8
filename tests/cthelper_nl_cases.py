#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Netlink scenarios for the cthelper subsystem, shared by two tests.

    cthelper_nl_cases.py check [CASE...]
        tests/20-netlink-errors.sh: run the scenarios against whichever
        module is loaded and print "ok DESC" / "not ok DESC" per assertion,
        "skip DESC" when a scenario cannot run (the bash wrapper turns
        them into numbered TAP points).
    cthelper_nl_cases.py record FILE
        tests/30-differential.sh: run the same scenarios, with extended
        acks on, and save every request and reply plus the assertion
        results to FILE.
    cthelper_nl_cases.py compare C_FILE RUST_FILE
        compare two recordings byte for byte (port ids zeroed, dump
        entries as multisets) and print one point per scenario.
    --dump-count=N, anywhere on the command line, sets how many helpers the
        "dump" scenario creates (400 by default).

Heavy modules (subprocess, pickle, difflib, traceback) are avoided or
imported late: each costs seconds of start-up in the TCG guest.

The expected errnos are those of the upstream C nfnetlink_cthelper of
6.12; tests/30 checks the assertions against it, so they are not folklore.
Every scenario starts from an empty table and leaves it empty.
"""

import errno
import marshal
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cthelper_nl import (  # noqa: E402
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, NFCTH_NAME, NFCTH_POLICY,
    NFCTH_POLICY_EXPECT_MAX, NFCTH_POLICY_EXPECT_TIMEOUT, NFCTH_POLICY_NAME,
    NFCTH_POLICY_SET, NFCTH_POLICY_SET_NUM, NFCTH_PRIV_DATA_LEN,
    NFCTH_QUEUE_NUM, NFCTH_STATUS, NFCTH_TUPLE, NFCTH_TUPLE_L3PROTONUM,
    NFCTH_TUPLE_L4PROTONUM, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_MULTI, NLM_F_REQUEST, NLM_F_ROOT, NLMSG_DONE, NFNL_MSG_CTHELPER_NEW,
    NlSocket, attr_map, build_msg, errname, filter_attrs, helper_attrs,
    msg_type, nest, nla, nla_be16, nla_be32, nla_str, nla_u8, policy_attr,
    policy_class, run_as_nobody, run_in_userns, tuple_attr)

NFT_TABLE = "nfnl_cthelper_test"
REQ = NLM_F_REQUEST | NLM_F_ACK
NEW_FLAGS = REQ | NLM_F_CREATE
IPPROTO_SCTP = 132

# ---------------------------------------------------------------- framework


class Checker:
    """Collects the assertions of one scenario; in check mode each one is
    printed as soon as it is made, so a hang still shows what went before."""

    def __init__(self, case, live):
        self.case = case
        self.live = live
        self.results = []

    def ok(self, desc, cond, diag=""):
        desc = "%s: %s" % (self.case, desc)
        diag = str(diag)
        self.results.append((bool(cond), desc, diag))
        if self.live:
            print(("ok " if cond else "not ok ") + desc)
            if not cond and diag:
                for line in str(diag).splitlines():
                    print("# " + line)
            sys.stdout.flush()
        return bool(cond)

    def skip(self, desc, why):
        desc = "%s: %s" % (self.case, desc)
        self.results.append((True, desc + " # SKIP " + why, ""))
        if self.live:
            print("skip %s (%s)" % (desc, why))
            sys.stdout.flush()

    def eq(self, desc, expected, actual):
        return self.ok(desc, expected == actual,
                       "expected: %r\nactual:   %r" % (expected, actual))

    def err(self, desc, expected, res):
        """res is a Result or an errno; expected an errno (0 for success)."""
        got = res if isinstance(res, int) or res is None else res.errno
        return self.ok("%s -> %s" % (desc, errname(expected)), got == expected,
                       "expected %s, got %s" % (errname(expected), errname(got)))


class Env:
    """What a scenario may use: sockets whose traffic is recorded into the
    scenario's transcript, unprivileged children, nft."""

    def __init__(self, index, ext_ack):
        self.index = index
        self.ext_ack = ext_ack
        self.log = []
        self.nsocks = 0
        self.nft_dirty = False

    def _seq_base(self):
        # Fixed per scenario and per socket, so that both modules see the
        # same sequence numbers even if one scenario goes wrong.
        self.nsocks += 1
        return (self.index + 1) * 100000 + self.nsocks * 10000

    def sock(self, **kw):
        return NlSocket(seq_base=self._seq_base(), ext_ack=self.ext_ack,
                        log=self.log, **kw)

    def _child(self, runner, fn):
        base, ext_ack = self._seq_base(), self.ext_ack

        def body():
            log = []
            with NlSocket(seq_base=base, ext_ack=ext_ack, log=log) as s:
                return fn(s), log
        value, log = runner(body)
        self.log.extend(log)
        return value

    def as_nobody(self, fn):
        return self._child(run_as_nobody, fn)

    def in_userns(self, fn):
        return self._child(run_in_userns, fn)

    def nft(self, script):
        # The first command may have created the table even if it failed.
        self.nft_dirty = True
        rc, out = run_nft(script)
        if rc == 0 and script.startswith("delete table"):
            self.nft_dirty = False
        return rc, out


def run_cmd(argv, stdin=""):
    """(exit status, stdout+stderr) of a command; a small stand-in for
    subprocess.run().  stdin must fit in a pipe buffer."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    os.close(in_r)
    os.close(out_w)
    os.write(in_w, stdin.encode())
    os.close(in_w)
    chunks = []
    while True:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def run_nft(script):
    return run_cmd(["nft", "-f", "-"], script)


CASES = []


def case(name):
    def reg(fn):
        CASES.append((name, fn))
        return fn
    return reg


def get_one(s, name, **kw):
    """The helper GET returns for name (None if none), and the Result."""
    res = s.get(filter_attrs(name, **kw), label="GET " + repr(name))
    hs = res.helpers
    return (hs[0] if hs else None), res


def names(helpers):
    return sorted(h["name"] for h in helpers)


def retry_while_busy(s, send, seconds=10):
    """nf_tables drops the references of a deleted table from a work item,
    after the nft command has returned: retry an EBUSY for a while.  Every
    attempt carries the same sequence number and only the last one goes
    into the transcript, so the transcript does not depend on timing."""
    deadline = time.monotonic() + seconds
    while True:
        res = send(record=False)
        if res.errno != errno.EBUSY or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if s.log is not None:
        s.log.append(res.entry)
    return res


def cleanup(ck, env):
    if env.nft_dirty:
        run_nft("delete table inet %s\n" % NFT_TABLE)
    with env.sock() as s:
        seq = s.next_seq()
        res = retry_while_busy(s, lambda record: s.delete(
            seq=seq, record=record, label="cleanup flush"))
        ck.err("cleanup: flush", 0, res)
        ck.eq("cleanup: table is empty", [], names(s.helpers(label="cleanup dump")))


# ---------------------------------------------------------------- scenarios
# The order matters only in that each scenario gets its own sequence
# numbers; each one starts from and leaves an empty table.


@case("missing attributes")
def _(ck, env):
    with env.sock() as s:
        ck.err("NEW without NFCTH_NAME", errno.EINVAL,
               s.new(helper_attrs(None), label="no NAME"))
        ck.err("NEW without NFCTH_TUPLE", errno.EINVAL,
               s.new(helper_attrs("h", l3=None, l4=None), label="no TUPLE"))
        ck.err("create without NFCTH_POLICY", errno.EINVAL,
               s.new(helper_attrs("h", policies=None), label="no POLICY"))
        ck.err("create without NFCTH_PRIV_DATA_LEN", errno.EINVAL,
               s.new(helper_attrs("h", priv=None), label="no PRIV_DATA_LEN"))
        ck.err("tuple without L3PROTONUM", errno.EINVAL,
               s.new(helper_attrs("h", l3=None), label="no L3"))
        ck.err("tuple without L4PROTONUM", errno.EINVAL,
               s.new(helper_attrs("h", l4=None), label="no L4"))
        ck.err("empty tuple nest", errno.EINVAL,
               s.new(nla_str(NFCTH_NAME, "h") + nest(NFCTH_TUPLE)
                     + policy_attr([("p", 1, 1)]) + nla_be32(NFCTH_PRIV_DATA_LEN, 0),
                     label="empty tuple"))
        # The order of the checks shows in which error wins.
        ck.err("no NAME and a malformed tuple (NAME is checked first)", errno.EINVAL,
               s.new(nest(NFCTH_TUPLE, nla(NFCTH_TUPLE_L3PROTONUM, b"\2"))
                     + policy_attr([("p", 1, 1)]) + nla_be32(NFCTH_PRIV_DATA_LEN, 0),
                     label="no NAME, bad tuple"))
        ck.err("malformed tuple and no POLICY (tuple is parsed first)", errno.ERANGE,
               s.new(nla_str(NFCTH_NAME, "h") + nest(NFCTH_TUPLE, nla(NFCTH_TUPLE_L3PROTONUM, b"\2"),
                                                     nla_u8(NFCTH_TUPLE_L4PROTONUM, 6)),
                     label="bad tuple, no POLICY"))
        ck.err("bad policy and PRIV_DATA_LEN 33 (policy is parsed first)", errno.EINVAL,
               s.new(helper_attrs("h", policies=[("p", 256, 1)], priv=33),
                     label="bad policy, priv 33"))
        ck.err("empty message (nfgenmsg only)", errno.EINVAL,
               s.new(b"", label="no attributes"))
        ck.eq("nothing was created", [], names(s.helpers()))
    cleanup(ck, env)


@case("attribute validation")
def _(ck, env):
    with env.sock() as s:
        ck.err("NAME of 16 chars (limit is NF_CT_HELPER_NAME_LEN-1)", errno.EINVAL,
               s.new(helper_attrs("a" * 16), label="name 16"))
        ck.err("NAME of 15 chars", 0, s.new(helper_attrs("b" * 15), label="name 15"))
        ck.err("NAME without NUL", errno.EINVAL,
               s.new(helper_attrs(b"nonul"), label="name no NUL"))
        ck.err("NAME of 15 chars without NUL", errno.EINVAL,
               s.new(helper_attrs(b"c" * 15), label="name 15 no NUL"))
        ck.err("NAME with empty payload", errno.EINVAL,
               s.new(helper_attrs(b""), label="name empty payload"))
        ck.err("NAME with a NUL inside and 16 chars after it", errno.ERANGE,
               s.new(helper_attrs(b"x\0" + b"y" * 16), label="name long tail"))
        ck.err("QUEUE_NUM of 2 bytes", errno.ERANGE,
               s.new(helper_attrs("q", queue=b"\0\1"), label="queue 2 bytes"))
        ck.err("PRIV_DATA_LEN of 3 bytes", errno.ERANGE,
               s.new(helper_attrs("q", priv=b"\0\0\0"), label="priv 3 bytes"))
        ck.err("STATUS of 0 bytes", errno.ERANGE,
               s.new(helper_attrs("q", status=b""), label="status 0 bytes"))
        ck.err("tuple L3PROTONUM of 1 byte", errno.ERANGE,
               s.new(nla_str(NFCTH_NAME, "q")
                     + nest(NFCTH_TUPLE, nla(NFCTH_TUPLE_L3PROTONUM, b"\2"),
                            nla_u8(NFCTH_TUPLE_L4PROTONUM, 6))
                     + policy_attr([("p", 1, 1)]) + nla_be32(NFCTH_PRIV_DATA_LEN, 0),
                     label="l3 1 byte"))
        ck.err("tuple L4PROTONUM of 0 bytes", errno.ERANGE,
               s.new(nla_str(NFCTH_NAME, "q")
                     + nest(NFCTH_TUPLE, nla_be16(NFCTH_TUPLE_L3PROTONUM, 2),
                            nla(NFCTH_TUPLE_L4PROTONUM, b""))
                     + policy_attr([("p", 1, 1)]) + nla_be32(NFCTH_PRIV_DATA_LEN, 0),
                     label="l4 0 bytes"))
        ck.err("GET with NAME without NUL", errno.EINVAL,
               s.get(nla(NFCTH_NAME, b"bbb"), label="GET name no NUL"))
        ck.err("DEL with tuple without L4PROTONUM", errno.EINVAL,
               s.delete(tuple_attr(AF_INET, None), label="DEL bad tuple"))
        ck.eq("only the 15-char helper exists", ["b" * 15], names(s.helpers()))
    cleanup(ck, env)


@case("expectation policy set")
def _(ck, env):
    def new(label, pol, **kw):
        return s.new(nla_str(NFCTH_NAME, "p") + tuple_attr() + pol
                     + nla_be32(NFCTH_PRIV_DATA_LEN, 0), label=label, **kw)

    one = [("c", 1, 1)]
    with env.sock() as s:
        ck.err("SET_NUM 0", errno.EINVAL, new("setnum 0", policy_attr(one, num=0)))
        ck.err("SET_NUM 5", errno.EOVERFLOW, new("setnum 5", policy_attr(one * 5, num=5)))
        ck.err("SET_NUM 0xffffffff", errno.EOVERFLOW,
               new("setnum max", policy_attr(one, num=0xffffffff)))
        ck.err("no SET_NUM", errno.EINVAL, new("no setnum", policy_attr(one, num=False)))
        ck.err("SET_NUM of 2 bytes", errno.ERANGE,
               new("setnum 2 bytes", policy_attr(one, num=b"\0\1")))
        ck.err("SET_NUM 2 with only SET1", errno.EINVAL,
               new("setnum 2 one set", policy_attr(one, num=2)))
        ck.err("SET_NUM 2 with SET2 but no SET1", errno.EINVAL,
               new("setnum 2 set2 only",
                   nest(NFCTH_POLICY, nla_be32(1, 2), policy_class(1, "c", 1, 1))))
        ck.err("class without EXPECT_TIMEOUT", errno.EINVAL,
               new("no timeout", policy_attr([("c", 1, None)])))
        ck.err("class without EXPECT_MAX", errno.EINVAL,
               new("no max", policy_attr([("c", None, 1)])))
        ck.err("class without NAME", errno.EINVAL,
               new("no class name", policy_attr([(None, 1, 1)])))
        # Any parse error inside a class is folded into -EINVAL on create.
        ck.err("class NAME of 16 chars", errno.EINVAL,
               new("class name 16", policy_attr([("n" * 16, 1, 1)])))
        ck.err("class EXPECT_MAX of 2 bytes", errno.EINVAL,
               new("class max 2 bytes", policy_attr([("c", b"\0\1", 1)])))
        ck.err("class EXPECT_MAX 256 (over NF_CT_EXPECT_MAX_CNT)", errno.EINVAL,
               new("max 256", policy_attr([("c", 256, 1)])))
        ck.err("class EXPECT_MAX 255", 0, new("max 255", policy_attr([("c", 255, 7)])))
        h, _ = get_one(s, "p")
        ck.eq("GET shows the class", [("c", 255, 7)], h and h["policies"])
        ck.err("nests without NLA_F_NESTED", 0,
               s.new(nla_str(NFCTH_NAME, "flat") + tuple_attr(flag=False)
                     + policy_attr([("c", 3, 4)], flag=False)
                     + nla_be32(NFCTH_PRIV_DATA_LEN, 0), label="no nested flag"))
        h, _ = get_one(s, "flat")
        ck.eq("helper from unflagged nests", ("flat", 2, 6, [("c", 3, 4)]),
              h and (h["name"], h["l3"], h["l4"], h["policies"]))
        ck.eq("table", ["flat", "p"], names(s.helpers()))
    cleanup(ck, env)


@case("private data length")
def _(ck, env):
    with env.sock() as s:
        ck.err("PRIV_DATA_LEN 33", errno.ENOMEM, s.new(helper_attrs("d", priv=33), label="priv 33"))
        ck.err("PRIV_DATA_LEN 0xffffffff", errno.ENOMEM,
               s.new(helper_attrs("d", priv=0xffffffff), label="priv max"))
        ck.eq("nothing created by the failures", [], names(s.helpers()))
        ck.err("PRIV_DATA_LEN 32", 0, s.new(helper_attrs("d", priv=32), label="priv 32"))
        h, _ = get_one(s, "d")
        ck.eq("GET shows priv_data_len 32", 32, h and h["priv_data_len"])
    cleanup(ck, env)


@case("class count")
def _(ck, env):
    four = [("c0", 1, 10), ("c1", 2, 20), ("c2", 3, 30), ("c3", 4, 40)]
    with env.sock() as s:
        ck.err("4 classes (NF_CT_MAX_EXPECT_CLASSES)", 0,
               s.new(helper_attrs("four", policies=four), label="4 classes"))
        h, _ = get_one(s, "four")
        ck.eq("GET lists 4 policies", (4, four), h and (h["policy_set_num"], h["policies"]))
        ck.err("5 classes", errno.EOVERFLOW,
               s.new(helper_attrs("five", policies=four + [("c4", 5, 50)]), label="5 classes"))
        # Attribute type NFCTH_POLICY_SET4 + 1 is beyond the policy and is
        # ignored, whatever it holds.
        ck.err("4 classes plus a fifth nest", 0,
               s.new(nla_str(NFCTH_NAME, "fourplus") + tuple_attr()
                     + policy_attr(four + [("c4", 5, 50)], num=4)
                     + nla_be32(NFCTH_PRIV_DATA_LEN, 0), label="4 classes + extra nest"))
        h, _ = get_one(s, "fourplus")
        ck.eq("the extra nest is ignored", four, h and h["policies"])
        ck.eq("table", ["four", "fourplus"], names(s.helpers()))
    cleanup(ck, env)


@case("create and lookup keys")
def _(ck, env):
    with env.sock() as s:
        ck.err("create with QUEUE_NUM 5 and STATUS enabled", 0,
               s.new(helper_attrs("k", queue=5, status=1), label="create k"))
        h, res = get_one(s, "k")
        ck.eq("GET shows it", {"nfgen": (0, 0, 0), "name": "k", "queue_num": 5, "l3": 2,
                               "l4": 6, "policy_set_num": 1, "policies": [("pol", 1, 30)],
                               "priv_data_len": 0, "status": 1}, h)
        ck.err("NLM_F_EXCL on an existing helper", errno.EEXIST,
               s.new(helper_attrs("k"), flags=NEW_FLAGS | NLM_F_EXCL, label="excl"))
        ck.err("same request without NLM_F_EXCL updates", 0,
               s.new(helper_attrs("k", queue=6), label="update k"))
        ck.err("update without NLM_F_CREATE", 0,
               s.new(nla_str(NFCTH_NAME, "k") + tuple_attr() + nla_be32(NFCTH_QUEUE_NUM, 8),
                     flags=REQ, label="update no create flag"))
        ck.err("create without NLM_F_CREATE", 0,
               s.new(helper_attrs("nocreate"), flags=REQ, label="create no create flag"))
        ck.err("same name, AF_INET6", 0, s.new(helper_attrs("k", l3=AF_INET6), label="k v6"))
        # NLM_F_EXCL only matters when name and tuple both match.
        ck.err("same name, UDP, with NLM_F_EXCL", 0,
               s.new(helper_attrs("k", l4=IPPROTO_UDP), flags=NEW_FLAGS | NLM_F_EXCL,
                     label="k udp excl"))
        ck.err("NLM_F_EXCL on the AF_INET6 one", errno.EEXIST,
               s.new(helper_attrs("k", l3=AF_INET6), flags=NEW_FLAGS | NLM_F_EXCL,
                     label="excl v6"))
        ck.err("STATUS 2 on create", 0, s.new(helper_attrs("st", status=2), label="status 2"))
        hs = s.helpers()
        ck.eq("three helpers named k", [(2, 6), (2, 17), (10, 6)],
              sorted((x["l3"], x["l4"]) for x in hs if x["name"] == "k"))
        h, _ = get_one(s, "k")
        ck.eq("GET by name alone returns the first created", (2, 6, 8),
              h and (h["l3"], h["l4"], h["queue_num"]))
        h, _ = get_one(s, "k", l3=AF_INET6, l4=IPPROTO_TCP)
        ck.eq("GET by name and tuple picks AF_INET6", (10, 6, 0),
              h and (h["l3"], h["l4"], h["queue_num"]))
        h, _ = get_one(s, "st")
        ck.eq("STATUS 2 leaves the helper disabled", 0, h and h["status"])
        ck.eq("table", ["k", "k", "k", "nocreate", "st"], names(hs))
    cleanup(ck, env)


@case("update conflicts")
def _(ck, env):
    with env.sock() as s:
        ck.err("create u (priv 8, queue 1)", 0, s.new(helper_attrs("u", priv=8, queue=1)))
        ck.err("other PRIV_DATA_LEN", errno.EBUSY,
               s.new(helper_attrs("u", priv=16, queue=2), label="priv 16"))
        ck.err("other class count", errno.EBUSY,
               s.new(helper_attrs("u", priv=8, queue=2,
                                  policies=[("pol", 1, 30), ("x", 1, 1)]), label="2 classes"))
        ck.err("other policy name", errno.EBUSY,
               s.new(helper_attrs("u", priv=8, queue=2, policies=[("other", 1, 30)]),
                     label="rename class"))
        ck.err("EXPECT_MAX 256 on update", errno.EINVAL,
               s.new(helper_attrs("u", priv=8, queue=2, policies=[("pol", 256, 30)]),
                     label="update max 256"))
        # Unlike create, the update path passes parse errors through.
        ck.err("EXPECT_MAX of 2 bytes on update", errno.ERANGE,
               s.new(helper_attrs("u", priv=8, queue=2, policies=[("pol", b"\0\1", 30)]),
                     label="update max 2 bytes"))
        ck.err("SET_NUM 0 on update", errno.EBUSY,
               s.new(nla_str(NFCTH_NAME, "u") + tuple_attr()
                     + policy_attr([("pol", 1, 30)], num=0), label="update setnum 0"))
        ck.err("class without timeout on update", errno.EINVAL,
               s.new(helper_attrs("u", priv=8, queue=2, policies=[("pol", 1, None)]),
                     label="update no timeout"))
        h, _ = get_one(s, "u")
        ck.eq("helper unchanged by the failed updates",
              (8, 1, [("pol", 1, 30)], 0),
              h and (h["priv_data_len"], h["queue_num"], h["policies"], h["status"]))
        ck.err("same PRIV_DATA_LEN is fine", 0,
               s.new(helper_attrs("u", priv=8, policies=None, queue=3), label="priv same"))
        h, _ = get_one(s, "u")
        ck.eq("queue updated", 3, h and h["queue_num"])
    cleanup(ck, env)


@case("no half update")
def _(ck, env):
    two = [("a", 1, 10), ("b", 2, 20)]
    with env.sock() as s:
        ck.err("create with 2 classes", 0, s.new(helper_attrs("half", policies=two)))
        ck.err("class 2 EXPECT_MAX 256", errno.EINVAL,
               s.new(helper_attrs("half", policies=[("a", 5, 50), ("b", 256, 60)], queue=9),
                     label="class 2 max 256"))
        h, _ = get_one(s, "half")
        ck.eq("class 1 unchanged after class 2 failed", two, h and h["policies"])
        ck.eq("queue unchanged after the policy failed", 0, h and h["queue_num"])
        ck.err("class 2 renamed", errno.EBUSY,
               s.new(helper_attrs("half", policies=[("a", 5, 50), ("z", 6, 60)]),
                     label="class 2 renamed"))
        ck.err("SET_NUM 2 with only SET1", errno.EINVAL,
               s.new(nla_str(NFCTH_NAME, "half") + tuple_attr()
                     + policy_attr([("a", 5, 50)], num=2), label="class 2 missing"))
        ck.err("class 2 without timeout", errno.EINVAL,
               s.new(helper_attrs("half", policies=[("a", 5, 50), ("b", 6, None)]),
                     label="class 2 no timeout"))
        h, _ = get_one(s, "half")
        ck.eq("both classes unchanged", two, h and h["policies"])
    cleanup(ck, env)


@case("update values")
def _(ck, env):
    three = [("a", 1, 10), ("b", 2, 20), ("c", 3, 30)]
    with env.sock() as s:
        ck.err("create", 0, s.new(helper_attrs("v", policies=three)))
        h, _ = get_one(s, "v")
        ck.eq("created disabled, queue 0", (0, 0), h and (h["status"], h["queue_num"]))
        ck.err("QUEUE_NUM 7 + STATUS enabled", 0,
               s.new(nla_str(NFCTH_NAME, "v") + tuple_attr() + nla_be32(NFCTH_QUEUE_NUM, 7)
                     + nla_be32(NFCTH_STATUS, 1), label="queue 7 enable"))
        h, _ = get_one(s, "v")
        ck.eq("GET shows queue 7, enabled", (1, 7), h and (h["status"], h["queue_num"]))
        ck.err("STATUS 2", 0, s.new(nla_str(NFCTH_NAME, "v") + tuple_attr()
                                    + nla_be32(NFCTH_STATUS, 2), label="status 2"))
        h, _ = get_one(s, "v")
        ck.eq("unknown STATUS changes nothing", (1, 7), h and (h["status"], h["queue_num"]))
        ck.err("STATUS disabled, QUEUE_NUM 0xffffffff", 0,
               s.new(nla_str(NFCTH_NAME, "v") + tuple_attr() + nla_be32(NFCTH_STATUS, 0)
                     + nla_be32(NFCTH_QUEUE_NUM, 0xffffffff), label="disable"))
        h, _ = get_one(s, "v")
        ck.eq("GET shows disabled, queue 0xffffffff", (0, 0xffffffff),
              h and (h["status"], h["queue_num"]))
        new = [("a", 11, 110), ("b", 22, 220), ("c", 33, 330)]
        ck.err("update 3 classes with distinct values", 0,
               s.new(helper_attrs("v", policies=new, priv=None), label="update 3 classes"))
        h, _ = get_one(s, "v")
        ck.eq("each class got its own values", new, h and h["policies"])
        ck.eq("update left queue and status alone", (0, 0xffffffff),
              h and (h["status"], h["queue_num"]))
        four = [("w", 1, 1), ("x", 2, 2), ("y", 3, 3), ("z", 4, 4)]
        ck.err("create a 4-class helper", 0, s.new(helper_attrs("v4", policies=four)))
        new4 = [("w", 255, 1000), ("x", 0, 0), ("y", 7, 7), ("z", 100, 4000000000)]
        ck.err("update 4 classes", 0, s.new(helper_attrs("v4", policies=new4), label="update 4"))
        h, _ = get_one(s, "v4")
        ck.eq("each of 4 classes got its own values", new4, h and h["policies"])
    cleanup(ck, env)


@case("get")
def _(ck, env):
    with env.sock() as s:
        ck.err("GET by name on an empty table", errno.ENOENT,
               s.get(filter_attrs("h1"), label="GET empty"))
        ck.err("GET without filter on an empty table", errno.ENOENT,
               s.get(label="GET nofilter empty"))
        for name, l3, l4, q in (("h1", AF_INET, IPPROTO_TCP, 1), ("h2", AF_INET, IPPROTO_UDP, 2),
                                ("h3", AF_INET6, IPPROTO_TCP, 3)):
            ck.err("create " + name, 0, s.new(helper_attrs(name, l3=l3, l4=l4, queue=q)))
        h, res = get_one(s, "h2")
        ck.eq("GET by name: one helper", 1, len(res.msgs))
        ck.eq("GET by name: acked", 0, res.errno)
        ck.eq("GET by name: the right one", ("h2", 2, 17, 2),
              h and (h["name"], h["l3"], h["l4"], h["queue_num"]))
        m = res.msgs[0] if res.msgs else None
        ck.eq("GET reply header: type NEW, NLM_F_MULTI, request seq, our port",
              (msg_type(NFNL_MSG_CTHELPER_NEW), NLM_F_MULTI, s.seq - 1, s.portid),
              m and (m.type, m.flags, m.seq, m.pid))
        ck.eq("GET reply nfgenmsg: AF_UNSPEC, v0, res_id 0", (0, 0, 0), h and h["nfgen"])
        h, _ = get_one(s, None, l3=AF_INET6, l4=IPPROTO_TCP)
        ck.eq("GET by tuple AF_INET6/TCP", "h3", h and h["name"])
        h, _ = get_one(s, None, l3=AF_INET, l4=IPPROTO_UDP)
        ck.eq("GET by tuple AF_INET/UDP", "h2", h and h["name"])
        ck.err("GET unknown name", errno.ENOENT, s.get(filter_attrs("nope"), label="GET nope"))
        # Upstream quirk: nfnl_cthelper_get() starts from ret = -ENOENT but
        # overwrites it with the 0 of a successful tuple parse, so a GET
        # that carries NFCTH_TUPLE and matches nothing is acked with 0 and
        # no helper.
        res = s.get(filter_attrs("h1", AF_INET, IPPROTO_UDP), label="GET mismatch")
        ck.err("GET name h1 with UDP tuple (matches nothing)", 0, res)
        ck.eq("GET name h1 with UDP tuple: no helper in the reply", [], res.helpers)
        res = s.get(filter_attrs(None, AF_INET, IPPROTO_SCTP), label="GET sctp")
        ck.err("GET unknown tuple (matches nothing)", 0, res)
        ck.eq("GET unknown tuple: no helper in the reply", [], res.helpers)
        h, _ = get_one(s, None)
        ck.eq("GET without filter returns the first helper", "h1", h and h["name"])
        ck.err("GET with a tuple without L3", errno.EINVAL,
               s.get(tuple_attr(None, IPPROTO_TCP), label="GET bad tuple"))
        res = s.get(nla_str(NFCTH_NAME, b"h2\0junk\0"), label="GET name with junk")
        ck.eq("GET name compares up to the first NUL", ["h2"], [x["name"] for x in res.helpers])
        res = s.get(filter_attrs("h2"), flags=NLM_F_REQUEST | NLM_F_DUMP, label="dump with NAME")
        ck.eq("a dump ignores NFCTH_NAME", ["h1", "h2", "h3"], names(res.helpers))
        res = s.get(filter_attrs("h1"), family=AF_INET6, label="GET family inet6")
        ck.eq("GET ignores nfgenmsg family", ["h1"], [x["name"] for x in res.helpers])
    cleanup(ck, env)


def _unpriv_requests(s):
    """Everything an unprivileged sender tries; returns the errnos."""
    out = {}
    out["NEW create"] = s.new(helper_attrs("intruder"), label="unpriv create").errno
    out["NEW update"] = s.new(nla_str(NFCTH_NAME, "own") + tuple_attr()
                              + nla_be32(NFCTH_QUEUE_NUM, 99), label="unpriv update").errno
    out["GET"] = s.get(filter_attrs("own"), label="unpriv get").errno
    out["GET dump"] = s.dump(flags=REQ | NLM_F_DUMP, label="unpriv dump").errno
    out["DEL by name"] = s.delete(filter_attrs("own"), label="unpriv del").errno
    out["DEL flush"] = s.delete(label="unpriv flush").errno
    # Message type 3 does not exist: nfnetlink answers EINVAL if it let the
    # sender through at all, EPERM if it stopped it itself.
    out["unknown type"] = s.request(3, b"", label="unpriv type 3").errno
    return out


@case("permissions")
def _(ck, env):
    with env.sock() as s:
        ck.err("create own (as root)", 0, s.new(helper_attrs("own", status=1)))
        before = s.helpers()
        got = env.as_nobody(_unpriv_requests)
        for what in ("NEW create", "NEW update", "GET", "GET dump", "DEL by name",
                     "DEL flush", "unknown type"):
            ck.err("uid 65534: " + what, errno.EPERM, got[what])
        got = env.in_userns(_unpriv_requests)
        # This proves the EPERMs below come from nfnl_cthelper itself.
        ck.err("user+net namespace root gets past nfnetlink (unknown type)",
               errno.EINVAL, got["unknown type"])
        for what in ("NEW create", "NEW update", "GET", "GET dump", "DEL by name", "DEL flush"):
            ck.err("user+net namespace root: " + what, errno.EPERM, got[what])
        ck.eq("table unchanged", before, s.helpers())
    cleanup(ck, env)


@case("delete")
def _(ck, env):
    with env.sock() as s:
        # nfnl_cthelper_del() answers 0 whenever the table is empty.
        ck.err("DEL by name on an empty table", 0, s.delete(filter_attrs("a"), label="del empty"))
        ck.err("flush of an empty table", 0, s.delete(label="flush empty"))
        for name, l3, l4 in (("a", AF_INET, IPPROTO_TCP), ("b", AF_INET, IPPROTO_UDP),
                             ("c", AF_INET6, IPPROTO_TCP), ("d", AF_INET, IPPROTO_TCP),
                             ("x", AF_INET, IPPROTO_TCP), ("x", AF_INET6, IPPROTO_UDP)):
            ck.err("create %s %d/%d" % (name, l3, l4), 0,
                   s.new(helper_attrs(name, l3=l3, l4=l4)))
        ck.err("DEL unknown name", errno.ENOENT, s.delete(filter_attrs("zzz"), label="del zzz"))
        ck.err("DEL unknown tuple", errno.ENOENT,
               s.delete(filter_attrs(None, AF_INET, IPPROTO_SCTP), label="del sctp"))
        ck.err("DEL name a with UDP tuple", errno.ENOENT,
               s.delete(filter_attrs("a", AF_INET, IPPROTO_UDP), label="del a/udp"))
        ck.err("DEL with tuple without L3", errno.EINVAL,
               s.delete(tuple_attr(None, IPPROTO_TCP), label="del bad tuple"))
        ck.err("DEL with NAME without NUL", errno.EINVAL,
               s.delete(nla(NFCTH_NAME, b"a"), label="del name no NUL"))
        ck.eq("nothing deleted yet", ["a", "b", "c", "d", "x", "x"], names(s.helpers()))
        ck.err("DEL by name x (two tuples)", 0, s.delete(filter_attrs("x"), label="del x"))
        ck.eq("both x gone", ["a", "b", "c", "d"], names(s.helpers()))
        ck.err("DEL by name a", 0, s.delete(filter_attrs("a"), label="del a"))
        ck.eq("a gone", ["b", "c", "d"], names(s.helpers()))
        ck.err("DEL by tuple AF_INET/TCP", 0,
               s.delete(filter_attrs(None, AF_INET, IPPROTO_TCP), label="del inet tcp"))
        ck.eq("d gone", ["b", "c"], names(s.helpers()))
        ck.err("DEL by name c and tuple AF_INET6/TCP", 0,
               s.delete(filter_attrs("c", AF_INET6, IPPROTO_TCP), label="del c v6"))
        ck.eq("c gone", ["b"], names(s.helpers()))
        ck.err("DEL a (gone already)", errno.ENOENT, s.delete(filter_attrs("a"), label="del a again"))
        ck.err("flush", 0, s.delete(label="flush"))
        ck.eq("table empty", [], names(s.helpers()))
        ck.err("flush again", 0, s.delete(label="flush again"))
    cleanup(ck, env)


@case("delete in use")
def _(ck, env):
    with env.sock() as s:
        ck.err("create busy (enabled)", 0, s.new(helper_attrs("busy", status=1)))
        ck.err("create idle", 0, s.new(helper_attrs("idle", l4=IPPROTO_UDP)))
        rc, out = env.nft("add table inet %s\nadd ct helper inet %s h "
                          "{ type \"busy\" protocol tcp; l3proto inet; }\n"
                          % (NFT_TABLE, NFT_TABLE))
        ck.ok("nft ct helper object takes a reference on busy", rc == 0, out)
        ck.err("DEL busy", errno.EBUSY, s.delete(filter_attrs("busy"), label="del busy"))
        ck.eq("busy still listed", ["busy", "idle"], names(s.helpers()))
        # One helper deleted makes the whole flush a success.
        ck.err("flush with busy in use", 0, s.delete(label="flush busy"))
        ck.eq("only busy left", ["busy"], names(s.helpers()))
        ck.err("flush with only busy left", errno.EBUSY, s.delete(label="flush only busy"))
        ck.err("DEL busy by tuple", errno.EBUSY,
               s.delete(filter_attrs(None, AF_INET, IPPROTO_TCP), label="del busy tuple"))
        h, _ = get_one(s, "busy")
        ck.eq("busy still answers GET", ("busy", 1), h and (h["name"], h["status"]))
        rc, out = env.nft("delete table inet %s\n" % NFT_TABLE)
        ck.ok("nft delete table", rc == 0, out)
        seq = s.next_seq()
        res = retry_while_busy(s, lambda record: s.delete(
            filter_attrs("busy"), seq=seq, record=record, label="del busy released"))
        ck.err("DEL busy once the nft object is gone", 0, res)
        ck.eq("table empty", [], names(s.helpers()))
    cleanup(ck, env)


# Deleting a helper waits for at least three RCU grace periods
# (nf_conntrack_helper_unregister(): synchronize_rcu(), then
# nf_ct_iterate_destroy()'s synchronize_net() and synchronize_rcu()), and
# for any namespace being dismantled (net_ns_barrier()): ~70 ms a deletion
# in the TCG guest with normal grace periods, a fraction of that with the
# expedited ones scripts/vm boots with; the size of the big dump is what
# sets this case's run time.
DUMP_COUNT = 400


@case("dump")
def _(ck, env):
    count = DUMP_COUNT
    with env.sock() as s:
        res = s.dump(label="dump empty")
        ck.eq("empty dump: no helper, NLMSG_DONE with 0",
              ([], True, 0), (res.msgs, res.done is not None,
                              res.done and struct.unpack_from("=i", res.done.payload)[0]))
        want = {}
        for i in range(count):
            h = {"name": "dump%03d" % i, "l3": (AF_INET, AF_INET6)[i % 2],
                 "l4": (IPPROTO_TCP, IPPROTO_UDP)[(i // 2) % 2], "queue_num": i,
                 "status": (i // 4) % 2, "priv_data_len": i % 33,
                 "policies": [("p%d" % j, (i + j) % 256, i * 10 + j) for j in range(i % 4 + 1)]}
            want[h["name"]] = h
            e = s.new(helper_attrs(h["name"], h["l3"], h["l4"], h["policies"],
                                   h["priv_data_len"], h["queue_num"], h["status"]),
                      label="create " + h["name"]).errno
            if e != 0:
                ck.err("create " + h["name"], 0, e)
                break
        else:
            ck.ok("created %d helpers" % count, True)
    # A fresh socket with a small receive buffer: the kernel sizes dump
    # skbs by the reader's buffer, so the table has to come in many parts.
    with env.sock(rcv_size=8192) as s:
        res = s.dump(label="dump %d" % count)
        got = [h["name"] for h in res.helpers]
        ck.ok("dump came in several datagrams", res.datagrams >= 4,
              "%d datagrams" % res.datagrams)
        ck.eq("dump lists %d helpers" % count, count, len(got))
        ck.eq("each helper exactly once", sorted(want), sorted(got))
        bad = [h["name"] for h in res.helpers
               if {k: h.get(k) for k in want.get(h["name"], {})} != want.get(h["name"])]
        ck.eq("every dumped helper has its attributes", [], bad[:5])
        ck.eq("every part is NLM_F_MULTI with the request seq",
              [], [m for m in res.msgs if m.flags != NLM_F_MULTI or m.seq != s.seq - 1][:3])
        ck.eq("NLMSG_DONE with 0 ends it", 0,
              res.done and struct.unpack_from("=i", res.done.payload)[0])
        res = s.dump(flags=NLM_F_REQUEST | NLM_F_ROOT, label="dump NLM_F_ROOT")
        ck.eq("NLM_F_ROOT alone is a dump too", count, len(res.helpers))
        res = s.dump(flags=REQ | NLM_F_DUMP, label="dump with ack")
        ck.eq("dump with NLM_F_ACK ends with NLMSG_DONE", (count, True, None),
              (len(res.helpers), res.done is not None, res.errno))
        ck.err("flush", 0, s.delete(label="flush %d" % count))
        res = s.dump(label="dump after flush")
        ck.eq("dump after flush is empty", (0, True), (len(res.msgs), res.done is not None))
    cleanup(ck, env)


@case("kernel helpers")
def _(ck, env):
    # nf_conntrack_ftp registers "ftp" for AF_INET and AF_INET6 TCP: a
    # user-space helper cannot take the same name and tuple, and dumps only
    # show user-space helpers.  Loading and unloading it takes seconds in
    # the TCG guest, so a caller may load it beforehand; then it stays.
    preloaded = os.path.isdir("/sys/module/nf_conntrack_ftp")
    if not preloaded:
        rc, out = run_cmd(["modprobe", "nf_conntrack_ftp"])
        if rc != 0:
            ck.skip("kernel ftp helper", "modprobe nf_conntrack_ftp: " + out.strip())
            return
    try:
        with env.sock() as s:
            ck.eq("dump skips kernel helpers", [], names(s.helpers(label="dump with ftp")))
            ck.err("create ftp AF_INET/TCP (taken by nf_conntrack_ftp)", errno.EBUSY,
                   s.new(helper_attrs("ftp"), label="ftp tcp"))
            ck.err("create ftp AF_INET/UDP", 0,
                   s.new(helper_attrs("ftp", l4=IPPROTO_UDP), label="ftp udp"))
            ck.eq("dump shows only the user-space ftp", [("ftp", 17)],
                  [(h["name"], h["l4"]) for h in s.helpers(label="dump ftp udp")])
            ck.err("GET ftp", 0, s.get(filter_attrs("ftp"), label="GET ftp"))
            ck.err("DEL ftp deletes only ours", 0, s.delete(filter_attrs("ftp"), label="DEL ftp"))
            ck.err("DEL ftp again", 0, s.delete(filter_attrs("ftp"), label="DEL ftp again"))
    finally:
        if not preloaded:
            run_cmd(["rmmod", "nf_conntrack_ftp"])
    cleanup(ck, env)


@case("message framing")
def _(ck, env):
    with env.sock() as s:
        ck.err("message type 3 (NFNL_MSG_CTHELPER_MAX)", errno.EINVAL,
               s.request(3, b"", label="type 3"))
        seq = s.next_seq()
        raw = build_msg(msg_type(NFNL_MSG_CTHELPER_NEW), b"", REQ, seq)[:16]
        raw = struct.pack("=I", 16) + raw[4:]
        ck.err("message shorter than nfgenmsg is acked and ignored", 0,
               s.request(NFNL_MSG_CTHELPER_NEW, seq=seq, raw=raw, label="no nfgenmsg"))
        ck.err("NEW without NLM_F_REQUEST is acked and ignored", 0,
               s.new(helper_attrs("ignored"), flags=NLM_F_ACK | NLM_F_CREATE,
                     label="no NLM_F_REQUEST"))
        ck.err("unknown top-level attribute types are ignored", 0,
               s.new(helper_attrs("fr1") + nla_be32(7, 1) + nla_be32(0x1f, 1), label="attr 7"))
        ck.err("trailing bytes after the attributes", 0,
               s.new(helper_attrs("fr2") + b"\1\2", label="trailing"))
        ck.err("QUEUE_NUM of 8 bytes (first 4 used)", 0,
               s.new(helper_attrs("fr3", queue=b"\0\0\0\5\0\0\0\6"), label="queue 8 bytes"))
        ck.err("nfgenmsg family AF_INET6 is ignored", 0,
               s.request(NFNL_MSG_CTHELPER_NEW, helper_attrs("fr4"), NEW_FLAGS,
                         family=AF_INET6, label="family inet6"))
        ck.err("NAME with a NUL inside", 0,
               s.new(helper_attrs(b"ab\0cd\0"), label="name ab NUL cd"))
        ck.err("empty NAME", 0, s.new(helper_attrs(b"\0"), label="empty name"))
        ck.err("NLM_F_EXCL on the empty name", errno.EEXIST,
               s.new(helper_attrs(""), flags=NEW_FLAGS | NLM_F_EXCL, label="excl empty name"))
        h, _ = get_one(s, "fr3")
        ck.eq("8-byte QUEUE_NUM read as 5", 5, h and h["queue_num"])
        h, _ = get_one(s, b"\0")
        ck.eq("GET of the empty name", "", h and h["name"])
        ck.eq("table", ["", "ab", "fr1", "fr2", "fr3", "fr4"], names(s.helpers()))
        ck.err("DEL the empty name", 0, s.delete(nla_str(NFCTH_NAME, ""), label="del empty name"))
        ck.eq("table without it", ["ab", "fr1", "fr2", "fr3", "fr4"], names(s.helpers()))
    cleanup(ck, env)


# ---------------------------------------------------------------- padded names
# Clients that send names from fixed-size NUL-padded buffers.  Upstream:
#   - NFCTH_NAME and NFCTH_POLICY_NAME are NLA_NUL_STRING with .len 15
#     (validate_nla() in lib/nlattr.c): a NUL must be among the first
#     min(length, 16) bytes, else -EINVAL; one trailing NUL is dropped and
#     what is left must be at most 15 bytes, else -ERANGE;
#   - a helper is found by strncmp(name, payload, 16): the payload counts up
#     to its first NUL (NEW, GET and DEL);
#   - a class is matched on update by nla_strcmp(payload, class name),
#     which drops *all* trailing NULs of the payload and compares the rest,
#     NULs inside included, with the whole stored name: -EBUSY if unequal;
#   - create copies names with nla_strscpy() (one trailing NUL dropped) and
#     folds every class parse error into -EINVAL, update passes them on.
# Every request is followed by the table it leaves behind.


def _be(b):
    return int.from_bytes(b, "big")


def wire_name(b):
    """A name as a reply carries it: the string when the attribute is what
    nla_put_string() writes (the characters and one NUL), else the raw
    payload, so that a stray pad byte in a reply shows."""
    s = b.split(b"\0", 1)[0]
    return s.decode("latin-1") if b == s + b"\0" else b


def table(s, label):
    """The dumped table as sorted rows (name, l3, l4, queue, status, priv,
    ((class, max, timeout), ...)), names as on the wire."""
    res = s.dump(label=label)
    if res.errno is not None:
        return "dump failed: " + errname(res.errno)
    rows = []
    for m in res.msgs:
        a = attr_map(m.payload[4:])
        t = attr_map(a[NFCTH_TUPLE])
        p = attr_map(a[NFCTH_POLICY])
        pols = []
        for i in range(_be(p[NFCTH_POLICY_SET_NUM])):
            c = attr_map(p[NFCTH_POLICY_SET + i])
            pols.append((wire_name(c[NFCTH_POLICY_NAME]), _be(c[NFCTH_POLICY_EXPECT_MAX]),
                         _be(c[NFCTH_POLICY_EXPECT_TIMEOUT])))
        rows.append((wire_name(a[NFCTH_NAME]), _be(t[NFCTH_TUPLE_L3PROTONUM]),
                     t[NFCTH_TUPLE_L4PROTONUM][0], _be(a[NFCTH_QUEUE_NUM]), _be(a[NFCTH_STATUS]),
                     _be(a[NFCTH_PRIV_DATA_LEN]), tuple(pols)))
    return sorted(rows, key=repr)


def row(name, pols=(("pol", 1, 30),), queue=0, l3=AF_INET, l4=IPPROTO_TCP, status=0, priv=0):
    return (name, l3, l4, queue, status, priv, tuple(pols))


def rows(*rs):
    return sorted(rs, key=repr)


def padded(s, n):
    """s (bytes) followed by NULs up to n bytes in all."""
    return s.ljust(n, b"\0")


@case("padded class names")
def _(ck, env):
    def update(label, classes):
        return s.new(nla_str(NFCTH_NAME, "pad") + tuple_attr() + policy_attr(classes),
                     label=label)

    with env.sock() as s:
        ck.err("create pad inet/tcp, priv 0, class pol max 1 timeout 10", 0,
               s.new(helper_attrs("pad", policies=[("pol", 1, 10)], priv=0), label="create pad"))
        want = rows(row("pad", [("pol", 1, 10)]))
        ck.eq("table after create", want, table(s, "dump created"))
        # The report: the same NEW without NLM_F_EXCL, the class name sent
        # from a NUL-padded buffer.
        ck.err("update class pol\\0\\0 (5 bytes) max 3 timeout 50", 0,
               update("class pol+2 NULs", [(b"pol\0\0", 3, 50)]))
        want = rows(row("pad", [("pol", 3, 50)]))
        ck.eq("dump shows pol/3/50", want, table(s, "dump pol+2 NULs"))
        h, _ = get_one(s, "pad")
        ck.eq("GET shows pol/3/50", [("pol", 3, 50)], h and h["policies"])
        for n, mx, to in ((8, 4, 60), (16, 5, 70)):
            ck.err("update class pol padded to %d bytes" % n, 0,
                   update("class pol padded to %d" % n, [(padded(b"pol", n), mx, to)]))
            want = rows(row("pad", [("pol", mx, to)]))
            ck.eq("table shows pol/%d/%d" % (mx, to), want, table(s, "dump padded to %d" % n))
        # The name matches, so the next check decides.
        ck.err("update class pol\\0\\0\\0 with max 256", errno.EINVAL,
               update("class pol+3 NULs max 256", [(b"pol\0\0\0", 256, 1)]))
        ck.eq("table unchanged", want, table(s, "dump after max 256"))
        for desc, name, e in (
                ("pol + 14 NULs (17 bytes)", padded(b"pol", 17), errno.ERANGE),
                ("pol\\0x\\0 (NUL inside)", b"pol\0x\0", errno.EBUSY),
                ("pol\\0x (NUL inside, none trailing)", b"pol\0x", errno.EBUSY),
                ("pol\\0pol\\0", b"pol\0pol\0", errno.EBUSY),
                ("\\0 (the empty name)", b"\0", errno.EBUSY),
                ("16 NULs", b"\0" * 16, errno.EBUSY),
                ("po\\0\\0 (a prefix, padded)", b"po\0\0", errno.EBUSY),
                ("polx\\0\\0\\0", b"polx\0\0\0", errno.EBUSY),
                ("pol without NUL", b"pol", errno.EINVAL),
                ("pol + 13 x (16 bytes, no NUL)", b"pol" + b"x" * 13, errno.EINVAL),
                ("empty payload", b"", errno.EINVAL)):
            ck.err("update class " + desc, e, update("class " + desc, [(name, 9, 99)]))
            ck.eq("table unchanged after class " + desc, want, table(s, "dump after " + desc))
        ck.err("update class pol (one NUL)", 0, update("class pol", [("pol", 1, 10)]))
        ck.eq("table shows pol/1/10", rows(row("pad", [("pol", 1, 10)])),
              table(s, "dump pol again"))
    cleanup(ck, env)


@case("padded class names on create")
def _(ck, env):
    def update(name, label, classes):
        return s.new(nla_str(NFCTH_NAME, name) + tuple_attr() + policy_attr(classes),
                     label=label)

    with env.sock() as s:
        ck.err("create two: classes a + 7 NULs and b + 15 NULs", 0,
               s.new(helper_attrs("two", policies=[(padded(b"a", 8), 1, 10),
                                                   (padded(b"b", 16), 2, 20)]),
                     label="create two padded"))
        two = row("two", [("a", 1, 10), ("b", 2, 20)])
        ck.eq("the classes are a and b", rows(two), table(s, "dump two"))
        # Create folds any parse error of a class into -EINVAL.
        ck.err("create with class c + 16 NULs (17 bytes)", errno.EINVAL,
               s.new(helper_attrs("bad", policies=[(padded(b"c", 17), 1, 1)]),
                     label="create class 17 bytes"))
        ck.err("create with class c without NUL", errno.EINVAL,
               s.new(helper_attrs("bad", policies=[(b"c", 1, 1)]), label="create class no NUL"))
        ck.eq("nothing created", rows(two), table(s, "dump after bad creates"))
        ck.err("create emb: class c\\0zz\\0", 0,
               s.new(helper_attrs("emb", policies=[(b"c\0zz\0", 3, 30)]), label="create emb"))
        emb = row("emb", [("c", 3, 30)])
        ck.eq("the class is c", rows(two, emb), table(s, "dump emb"))
        # nla_strcmp() compares with strlen() of the stored name, "c".
        ck.err("update emb with c\\0zz\\0, the bytes it was created with", errno.EBUSY,
               update("emb", "update emb c NUL zz", [(b"c\0zz\0", 4, 40)]))
        ck.eq("emb unchanged", rows(two, emb), table(s, "dump emb unchanged"))
        ck.err("update emb with c\\0\\0\\0", 0,
               update("emb", "update emb c+3 NULs", [(b"c\0\0\0", 5, 50)]))
        emb = row("emb", [("c", 5, 50)])
        ck.eq("emb is c/5/50", rows(two, emb), table(s, "dump emb updated"))
        # No half update: class a would match, class b does not.
        for desc, cls, e in (
                ("a\\0\\0 and b\\0x\\0", [(b"a\0\0", 7, 70), (b"b\0x\0", 8, 80)], errno.EBUSY),
                ("a + 15 NULs and b + 16 NULs (17 bytes)",
                 [(padded(b"a", 16), 7, 70), (padded(b"b", 17), 8, 80)], errno.ERANGE),
                ("a\\0 and b without NUL", [(b"a\0", 7, 70), (b"b", 8, 80)], errno.EINVAL),
                ("a\\0\\0 and \\0\\0", [(b"a\0\0", 7, 70), (b"\0\0", 8, 80)], errno.EBUSY)):
            ck.err("update two: " + desc, e, update("two", "update two " + desc, cls))
            ck.eq("neither class changed after " + desc, rows(two, emb),
                  table(s, "dump after two " + desc))
        ck.err("update two: a + 3 NULs and b + 15 NULs", 0,
               update("two", "update two padded", [(padded(b"a", 4), 7, 70),
                                                   (padded(b"b", 16), 8, 80)]))
        two = row("two", [("a", 7, 70), ("b", 8, 80)])
        ck.eq("both classes updated", rows(two, emb), table(s, "dump two updated"))
        ck.err("create empty: one class with the empty name", 0,
               s.new(helper_attrs("empty", policies=[(b"\0", 1, 1)]), label="create empty class"))
        empty = row("empty", [("", 1, 1)])
        ck.err("update empty: 16 NULs match the empty class name", 0,
               update("empty", "update empty 16 NULs", [(b"\0" * 16, 2, 2)]))
        empty = row("empty", [("", 2, 2)])
        ck.eq("empty's class is /2/2", rows(two, emb, empty), table(s, "dump empty updated"))
        ck.err("update empty: empty payload", errno.EINVAL,
               update("empty", "update empty no payload", [(b"", 3, 3)]))
        ck.err("update empty: p\\0", errno.EBUSY,
               update("empty", "update empty p", [("p", 3, 3)]))
        ck.eq("empty unchanged", rows(two, emb, empty), table(s, "dump empty unchanged"))
    cleanup(ck, env)


@case("padded helper names")
def _(ck, env):
    def new_queue(label, name, q, flags=NEW_FLAGS):
        return s.new(nla_str(NFCTH_NAME, name) + tuple_attr() + nla_be32(NFCTH_QUEUE_NUM, q),
                     flags=flags, label=label)

    with env.sock() as s:
        ck.err("create pad inet/tcp, queue 1", 0, s.new(helper_attrs("pad", queue=1)))
        for q, name, desc in ((2, b"pad\0\0", "pad\\0\\0 (5 bytes)"),
                              (3, padded(b"pad", 8), "pad padded to 8 bytes"),
                              (4, padded(b"pad", 16), "pad padded to 16 bytes"),
                              (5, b"pad\0zz\0", "pad\\0zz\\0 (strncmp stops at the NUL)"),
                              (6, b"pad\0z", "pad\\0z (NUL inside, none trailing)")):
            ck.err("NEW %s, queue %d" % (desc, q), 0, new_queue("NEW " + desc, name, q))
            want = rows(row("pad", queue=q))
            ck.eq("%s updated pad: queue %d, no new helper" % (desc, q), want,
                  table(s, "dump after NEW " + desc))
        for desc, name, e in (("pad + 14 NULs (17 bytes)", padded(b"pad", 17), errno.ERANGE),
                              ("pad without NUL", b"pad", errno.EINVAL),
                              ("pad + 13 x (16 bytes, no NUL)", b"pad" + b"x" * 13, errno.EINVAL),
                              ("an empty payload", b"", errno.EINVAL)):
            ck.err("NEW " + desc, e, new_queue("NEW " + desc, name, 9))
            ck.eq("table unchanged after NEW " + desc, want, table(s, "dump after NEW " + desc))
        ck.err("NLM_F_EXCL with pad padded to 8 bytes", errno.EEXIST,
               new_queue("NEW excl pad padded", padded(b"pad", 8), 9, NEW_FLAGS | NLM_F_EXCL))
        ck.eq("table unchanged after EEXIST", want, table(s, "dump after EEXIST"))
        ck.err("create pad\\0\\0 inet/udp with NLM_F_EXCL", 0,
               s.new(helper_attrs(b"pad\0\0", l4=IPPROTO_UDP), flags=NEW_FLAGS | NLM_F_EXCL,
                     label="create pad udp padded"))
        ck.err("create new + 5 NULs, queue 7", 0,
               s.new(helper_attrs(padded(b"new", 8), queue=7), label="create new padded"))
        ck.err("create emb\\0zz\\0", 0, s.new(helper_attrs(b"emb\0zz\0"), label="create emb"))
        want = rows(row("pad", queue=6), row("pad", l4=IPPROTO_UDP), row("new", queue=7),
                    row("emb"))
        ck.eq("helpers named pad (tcp, udp), new and emb", want, table(s, "dump created"))
        ck.err("NLM_F_EXCL on emb", errno.EEXIST,
               new_queue("NEW excl emb", "emb", 9, NEW_FLAGS | NLM_F_EXCL))
        ck.err("NEW new (plain), queue 8", 0, new_queue("NEW new plain", "new", 8))
        want = rows(row("pad", queue=6), row("pad", l4=IPPROTO_UDP), row("new", queue=8),
                    row("emb"))
        ck.eq("new updated", want, table(s, "dump new updated"))
        ck.err("create 16 NULs (the empty name)", 0,
               s.new(helper_attrs(b"\0" * 16), label="create 16 NULs"))
        ck.eq("an empty-named helper", rows(*want, row("")), table(s, "dump with empty"))
        ck.err("DEL \\0\\0\\0", 0, s.delete(nla_str(NFCTH_NAME, b"\0\0\0"), label="del 3 NULs"))
        ck.eq("the empty-named helper is gone", want, table(s, "dump empty gone"))
    cleanup(ck, env)


@case("padded lookup names")
def _(ck, env):
    def get(label, name, **kw):
        res = s.get(filter_attrs(name, **kw), label="GET " + label)
        hs = res.helpers
        return res.errno, hs and (hs[0]["name"], hs[0]["l4"], hs[0]["queue_num"])

    with env.sock() as s:
        for name, l4, q in (("pad", IPPROTO_TCP, 1), ("pad", IPPROTO_UDP, 2), ("pads", IPPROTO_TCP, 3)):
            ck.err("create %s/%d queue %d" % (name, l4, q), 0,
                   s.new(helper_attrs(name, l4=l4, queue=q)))
        want = rows(row("pad", queue=1), row("pad", l4=IPPROTO_UDP, queue=2), row("pads", queue=3))
        ck.eq("table", want, table(s, "dump created"))
        for desc, name, kw, exp in (
                ("pad\\0\\0", b"pad\0\0", {}, (0, ("pad", 6, 1))),
                ("pad padded to 16 bytes", padded(b"pad", 16), {}, (0, ("pad", 6, 1))),
                ("pad\\0zz\\0", b"pad\0zz\0", {}, (0, ("pad", 6, 1))),
                ("pad\\0zz\\0 with tuple inet/udp", b"pad\0zz\0",
                 {"l3": AF_INET, "l4": IPPROTO_UDP}, (0, ("pad", 17, 2))),
                ("pads + 4 NULs", padded(b"pads", 8), {}, (0, ("pads", 6, 3))),
                ("pads\\0x (NUL inside, none trailing)", b"pads\0x", {}, (0, ("pads", 6, 3))),
                ("pa\\0\\0\\0", b"pa\0\0\0", {}, (errno.ENOENT, [])),
                ("\\0\\0\\0", b"\0\0\0", {}, (errno.ENOENT, [])),
                ("pad + 14 NULs (17 bytes)", padded(b"pad", 17), {}, (errno.ERANGE, [])),
                ("pad without NUL", b"pad", {}, (errno.EINVAL, [])),
                ("pads + 12 x (16 bytes, no NUL)", b"pads" + b"x" * 12, {}, (errno.EINVAL, []))):
            ck.eq("GET %s -> %s, %r" % (desc, errname(exp[0]), exp[1]), exp, get(desc, name, **kw))
        ck.eq("GETs changed nothing", want, table(s, "dump after GETs"))
        for desc, name, e in (("pad + 14 NULs (17 bytes)", padded(b"pad", 17), errno.ERANGE),
                              ("pads without NUL", b"pads", errno.EINVAL),
                              ("pa\\0\\0", b"pa\0\0", errno.ENOENT),
                              ("pad\\0zz\\0 with tuple inet/sctp", b"pad\0zz\0", errno.ENOENT)):
            sel = (filter_attrs(name, AF_INET, IPPROTO_SCTP) if "sctp" in desc
                   else nla_str(NFCTH_NAME, name))
            ck.err("DEL " + desc, e, s.delete(sel, label="DEL " + desc))
            ck.eq("table unchanged after DEL " + desc, want, table(s, "dump after DEL " + desc))
        ck.err("DEL pad\\0zz\\0 with tuple inet/udp", 0,
               s.delete(filter_attrs(b"pad\0zz\0", AF_INET, IPPROTO_UDP), label="DEL pad udp"))
        want = rows(row("pad", queue=1), row("pads", queue=3))
        ck.eq("pad/udp gone", want, table(s, "dump pad udp gone"))
        ck.err("DEL pad padded to 16 bytes", 0,
               s.delete(nla_str(NFCTH_NAME, padded(b"pad", 16)), label="DEL pad 16"))
        want = rows(row("pads", queue=3))
        ck.eq("pad gone, pads left", want, table(s, "dump pad gone"))
        ck.err("DEL pads\\0x", 0, s.delete(nla_str(NFCTH_NAME, b"pads\0x"), label="DEL pads NUL x"))
        ck.eq("table empty", [], table(s, "dump empty"))
    cleanup(ck, env)


# ---------------------------------------------------------------- drivers


def run_cases(live, ext_ack, only=()):
    """Run the scenarios; returns [(name, assertion results, transcript,
    seconds)]."""
    out = []
    for index, (name, fn) in enumerate(CASES):
        if only and name not in only:
            continue
        ck = Checker(name, live)
        env = Env(index, ext_ack)
        start = time.monotonic()
        try:
            fn(ck, env)
        except Exception:
            import traceback
            ck.ok("ran to completion", False, traceback.format_exc())
            try:
                cleanup(ck, env)
            except Exception:
                ck.ok("cleanup after the failure", False, traceback.format_exc())
        took = time.monotonic() - start
        if live:
            print("# %s: %.1f s" % (name, took))
        out.append((name, ck.results, env.log, took))
    return out


def hexdump(b):
    return ["%04x: %-47s |%s|" % (i, " ".join("%02x" % c for c in b[i:i + 16]),
                                  "".join(chr(c) if 32 <= c < 127 else "." for c in b[i:i + 16]))
            for i in range(0, len(b), 16)] or ["(empty)"]


def normalise(raw):
    """Zero nlmsg_pid: it is our port id, which differs between runs."""
    return raw[:12] + b"\0\0\0\0" + raw[16:]


def replies_key(replies, is_dump):
    rs = [normalise(r) for r in replies]
    if is_dump:
        # Dump order follows the helper hash and is no contract; the
        # entries must match as a multiset, and NLMSG_DONE come last.
        body = sorted(r for r in rs if struct.unpack_from("=H", r, 4)[0] != NLMSG_DONE)
        tail = [r for r in rs if struct.unpack_from("=H", r, 4)[0] == NLMSG_DONE]
        return body + tail, rs[-1:] == tail[-1:]
    return rs, True


def diff_transcripts(c_log, r_log):
    """Lines describing the first differences (empty if none)."""
    out = []
    if len(c_log) != len(r_log):
        out.append("transcripts have %d (C) and %d (Rust) requests" % (len(c_log), len(r_log)))
    for i, (c, r) in enumerate(zip(c_log, r_log)):
        label, c_req, c_rep, c_dump = c
        _, r_req, r_rep, r_dump = r
        if c_req != r_req:
            out.append("request #%d (%s) differs: the scripts diverged earlier" % (i, label))
            import difflib
            out += difflib.unified_diff(hexdump(c_req), hexdump(r_req), "C request",
                                        "Rust request", lineterm="")
            break
        ck, c_order = replies_key(c_rep, c_dump)
        rk, r_order = replies_key(r_rep, r_dump)
        if ck == rk and c_order == r_order:
            continue
        out.append("request #%d %s: replies differ (%d from C, %d from Rust)"
                   % (i, label or "", len(c_rep), len(r_rep)))
        out += ["request:"] + hexdump(c_req)[:8]
        import difflib
        shown = 0
        for j in range(max(len(ck), len(rk))):
            a = ck[j] if j < len(ck) else b""
            b = rk[j] if j < len(rk) else b""
            if a != b:
                out += difflib.unified_diff(hexdump(a), hexdump(b),
                                            "upstream C reply %d" % j, "Rust reply %d" % j,
                                            lineterm="")
                shown += 1
                if shown >= 3:
                    break
        if len(out) > 200:
            out.append("...")
            break
    return out


def main(argv):
    global DUMP_COUNT
    for arg in argv[1:]:
        if arg.startswith("--dump-count="):
            DUMP_COUNT = int(arg.split("=", 1)[1])
            argv.remove(arg)
    mode = argv[1] if len(argv) > 1 else "check"
    if mode == "check":
        run_cases(live=True, ext_ack=False, only=argv[2:])
        return 0
    if mode == "record":
        results = run_cases(live=False, ext_ack=True)
        with open(argv[2], "wb") as f:
            marshal.dump(results, f)
        for name, rs, log, took in results:
            print("# %s: %d requests, %d/%d assertions hold, %.1f s"
                  % (name, len(log), sum(ok for ok, _, _ in rs), len(rs), took))
        return 0
    if mode == "compare":
        with open(argv[2], "rb") as f:
            c_res = {n: (rs, log) for n, rs, log, _ in marshal.load(f)}
        with open(argv[3], "rb") as f:
            r_res = {n: (rs, log) for n, rs, log, _ in marshal.load(f)}
        for name, _ in CASES:
            c_rs, c_log = c_res.get(name, ([], []))
            r_rs, r_log = r_res.get(name, ([], []))
            bad = [(d, diag) for ok, d, diag in c_rs if not ok]
            ok = bool(c_rs) and not bad
            print("%s upstream C meets the expectations of '%s' (%d assertions)"
                  % ("ok" if ok else "not ok", name, len(c_rs)))
            for d, diag in bad[:10]:
                print("# failed: %s\n# %s" % (d, str(diag).replace("\n", "\n# ")))
            diffs = diff_transcripts(c_log, r_log)
            same = bool(c_log) and not diffs
            print("%s Rust replies == upstream C replies for '%s' (%d requests)"
                  % ("ok" if same else "not ok", name, len(c_log)))
            for line in diffs:
                print("# " + line)
            r_bad = [d for ok_, d, _ in r_rs if not ok_]
            for d in r_bad[:10]:
                print("# Rust run failed assertion: " + d)
        return 0
    print("usage: %s [--dump-count=N] check [CASE...] | record FILE | compare C_FILE RUST_FILE"
          % argv[0],
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
