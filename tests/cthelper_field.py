#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The agent of tests/62-field-cases.sh (standard library only).

Python starts slowly in the TCG guest, so the test starts this once, in the
router namespace, and sends it one command a line; each command gets one
reply line ("ok", "err ERRNO_NAME" or the values asked for).  It says
"ready" first.

  new NAME inet|inet6 tcp|udp [queue=N] [status=0|1] [priv=N]
      [pol=NAME:MAX:TIMEOUT,NAME:MAX:TIMEOUT...]
      NFNL_MSG_CTHELPER_NEW (NLM_F_CREATE, no EXCL): creates the helper or
      updates it (queue, status, every class's max_expected and timeout).
  table
      the helper table (a cthelper dump), sorted, one word per helper:
      NAME/L3/L4:q=QUEUE:s=STATUS:priv=LEN:pol=NAME/MAX/TIMEOUT+...;
      "empty" when it is.
  bind Q... / unbind Q...
      binds or releases NFQUEUE queues in this namespace; a thread accepts
      every queued packet at once and counts it by queue and IP version.
  qstats
      the packets queued since the previous qstats, "Q:vV=N ..." sorted,
      or "none".
  open ID ADDR PORT / ping ID / close ID
      a TCP connection to ADDR:PORT (an FTP server: it reads the banner),
      one "NOOP" round trip on it, closing it; open replies "ok sport=N".
  ct SPORT
      the conntrack whose original source port is SPORT, from a ctnetlink
      dump of every family: "v4|v6 helper=NAME" ("helper=-" without a
      helper), or "none" when none is committed.
  expect SPORT DPORT CLASS
      IPCTNL_MSG_EXP_NEW on that conntrack as master (no CTA_EXPECT_TIMEOUT:
      the policy of the class gives it): an expectation of a connection
      from its source address to its destination address, port DPORT.
  expects SPORT
      the expectations whose master has source port SPORT, sorted by class
      and port: "CLASS:DPORT:TIMEOUT ...", or "none".
  quit
"""

import errno
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cthelper_nl import (  # noqa: E402
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, NLA_F_NESTED, NlSocket,
    attr_map, helper_attrs, nest, nla, nla_be32)

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_CTNETLINK_EXP, NFNL_SUBSYS_QUEUE = 1, 2, 3
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_EXP_NEW, IPCTNL_MSG_EXP_GET = 0, 1
CTA_TUPLE_ORIG, CTA_HELP = 1, 5
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_HELP_NAME = 1
CTA_EXPECT_MASTER, CTA_EXPECT_TUPLE, CTA_EXPECT_MASK = 1, 2, 3
CTA_EXPECT_TIMEOUT, CTA_EXPECT_CLASS = 4, 9
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NF_ACCEPT = 1

L3 = {"inet": AF_INET, "inet6": AF_INET6}
L4 = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


def messages(buf):
    off = 0
    while off + 16 <= len(buf):
        mlen, mtype, _, seq, _ = struct.unpack_from("=IHHII", buf, off)
        if mlen < 16 or off + mlen > len(buf):
            break
        yield mtype, seq, bytes(buf[off + 16:off + mlen])
        off += (mlen + 3) & ~3


def errword(e):
    return "ok" if e == 0 else "err " + errno.errorcode.get(e, str(e))


class Nf:
    """A NETLINK_NETFILTER socket for ctnetlink requests."""

    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.s.bind((0, 0))
        self.s.settimeout(30)
        self.seq = 1

    def request(self, subsys, msg, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK,
                family=socket.AF_UNSPEC):
        self.seq += 1
        body = struct.pack("!BBH", family, 0, 0) + attrs
        self.s.send(struct.pack("=IHHII", 16 + len(body), (subsys << 8) | msg,
                                flags, self.seq, 0) + body)
        out = []
        while True:
            for mtype, seq, body in messages(self.s.recv(1 << 17)):
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    return -struct.unpack_from("=i", body)[0], out
                if mtype == NLMSG_DONE:
                    return 0, out
                out.append(body)


def tuple_info(raw):
    """(version, src, dst, sport, dport) of a CTA_TUPLE_* payload."""
    t = attr_map(raw)
    ip = attr_map(t.get(CTA_TUPLE_IP, b""))
    proto = attr_map(t.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC in ip:
        v, src, dst = 4, ip[CTA_IP_V4_SRC], ip.get(CTA_IP_V4_DST)
    else:
        v, src, dst = 6, ip.get(CTA_IP_V6_SRC), ip.get(CTA_IP_V6_DST)
    port = lambda k: struct.unpack("!H", proto[k])[0] if k in proto else None  # noqa: E731
    return v, src, dst, port(CTA_PROTO_SRC_PORT), port(CTA_PROTO_DST_PORT)


def ip_tuple(atype, v, src, dst, sport, dport):
    a_src, a_dst = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if v == 4 else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
    return nest(atype,
                nest(CTA_TUPLE_IP, nla(a_src, src), nla(a_dst, dst)),
                nest(CTA_TUPLE_PROTO, nla(CTA_PROTO_NUM, bytes([IPPROTO_TCP])),
                     nla(CTA_PROTO_SRC_PORT, struct.pack("!H", sport)),
                     nla(CTA_PROTO_DST_PORT, struct.pack("!H", dport))))


class Agent:
    def __init__(self):
        self.nf = Nf()
        self.q = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.q.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.q.bind((0, 0))
        self.qseq = 1
        self.lock = threading.Lock()
        self.counts = {}
        self.acks = {}
        self.acked = threading.Condition(self.lock)
        self.flows = {}
        threading.Thread(target=self.listen, daemon=True).start()

    # ------------------------------------------------------------ queues
    def listen(self):
        while True:
            for mtype, seq, body in messages(self.q.recv(1 << 17)):
                if mtype == NLMSG_ERROR:
                    with self.lock:
                        self.acks[seq] = -struct.unpack_from("=i", body)[0]
                        self.acked.notify_all()
                    continue
                if mtype != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                queue = struct.unpack_from("!H", body, 2)[0]
                a = attr_map(body[4:])
                if NFQA_PACKET_HDR not in a:
                    continue
                pkt_id = struct.unpack_from("!I", a[NFQA_PACKET_HDR])[0]
                payload = a.get(NFQA_PAYLOAD, b"\0")
                key = "%d:v%d" % (queue, payload[0] >> 4)
                with self.lock:
                    self.counts[key] = self.counts.get(key, 0) + 1
                v = nla(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pkt_id))
                body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + v
                self.q.send(struct.pack("=IHHII", 16 + len(body),
                                        (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT,
                                        NLM_F_REQUEST, 0, 0) + body)

    def qconfig(self, queue, attrs):
        with self.lock:
            self.qseq += 1
            seq = self.qseq
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + attrs
        self.q.send(struct.pack("=IHHII", 16 + len(body),
                                (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG,
                                NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)
        with self.lock:
            if not self.acked.wait_for(lambda: seq in self.acks, 30):
                return errno.ETIMEDOUT
            return self.acks.pop(seq)

    def cmd_bind(self, *queues):
        for q in queues:
            e = self.qconfig(int(q), nla(NFQA_CFG_CMD, struct.pack(
                "!BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
            if not e:
                e = self.qconfig(int(q), nla(NFQA_CFG_PARAMS, struct.pack(
                    "!IB", 64, NFQNL_COPY_PACKET)))
            if e:
                return errword(e)
        return "ok"

    def cmd_unbind(self, *queues):
        for q in queues:
            e = self.qconfig(int(q), nla(NFQA_CFG_CMD, struct.pack(
                "!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)))
            if e:
                return errword(e)
        return "ok"

    def cmd_qstats(self):
        with self.lock:
            c, self.counts = self.counts, {}
        return " ".join("%s=%d" % kv for kv in sorted(c.items())) or "none"

    # ------------------------------------------------------------ cthelper
    def cmd_new(self, name, l3, l4, *opts):
        kw = {"l3": L3[l3], "l4": L4[l4], "policies": None, "priv": None}
        for o in opts:
            k, _, v = o.partition("=")
            if k == "pol":
                kw["policies"] = tuple((n, int(m), int(t)) for n, m, t in
                                       (p.split(":") for p in v.split(",")))
            else:
                kw[{"queue": "queue", "status": "status", "priv": "priv"}[k]] = int(v)
        with NlSocket(timeout=30) as s:
            return errword(s.new(helper_attrs(name, **kw)).errno)

    def cmd_table(self):
        with NlSocket(timeout=30) as s:
            hs = s.helpers()
        words = []
        for h in hs:
            pol = "+".join("%s/%d/%d" % p for p in h.get("policies", []))
            words.append("%s/%d/%d:q=%d:s=%d:priv=%d:pol=%s" % (
                h.get("name"), h.get("l3", -1), h.get("l4", -1), h.get("queue_num", -1),
                h.get("status", -1), h.get("priv_data_len", -1), pol))
        return " ".join(sorted(words)) or "empty"

    # ------------------------------------------------------------ flows
    def cmd_open(self, fid, addr, port):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect((addr, int(port)))
            f = s.makefile("rb")
            if not f.readline().startswith(b"220"):
                raise OSError("no FTP banner")
        except OSError as e:
            s.close()
            return "err %s" % type(e).__name__
        self.flows[fid] = (s, f)
        return "ok sport=%d" % s.getsockname()[1]

    def cmd_ping(self, fid):
        s, f = self.flows[fid]
        try:
            s.sendall(b"NOOP\r\n")
            line = f.readline()
        except OSError as e:
            return "err %s" % type(e).__name__
        return "ok" if line.startswith(b"200") else "err reply %r" % line[:20]

    def cmd_close(self, fid):
        s, f = self.flows.pop(fid)
        f.close()
        s.close()
        return "ok"

    # ------------------------------------------------------------ ctnetlink
    def find_ct(self, sport):
        err, bodies = self.nf.request(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, b"",
                                      NLM_F_REQUEST | NLM_F_DUMP)
        if err:
            raise OSError(err, "conntrack dump")
        for b in bodies:
            a = attr_map(b[4:])
            orig = a.get(CTA_TUPLE_ORIG, b"")
            info = tuple_info(orig)
            if info[3] == int(sport):
                helper = attr_map(a[CTA_HELP]).get(CTA_HELP_NAME, b"-") if CTA_HELP in a else b"-"
                return orig, info, helper.split(b"\0")[0].decode("latin-1")
        return None

    def cmd_ct(self, sport):
        found = self.find_ct(sport)
        if not found:
            return "none"
        return "v%d helper=%s" % (found[1][0], found[2])

    def cmd_expect(self, sport, dport, cls):
        found = self.find_ct(sport)
        if not found:
            return "err no master"
        orig, (v, src, dst, _, _), _ = found
        ones = b"\xff" * len(src)
        attrs = (nla(CTA_EXPECT_MASTER, orig, NLA_F_NESTED)
                 + ip_tuple(CTA_EXPECT_TUPLE, v, src, dst, 0, int(dport))
                 + ip_tuple(CTA_EXPECT_MASK, v, ones, ones, 0, 0xFFFF)
                 + nla_be32(CTA_EXPECT_CLASS, int(cls)))
        # ctnetlink parses the tuples by the nfgenmsg family
        err, _ = self.nf.request(NFNL_SUBSYS_CTNETLINK_EXP, IPCTNL_MSG_EXP_NEW, attrs,
                                 NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                                 family=AF_INET if v == 4 else AF_INET6)
        return errword(err)

    def cmd_expects(self, sport):
        err, bodies = self.nf.request(NFNL_SUBSYS_CTNETLINK_EXP, IPCTNL_MSG_EXP_GET, b"",
                                      NLM_F_REQUEST | NLM_F_DUMP)
        if err:
            return errword(err)
        out = []
        for b in bodies:
            a = attr_map(b[4:])
            if tuple_info(a.get(CTA_EXPECT_MASTER, b""))[3] != int(sport):
                continue
            be = lambda k: struct.unpack("!I", a[k])[0] if k in a else -1  # noqa: E731
            out.append((be(CTA_EXPECT_CLASS), tuple_info(a.get(CTA_EXPECT_TUPLE, b""))[4],
                        be(CTA_EXPECT_TIMEOUT)))
        return " ".join("%d:%d:%d" % e for e in sorted(out)) or "none"

    def run(self):
        reply("ready")
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                reply("ok")
                return
            try:
                res = getattr(self, "cmd_" + words[0])(*words[1:])
            except Exception as e:  # a malformed command or a dead flow
                res = "err %s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
            reply(res)


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    Agent().run()
