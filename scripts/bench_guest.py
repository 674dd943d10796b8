#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The guest side of `make bench` (run by scripts/bench in the bench kernel).

One Python process for the whole run: starting Python costs seconds in the
TCG guest, so the control-plane client, the connection-rate client and
server and the NFQUEUE listener run in this process or in forked children
(which enter a network namespace with setns()), and only iperf3, nft, ip
and the module commands are executed.

Rounds alternate the modules, C then Rust, each with a fresh module load:
  control plane   one request per message with NLM_F_ACK, answers checked:
                  NEW-create of N helpers, NEW-update (queue + status) of
                  each, GET by name with N present, a complete dump (timed,
                  BENCH_DUMPS times, exactly N helpers once each), DEL one
                  by one of BENCH_DELS of them (N present at the start),
                  flush of N;
  memory          slab growth over the creation of N helpers, from
                  /proc/slabinfo (active objects x object size, every cache
                  shrunk first so that per-CPU slabs do not hide objects);
                  the loaded module's core size;
  packet path     two namespaces over veth, an nft `ct helper` object for a
                  user-space helper per protocol, iperf3 TCP bulk and UDP
                  64-byte packets (-b 0): no helper rule (baseline), helper
                  disabled, enabled on a queue nobody listens on (bypass),
                  enabled with a listener that accepts everything;
  connections     TCP connect/accept/close through the helper-bound rule,
                  helper disabled, and with no rule (baseline).

Output: "R MODULE ROUND METRIC VALUE" per figure, "I ..." for information,
"# ..." for progress; scripts/bench_report.py makes the table.

Environment: BENCH_ROUNDS (5), BENCH_HELPERS (1000), BENCH_DELS (100),
BENCH_DUMPS (5), BENCH_SECONDS (3, per iperf3 / connection run),
BENCH_PARTS (cp,pkt,conn).
"""

import ctypes
import errno
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

TOP = os.environ.get("NFNL_TOP") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import cthelper_nl as nl  # noqa: E402

KO = os.environ.get("NFNL_CTHELPER_KO", os.path.join(TOP, "nfnl_cthelper.ko"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
HELPERS = int(os.environ.get("BENCH_HELPERS", "1000"))
DELS = min(int(os.environ.get("BENCH_DELS", "100")), HELPERS)
DUMPS = int(os.environ.get("BENCH_DUMPS", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
PARTS = os.environ.get("BENCH_PARTS", "cp,pkt,conn").split(",")

CLI, SRV = "bench-cli", "bench-srv"
CLI_ADDR, SRV_ADDR = "192.0.2.1", "192.0.2.2"
PORT_BASE, PORT_HELPER = 5201, 5202        # iperf3: no rule / helper rule
CONN_BASE, CONN_HELPER = 5301, 5302        # connection rate
QUEUE = 7
MODULES = {"c": "nfnetlink_cthelper", "rust": "nfnl_cthelper"}

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5


def log(*a):
    print("#", *a, flush=True)


def out(*a):
    print(*a, flush=True)


def run(*cmd, check=True, timeout=120, capture=False):
    r = subprocess.run(cmd, timeout=timeout, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d %s" % (" ".join(cmd), r.returncode,
                                               (r.stderr or "")[-500:]))
    return r


def retry(tries, fn):
    for i in range(tries):
        try:
            return fn()
        except Exception:
            if i == tries - 1:
                raise
            time.sleep(0.5)


def setns(name):
    fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns " + name)
    os.close(fd)


def fork_in(ns, fn):
    """fn() in a forked child inside network namespace ns; returns (pid,
    read end of a pipe that gets what fn returned, as text)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        res = "error"
        try:
            setns(ns)
            res = str(fn())
        except BaseException as e:  # the parent reads the reason
            res = "error %s: %s" % (type(e).__name__, e)
        finally:
            os.write(wfd, res.encode())
            os._exit(0)
    os.close(wfd)
    return pid, rfd


def collect(pid, rfd, sig=None):
    if sig is not None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    data = b""
    while True:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return data.decode()


class Stop(Exception):
    pass


def on_term(*_):
    raise Stop()


# ------------------------------------------------------------ modules

def loaded(m):
    return os.path.isdir("/sys/module/" + MODULES[m])


def load(m):
    if m == "c":
        run("modprobe", MODULES[m])
    else:
        run("insmod", KO)


def unload_all():
    for m in MODULES:
        if loaded(m):
            retry(40, lambda: run("rmmod", MODULES[m], capture=True))


def module_size(m):
    with open("/proc/modules") as f:
        for line in f:
            w = line.split()
            if w[0] == MODULES[m]:
                return int(w[1])
    return None


# ------------------------------------------------------------ control plane

ERR = struct.Struct("=IHHIIi")  # nlmsghdr + error


def wait_ack(sock, seq, buf=bytearray(1 << 16)):
    """Receives up to the ack of seq; returns (errno, replies before it)."""
    replies = 0
    while True:
        n = sock.recv_into(buf)
        off = 0
        while off + 16 <= n:
            mlen, mtype, _flags, mseq = struct.unpack_from("=IHHI", buf, off)
            if mseq != seq:
                raise RuntimeError("reply seq %d, expected %d" % (mseq, seq))
            if mtype == nl.NLMSG_ERROR:
                return -struct.unpack_from("=i", buf, off + 16)[0], replies
            replies += 1
            off += (mlen + 3) & ~3


class Ctl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.sock.settimeout(30)
        self.seq = 1

    def close(self):
        self.sock.close()

    def build(self, mtype, attrs, flags):
        self.seq += 1
        return self.seq, nl.build_msg(nl.msg_type(mtype), attrs, flags, self.seq)

    def series(self, what, msgs, want_replies=0):
        """Sends each prebuilt message and waits for its ack; returns the
        seconds it took.  Any error, or a missing reply, is fatal."""
        send, sock = self.sock.send, self.sock
        t0 = time.perf_counter()
        for seq, m in msgs:
            send(m)
            err, replies = wait_ack(sock, seq)
            if err or replies != want_replies:
                raise RuntimeError("%s: errno %d, %d replies" % (what, err, replies))
        return time.perf_counter() - t0

    def one(self, mtype, attrs, flags=nl.NLM_F_REQUEST | nl.NLM_F_ACK):
        seq, m = self.build(mtype, attrs, flags)
        self.sock.send(m)
        return wait_ack(self.sock, seq)[0]

    def dump(self):
        """One complete dump: (seconds, datagrams, messages, bytes, names)."""
        seq, m = self.build(nl.NFNL_MSG_CTHELPER_GET, b"", nl.NLM_F_REQUEST | nl.NLM_F_DUMP)
        bufs = []
        t0 = time.perf_counter()
        self.sock.send(m)
        done = False
        while not done:
            b = self.sock.recv(1 << 16)
            bufs.append(b)
            off = 0
            while off + 16 <= len(b):
                mlen, mtype = struct.unpack_from("=IH", b, off)
                if mtype in (nl.NLMSG_DONE, nl.NLMSG_ERROR):
                    done = True
                off += (mlen + 3) & ~3
        secs = time.perf_counter() - t0
        msgs = nbytes = 0
        names = []
        for b in bufs:
            nbytes += len(b)
            off = 0
            while off + 16 <= len(b):
                mm = nl.Msg(b, off)
                off += (mm.len + 3) & ~3
                if mm.seq != seq:
                    raise RuntimeError("dump reply seq %d" % mm.seq)
                if mm.type == nl.NLMSG_ERROR:
                    raise RuntimeError("dump error %d" % -mm.error)
                if mm.type == nl.msg_type(nl.NFNL_MSG_CTHELPER_NEW):
                    msgs += 1
                    names.append(nl.parse_helper(mm).get("name"))
        return secs, len(bufs), msgs, nbytes, names


class Slabs:
    """Object bytes per slab cache from /proc/slabinfo (active objects x
    object size).  Every cache is shrunk first, which flushes the per-CPU
    slabs whose free objects slabinfo counts as active; the shrink files
    stay open, so that measuring allocates nothing between two readings."""

    def __init__(self):
        base = "/sys/kernel/slab"
        self.fds = []
        for c in sorted(os.listdir(base)):
            try:
                self.fds.append(os.open(os.path.join(base, c, "shrink"), os.O_WRONLY))
            except OSError:
                pass

    def read(self):
        for fd in self.fds:
            try:
                os.pwrite(fd, b"1", 0)
            except OSError:
                pass
        res = {}
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                w = line.split()
                res[w[0]] = int(w[1]) * int(w[3])
        return res

    def close(self):
        for fd in self.fds:
            os.close(fd)


def name(i):
    return "bench%05d" % i


def control_plane(m, rnd):
    ctl = Ctl()
    req = nl.NLM_F_REQUEST | nl.NLM_F_ACK
    names = [name(i) for i in range(HELPERS)]
    create = [ctl.build(nl.NFNL_MSG_CTHELPER_NEW, nl.helper_attrs(n), req | nl.NLM_F_CREATE)
              for n in names]
    update = [ctl.build(nl.NFNL_MSG_CTHELPER_NEW,
                        nl.helper_attrs(n, policies=None, priv=None, queue=QUEUE + 1 + i % 7,
                                        status=nl.NFCT_HELPER_STATUS_ENABLED),
                        req | nl.NLM_F_CREATE)
              for i, n in enumerate(names)]
    get = [ctl.build(nl.NFNL_MSG_CTHELPER_GET, nl.filter_attrs(n), req) for n in names]
    dels = [ctl.build(nl.NFNL_MSG_CTHELPER_DEL, nl.filter_attrs(n), req) for n in names[:DELS]]
    recreate = create[:DELS]

    slabs = Slabs()
    slabs.read()
    before = slabs.read()
    t = ctl.series("NEW-create", create)
    after = slabs.read()
    slabs.close()
    out("R", m, rnd, "cp_create", HELPERS / t)
    delta = {c: after.get(c, 0) - before.get(c, 0) for c in set(before) | set(after)}
    # Both modules allocate their helpers and policies with kmalloc; the
    # other caches move with whatever else the guest does meanwhile.
    out("R", m, rnd, "mem_per_helper",
        sum(v for c, v in delta.items() if c.startswith("kmalloc-")) / HELPERS)
    out("R", m, rnd, "mem_per_helper_all", sum(delta.values()) / HELPERS)
    top = sorted(((v, c) for c, v in delta.items() if abs(v) >= HELPERS * 4), reverse=True)
    out("I", m, rnd, "slab_growth", " ".join("%s:%+d" % (c, v) for v, c in top[:6]))

    out("R", m, rnd, "cp_update", HELPERS / ctl.series("NEW-update", update))
    out("R", m, rnd, "cp_get", HELPERS / ctl.series("GET", get, want_replies=1))

    secs = []
    for _ in range(DUMPS):
        s, dgrams, msgs, nbytes, got = ctl.dump()
        if msgs != HELPERS or sorted(got) != names:
            raise RuntimeError("dump: %d messages, %d distinct names, want %d once each"
                               % (msgs, len(set(got)), HELPERS))
        secs.append(s)
    secs.sort()
    out("R", m, rnd, "dump_rate", 1 / secs[len(secs) // 2])
    out("R", m, rnd, "dump_msgs", msgs)
    out("R", m, rnd, "dump_bytes", nbytes)
    out("R", m, rnd, "dump_datagrams", dgrams)

    out("R", m, rnd, "cp_del", DELS / ctl.series("DEL", dels))
    ctl.series("NEW-create (again)", recreate)
    seq, flush = ctl.build(nl.NFNL_MSG_CTHELPER_DEL, b"", req)
    out("R", m, rnd, "cp_flush", HELPERS / ctl.series("flush", [(seq, flush)]))
    s, _, msgs, _, _ = ctl.dump()
    if msgs:
        raise RuntimeError("%d helpers left after the flush" % msgs)
    ctl.close()


# ------------------------------------------------------------ packet path

def ns(name_, *cmd, **kw):
    return run("ip", "netns", "exec", name_, *cmd, **kw)


def netns_down():
    for n in (CLI, SRV):
        pids = run("ip", "netns", "pids", n, check=False, capture=True).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", n, check=False, capture=True)


def netns_up():
    netns_down()
    run("ip", "netns", "add", CLI)
    run("ip", "netns", "add", SRV)
    run("ip", "link", "add", "veth-c", "netns", CLI, "type", "veth", "peer", "name",
        "veth-s", "netns", SRV)
    run("ip", "-n", CLI, "addr", "add", CLI_ADDR + "/24", "dev", "veth-c")
    run("ip", "-n", SRV, "addr", "add", SRV_ADDR + "/24", "dev", "veth-s")
    for n, d in ((CLI, "veth-c"), (SRV, "veth-s")):
        run("ip", "-n", n, "link", "set", "lo", "up")
        run("ip", "-n", n, "link", "set", d, "up")
    for p in (PORT_BASE, PORT_HELPER):
        ns(SRV, "iperf3", "-s", "-D", "-B", SRV_ADDR, "-p", str(p))
    # Both namespaces' neighbours resolved before the first figure.
    ns(CLI, "ping", "-c", "1", "-W", "5", SRV_ADDR, capture=True)


NFT_UP = """
table ip bench {
    ct helper bt { type "bt" protocol tcp; l3proto ip; }
    ct helper bu { type "bu" protocol udp; l3proto ip; }
    chain pre {
        type filter hook prerouting priority filter; policy accept;
        tcp dport { %d, %d } ct helper set "bt"
        udp dport %d ct helper set "bu"
    }
}
""" % (PORT_HELPER, CONN_HELPER, PORT_HELPER)


def set_helpers(ctl, status):
    for n, l4 in (("bt", nl.IPPROTO_TCP), ("bu", nl.IPPROTO_UDP)):
        err = ctl.one(nl.NFNL_MSG_CTHELPER_NEW,
                      nl.helper_attrs(n, l4=l4, queue=QUEUE, status=status),
                      nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE)
        if err:
            raise RuntimeError("NEW %s: errno %d" % (n, err))


def iperf(port, udp):
    cmd = ["iperf3", "-c", SRV_ADDR, "-p", str(port), "-t", str(SECONDS), "-J",
           "--connect-timeout", "20000"]
    if udp:
        cmd += ["-u", "-b", "0", "-l", "64"]
    r = ns(CLI, *cmd, capture=True, check=False, timeout=SECONDS + 120)
    try:
        d = json.loads(r.stdout)
        e = d["end"]
        if udp:
            s = e["sum_received"]
            return s["bytes"] / 64 / s["seconds"]
        return e["sum_received"]["bits_per_second"] / 1e6
    except (ValueError, KeyError, ZeroDivisionError):
        raise RuntimeError("iperf3 %s: %s %s" % (" ".join(cmd[5:]), r.stdout[-300:],
                                                 r.stderr[-300:]))


def listener():
    """NFQUEUE listener on QUEUE accepting everything (the test agent's
    code); returns how many packets it answered when told to stop."""
    spec = importlib.util.spec_from_file_location("nfnl_tool",
                                                  os.path.join(TOP, "tests", "nfnl-tool.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    a = tool.Agent(None)
    err = a.cmd_bind(str(QUEUE))
    if err:
        raise RuntimeError("bind queue: errno %d" % err)
    # A UDP flood overruns the socket: packets the queue could not hand
    # over are dropped by the kernel; the listener carries on.
    a.q.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    overruns = 0
    try:
        while True:
            try:
                data = a.q.recv(1 << 17)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                overruns += 1
                continue
            for mtype, _seq, body in tool.messages(data):
                if mtype == tool.QUEUE_PACKET:
                    a.verdict(body)
    except Stop:
        pass
    return "%d %.3f %d" % (a.packets, time.monotonic() - t0, overruns)


def packet_path(m, rnd, ctl):
    for proto, udp in (("tcp", False), ("udp", True)):
        out("R", m, rnd, "pkt_%s_base" % proto, iperf(PORT_BASE, udp))
    set_helpers(ctl, nl.NFCT_HELPER_STATUS_DISABLED)
    for proto, udp in (("tcp", False), ("udp", True)):
        out("R", m, rnd, "pkt_%s_disabled" % proto, iperf(PORT_HELPER, udp))
    set_helpers(ctl, nl.NFCT_HELPER_STATUS_ENABLED)
    for proto, udp in (("tcp", False), ("udp", True)):
        out("R", m, rnd, "pkt_%s_bypass" % proto, iperf(PORT_HELPER, udp))
    pid, rfd = fork_in(SRV, listener)
    time.sleep(1)  # bound before the first packet
    try:
        for proto, udp in (("tcp", False), ("udp", True)):
            out("R", m, rnd, "pkt_%s_listener" % proto, iperf(PORT_HELPER, udp))
    finally:
        res = collect(pid, rfd, signal.SIGTERM)
    if res.startswith("error"):
        raise RuntimeError("NFQUEUE listener: " + res)
    out("I", m, rnd, "listener_packets_seconds_overruns", res)
    set_helpers(ctl, nl.NFCT_HELPER_STATUS_DISABLED)


# ------------------------------------------------------------ connections

def conn_server(port):
    def serve():
        signal.signal(signal.SIGTERM, on_term)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((SRV_ADDR, port))
        s.listen(4096)
        n = 0
        try:
            while True:
                c, _ = s.accept()
                c.close()
                n += 1
        except Stop:
            pass
        return n
    return serve


def conn_client(port):
    def client():
        n = 0
        t0 = time.perf_counter()
        end = t0 + SECONDS
        while True:
            c = socket.socket()
            c.settimeout(10)
            c.connect((SRV_ADDR, port))
            c.recv(1)  # the server's FIN: a whole connection
            c.close()
            n += 1
            if time.perf_counter() >= end:
                break
        return n / (time.perf_counter() - t0)
    return client


def conn_rate(port):
    spid, srfd = fork_in(SRV, conn_server(port))
    time.sleep(0.5)
    cpid, crfd = fork_in(CLI, conn_client(port))
    rate = collect(cpid, crfd)
    collect(spid, srfd, signal.SIGTERM)
    try:
        return float(rate)
    except ValueError:
        raise RuntimeError("connection client: " + rate)


def connections(m, rnd, ctl):
    set_helpers(ctl, nl.NFCT_HELPER_STATUS_DISABLED)
    out("R", m, rnd, "conn_base", conn_rate(CONN_BASE))
    out("R", m, rnd, "conn_helper", conn_rate(CONN_HELPER))


# ------------------------------------------------------------ rounds

def flush(ctl):
    err = ctl.one(nl.NFNL_MSG_CTHELPER_DEL, b"")
    if err:
        raise RuntimeError("flush: errno %d" % err)


def net_round(m, rnd):
    ctl = Ctl()
    set_helpers(ctl, nl.NFCT_HELPER_STATUS_DISABLED)
    subprocess.run(["ip", "netns", "exec", SRV, "nft", "-f", "-"], input=NFT_UP,
                   text=True, check=True)
    try:
        if "pkt" in PARTS:
            packet_path(m, rnd, ctl)
        if "conn" in PARTS:
            connections(m, rnd, ctl)
    finally:
        ns(SRV, "nft", "delete", "table", "ip", "bench", check=False)
        ns(SRV, "conntrack", "-F", check=False, capture=True)
        ns(CLI, "conntrack", "-F", check=False, capture=True)
        # nft drops its helper references from deferred work.
        retry(40, lambda: flush(ctl))
        ctl.close()


def main():
    with open("/proc/sys/kernel/modprobe", "w") as f:
        f.write("/bin/true\n")
    out("I", "kernel", os.uname().release)
    out("I", "config", "rounds=%d helpers=%d dels=%d dumps=%d seconds=%g parts=%s"
        % (ROUNDS, HELPERS, DELS, DUMPS, SECONDS, ",".join(PARTS)))
    unload_all()
    if "pkt" in PARTS or "conn" in PARTS:
        netns_up()
    t_start = time.monotonic()
    for rnd in range(1, ROUNDS + 1):
        # C, Rust, Rust, C, C, Rust, ...: the modules still alternate, and neither always
        # runs first in a round, so a drift within the boot (slab and page-cache growth,
        # the host's load) does not favour one of them.
        for m in (("c", "rust") if rnd % 2 else ("rust", "c")):
            t0 = time.monotonic()
            load(m)
            out("R", m, rnd, "module_size", module_size(m))
            if "cp" in PARTS:
                control_plane(m, rnd)
            if "pkt" in PARTS or "conn" in PARTS:
                net_round(m, rnd)
            unload_all()
            log("round %d %s: %.0f s" % (rnd, m, time.monotonic() - t0))
    out("I", "guest_seconds", "%.0f" % (time.monotonic() - t_start))
    netns_down()
    out("I", "done")


if __name__ == "__main__":
    main()
