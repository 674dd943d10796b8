#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The applications of tests/61-conntrackd-more-helpers.sh (standard library
only).  Starting Python is expensive in the TCG guest, so each namespace
runs one long-lived process:

  cthelper_protos.py servers --addr A --addr6 A6 --dev DEV --root DIR
                             --ready FILE
      In the server namespace, next to a real rpcbind: registers two test
      RPC programs (PROG for rpcinfo, PROG2 for our client, version 1)
      with rpcbind through portmapper version 2 PMAPPROC_SET over
      loopback, for UDP and TCP, and answers any call to them (NULL
      procedure: an accepted, successful reply), over IPv4 and IPv6;
      emulations of saned (SANE_NET_START answered with a data port), of
      an Oracle TNS listener (a CONNECT answered by a REDIRECT naming the
      data port) and of amandad (a UDP request answered by "CONNECT DATA
      d MESG m INDEX i"), each with listeners on its data ports;
      a minimal read-only TFTP server on [A6]:69 (each RRQ answered from a
      new port); and the responders of the multicast discovery protocols,
      joined to their groups on DEV: each answers a query with a unicast
      datagram to the querier's address and port, from the protocol's
      port (ssdp 1900, mdns 5353, slp 427; dhcpv6 from 547 to the
      client's port 546).  FILE is created once everything listens and
      the program is registered.

  cthelper_protos.py relay --in DEV_IN --out DEV_OUT --out-addr A
      In the router namespace: the multicast forwarding the test kernel
      cannot do (no CONFIG_IP_MROUTE / IPV6_MROUTE, no nft dup).  It joins
      the discovery groups on DEV_IN, so that the queries are delivered
      locally (conntrack confirms them and runs their helper at the input
      hook), and sends each query on to the same group on DEV_OUT, with the
      querier's own source address and port (IP_TRANSPARENT), as a
      multicast router would.  Prints "relay ready" once it listens.

  cthelper_protos.py agent
      In the client namespace: reads lines of case names and answers with
      one line per case, "case=NAME result=ok|fail port=P ...", then END.
      The cases of a line run concurrently.  Each case's first word after
      its name is its timeout:
        rpc-udp4 | rpc-tcp4 | rpc-udp6 | rpc-tcp6 SERVER
            portmapper v2 GETPORT of PROG2 over UDP / TCP to SERVER:111,
            then a NULL call to the port it returned, over the same
            transport (a connection to a new port: RELATED only through
            the rpc helper's expectation).
        ssdp4 | ssdp6 | mdns4 | mdns6 | slp4 | slp6 | dhcpv6 SRC
            a query to the protocol's multicast group from SRC (a global
            address, so that the reply can be routed), then waits for the
            unicast reply.
        sane4 | sane6 | tns4 | amanda4 SERVER
            the control exchange, then a TCP connection to the data port
            it named, which must deliver the server's data.
"""

import os
import select
import socket
import struct
import sys
import threading
import time

PROG = 0x20000161
RPC_UDP_PORT = 4101
RPC_TCP_PORT = 4102
# The Python client asks for a second program, so that its expectations
# never coincide with rpcinfo's.
PROG2 = PROG + 1
RPC2_UDP_PORT = 4111
RPC2_TCP_PORT = 4112
PMAPPROG, PMAPVERS, PMAPPROC_SET, PMAPPROC_GETPORT = 100000, 2, 1, 3
SANE_PORT, SANE_DATA_PORT = 6566, 4105
TNS_PORT, TNS_DATA_PORT = 1521, 4106
AMANDA_PORT, AMANDA_DATA_PORTS = 10080, (4107, 4108, 4109)
SANE_DATA = b"sane-image-data\n"
TNS_DATA = b"tns-data\n"
AMANDA_DATA = b"amanda-dump\n"
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75

# name: (IPv4 group, IPv6 group, destination port, reply source port)
DISCOVERY = {
    "ssdp": ("239.255.255.250", "ff05::c", 1900, 1900),
    "mdns": ("224.0.0.251", "ff02::fb", 5353, 5353),
    "slp": ("239.255.255.253", "ff02::116", 427, 427),
    "dhcpv6": (None, "ff02::1:2", 547, 547),
}
QUERY = {
    "ssdp": b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
            b"MAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n",
    # a DNS question for _nfnl._udp.local PTR, "unicast response" bit set
    "mdns": struct.pack("!6H", 0, 0, 1, 0, 0, 0)
            + b"\x05_nfnl\x04_udp\x05local\x00" + struct.pack("!HH", 12, 0x8001),
    # SLPv2 SrvRqst (function 1), no previous responders, service:nfnl
    "slp": b"\x02\x01" + b"\x00\x00\x2a" + b"\x20\x00" + b"\x00\x00\x00"
           + b"\x00\x01" + b"\x00\x02en" + b"\x00\x00" + b"\x00\x0cservice:nfnl"
           + b"\x00\x07default" + b"\x00\x00" + b"\x00\x00",
    # DHCPv6 SOLICIT (1), transaction id 0x4e464e
    "dhcpv6": b"\x01\x4e\x46\x4e" + struct.pack("!HH", 8, 2) + b"\x00\x00",
}
REPLY = {
    "ssdp": b"HTTP/1.1 200 OK\r\nST: ssdp:all\r\nUSN: uuid:nfnl-cthelper\r\n"
            b"LOCATION: http://example.invalid/\r\n\r\n",
    "mdns": struct.pack("!6H", 0, 0x8400, 1, 0, 0, 0),
    "slp": b"\x02\x02" + b"\x00\x00\x10" + b"\x00\x00\x00\x00\x00\x00\x01"
           + b"\x00\x02en" + b"\x00\x00\x00\x00",
    "dhcpv6": b"\x02\x4e\x46\x4e",  # ADVERTISE
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ RPC


def rpc_call_msg(xid, prog, vers, proc, args=b""):
    return struct.pack("!10I", xid, 0, 2, prog, vers, proc, 0, 0, 0, 0) + args


def rpc_reply_msg(xid, result=b""):
    return struct.pack("!6I", xid, 1, 0, 0, 0, 0) + result


def rpc_reply_result(msg, xid):
    """The result bytes of an accepted, successful reply to xid."""
    if len(msg) < 24:
        raise ValueError("short RPC reply (%d bytes)" % len(msg))
    rxid, mtype, stat, _flav, vlen = struct.unpack_from("!5I", msg)
    if rxid != xid or mtype != 1 or stat != 0:
        raise ValueError("not an accepted reply to xid %#x" % xid)
    off = 20 + ((vlen + 3) & ~3)
    (acc,) = struct.unpack_from("!I", msg, off)
    if acc != 0:
        raise ValueError("accept_stat %d" % acc)
    return msg[off + 4:]


def recv_record(s):
    """One RPC record over TCP (record marking: last fragment only)."""
    buf = b""
    while len(buf) < 4:
        c = s.recv(4 - len(buf))
        if not c:
            raise ConnectionError("EOF before record mark")
        buf += c
    (mark,) = struct.unpack("!I", buf)
    n = mark & 0x7FFFFFFF
    data = b""
    while len(data) < n:
        c = s.recv(n - len(data))
        if not c:
            raise ConnectionError("EOF in record")
        data += c
    return data


def rpc_exchange(family, proto, addr, port, msg, timeout, out=None):
    """Send msg, return the reply.  TCP: one segment, record mark first.
    out["ctlport"]: the local port used."""
    if proto == "tcp":
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            if out is not None:
                out["ctlport"] = s.getsockname()[1]
            s.sendall(struct.pack("!I", 0x80000000 | len(msg)) + msg)
            return recv_record(s)
        finally:
            s.close()
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(msg, (addr, port))
        if out is not None:
            out["ctlport"] = s.getsockname()[1]
        return s.recvfrom(65536)[0]
    finally:
        s.close()


def rpc_serve_udp(s):
    while True:
        msg, peer = s.recvfrom(65536)
        if len(msg) >= 8 and struct.unpack_from("!I", msg, 4)[0] == 0:
            s.sendto(rpc_reply_msg(struct.unpack_from("!I", msg)[0]), peer)


def rpc_serve_tcp_conn(c):
    try:
        c.settimeout(60)
        while True:
            msg = recv_record(c)
            r = rpc_reply_msg(struct.unpack_from("!I", msg)[0])
            c.sendall(struct.pack("!I", 0x80000000 | len(r)) + r)
    except (OSError, ConnectionError, struct.error):
        pass
    finally:
        c.close()


def rpc_serve_tcp(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=rpc_serve_tcp_conn, args=(c,), daemon=True).start()


def rpc_register():
    """PMAPPROC_SET of PROG and PROG2 v1 for UDP and TCP at rpcbind on
    loopback."""
    deadline = time.monotonic() + 120
    for prog, prot, port in ((PROG, 17, RPC_UDP_PORT), (PROG, 6, RPC_TCP_PORT),
                             (PROG2, 17, RPC2_UDP_PORT), (PROG2, 6, RPC2_TCP_PORT)):
        while True:
            args = struct.pack("!4I", prog, 1, prot, port)
            xid = 0x5E70 + prot
            try:
                res = rpc_reply_result(rpc_exchange(
                    socket.AF_INET, "udp", "127.0.0.1", 111,
                    rpc_call_msg(xid, PMAPPROG, PMAPVERS, PMAPPROC_SET, args),
                    1.0), xid)
                if struct.unpack("!I", res[:4])[0] != 1:
                    raise ValueError("PMAPPROC_SET refused")
                break
            except (OSError, ValueError) as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("rpcbind registration: %s" % e)
                time.sleep(0.3)


def rpc_case(family, ctl, server, timeout):
    """GETPORT over ctl, then a NULL call over the same transport."""
    out = {"getport": 0, "ctlport": 0}
    xid = int.from_bytes(os.urandom(4), "big") | 1
    prot = 6 if ctl == "tcp" else 17
    args = struct.pack("!4I", PROG2, 1, prot, 0)
    try:
        res = rpc_reply_result(rpc_exchange(
            family, ctl, server, 111,
            rpc_call_msg(xid, PMAPPROG, PMAPVERS, PMAPPROC_GETPORT, args),
            timeout, out), xid)
        port = struct.unpack("!I", res[:4])[0]
        out["getport"] = port
        if port == 0:
            out["error"] = "program-not-registered"
            return False, out
        xid += 2
        rpc_reply_result(rpc_exchange(family, ctl, server, port,
                                      rpc_call_msg(xid, PROG2, 1, 0), timeout), xid)
        return True, out
    except Exception as e:
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        return False, out


# ------------------------------------------------------------------ TFTP


def tftp_send(addr6, root, name, peer):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((addr6, 0))
    s.settimeout(1.0)
    try:
        try:
            with open(os.path.join(root, os.path.basename(name)), "rb") as f:
                data = f.read()
        except OSError:
            s.sendto(struct.pack("!HH", 5, 1) + b"not found\0", peer)
            return
        block = 1
        while True:
            chunk = data[(block - 1) * 512:block * 512]
            pkt = struct.pack("!HH", 3, block & 0xFFFF) + chunk
            for _ in range(5):
                s.sendto(pkt, peer)
                try:
                    acked = False
                    while not acked:
                        r, src = s.recvfrom(1024)
                        if src[:2] == peer[:2] and len(r) >= 4:
                            op, num = struct.unpack_from("!HH", r)
                            if op == 5:
                                return
                            acked = op == 4 and num == block & 0xFFFF
                    break
                except socket.timeout:
                    continue
            else:
                return
            if len(chunk) < 512:
                return
            block += 1
    finally:
        s.close()


def tftp_serve(s, addr6, root):
    while True:
        pkt, peer = s.recvfrom(2048)
        if len(pkt) >= 4 and struct.unpack_from("!H", pkt)[0] == 1:
            name = pkt[2:].split(b"\0")[0].decode("latin-1")
            threading.Thread(target=tftp_send, daemon=True,
                             args=(addr6, root, name, peer)).start()


# ------------------------------------------------------------------ TCP emulations


def serve_accept(s, handler):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def send_and_close(data):
    def handler(c):
        try:
            c.settimeout(30)
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            c.recv(16)
        except OSError:
            pass
        finally:
            c.close()
    return handler


def recv_exact(c, n):
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            raise ConnectionError("EOF after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def sane_control(c):
    """saned's part of SANE_NET_START: a request of two words (RPC code 7,
    handle), answered by status 0, a zero half-word and the data port."""
    try:
        c.settimeout(30)
        code, _handle = struct.unpack("!II", recv_exact(c, 8))
        if code == 7:
            c.sendall(struct.pack("!IHHI", 0, 0, SANE_DATA_PORT, 0x1234))
        c.recv(16)
    except (OSError, ConnectionError):
        pass
    finally:
        c.close()


def tns_redirect_msg(addr, port):
    data = b"(DESCRIPTION=(ADDRESS=(PROTOCOL=tcp)(HOST=%s)(PORT=%d)))" % (
        addr.encode(), port)
    return struct.pack("!HHBBHH", 10 + len(data), 0, 5, 0, 0, len(data)) + data


def tns_control(addr):
    """A listener's answer to a TNS CONNECT: a REDIRECT to the data port."""
    def handler(c):
        try:
            c.settimeout(30)
            hdr = recv_exact(c, 8)
            (n,) = struct.unpack_from("!H", hdr)
            recv_exact(c, max(0, n - 8))
            if hdr[4] == 1:
                c.sendall(tns_redirect_msg(addr, TNS_DATA_PORT))
            c.recv(16)
        except (OSError, ConnectionError):
            pass
        finally:
            c.close()
    return handler


def amanda_serve(s):
    """amandad's part: any request is answered with the ports to connect
    to, as "CONNECT DATA d MESG m INDEX i" on the reply's first line."""
    while True:
        msg, peer = s.recvfrom(4096)
        if msg.startswith(b"Amanda "):
            s.sendto(b"Amanda 2.6 REP HANDLE 000-00000000 SEQ 1\n"
                     b"CONNECT DATA %d MESG %d INDEX %d\n"
                     b"OPTIONS features=nfnl;\n" % AMANDA_DATA_PORTS, peer)


def tcp_client(family, server, port, send, timeout):
    c = socket.socket(family, socket.SOCK_STREAM)
    c.settimeout(timeout)
    c.connect((server, port))
    if send:
        c.sendall(send)
    return c


def read_all(c, limit=4096):
    data = b""
    while len(data) < limit:
        chunk = c.recv(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def sane_case(family, server, timeout):
    out = {"dataport": 0}
    try:
        c = tcp_client(family, server, SANE_PORT, struct.pack("!II", 7, 0), timeout)
        try:
            status, zero, port = struct.unpack("!IHH", recv_exact(c, 8))
            out["dataport"] = port
            d = tcp_client(family, server, port, None, timeout)
            got = read_all(d)
            d.close()
        finally:
            c.close()
        return got == SANE_DATA and status == 0 and zero == 0, out
    except Exception as e:
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        return False, out


def tns_case(family, server, timeout):
    out = {"dataport": 0}
    body = b"(DESCRIPTION=(CONNECT_DATA=(SERVICE_NAME=nfnl))" \
           b"(ADDRESS=(PROTOCOL=TCP)(HOST=%s)(PORT=1521)))" % server.encode()
    connect = struct.pack("!HHBBH", 8 + len(body), 0, 1, 0, 0) + body
    try:
        c = tcp_client(family, server, TNS_PORT, connect, timeout)
        try:
            hdr = recv_exact(c, 8)
            (n,) = struct.unpack_from("!H", hdr)
            rest = recv_exact(c, n - 8)
            if hdr[4] != 5:
                raise ValueError("TNS packet type %d, not REDIRECT" % hdr[4])
            text = rest[2:].decode("latin-1")
            host = text.split("(HOST=")[1].split(")")[0]
            port = int(text.split("(PORT=")[1].split(")")[0])
            out["dataport"] = port
            d = tcp_client(family, host, port, None, timeout)
            got = read_all(d)
            d.close()
        finally:
            c.close()
        return got == TNS_DATA, out
    except Exception as e:
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        return False, out


def amanda_case(family, server, timeout):
    """The backup server's side: a request to amandad over UDP, then a TCP
    connection to the DATA port of its CONNECT reply.  port= is the
    request's UDP source port."""
    out = {"port": 0, "dataport": 0}
    u = socket.socket(family, socket.SOCK_DGRAM)
    try:
        u.settimeout(timeout)
        u.connect((server, AMANDA_PORT))
        out["port"] = u.getsockname()[1]
        u.send(b"Amanda 2.6 REQ HANDLE 000-00000000 SEQ 1\nSERVICE noop\n")
        rep = u.recv(4096).decode("latin-1")
        port = int(rep.split("CONNECT DATA ")[1].split()[0])
        out["dataport"] = port
        d = tcp_client(family, server, port, None, timeout)
        got = read_all(d)
        d.close()
        return got == AMANDA_DATA, out
    except Exception as e:
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        return False, out
    finally:
        u.close()


# ------------------------------------------------------------------ discovery


def join(s, family, group, ifname):
    idx = socket.if_nametoindex(ifname)
    if family == socket.AF_INET:
        mreq = struct.pack("=4s4si", socket.inet_aton(group),
                           b"\0\0\0\0", idx)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    else:
        mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("=I", idx)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


def group_sockets(ifname):
    """[(name, family, socket)] bound to each protocol's port and joined
    to its groups on ifname."""
    socks = []
    for name, (g4, g6, port, _src) in DISCOVERY.items():
        for family, group in ((socket.AF_INET, g4), (socket.AF_INET6, g6)):
            if group is None:
                continue
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("0.0.0.0" if family == socket.AF_INET else "::", port))
            join(s, family, group, ifname)
            socks.append((name, family, s))
    return socks


def responder_loop(socks):
    """Answer each query with a unicast reply from the protocol's port."""
    by_fd = {s.fileno(): (name, family, s) for name, family, s in socks}
    while True:
        r, _, _ = select.select(list(by_fd), [], [])
        for fd in r:
            name, family, s = by_fd[fd]
            msg, peer = s.recvfrom(4096)
            if not msg.startswith(QUERY[name][:4]):
                continue
            # The group socket is bound to the protocol's port: reply
            # from it (mdns, slp and dhcpv6 expectations name that port).
            s.sendto(REPLY[name], peer[:2] if family == socket.AF_INET else peer)
            log("responded %s to %s" % (name, peer[:2]))


def relay(args):
    socks = group_sockets(args.in_dev)
    out_idx = socket.if_nametoindex(args.out)
    by_fd = {s.fileno(): (name, family, s) for name, family, s in socks}
    print("relay ready", flush=True)
    while True:
        r, _, _ = select.select(list(by_fd), [], [])
        for fd in r:
            name, family, s = by_fd[fd]
            msg, peer = s.recvfrom(4096)
            g4, g6, port, _src = DISCOVERY[name]
            o = socket.socket(family, socket.SOCK_DGRAM)
            try:
                o.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET:
                    o.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
                    o.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                 socket.inet_aton(args.out_addr))
                    o.bind(peer[:2])
                    o.sendto(msg, (g4, port))
                else:
                    o.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                    o.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, out_idx)
                    o.bind(peer[:2])
                    o.sendto(msg, (g6, port, 0, out_idx))
                log("relayed %s from %s" % (name, peer[:2]))
            except Exception as e:  # keep relaying the other queries
                log("relay %s from %s: %s" % (name, peer[:2], e))
            finally:
                o.close()


def discovery_case(name, family, src, ifname, timeout):
    g4, g6, port, rsrc = DISCOVERY[name]
    out = {"port": 0}
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        idx = socket.if_nametoindex(ifname)
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                         socket.inet_aton(src))
            s.bind((src, 0))
            dst = (g4, port)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
            s.bind((src, 546 if name == "dhcpv6" else 0))
            dst = (g6, port, 0, idx)
        out["port"] = s.getsockname()[1]
        s.settimeout(timeout)
        s.sendto(QUERY[name], dst)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            msg, peer = s.recvfrom(4096)
            if msg == REPLY[name]:
                out["from"] = "%s.%d" % peer[:2]
                return peer[1] == rsrc or name == "ssdp", out
    except Exception as e:
        out["error"] = "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))
        return False, out
    finally:
        s.close()


# ------------------------------------------------------------------ main


def servers(argv):
    import argparse

    p = argparse.ArgumentParser(prog="servers")
    p.add_argument("--addr", required=True)
    p.add_argument("--addr6", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--ready", required=True)
    a = p.parse_args(argv)
    threads = []
    for family, addr in ((socket.AF_INET, a.addr), (socket.AF_INET6, a.addr6)):
        for uport, tport in ((RPC_UDP_PORT, RPC_TCP_PORT),
                             (RPC2_UDP_PORT, RPC2_TCP_PORT)):
            u = socket.socket(family, socket.SOCK_DGRAM)
            u.bind((addr, uport))
            t = socket.socket(family, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((addr, tport))
            t.listen(16)
            threads.append((rpc_serve_udp, u))
            threads.append((rpc_serve_tcp, t))
    def listen(family, addr, port):
        t = socket.socket(family, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, port))
        t.listen(16)
        return t

    accepts = []
    for family, addr in ((socket.AF_INET, a.addr), (socket.AF_INET6, a.addr6)):
        accepts.append((listen(family, addr, SANE_PORT), sane_control))
        accepts.append((listen(family, addr, SANE_DATA_PORT), send_and_close(SANE_DATA)))
        accepts.append((listen(family, addr, TNS_PORT), tns_control(addr)))
        accepts.append((listen(family, addr, TNS_DATA_PORT), send_and_close(TNS_DATA)))
        for port in AMANDA_DATA_PORTS:
            accepts.append((listen(family, addr, port), send_and_close(AMANDA_DATA)))
    am = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    am.bind((a.addr, AMANDA_PORT))
    threads.append((amanda_serve, am))
    for t, handler in accepts:
        threading.Thread(target=serve_accept, args=(t, handler), daemon=True).start()
    tf = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tf.bind((a.addr6, 69))
    socks = group_sockets(a.dev)
    for fn, s in threads:
        threading.Thread(target=fn, args=(s,), daemon=True).start()
    threading.Thread(target=tftp_serve, args=(tf, a.addr6, a.root),
                     daemon=True).start()
    threading.Thread(target=responder_loop, args=(socks,), daemon=True).start()
    rpc_register()
    with open(a.ready, "w") as f:
        f.write("ready\n")
    log("servers ready")
    while True:
        time.sleep(3600)


def run_case(words, results, i):
    name, tmo = words[0], float(words[1])
    ok, out = False, {}
    start = time.monotonic()
    try:
        family = socket.AF_INET6 if name.endswith("6") else socket.AF_INET
        if name.startswith("rpc-"):
            ok, out = rpc_case(family, name[4:7], words[2], tmo)
        elif name.startswith("sane"):
            ok, out = sane_case(family, words[2], tmo)
        elif name.startswith("tns"):
            ok, out = tns_case(family, words[2], tmo)
        elif name.startswith("amanda"):
            ok, out = amanda_case(family, words[2], tmo)
        else:
            base = name if name == "dhcpv6" else name[:-1]
            ok, out = discovery_case(base, family, words[2], words[3], tmo)
    except Exception as e:
        out = {"error": "%s:%s" % (type(e).__name__, str(e).replace(" ", "_"))}
    out["secs"] = "%.1f" % (time.monotonic() - start)
    words_out = ["case=%s" % name, "result=%s" % ("ok" if ok else "fail")]
    words_out += ["%s=%s" % kv for kv in out.items()]
    results[i] = " ".join(words_out)


def agent(_argv):
    for line in sys.stdin:
        cases = [c.split() for c in line.split(";") if c.strip()]
        results = [None] * len(cases)
        threads = [threading.Thread(target=run_case, args=(c, results, i))
                   for i, c in enumerate(cases)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            print(r, flush=True)
        print("END", flush=True)
    return 0


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "relay":
        import argparse

        p = argparse.ArgumentParser(prog="relay")
        p.add_argument("--in", dest="in_dev", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--out-addr", required=True)
        return relay(p.parse_args(argv))
    return {"servers": servers, "agent": agent}[cmd](argv)


if __name__ == "__main__":
    sys.exit(main())
