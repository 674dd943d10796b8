#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The applications of tests/60-conntrackd-helpers.sh (standard library only,
plus Debian's python3-pyftpdlib for the FTP server).

Starting Python is expensive in the TCG guest (seconds), so the servers run
in one process and the FTP client is an agent that serves many requests.
Neither imports ssl nor pyOpenSSL: nothing here uses TLS, and loading them
costs more than everything else.

  cthelper_apps.py servers --addr A [--addr6 A6] --root DIR --ready FILE
      An anonymous, read-only FTP server (pyftpdlib) on A:21 (and on
      [A6]:21) and a minimal TFTP (RFC 1350) read-only server on A:69, all
      serving DIR.  TFTP answers each RRQ from a new UDP port in 512-byte
      blocks, octet mode, ignoring options.  FILE is created once all
      listen.

  cthelper_apps.py ftp-client --server A --file NAME --expect LOCAL
                              --mode passive|active [--mode ...]
                              [--timeout S]
                              [--concurrent | --helpinfo-netns PATH]
      One ftplib session per mode, each downloading NAME and comparing it
      with LOCAL (over IPv6 when A is an IPv6 address: ftplib then uses
      EPSV and EPRT instead of PASV and PORT).  The sessions run one after
      the other, or side by side with --concurrent (for transfers that
      should fail: their timeouts overlap instead of adding up).  Prints
      one line per mode, in the order the sessions end:
        mode=M result=ok|fail dataport=P ctlport=C lastcmd=V [error=...]
      dataport is the port the data connection goes to (from PASV, or of
      our own PORT listener), so that the caller can find the expectation;
      lastcmd the verb of the last command sent ("none" before the first),
      which tells how far a failed session got.  With --helpinfo-netns
      (not with --concurrent: it forks), after the first mode's transfer
      and while its control connection is still open, a forked child
      enters the network namespace PATH (where conntrack sees the flow),
      dumps the conntrack table over ctnetlink and prints the control
      connection's CTA_HELP, decoded as conntrackd's ftp helper lays out its
      private data (struct ftp_info: u32 seq_aft_nl[2][2];
      int seq_aft_nl_num[2]):
        helpinfo name=ftp len=24 orig_num=N orig_seqs=a,b orig_gap=G
                 repl_num=N repl_seqs=c,d repl_gap=G hex=...
                 last_cmd_len=L resp_lens=x,y,z
      or "helpinfo none reason=..." when the entry or CTA_HELP_INFO is
      missing.  Exit status 0 when every mode transferred the file intact.

  cthelper_apps.py ftp-agent
      Reads ftp-client argument lines from stdin, one request a line, and
      answers each with ftp-client's output followed by a line "END".

  cthelper_apps.py ct-helpers
      Debugging aid: every IPv4 conntrack entry of this namespace with its
      decoded CTA_HELP.
"""

import argparse
import os
import shlex
import socket
import struct
import sys
import threading

# No TLS anywhere: make "import ssl" (ftplib) and "from OpenSSL import SSL"
# (pyftpdlib) fail fast instead of loading OpenSSL and cryptography.
sys.modules["ssl"] = None
sys.modules["OpenSSL"] = None

import ftplib  # noqa: E402  (after the import blocks above)

# ftp-client --concurrent: one write of a whole line at a time.
OUTPUT_LOCK = threading.Lock()

# ------------------------------------------------------------------ FTP


def servers(args):
    import logging
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    auth = DummyAuthorizer()
    auth.add_anonymous(args.root, perm="elr")
    handler = FTPHandler
    handler.authorizer = auth
    handler.timeout = 120
    # An active-mode data connection that the firewall drops must give up
    # well before the next case starts.
    handler.dtp_handler.timeout = 20
    handler.active_dtp.timeout = 20
    # A passive-mode data connection that the firewall drops is the
    # client's to give up on (its --timeout, at most 30 s): with pyftpdlib's
    # own 30 s the server's "421 Passive data channel timed out" can reach
    # the client just before its timeout, which then closes a socket with
    # an unread reply, i.e. with an RST, and the control connection's
    # conntrack lives 10 s (CLOSE) instead of 120 (TIME_WAIT), too short
    # for tests/60's look at it after the transfers.
    handler.passive_dtp.timeout = 60
    server = FTPServer((args.addr, 21), handler)
    if args.addr6:
        # Same I/O loop: serve_forever() below serves both.
        FTPServer((args.addr6, 21), handler)
    tftp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tftp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tftp.bind((args.addr, 69))
    threading.Thread(target=tftp_server, args=(tftp, args.root, args.addr),
                     daemon=True).start()
    with open(args.ready, "w") as f:
        f.write("ready\n")
    server.serve_forever(timeout=1.0)


class RecordingFTP(ftplib.FTP):
    """ftplib.FTP that remembers the data port, the last command's verb,
    the length of the last command line and of every reply line as they
    went over the wire."""

    dataport = 0
    last_cmd = "none"
    last_cmd_len = 0

    def __init__(self, *a, **kw):
        self.resp_lens = []
        super().__init__(*a, **kw)

    def putcmd(self, line):
        self.last_cmd = line.split(" ", 1)[0]
        self.last_cmd_len = len(line) + 2
        super().putcmd(line)

    def getline(self):
        line = super().getline()
        self.resp_lens.append(len(line) + 2)
        return line

    # The port of an active-mode data connection, also when the server
    # refuses the PORT or EPRT command (pyftpdlib connects before it
    # answers).
    def sendport(self, host, port):
        self.dataport = port
        return super().sendport(host, port)

    def sendeprt(self, host, port):
        self.dataport = port
        return super().sendeprt(host, port)

    def makepasv(self):
        host, port = super().makepasv()
        self.dataport = port
        return host, port

    def makeport(self):
        sock = super().makeport()
        self.dataport = sock.getsockname()[1]
        return sock


def ftp_once(args, mode, with_helpinfo):
    out = {"mode": mode, "result": "fail", "dataport": 0, "ctlport": 0,
           "lastcmd": "none"}
    ftp = None
    try:
        ftp = RecordingFTP(timeout=args.timeout)
        ftp.connect(args.server, 21)
        out["ctlport"] = ftp.sock.getsockname()[1]
        ftp.login()
        ftp.set_pasv(mode == "passive")
        chunks = []
        try:
            ftp.retrbinary("RETR " + args.file, chunks.append)
        finally:
            out["dataport"] = ftp.dataport
            out["lastcmd"] = ftp.last_cmd
        with open(args.expect, "rb") as f:
            want = f.read()
        got = b"".join(chunks)
        if got == want:
            out["result"] = "ok"
        else:
            out["error"] = "content-differs(%d/%d-bytes)" % (len(got), len(want))
        if with_helpinfo:
            helpinfo(args.helpinfo_netns, args.server, out["ctlport"], ftp)
        ftp.quit()
    except Exception as e:  # report, do not crash: failure is an outcome
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        if ftp is not None:
            out["lastcmd"] = ftp.last_cmd
            ftp.close()
    line = " ".join("%s=%s" % kv for kv in out.items()) + "\n"
    with OUTPUT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()
    return out["result"] == "ok"


def ftp_client(args):
    sessions = [(mode, i == 0 and args.helpinfo_netns)
                for i, mode in enumerate(args.mode)]
    if not args.concurrent:
        results = [ftp_once(args, *s) for s in sessions]
        return 0 if all(results) else 1
    results = [False] * len(sessions)

    def run(i):
        results[i] = ftp_once(args, *sessions[i])

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0 if all(results) else 1


# ------------------------------------------------------------------ ctnetlink

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET = 1, 1
CTA_TUPLE_ORIG, CTA_HELP = 1, 5
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_HELP_NAME, CTA_HELP_INFO = 1, 2
CLONE_NEWNET = 0x40000000


def attrs(buf):
    out = {}
    off = 0
    while off + 4 <= len(buf):
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4 or off + alen > len(buf):
            break
        out[atype & 0x3FFF] = bytes(buf[off + 4:off + alen])
        off += (alen + 3) & ~3
    return out


def ct_dump():
    """[(orig tuple dict, CTA_HELP dict or None)] of every IPv4 entry."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.settimeout(10)
    s.bind((0, 0))
    body = struct.pack("!BBH", socket.AF_INET, 0, 0)
    s.send(struct.pack("=IHHII", 16 + len(body),
                       (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                       NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
    entries = []
    while True:
        buf = s.recv(1 << 16)
        off = 0
        while off + 16 <= len(buf):
            mlen, mtype = struct.unpack_from("=IH", buf, off)
            if mlen < 16:
                raise RuntimeError("bad netlink message length")
            msg = buf[off + 16:off + mlen]
            off += (mlen + 3) & ~3
            if mtype == NLMSG_DONE:
                s.close()
                return entries
            if mtype == NLMSG_ERROR:
                err = struct.unpack_from("=i", msg)[0]
                raise OSError(-err, "ctnetlink dump: " + os.strerror(-err))
            a = attrs(msg[4:])
            orig = attrs(a.get(CTA_TUPLE_ORIG, b""))
            ip = attrs(orig.get(CTA_TUPLE_IP, b""))
            proto = attrs(orig.get(CTA_TUPLE_PROTO, b""))
            if CTA_IP_V4_SRC not in ip or CTA_PROTO_SRC_PORT not in proto:
                continue
            t = {"src": socket.inet_ntoa(ip[CTA_IP_V4_SRC]),
                 "dst": socket.inet_ntoa(ip[CTA_IP_V4_DST]),
                 "proto": proto[CTA_PROTO_NUM][0],
                 "sport": struct.unpack("!H", proto[CTA_PROTO_SRC_PORT])[0],
                 "dport": struct.unpack("!H", proto[CTA_PROTO_DST_PORT])[0]}
            help_ = None
            if CTA_HELP in a:
                h = attrs(a[CTA_HELP])
                help_ = {"name": h.get(CTA_HELP_NAME, b"").split(b"\0")[0]
                         .decode("latin-1"),
                         "info": h.get(CTA_HELP_INFO)}
            entries.append((t, help_))


def seq_gap(seqs):
    """The distance between the two remembered sequence numbers (mod 2^32,
    the later minus the earlier), or 0 when fewer than two are set."""
    if len(seqs) < 2:
        return 0
    d = (seqs[1] - seqs[0]) & 0xFFFFFFFF
    return d if d < 0x80000000 else (0x100000000 - d)


def describe_helpinfo(help_):
    if help_ is None:
        return "none reason=no-CTA_HELP"
    info = help_["info"]
    if info is None:
        return "none name=%s reason=no-CTA_HELP_INFO" % help_["name"]
    words = ["name=%s" % help_["name"], "len=%d" % len(info)]
    if len(info) == 24:
        seq = struct.unpack_from("=4I", info, 0)
        num = struct.unpack_from("=2i", info, 16)
        for d, tag in enumerate(("orig", "repl")):
            n = num[d]
            used = list(seq[2 * d:2 * d + min(max(n, 0), 2)])
            words.append("%s_num=%d" % (tag, n))
            words.append("%s_seqs=%s" % (tag, ",".join(map(str, used)) or "-"))
            words.append("%s_gap=%d" % (tag, seq_gap(used)))
    words.append("hex=" + info.hex())
    return " ".join(words)


def helpinfo(netns, server, ctlport, ftp):
    """Print the control connection's CTA_HELP as seen in netns."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            match = [h for t, h in ct_dump()
                     if t["proto"] == socket.IPPROTO_TCP and t["dst"] == server
                     and t["dport"] == 21 and t["sport"] == ctlport]
            if not match:
                line = "none reason=no-conntrack-entry"
            else:
                line = describe_helpinfo(match[0])
            line += " last_cmd_len=%d resp_lens=%s" % (
                ftp.last_cmd_len, ",".join(map(str, ftp.resp_lens[-3:])))
            print("helpinfo " + line, flush=True)
        except BaseException as e:
            print("helpinfo none reason=%s:%s" % (type(e).__name__, e),
                  flush=True)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def ct_helpers(args):
    """Debugging aid: every entry with its CTA_HELP, in this netns."""
    for t, h in ct_dump():
        print("%(src)s:%(sport)d > %(dst)s:%(dport)d/%(proto)d" % t,
              describe_helpinfo(h) if h else "-")
    return 0


# ------------------------------------------------------------------ TFTP

TFTP_RRQ, TFTP_DATA, TFTP_ACK, TFTP_ERROR = 1, 3, 4, 5


def tftp_send(root, name, peer, addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.settimeout(1.0)
    try:
        path = os.path.join(root, os.path.basename(name))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            s.sendto(struct.pack("!HH", TFTP_ERROR, 1) + b"not found\0", peer)
            return
        block = 1
        while True:
            chunk = data[(block - 1) * 512:block * 512]
            pkt = struct.pack("!HH", TFTP_DATA, block & 0xFFFF) + chunk
            for _ in range(4):
                s.sendto(pkt, peer)
                try:
                    while True:
                        reply, src = s.recvfrom(1024)
                        if src != peer or len(reply) < 4:
                            continue
                        op, num = struct.unpack_from("!HH", reply)
                        if op == TFTP_ACK and num == block & 0xFFFF:
                            break
                        if op == TFTP_ERROR:
                            return
                    break
                except socket.timeout:
                    continue
            else:
                print("tftp: %s:%d gave up at block %d" % (peer + (block,)),
                      file=sys.stderr, flush=True)
                return
            if len(chunk) < 512:
                return
            block += 1
    finally:
        s.close()


def tftp_server(s, root, addr):
    while True:
        pkt, peer = s.recvfrom(2048)
        if len(pkt) < 4 or struct.unpack_from("!H", pkt)[0] != TFTP_RRQ:
            continue
        name = pkt[2:].split(b"\0")[0].decode("latin-1")
        threading.Thread(target=tftp_send, daemon=True,
                         args=(root, name, peer, addr)).start()


# ------------------------------------------------------------------ main


def client_parser():
    p = argparse.ArgumentParser(prog="ftp-client")
    p.add_argument("--server", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--expect", required=True)
    p.add_argument("--mode", action="append", required=True,
                   choices=("passive", "active"))
    p.add_argument("--timeout", type=float, default=5.0)
    # --helpinfo-netns forks, which a threaded process must not.
    fork_or_threads = p.add_mutually_exclusive_group()
    fork_or_threads.add_argument("--concurrent", action="store_true")
    fork_or_threads.add_argument("--helpinfo-netns")
    return p


def ftp_agent(_args):
    parser = client_parser()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            ftp_client(parser.parse_args(shlex.split(line)))
        except BaseException as e:  # argparse exits on bad requests
            print("error=%s:%s" % (type(e).__name__, e), flush=True)
        print("END", flush=True)
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "ftp-client":
        return ftp_client(client_parser().parse_args(sys.argv[2:]))
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("servers")
    sp.add_argument("--addr", required=True)
    sp.add_argument("--addr6")
    sp.add_argument("--root", required=True)
    sp.add_argument("--ready", required=True)
    sub.add_parser("ftp-agent")
    sub.add_parser("ct-helpers")
    args = p.parse_args()
    return {"servers": servers, "ftp-agent": ftp_agent,
            "ct-helpers": ct_helpers}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
