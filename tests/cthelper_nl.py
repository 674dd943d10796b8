# SPDX-License-Identifier: GPL-2.0
"""Raw nfnetlink client for the cthelper subsystem (NFNL_SUBSYS_CTHELPER).

Standard library only: the guest runs the host's Python without any extra
packages, and the tests need byte-level control that libraries such as
pyroute2 or libnetfilter_cthelper would hide (malformed attributes, missing
NULs, chosen flags and sequence numbers, the exact reply bytes).

Messages are built from plain bytes, so a test can put anything on the wire:
    nla(type, payload)            one attribute, padded to 4 bytes
    nest(type, *attrs)            a nested attribute (NLA_F_NESTED optional)
    helper_attrs(name, ...)       the attributes of a typical NEW request
A NlSocket sends one request and collects every reply up to its ack, or up
to NLMSG_DONE for dumps; parse_helper() turns a NEW reply into a dict.

Python starts slowly in the TCG guest (seconds per heavy module), so this
file imports only light modules, and ctypes only where it is needed.
"""

import errno
import marshal
import os
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NETLINK_EXT_ACK = 11
SOL_NETLINK = 270

# struct nlmsghdr flags
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff

NFNL_SUBSYS_CTHELPER = 9
NFNL_MSG_CTHELPER_NEW = 0
NFNL_MSG_CTHELPER_GET = 1
NFNL_MSG_CTHELPER_DEL = 2

NFCTH_NAME = 1
NFCTH_TUPLE = 2
NFCTH_QUEUE_NUM = 3
NFCTH_POLICY = 4
NFCTH_PRIV_DATA_LEN = 5
NFCTH_STATUS = 6

NFCTH_TUPLE_L3PROTONUM = 1
NFCTH_TUPLE_L4PROTONUM = 2

NFCTH_POLICY_SET_NUM = 1
NFCTH_POLICY_SET = 2  # SET1; SET2..SET4 follow

NFCTH_POLICY_NAME = 1
NFCTH_POLICY_EXPECT_MAX = 2
NFCTH_POLICY_EXPECT_TIMEOUT = 3

NFCT_HELPER_STATUS_DISABLED = 0
NFCT_HELPER_STATUS_ENABLED = 1

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6
IPPROTO_UDP = 17

NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big endian)


def msg_type(msg):
    return (NFNL_SUBSYS_CTHELPER << 8) | msg


def align4(n):
    return (n + 3) & ~3


# ---------------------------------------------------------------- building

def nla(atype, payload, flags=0):
    """One attribute: header, payload, zero padding to a 4-byte boundary."""
    hdr = struct.pack("=HH", 4 + len(payload), atype | flags)
    return hdr + payload + b"\0" * (align4(len(payload)) - len(payload))


def nla_raw_len(atype, payload, nla_len):
    """An attribute whose header claims nla_len, whatever the payload."""
    body = struct.pack("=HH", nla_len, atype) + payload
    return body + b"\0" * (align4(len(body)) - len(body))


def nla_u8(atype, v):
    return nla(atype, struct.pack("B", v))


def nla_be16(atype, v):
    return nla(atype, struct.pack(">H", v))


def nla_be32(atype, v):
    return nla(atype, struct.pack(">I", v))


def nla_str(atype, s):
    """A str goes out NUL-terminated, as nla_put_string() writes it; bytes
    go out exactly as given, for names without or with extra NULs."""
    if isinstance(s, str):
        return nla(atype, s.encode() + b"\0")
    return nla(atype, s)


def _nla_u32_or_raw(atype, v):
    return nla(atype, v) if isinstance(v, bytes) else nla_be32(atype, v)


def nest(atype, *attrs, flag=True):
    """Nested attributes; flag=False leaves NLA_F_NESTED out, which the
    deprecated parsers used by nfnetlink_cthelper accept as well."""
    return nla(atype, b"".join(attrs), NLA_F_NESTED if flag else 0)


def tuple_attr(l3=AF_INET, l4=IPPROTO_TCP, flag=True):
    parts = []
    if l3 is not None:
        parts.append(nla_be16(NFCTH_TUPLE_L3PROTONUM, l3))
    if l4 is not None:
        parts.append(nla_u8(NFCTH_TUPLE_L4PROTONUM, l4))
    return nest(NFCTH_TUPLE, *parts, flag=flag)


def policy_class(index, name, max_expected, timeout, flag=True):
    """NFCTH_POLICY_SET + index: one expectation class.  A field set to
    None is left out; bytes are sent as the raw payload."""
    parts = []
    if name is not None:
        parts.append(nla_str(NFCTH_POLICY_NAME, name))
    if max_expected is not None:
        parts.append(_nla_u32_or_raw(NFCTH_POLICY_EXPECT_MAX, max_expected))
    if timeout is not None:
        parts.append(_nla_u32_or_raw(NFCTH_POLICY_EXPECT_TIMEOUT, timeout))
    return nest(NFCTH_POLICY_SET + index, *parts, flag=flag)


def policy_attr(classes, num=None, flag=True):
    """NFCTH_POLICY with SET_NUM = num (default: len(classes)) and one nest
    per (name, max_expected, timeout) in classes."""
    if num is None:
        num = len(classes)
    # num=False leaves SET_NUM out; bytes are its raw payload.
    parts = [] if num is False else [_nla_u32_or_raw(NFCTH_POLICY_SET_NUM, num)]
    for i, c in enumerate(classes):
        parts.append(c if isinstance(c, bytes) else policy_class(i, *c, flag=flag))
    return nest(NFCTH_POLICY, *parts, flag=flag)


DEFAULT_POLICY = (("pol", 1, 30),)


def helper_attrs(name, l3=AF_INET, l4=IPPROTO_TCP, policies=DEFAULT_POLICY,
                 priv=0, queue=None, status=None):
    """The attributes of a NEW request; any argument set to None is left
    out, so that tests can drop exactly one attribute."""
    out = b""
    if name is not None:
        out += nla_str(NFCTH_NAME, name)
    if l3 is not None or l4 is not None:
        out += tuple_attr(l3, l4)
    if queue is not None:
        out += _nla_u32_or_raw(NFCTH_QUEUE_NUM, queue)
    if policies is not None:
        out += policy_attr(policies)
    if priv is not None:
        out += _nla_u32_or_raw(NFCTH_PRIV_DATA_LEN, priv)
    if status is not None:
        out += _nla_u32_or_raw(NFCTH_STATUS, status)
    return out


def filter_attrs(name=None, l3=None, l4=None):
    """GET/DEL selectors: a name, a tuple, both or neither."""
    out = b""
    if name is not None:
        out += nla_str(NFCTH_NAME, name)
    if l3 is not None or l4 is not None:
        out += tuple_attr(l3, l4)
    return out


def build_msg(mtype, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK, seq=0,
              family=AF_UNSPEC, version=0, res_id=0, pid=0):
    body = NFGENMSG.pack(family, version, socket.htons(res_id)) + attrs
    return NLMSG_HDR.pack(16 + len(body), mtype, flags, seq, pid) + body


# ---------------------------------------------------------------- parsing

def parse_attrs(buf):
    """[(type, flags, payload)] in wire order; stops at a malformed header
    as the kernel does."""
    out = []
    off = 0
    while off + 4 <= len(buf):
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4 or off + alen > len(buf):
            break
        out.append((atype & NLA_TYPE_MASK, atype & ~NLA_TYPE_MASK & 0xffff,
                    bytes(buf[off + 4:off + alen])))
        off += align4(alen)
    return out


def attr_map(buf):
    return {t: p for t, _, p in parse_attrs(buf)}


def cstr(b):
    return b.split(b"\0", 1)[0].decode("latin-1")


class Msg:
    """One netlink message as received."""

    def __init__(self, buf, off=0):
        (self.len, self.type, self.flags, self.seq,
         self.pid) = NLMSG_HDR.unpack_from(buf, off)
        self.raw = bytes(buf[off:off + self.len])
        self.payload = self.raw[16:]

    @property
    def error(self):
        """-errno of an NLMSG_ERROR (0 for an ack)."""
        return struct.unpack_from("=i", self.payload)[0]

    def __repr__(self):
        return "Msg(type=%#x flags=%#x seq=%d len=%d)" % (
            self.type, self.flags, self.seq, self.len)


def parse_helper(msg):
    """A NFNL_MSG_CTHELPER_NEW reply as a dict; the nfgenmsg header is
    returned too, so that tests can check family/version/res_id."""
    payload = msg.payload if isinstance(msg, Msg) else msg
    family, version, res_id = NFGENMSG.unpack_from(payload)
    a = attr_map(payload[4:])
    h = {"nfgen": (family, version, socket.ntohs(res_id))}
    if NFCTH_NAME in a:
        h["name"] = cstr(a[NFCTH_NAME])
    if NFCTH_QUEUE_NUM in a:
        h["queue_num"] = struct.unpack(">I", a[NFCTH_QUEUE_NUM])[0]
    if NFCTH_TUPLE in a:
        t = attr_map(a[NFCTH_TUPLE])
        h["l3"] = struct.unpack(">H", t[NFCTH_TUPLE_L3PROTONUM])[0]
        h["l4"] = t[NFCTH_TUPLE_L4PROTONUM][0]
    if NFCTH_POLICY in a:
        p = attr_map(a[NFCTH_POLICY])
        num = struct.unpack(">I", p[NFCTH_POLICY_SET_NUM])[0]
        h["policy_set_num"] = num
        pols = []
        for i in range(num):
            c = attr_map(p.get(NFCTH_POLICY_SET + i, b""))
            pols.append((cstr(c.get(NFCTH_POLICY_NAME, b"")),
                         struct.unpack(">I", c[NFCTH_POLICY_EXPECT_MAX])[0],
                         struct.unpack(">I", c[NFCTH_POLICY_EXPECT_TIMEOUT])[0]))
        h["policies"] = pols
    if NFCTH_PRIV_DATA_LEN in a:
        h["priv_data_len"] = struct.unpack(">I", a[NFCTH_PRIV_DATA_LEN])[0]
    if NFCTH_STATUS in a:
        h["status"] = struct.unpack(">I", a[NFCTH_STATUS])[0]
    return h


# ---------------------------------------------------------------- talking

class Result:
    """The outcome of one request.

    errno: 0 for a positive ack, the positive errno of an NLMSG_ERROR, or
           None when no ack came (a dump that ended with NLMSG_DONE);
    msgs:  the replies before the ack / NLMSG_DONE (helpers for GET);
    done:  the NLMSG_DONE message of a dump, else None;
    raw:   every reply message in arrival order, as bytes;
    datagrams: how many recv() calls it took (dump parts);
    entry: the (label, request, raw, is_dump) record of the exchange.
    """

    def __init__(self):
        self.errno = None
        self.msgs = []
        self.done = None
        self.raw = []
        self.datagrams = 0
        self.entry = None

    @property
    def helpers(self):
        return [parse_helper(m) for m in self.msgs
                if m.type == msg_type(NFNL_MSG_CTHELPER_NEW)]

    def __repr__(self):
        return "Result(errno=%r, %d msgs, done=%r)" % (
            self.errno, len(self.msgs), self.done is not None)


def errname(e):
    if e is None:
        return "no ack"
    if e == 0:
        return "0"
    return errno.errorcode.get(e, str(e))


class NlSocket:
    """A NETLINK_NETFILTER socket that sends one request at a time.

    Sequence numbers count up from seq_base, so that two runs of the same
    script send byte-identical requests.  When log is a list, every request
    is appended to it as (label, request bytes, [reply bytes], is_dump).
    rcv_size is the recv() buffer; netlink sizes the parts of a dump by
    the largest buffer the reader has offered so far.
    """

    def __init__(self, seq_base=1, ext_ack=False, log=None, timeout=10,
                 rcv_size=1 << 16):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                  NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if ext_ack:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout)
        self.portid = self.sock.getsockname()[0]
        self.seq = seq_base
        self.log = log
        self.rcv_size = rcv_size

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_seq(self):
        s = self.seq
        self.seq += 1
        return s

    def request(self, msg, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK,
                family=AF_UNSPEC, label=None, seq=None, record=True,
                raw=None):
        """Send one message of cthelper type msg (or the bytes raw, as
        they are) and wait for its ack, or for NLMSG_DONE if it is a dump."""
        if seq is None:
            seq = self.next_seq()
        data = raw if raw is not None else build_msg(
            msg_type(msg), attrs, flags, seq, family)
        self.sock.send(data)
        res = Result()
        is_dump = bool(flags & NLM_F_DUMP) and msg == NFNL_MSG_CTHELPER_GET
        while res.errno is None and res.done is None:
            buf = self.sock.recv(self.rcv_size)
            res.datagrams += 1
            off = 0
            while off + 16 <= len(buf):
                m = Msg(buf, off)
                if m.len < 16 or off + m.len > len(buf):
                    raise RuntimeError("bad nlmsg_len %d" % m.len)
                off += align4(m.len)
                if m.seq != seq:
                    raise RuntimeError("reply with seq %d, expected %d: %r"
                                       % (m.seq, seq, m))
                res.raw.append(m.raw)
                if m.type == NLMSG_ERROR:
                    res.errno = -m.error
                elif m.type == NLMSG_DONE:
                    res.done = m
                else:
                    res.msgs.append(m)
        res.entry = (label, data, res.raw, is_dump)
        if self.log is not None and record:
            self.log.append(res.entry)
        return res

    # Shorthands for the three message types.
    def new(self, attrs, flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, **kw):
        return self.request(NFNL_MSG_CTHELPER_NEW, attrs, flags, **kw)

    def get(self, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK, **kw):
        return self.request(NFNL_MSG_CTHELPER_GET, attrs, flags, **kw)

    def dump(self, flags=NLM_F_REQUEST | NLM_F_DUMP, **kw):
        return self.request(NFNL_MSG_CTHELPER_GET, b"", flags, **kw)

    def delete(self, attrs=b"", flags=NLM_F_REQUEST | NLM_F_ACK, **kw):
        return self.request(NFNL_MSG_CTHELPER_DEL, attrs, flags, **kw)

    def add(self, name, **kw):
        """Create (or update) a helper; returns the errno."""
        label = kw.pop("label", None)
        return self.new(helper_attrs(name, **kw), label=label).errno

    def helpers(self, **kw):
        """The dumped helper table as a list of dicts."""
        res = self.dump(**kw)
        if res.errno is not None:
            raise RuntimeError("dump failed: %s" % errname(res.errno))
        return res.helpers

    def flush(self, **kw):
        return self.delete(**kw).errno


# ---------------------------------------------------------------- privileges

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _in_child(prepare, fn):
    """Run fn() in a forked child after prepare(); return what fn returned
    (which must be marshal-able), or raise if the child failed.  The child
    never returns into the caller's code."""
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            prepare()
            out = (True, fn())
        except BaseException as e:  # report anything, including SystemExit
            out = (False, "%s: %s" % (type(e).__name__, e))
        try:
            with os.fdopen(wfd, "wb") as f:
                marshal.dump(out, f)
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    ok, val = marshal.loads(data)
    if not ok:
        raise RuntimeError("child failed: " + val)
    return val


def _drop_to_nobody():
    # setresuid() from 0 to non-zero ids clears the permitted and effective
    # capability sets (no SECBIT_KEEP_CAPS), so CAP_NET_ADMIN is gone.
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:") and int(line.split()[1], 16):
                raise RuntimeError("capabilities left: " + line.strip())


def run_as_nobody(fn):
    """fn() as uid/gid 65534 with no capabilities.  nfnetlink itself turns
    such a sender away (netlink_net_capable() in nfnetlink_rcv())."""
    return _in_child(_drop_to_nobody, fn)


def _enter_userns():
    import ctypes  # Python 3.11 has no os.unshare()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "unshare: " + os.strerror(e))


def run_in_userns(fn):
    """fn() in a new user and network namespace: it holds CAP_NET_ADMIN
    over its own netns, so nfnetlink lets its messages through, but not in
    the initial user namespace.  The helper table is global, so only the
    subsystem's own capable(CAP_NET_ADMIN) checks keep such a process from
    changing it (CVE-2017-17448).  fn must open its sockets itself."""
    return _in_child(_enter_userns, fn)
