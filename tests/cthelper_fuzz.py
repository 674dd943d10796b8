#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Seeded, structure-aware fuzzer for the cthelper nfnetlink subsystem.

    cthelper_fuzz.py run FILE [--seed=S] [--count=N]
        generate N messages from seed S (NEW/GET/DEL, dumps, dumps
        interleaved with updates, unknown types, truncations, several
        messages in one datagram, ...), send them to whichever module is
        loaded, starting from an empty table, check that every reply is a
        well-formed netlink message, and save the outcome of each message
        to FILE.  Prints "ok"/"not ok" lines for tests/70-fuzz.sh.
    cthelper_fuzz.py compare C_FILE RUST_FILE
        compare two recordings: errnos per message must be equal, and so
        must the helpers GET/dump returned (as multisets, port ids zeroed).
        Mismatches are printed with the request in hex.

Defaults: seed FUZZ_SEED or 1, count FUZZ_MESSAGES or 1000.

Every request is followed by an NLMSG_NOOP "sentinel" with NLM_F_ACK:
nfnetlink acks it without reaching the subsystem, and since netlink input
is processed synchronously in the sender's context, everything received
before the sentinel's ack answers the fuzzed request, whether or not it
asked for an ack.  The same seed gives the same byte sequence, so a
mismatch is reproducible with --seed and --count.

Names are often sent as clients with fixed-size buffers send them:
NUL-padded to several lengths (across the 16/17-byte limit), with a NUL
and more bytes inside, or unterminated (variant()), for helper names,
class names and GET/DEL filters.  Most NEWs are random; "NEW-plausible"
ones are well-formed but for their names and keep to a few helpers, so
that they create helpers and then update their policies, where the class
names are compared.

Standard library only; reuses the builders of cthelper_nl.py.
"""

import errno
import marshal
import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cthelper_nl import (  # noqa: E402
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, NETLINK_NETFILTER,
    NFCTH_NAME, NFCTH_POLICY, NFCTH_POLICY_EXPECT_MAX,
    NFCTH_POLICY_EXPECT_TIMEOUT, NFCTH_POLICY_NAME, NFCTH_POLICY_SET,
    NFCTH_POLICY_SET_NUM, NFCTH_PRIV_DATA_LEN, NFCTH_QUEUE_NUM, NFCTH_STATUS,
    NFCTH_TUPLE, NFCTH_TUPLE_L3PROTONUM, NFCTH_TUPLE_L4PROTONUM,
    NFGENMSG, NFNL_MSG_CTHELPER_DEL, NFNL_MSG_CTHELPER_GET,
    NFNL_MSG_CTHELPER_NEW, NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_EXCL, NLM_F_MULTI, NLM_F_REPLACE, NLM_F_REQUEST,
    NLM_F_ROOT, NLM_F_MATCH, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDR, NLMSG_NOOP,
    align4, errname, msg_type, nla, nla_raw_len, parse_attrs)

NLM_F_ECHO = 0x08
REQ = NLM_F_REQUEST | NLM_F_ACK
SENTINEL_SEQ = 0x7f000000
RCV = 1 << 16

# ---------------------------------------------------------------- generator

NAMES = ["h%d" % i for i in range(8)] + ["ftp", "sip-user", "x" * 15]
# The expectation class names; class i is most often named CLASS_NAMES[i % 3],
# so that a NEW that meets an existing helper often updates its policies.
CLASS_NAMES = [b"pol", b"p2", b"ftp"]
# plausible_new() works on a few helpers, each mostly with the same class
# count and private data length, so that its NEWs create helpers and then
# reach, as updates, the comparison of every class name.
PLAUSIBLE = [(b"h0", 1, 0), (b"h1", 2, 8), (b"h2", 3, 0), (b"h3", 4, 16), (b"x" * 15, 1, 0)]
# variant() pads to these lengths (a negative one: that many NULs); the
# payload limit is 16 bytes with one trailing NUL, 17 is one too many.
PAD_LENGTHS = (-2, -2, -3, -5, 8, 15, 16, 16, 17, 17, 20, 32)
PAD_LENGTHS_OK = (-2, -2, -3, -5, 8, 15, 16)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def pick(self, *choices):
        return self.r.choice(choices)

    def chance(self, p):
        return self.r.random() < p

    def u32(self, common):
        r = self.r.random()
        if r < 0.75:
            return struct.pack(">I", self.r.choice(common))
        if r < 0.85:
            return struct.pack(">I", self.r.getrandbits(32))
        # wrong size: 0..8 bytes
        return bytes(self.r.getrandbits(8) for _ in range(self.r.choice((0, 1, 2, 3, 5, 8))))

    def name(self):
        """A helper name: mostly one of NAMES, often as a client with a
        fixed-size buffer sends it (variant()), sometimes something odd."""
        r = self.r.random()
        if r < 0.55:
            return self.r.choice(NAMES).encode() + b"\0"
        if r < 0.8:
            return self.variant(self.r.choice(NAMES).encode())
        k = self.r.randrange(8)
        if k == 0:
            return b""
        if k == 1:
            return b"\0"
        if k == 2:
            return b"y" * 16 + b"\0"              # one too long
        if k == 3:
            return b"z" * self.r.randrange(17, 300) + b"\0"  # oversize
        if k == 4:
            return self.r.choice(NAMES).encode()   # no NUL
        if k == 5:
            return b"h1\0junk\0"                   # embedded NUL
        if k == 6:
            return b"x" * 15 + b"\0\0\0"           # padding NULs
        return bytes(self.r.getrandbits(8) for _ in range(self.r.randrange(1, 20)))

    def variant(self, base):
        """base (bytes, no NUL) as it may come from a fixed-size buffer:
        NUL-padded to several lengths, around the 16/17-byte limit of
        NLA_NUL_STRING with .len 15 too; with a NUL and more bytes inside;
        or unterminated.  Upstream matches helper names with strncmp() and
        class names with nla_strcmp(), which drops every trailing NUL."""
        k = self.r.random()
        if k < 0.7:
            n = self.r.choice(PAD_LENGTHS)
            if n < 0:
                n = len(base) - n        # that many NULs
            return base.ljust(max(n, len(base) + 1), b"\0")
        if k < 0.85:
            tail = self.r.choice((b"x", b"zz", base, b"\0", b"junk"))
            return base + b"\0" + tail + self.r.choice((b"", b"\0", b"\0\0", b"\0" * 8))
        if self.chance(0.7):
            return base                          # no NUL at all
        return base.ljust(16, b"x")              # 16 bytes, no NUL

    def padded_ok(self, base):
        """base NUL-padded to a length the policy accepts (at most 16)."""
        n = self.r.choice(PAD_LENGTHS_OK)
        if n < 0:
            n = len(base) - n
        return base.ljust(min(max(n, len(base) + 1), 16), b"\0")

    def maybe_flags(self, atype, nested):
        """Attribute type with the nesting / byte-order flags, mostly right."""
        r = self.r.random()
        if r < 0.85:
            return atype | (NLA_F_NESTED if nested else 0)
        if r < 0.93:
            return atype | (0 if nested else NLA_F_NESTED)
        return atype | NLA_F_NET_BYTEORDER

    def attr(self, atype, payload, nested=False):
        t = self.maybe_flags(atype, nested)
        if self.chance(0.03):
            # header length lies about the payload
            return nla_raw_len(t, payload, self.r.choice((0, 3, 4, len(payload) + 4 + 8, 0xffff)))
        return struct.pack("=HH", 4 + len(payload), t) + payload + b"\0" * (align4(len(payload)) - len(payload))

    def tuple_(self):
        parts = []
        if self.chance(0.93):
            l3 = self.r.choice((AF_INET, AF_INET, AF_INET6, 0, 7, self.r.getrandbits(16)))
            pl = struct.pack(">H", l3) if self.chance(0.95) else b"\2"
            parts.append(self.attr(NFCTH_TUPLE_L3PROTONUM, pl))
        if self.chance(0.93):
            l4 = self.r.choice((IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, 132, 0, self.r.getrandbits(8)))
            pl = bytes([l4]) if self.chance(0.95) else b""
            parts.append(self.attr(NFCTH_TUPLE_L4PROTONUM, pl))
        if self.chance(0.05):
            parts.append(self.attr(self.r.randrange(3, 9), b"\0\0\0\0"))
        if self.chance(0.05) and parts:
            parts.append(self.r.choice(parts))  # duplicate
        self.r.shuffle(parts) if self.chance(0.2) else None
        return self.attr(NFCTH_TUPLE, b"".join(parts), nested=True)

    def class_name(self, idx):
        r = self.r.random()
        if r < 0.15:
            return self.name()
        base = (CLASS_NAMES[idx % 3] if self.chance(0.6) else self.r.choice(CLASS_NAMES))
        if r < 0.55:
            return base + b"\0"
        return self.variant(base)

    def policy_class(self, idx):
        parts = []
        if self.chance(0.92):
            parts.append(self.attr(NFCTH_POLICY_NAME, self.class_name(idx)))
        if self.chance(0.92):
            parts.append(self.attr(NFCTH_POLICY_EXPECT_MAX, self.u32((0, 1, 2, 8, 255, 256, 1000))))
        if self.chance(0.92):
            parts.append(self.attr(NFCTH_POLICY_EXPECT_TIMEOUT, self.u32((0, 1, 30, 300, 0xffffffff))))
        if self.chance(0.04):
            parts.append(self.attr(self.r.randrange(4, 12), b"\1\2\3\4"))
        if self.chance(0.04) and parts:
            parts.append(self.r.choice(parts))
        return b"".join(parts)

    def policy(self):
        n = self.r.choice((0, 1, 1, 1, 2, 3, 4, 5))
        parts = []
        if self.chance(0.93):
            num = self.r.choice((n, n, n, 0, 1, 4, 5, 255))
            parts.append(self.attr(NFCTH_POLICY_SET_NUM, self.u32((num,))))
        for i in range(n):
            idx = i if self.chance(0.95) else self.r.randrange(0, 8)
            parts.append(self.attr(NFCTH_POLICY_SET + idx, self.policy_class(i), nested=True))
        if self.chance(0.03):
            parts.append(self.attr(self.r.randrange(7, 20), b"\0" * 4, nested=True))
        return self.attr(NFCTH_POLICY, b"".join(parts), nested=True)

    def plausible_new(self):
        """The attributes of a well-formed NEW but for its names, which are
        plain or variant()s: it mostly creates one of the PLAUSIBLE
        helpers or updates it, policies included."""
        base, n, priv = self.r.choice(PLAUSIBLE)
        if self.chance(0.05):
            n = self.r.randrange(1, 5)
        r = self.r.random()
        name = (base + b"\0" if r < 0.6 else self.padded_ok(base) if r < 0.85
                else self.variant(base))
        l3, l4 = self.r.choice(((AF_INET, IPPROTO_TCP),) * 5 + ((AF_INET6, IPPROTO_TCP),
                                                                  (AF_INET, IPPROTO_UDP)))
        a = [nla(NFCTH_NAME, name),
             nla(NFCTH_TUPLE | NLA_F_NESTED, nla(NFCTH_TUPLE_L3PROTONUM, struct.pack(">H", l3))
                 + nla(NFCTH_TUPLE_L4PROTONUM, bytes([l4])))]
        if self.chance(0.3):
            a.append(nla(NFCTH_QUEUE_NUM, struct.pack(">I", self.r.choice((0, 1, 7)))))
        if self.chance(0.92):
            cls = [nla(NFCTH_POLICY_SET_NUM, struct.pack(">I", n))]
            for i in range(n):
                r = self.r.random()
                if r < 0.35:
                    cname = CLASS_NAMES[i % 3] + b"\0"
                elif r < 0.85:
                    cname = self.padded_ok(CLASS_NAMES[i % 3])
                elif r < 0.95:
                    cname = self.variant(CLASS_NAMES[i % 3])
                else:
                    cname = self.class_name(i)
                mx = self.r.choice((0, 1, 2, 8, 255)) if self.chance(0.95) else 256
                to = self.r.choice((1, 30, 300, 0xffffffff))
                cls.append(nla((NFCTH_POLICY_SET + i) | NLA_F_NESTED,
                               nla(NFCTH_POLICY_NAME, cname)
                               + nla(NFCTH_POLICY_EXPECT_MAX, struct.pack(">I", mx))
                               + nla(NFCTH_POLICY_EXPECT_TIMEOUT, struct.pack(">I", to))))
            a.append(nla(NFCTH_POLICY | NLA_F_NESTED, b"".join(cls)))
        if self.chance(0.85):
            p = priv if self.chance(0.9) else self.r.choice((0, 8, 16, 32))
            a.append(nla(NFCTH_PRIV_DATA_LEN, struct.pack(">I", p)))
        if self.chance(0.3):
            a.append(nla(NFCTH_STATUS, struct.pack(">I", self.r.choice((0, 1)))))
        return b"".join(a)

    def new_attrs(self):
        a = []
        if self.chance(0.95):
            a.append(self.attr(NFCTH_NAME, self.name()))
        if self.chance(0.93):
            a.append(self.tuple_())
        if self.chance(0.4):
            a.append(self.attr(NFCTH_QUEUE_NUM, self.u32((0, 1, 7, 65535))))
        if self.chance(0.9):
            a.append(self.policy())
        if self.chance(0.92):
            a.append(self.attr(NFCTH_PRIV_DATA_LEN, self.u32((0, 0, 8, 16, 32, 33, 0xffffffff))))
        if self.chance(0.5):
            a.append(self.attr(NFCTH_STATUS, self.u32((0, 1, 1, 2))))
        return self.extras(a)

    def sel_attrs(self, p_name=0.6):
        a = []
        if self.chance(p_name):
            a.append(self.attr(NFCTH_NAME, self.name()))
        if self.chance(0.4):
            a.append(self.tuple_())
        return self.extras(a)

    def extras(self, a):
        if self.chance(0.06):
            a.append(self.attr(self.r.choice((0, 7, 8, 15, 100, 0x3fff)), b"\xaa" * self.r.randrange(0, 9)))
        if self.chance(0.06) and a:
            a.append(self.r.choice(a))  # duplicate attribute, later one wins
        if self.chance(0.15):
            self.r.shuffle(a)
        return b"".join(a)

    def flags(self, base):
        r = self.r.random()
        if r < 0.8:
            return base
        f = NLM_F_REQUEST if self.chance(0.95) else 0
        for bit in (NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_ROOT,
                    NLM_F_MATCH, NLM_F_ECHO, NLM_F_MULTI):
            if self.chance(0.3):
                f |= bit
        return f

    def message(self, seq):
        """(kind, datagram bytes)."""
        r = self.r.random()
        fam = AF_UNSPEC_ = 0
        if self.chance(0.1):
            fam = self.r.choice((AF_INET, AF_INET6, 255))
        ver = 0 if self.chance(0.95) else self.r.choice((1, 255))
        res = 0 if self.chance(0.95) else self.r.getrandbits(16)
        if r < 0.18:
            kind, mt = "NEW-plausible", NFNL_MSG_CTHELPER_NEW
            flags = self.r.choice((REQ | NLM_F_CREATE,) * 6 + (REQ, REQ | NLM_F_CREATE | NLM_F_EXCL))
            attrs = self.plausible_new()
        elif r < 0.42:
            kind, mt = "NEW", NFNL_MSG_CTHELPER_NEW
            flags = self.flags(self.r.choice((REQ | NLM_F_CREATE, REQ | NLM_F_CREATE,
                                              REQ, REQ | NLM_F_CREATE | NLM_F_EXCL)))
            attrs = self.new_attrs()
        elif r < 0.60:
            kind, mt = "GET", NFNL_MSG_CTHELPER_GET
            flags = self.flags(REQ)
            attrs = self.sel_attrs()
        elif r < 0.68:
            kind, mt = "DUMP", NFNL_MSG_CTHELPER_GET
            flags = self.flags(self.r.choice((NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH,
                                              REQ | NLM_F_ROOT | NLM_F_MATCH)))
            attrs = self.sel_attrs() if self.chance(0.2) else b""
        elif r < 0.82:
            kind, mt = "DEL", NFNL_MSG_CTHELPER_DEL
            flags = self.flags(REQ)
            # mostly by name: a flush every few messages would leave
            # NEW-plausible little to update
            attrs = self.sel_attrs(0.85)
        elif r < 0.86:
            kind = "UNKNOWN"
            mt = self.r.choice((3, 4, 0xff))
            flags = REQ
            attrs = self.sel_attrs()
        else:
            kind = "RAW"
            return kind, self.raw(seq)
        body = NFGENMSG.pack(fam, ver, socket.htons(res)) + attrs
        if self.chance(0.04):
            body = body[:self.r.randrange(0, len(body) + 1)]  # truncated
            kind += "-trunc"
        msg = NLMSG_HDR.pack(16 + len(body), msg_type(mt), flags, seq, 0) + body
        return kind, msg

    def raw(self, seq):
        """Broken framing, or several messages in one datagram."""
        k = self.r.randrange(5)
        mt = msg_type(self.r.choice((0, 1, 2)))
        body = NFGENMSG.pack(0, 0, 0) + self.sel_attrs()
        if k == 0:   # nlmsg_len larger than the datagram
            return NLMSG_HDR.pack(16 + len(body) + 64, mt, REQ, seq, 0) + body
        if k == 1:   # nlmsg_len below the header
            return NLMSG_HDR.pack(self.r.randrange(0, 16), mt, REQ, seq, 0) + body
        if k == 2:   # no room for nfgenmsg
            return NLMSG_HDR.pack(16 + 2, mt, REQ, seq, 0) + b"\0\0"
        if k == 3:   # two or three messages in one datagram
            out = b""
            for _ in range(self.r.randrange(2, 4)):
                t = self.r.choice((NFNL_MSG_CTHELPER_NEW, NFNL_MSG_CTHELPER_GET, NFNL_MSG_CTHELPER_DEL))
                a = self.new_attrs() if t == NFNL_MSG_CTHELPER_NEW else self.sel_attrs()
                b = NFGENMSG.pack(0, 0, 0) + a
                f = REQ | (NLM_F_CREATE if t == NFNL_MSG_CTHELPER_NEW else 0)
                out += NLMSG_HDR.pack(16 + len(b), msg_type(t), f, seq, 0) + b
            return out
        # header only, random type in the cthelper subsystem
        return NLMSG_HDR.pack(16, msg_type(self.r.randrange(0, 256)), REQ, seq, 0)


# ---------------------------------------------------------------- talking


class Malformed(Exception):
    pass


def check_msg(m_raw, seq):
    """Well-formedness of one reply; returns an event tuple."""
    mlen, mtype, mflags, mseq, _ = NLMSG_HDR.unpack_from(m_raw)
    if mseq != seq:
        raise Malformed("reply seq %d, expected %d" % (mseq, seq))
    p = m_raw[16:]
    if mtype == NLMSG_ERROR:
        if len(p) < 20:
            raise Malformed("short NLMSG_ERROR (%d bytes)" % len(p))
        err = struct.unpack_from("=i", p)[0]
        if err > 0 or err < -4095:
            raise Malformed("NLMSG_ERROR with error %d" % err)
        return ("E", -err)
    if mtype == NLMSG_DONE:
        if len(p) < 4:
            raise Malformed("short NLMSG_DONE")
        return ("D", -struct.unpack_from("=i", p)[0])
    if mtype == msg_type(NFNL_MSG_CTHELPER_NEW):
        if len(p) < 4:
            raise Malformed("helper reply without nfgenmsg")
        attrs = p[4:]
        off = 0
        while off < len(attrs):
            if off + 4 > len(attrs):
                raise Malformed("helper reply: trailing bytes")
            alen = struct.unpack_from("=H", attrs, off)[0]
            if alen < 4 or off + alen > len(attrs):
                raise Malformed("helper reply: bad nla_len %d" % alen)
            off += align4(alen)
        names = [a for a in parse_attrs(attrs) if a[0] == NFCTH_NAME]
        if len(names) != 1:
            raise Malformed("helper reply with %d names" % len(names))
        # normalised: port id zeroed
        return ("H", m_raw[:12] + b"\0\0\0\0" + m_raw[16:])
    raise Malformed("unexpected reply type %#x" % mtype)


def split_datagram(buf):
    out = []
    off = 0
    while off < len(buf):
        if off + 16 > len(buf):
            raise Malformed("trailing %d bytes in datagram" % (len(buf) - off))
        mlen = struct.unpack_from("=I", buf, off)[0]
        if mlen < 16 or off + mlen > len(buf):
            raise Malformed("bad nlmsg_len %d" % mlen)
        out.append(bytes(buf[off:off + mlen]))
        off += align4(mlen)
    return out


class Conn:
    def __init__(self, rcv=RCV):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.s.bind((0, 0))
        self.s.settimeout(10)
        self.rcv = rcv

    def close(self):
        self.s.close()

    def recv_events(self, seq, stop):
        """Receive until stop(events) is true; events are for seq, the
        sentinel's ack is ("S",)."""
        events = []
        while not stop(events):
            buf = self.s.recv(self.rcv)
            for m in split_datagram(buf):
                if struct.unpack_from("=I", m, 8)[0] == SENTINEL_SEQ:
                    t = struct.unpack_from("=H", m, 4)[0]
                    if t != NLMSG_ERROR or struct.unpack_from("=i", m, 16)[0] != 0:
                        raise Malformed("sentinel answered with %r" % m.hex())
                    events.append(("S",))
                else:
                    events.append(check_msg(m, seq))
        return events

    def sentinel(self):
        self.s.send(NLMSG_HDR.pack(16, NLMSG_NOOP, REQ, SENTINEL_SEQ, 0))

    def exchange(self, data, seq):
        """Send one fuzzed datagram, then the sentinel; the events."""
        self.s.send(data)
        self.sentinel()
        dump = expects_dump(data)

        def stop(ev):
            if ("S",) not in ev:
                return False
            # a dump that started goes on until its NLMSG_DONE (or error)
            return not dump or any(e[0] in "ED" for e in ev)
        try:
            ev = self.recv_events(seq, stop)
        except socket.timeout:
            raise Malformed("no answer (timed out)")
        return [e for e in ev if e != ("S",)]


def expects_dump(data):
    """Whether the datagram holds a GET request with a dump flag, which
    answers with NLMSG_DONE or an error, whatever its NLM_F_ACK."""
    off = 0
    while off + 16 <= len(data):
        mlen, mtype, mflags, _, _ = NLMSG_HDR.unpack_from(data, off)
        if mlen < 16 or off + mlen > len(data):
            break
        # nfnetlink drops a message too short for its nfgenmsg silently
        if (mtype == msg_type(NFNL_MSG_CTHELPER_GET) and mflags & NLM_F_REQUEST
                and mflags & (NLM_F_ROOT | NLM_F_MATCH) and mlen >= 20):
            return True
        off += align4(mlen)
    return False


def padded_class_name(data):
    """Whether a NEW in the datagram names a class with two or more
    trailing NULs, where nla_strcmp() differs from a compare that drops
    only one."""
    off = 0
    while off + 20 <= len(data):
        mlen, mtype, _, _, _ = NLMSG_HDR.unpack_from(data, off)
        if mlen < 20 or off + mlen > len(data):
            break
        if mtype == msg_type(NFNL_MSG_CTHELPER_NEW):
            for t, _, pol in parse_attrs(data[off + 20:off + mlen]):
                if t != NFCTH_POLICY:
                    continue
                for ct, _, cls in parse_attrs(pol):
                    if ct < NFCTH_POLICY_SET:
                        continue
                    for nt, _, name in parse_attrs(cls):
                        if nt == NFCTH_POLICY_NAME and name.endswith(b"\0\0"):
                            return True
        off += align4(mlen)
    return False


def summarise(events):
    """(status events in order, sorted helper replies)."""
    st = tuple(e for e in events if e[0] != "H")
    hs = sorted(e[1] for e in events if e[0] == "H")
    return st, hs


def errno_of(st):
    if not st:
        return "none"
    return ",".join(("DONE:" if e[0] == "D" else "") + errname(e[1]) for e in st)


def build_simple(mt, attrs, flags, seq):
    body = NFGENMSG.pack(0, 0, 0) + attrs
    return NLMSG_HDR.pack(16 + len(body), msg_type(mt), flags, seq, 0) + body


def run(path, seed, count):
    g = Gen(seed)
    c = Conn()
    rec = []
    bad = 0
    kinds = {}
    errs = {}
    padded = {}
    seq = 1
    i = 0
    # start empty
    c.exchange(build_simple(NFNL_MSG_CTHELPER_DEL, b"", REQ, seq), seq)
    while i < count:
        seq += 1
        op = g.r.random()
        if op < 0.03:
            # a dump with small parts, interleaved with updates on a
            # second socket; only errnos and framing are compared.
            kind = "IDUMP"
            n_upd = g.r.randrange(1, 6)
            upd = [g.message(seq + 1 + k) for k in range(n_upd)]
            d = Conn(rcv=4096)
            try:
                d.s.send(build_simple(NFNL_MSG_CTHELPER_GET, b"",
                                      NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH, seq))
                first = d.recv_events(seq, lambda ev: len(ev) > 0)
                outs = []
                for k, (uk, data) in enumerate(upd):
                    outs.append(summarise(c.exchange(data, seq + 1 + k))[0])
                rest = d.recv_events(seq, lambda ev: any(e[0] in "DE" for e in first + ev))
                ev = first + rest
                names = [e[1] for e in ev if e[0] == "H"]
                dstat = tuple(e for e in ev if e[0] != "H")
                outcome = (dstat, tuple(outs))
                reqbytes = b"".join(x[1] for x in upd)
                rec.append((i, kind, reqbytes.hex(), marshal.dumps(outcome), b""))
                for o in outs:
                    errs[errno_of(o)] = errs.get(errno_of(o), 0) + 1
                if dstat != (("D", 0),):
                    print("# interleaved dump %d ended with %r" % (i, dstat))
                    bad += 1
                _ = names
            except (Malformed, OSError) as e:
                print("# message %d (%s): %s" % (i, kind, e))
                bad += 1
                rec.append((i, kind, b"".hex(), marshal.dumps(("exc", str(e))), b""))
                c.close()
                c = Conn()
            finally:
                d.close()
            seq += n_upd
            kinds[kind] = kinds.get(kind, 0) + 1
            i += 1
            continue
        kind, data = g.message(seq)
        if i % 300 == 299:
            kind, data = "FLUSH", build_simple(NFNL_MSG_CTHELPER_DEL, b"", REQ, seq)
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            ev = c.exchange(data, seq)
            st, hs = summarise(ev)
        except (Malformed, OSError) as e:
            print("# message %d (%s) %s: %s" % (i, kind, data.hex(), e))
            bad += 1
            st, hs = ("exc", str(e)), []
            c.close()
            c = Conn()
        k = errno_of(st)
        errs[k] = errs.get(k, 0) + 1
        if padded_class_name(data):
            padded[k] = padded.get(k, 0) + 1
        rec.append((i, kind, data.hex(), marshal.dumps((st, hs)), b""))
        i += 1
    # leave the table empty
    seq += 1
    ev = c.exchange(build_simple(NFNL_MSG_CTHELPER_DEL, b"", REQ, seq), seq)
    flush = summarise(ev)[0]
    seq += 1
    ev = c.exchange(build_simple(NFNL_MSG_CTHELPER_GET, b"", NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH, seq), seq)
    left = len(summarise(ev)[1])
    c.close()
    with open(path, "wb") as f:
        marshal.dump({"seed": seed, "count": count, "rec": rec, "kinds": kinds,
                      "errs": errs, "bad": bad}, f)
    print("# seed %d, %d messages sent" % (seed, count))
    print("# by kind: " + " ".join("%s=%d" % kv for kv in sorted(kinds.items())))
    print("# outcomes: " + " ".join("%s=%d" % kv for kv in sorted(errs.items())))
    print("# NEWs with a class name ending in 2+ NULs: %d, answered %s" % (
        sum(padded.values()), " ".join("%s=%d" % kv for kv in sorted(padded.items()))))
    print(("ok " if bad == 0 else "not ok ") +
          "every reply of %d messages is well-formed (%d bad)" % (count, bad))
    print(("ok " if flush == (("E", 0),) and left == 0 else "not ok ") +
          "final flush %s leaves the table empty (%d left)" % (errno_of(flush), left))


def compare(c_path, r_path):
    with open(c_path, "rb") as f:
        cr = marshal.load(f)
    with open(r_path, "rb") as f:
        rr = marshal.load(f)
    if (cr["seed"], cr["count"]) != (rr["seed"], rr["count"]) or len(cr["rec"]) != len(rr["rec"]):
        print("not ok recordings are of the same sequence")
        return
    emis = cmis = 0
    shown = 0
    for a, b in zip(cr["rec"], rr["rec"]):
        if a[2] != b[2]:
            print("not ok request %d differs between runs (generator not deterministic)" % a[0])
            return
        oa, ob = marshal.loads(a[3]), marshal.loads(b[3])
        if a[1] == "IDUMP":
            same_err, same_content = oa == ob, True
        else:
            same_err, same_content = oa[0] == ob[0], oa[1] == ob[1]
        if same_err and same_content:
            continue
        if not same_err:
            emis += 1
        else:
            cmis += 1
        if shown < 25:
            shown += 1
            what = "errno" if not same_err else "reply content"
            if a[1] == "IDUMP":
                print("# %s mismatch at message %d (%s): C %r, ours %r" % (what, a[0], a[1], oa, ob))
            else:
                print("# %s mismatch at message %d (%s): C %s, ours %s" % (
                    what, a[0], a[1], errno_of(oa[0]), errno_of(ob[0])))
                if not same_content:
                    print("#   C helpers:    %s" % [h.hex() for h in oa[1]])
                    print("#   our helpers:  %s" % [h.hex() for h in ob[1]])
            print("#   request: %s" % a[2])
    n = len(cr["rec"])
    print(("ok " if emis == 0 else "not ok ") +
          "errnos equal for all %d messages (C vs ours; %d mismatches)" % (n, emis))
    print(("ok " if cmis == 0 else "not ok ") +
          "GET/dump replies equal (%d mismatches)" % cmis)


def main(argv):
    opts = {a.split("=", 1)[0][2:]: a.split("=", 1)[1] for a in argv if a.startswith("--") and "=" in a}
    args = [a for a in argv if not a.startswith("--")]
    seed = int(opts.get("seed", os.environ.get("FUZZ_SEED", "1")))
    count = int(opts.get("count", os.environ.get("FUZZ_MESSAGES", "1000")))
    if args[0] == "run":
        run(args[1], seed, count)
    elif args[0] == "compare":
        compare(args[1], args[2])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
