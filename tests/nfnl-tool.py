#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The raw nfnetlink the tests need and nfct cannot do (stdlib only).

Runs as a long-lived agent: one command per line on stdin, one reply line on
stdout.  Starting Python costs seconds in the TCG guest, so a test starts it
once instead of once per step.  It says "ready" first.

  set NAME L3 L4 [queue=N] [status=enabled|disabled] [excl]
      NFNL_MSG_CTHELPER_NEW without an expectation policy, so that only queue
      number and status of an existing helper change: nfct has no "enable"
      and cannot choose the queue.  nfct never sets NLM_F_EXCL either, so
      "excl" is the only way to reach the "already exists" answer.
      Replies "ok" or "err ERRNO_NAME".
  bind Q [conntrack] [helpinfo=NAME:HEX] / unbind Q
      Binds or releases NFQUEUE Q in the agent's network namespace, copying
      whole packets.  Every queued packet is counted and accepted at once.
      "conntrack" asks for each packet's conntrack (NFQA_CFG_F_CONNTRACK);
      "helpinfo" makes every verdict carry NFQA_CT { CTA_HELP { CTA_HELP_NAME
      NAME, CTA_HELP_INFO bytes } }, as conntrackd's helpers answer.
      Replies "ok" or "err ERRNO_NAME".
  stats
      "packets=N marker=yes|no" since the previous stats: how many packets
      were queued to us, and whether a TCP payload held the marker given as
      the first command-line argument.
  helpinfo
      The CTA_HELP_INFO of the last queued packet's conntrack in hex, or
      "none".
  quit
"""

import errno
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 0x2
NLA_F_NESTED = 0x8000

NFNL_SUBSYS_QUEUE = 3
NFNL_SUBSYS_CTHELPER = 9

NFNL_MSG_CTHELPER_NEW = 0
NFCTH_NAME, NFCTH_TUPLE, NFCTH_QUEUE_NUM, NFCTH_STATUS = 1, 2, 3, 6
NFCTH_TUPLE_L3PROTONUM, NFCTH_TUPLE_L4PROTONUM = 1, 2

NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 4, 5
NFQA_CFG_F_CONNTRACK = 1 << 1
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD, NFQA_CT = 1, 2, 10, 11
CTA_HELP, CTA_HELP_NAME, CTA_HELP_INFO = 5, 1, 2
NF_ACCEPT = 1

L3 = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
L4 = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
STATUS = {"disabled": 0, "enabled": 1}
QUEUE_PACKET = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET


def nla(atype, payload):
    pad = b"\0" * ((4 - len(payload) % 4) % 4)
    return struct.pack("=HH", 4 + len(payload), atype) + payload + pad


def nlmsg(mtype, flags, seq, res_id, attrs):
    # nfgenmsg: family AF_UNSPEC, version 0, res_id in network order.
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, res_id) + attrs
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def parse_attrs(buf):
    out = {}
    off = 0
    while off + 4 <= len(buf):
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = buf[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def messages(data):
    off = 0
    while off + 16 <= len(data):
        mlen, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, off)
        if mlen < 16:
            break
        yield mtype, seq, data[off + 16:off + mlen]
        off += (mlen + 3) & ~3


def tcp_payload(pkt):
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] != socket.IPPROTO_TCP:
        return b""
    ihl = (pkt[0] & 0xF) * 4
    if len(pkt) < ihl + 20:
        return b""
    return pkt[ihl + (pkt[ihl + 12] >> 4) * 4:]


class Agent:
    def __init__(self, marker):
        self.marker = marker
        self.seq = int(time.time()) & 0xFFFFFF
        self.packets = 0
        self.seen = False
        self.verdict_ct = b""
        self.last_helpinfo = None
        self.q = self.sock()
        self.q.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    @staticmethod
    def sock():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        s.bind((0, 0))
        return s

    def next_seq(self):
        self.seq += 1
        return self.seq

    def pump(self, want_seq=None, timeout=0.0):
        """Answers queued packets; returns the errno acking want_seq."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.q], [], [], left)[0]:
                if want_seq is None:
                    return None
                if left == 0.0:
                    return errno.ETIMEDOUT
                continue
            for mtype, seq, body in messages(self.q.recv(1 << 17)):
                if mtype == NLMSG_ERROR and seq == want_seq:
                    err = -struct.unpack_from("=i", body, 0)[0]
                    if not err:
                        # Drain what is already queued, then report.
                        self.pump()
                    return err
                if mtype == QUEUE_PACKET:
                    self.verdict(body)

    def verdict(self, body):
        res_id = struct.unpack_from("!H", body, 2)[0]
        attrs = parse_attrs(body[4:])
        if NFQA_PACKET_HDR not in attrs:
            return
        pkt_id = struct.unpack_from("!I", attrs[NFQA_PACKET_HDR], 0)[0]
        self.packets += 1
        if self.marker and self.marker in tcp_payload(attrs.get(NFQA_PAYLOAD, b"")):
            self.seen = True
        if NFQA_CT in attrs:
            help_ = parse_attrs(parse_attrs(attrs[NFQA_CT]).get(CTA_HELP, b""))
            self.last_helpinfo = help_.get(CTA_HELP_INFO)
        v = nla(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pkt_id))
        if self.verdict_ct:
            v += nla(NFQA_CT | NLA_F_NESTED, self.verdict_ct)
        self.q.send(nlmsg((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT,
                          NLM_F_REQUEST, self.next_seq(), res_id, v))

    def queue_config(self, queue, attrs):
        seq = self.next_seq()
        self.q.send(nlmsg((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG,
                          NLM_F_REQUEST | NLM_F_ACK, seq, queue, attrs))
        return self.pump(seq, 10.0)

    def cmd_bind(self, queue, *opts):
        self.verdict_ct = b""
        flags = 0
        for o in opts:
            key, _, val = o.partition("=")
            if key == "conntrack":
                flags |= NFQA_CFG_F_CONNTRACK
            elif key == "helpinfo":
                name, _, info = val.partition(":")
                self.verdict_ct = nla(CTA_HELP | NLA_F_NESTED,
                                      nla(CTA_HELP_NAME, name.encode() + b"\0") +
                                      nla(CTA_HELP_INFO, bytes.fromhex(info)))
            else:
                raise ValueError(o)
        err = self.queue_config(int(queue), nla(NFQA_CFG_CMD, struct.pack(
            "!BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
        if err:
            return err
        err = self.queue_config(int(queue), nla(NFQA_CFG_PARAMS, struct.pack(
            "!IB", 0xFFFF, NFQNL_COPY_PACKET)))
        if err or not flags:
            return err
        return self.queue_config(int(queue), nla(NFQA_CFG_MASK, struct.pack("!I", flags)) +
                                 nla(NFQA_CFG_FLAGS, struct.pack("!I", flags)))

    def cmd_unbind(self, queue):
        return self.queue_config(int(queue), nla(NFQA_CFG_CMD, struct.pack(
            "!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)))

    def cmd_set(self, name, l3, l4, *opts):
        attrs = nla(NFCTH_NAME, name.encode() + b"\0")
        attrs += nla(NFCTH_TUPLE | NLA_F_NESTED,
                     nla(NFCTH_TUPLE_L3PROTONUM, struct.pack("!H", L3[l3])) +
                     nla(NFCTH_TUPLE_L4PROTONUM, struct.pack("B", L4[l4])))
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        for o in opts:
            key, _, val = o.partition("=")
            if key == "queue":
                attrs += nla(NFCTH_QUEUE_NUM, struct.pack("!I", int(val)))
            elif key == "status":
                attrs += nla(NFCTH_STATUS, struct.pack("!I", STATUS[val]))
            elif key == "excl":
                flags |= NLM_F_EXCL
            else:
                raise ValueError(o)
        seq = self.next_seq()
        # A socket of its own, so that the ack never waits behind packets.
        with self.sock() as s:
            s.settimeout(10.0)
            s.send(nlmsg((NFNL_SUBSYS_CTHELPER << 8) | NFNL_MSG_CTHELPER_NEW,
                         flags, seq, 0, attrs))
            while True:
                for mtype, mseq, body in messages(s.recv(65536)):
                    if mtype == NLMSG_ERROR and mseq == seq:
                        return -struct.unpack_from("=i", body, 0)[0]

    def cmd_stats(self):
        self.pump(timeout=0.2)
        out = "packets=%d marker=%s" % (self.packets, "yes" if self.seen else "no")
        self.packets, self.seen = 0, False
        return out

    def cmd_helpinfo(self):
        self.pump(timeout=0.2)
        info, self.last_helpinfo = self.last_helpinfo, None
        return "none" if info is None else info.hex()

    def run(self):
        reply("ready")
        buf = b""
        stdin = sys.stdin.fileno()
        while True:
            r = select.select([stdin, self.q], [], [])[0]
            if self.q in r:
                self.pump()
            if stdin not in r:
                continue
            chunk = os.read(stdin, 4096)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode().split()
                if not words:
                    continue
                if words[0] == "quit":
                    reply("ok")
                    return
                try:
                    res = getattr(self, "cmd_" + words[0])(*words[1:])
                except Exception as e:  # a malformed command is the test's bug
                    res = "err %s" % e
                if isinstance(res, int):
                    res = "ok" if res == 0 else "err " + errno.errorcode.get(res, str(res))
                reply(res)


def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    Agent(sys.argv[1].encode() if len(sys.argv) > 1 else None).run()
