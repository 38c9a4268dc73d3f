#!/usr/bin/env python3
"""Host side of the network tests: each command exits 0 when the guest
answered as expected, 1 (with a one-line reason) when not.

  net-client.py echo-server [ADDR [LOG]]
                                     UDP echo on ADDR (127.0.0.1); prints the port;
                                     appends each datagram to LOG as a line
  net-client.py free-port            prints a free TCP port on 127.0.0.1
  net-client.py ping IP [N]          N ICMP echoes (raw socket), all answered
  net-client.py udp IP PORT TEXT     TEXT echoed back over UDP
  net-client.py tcp IP PORT TEXT     TEXT echoed back over one TCP connection
"""
import os
import socket
import struct
import sys
import time

TIMEOUT = 5.0


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fail(msg):
    print("net-client: " + msg, file=sys.stderr)
    sys.exit(1)


def ping(ip, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(TIMEOUT)
    ident = os.getpid() & 0xFFFF
    for seq in range(1, n + 1):
        payload = b"lkvm-ping-%d" % seq
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
        s.sendto(pkt, (ip, 0))
        deadline = time.time() + TIMEOUT
        while True:
            if time.time() > deadline:
                fail("no echo reply %d from %s" % (seq, ip))
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                fail("no echo reply %d from %s" % (seq, ip))
            icmp = data[(data[0] & 15) * 4:]
            if addr[0] != ip or icmp[0] != 0:
                continue
            rid, rseq = struct.unpack("!HH", icmp[4:8])
            if rid == ident and rseq == seq:
                if icmp[8:] != payload:
                    fail("echo reply %d carried other bytes" % seq)
                if csum(icmp) != 0:
                    fail("echo reply %d: bad ICMP checksum" % seq)
                break
    print("%d/%d echo replies from %s" % (n, n, ip))


def udp(ip, port, text):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.sendto(text.encode(), (ip, port))
    data, addr = s.recvfrom(2048)
    if data != text.encode():
        fail("UDP answer %r, not %r" % (data, text))
    print("UDP echo from %s:%d" % addr)


def tcp(ip, port, text):
    s = socket.create_connection((ip, port), timeout=TIMEOUT)
    s.sendall(text.encode())
    got = b""
    while len(got) < len(text):
        chunk = s.recv(2048)
        if not chunk:
            break
        got += chunk
    s.close()
    if got != text.encode():
        fail("TCP answer %r, not %r" % (got, text))
    print("TCP echo from %s:%d" % (ip, port))


def echo_server(addr, log):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    out = open(log, "a", buffering=1) if log else None
    print(s.getsockname()[1], flush=True)
    while True:
        data, addr = s.recvfrom(65536)
        if out:
            out.write(data.decode(errors="replace").replace("\n", " ") + "\n")
        s.sendto(data, addr)


def main():
    a = sys.argv[1:]
    try:
        if a[0] == "echo-server":
            echo_server(a[1] if len(a) > 1 else "127.0.0.1",
                        a[2] if len(a) > 2 else None)
        elif a[0] == "free-port":
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            print(s.getsockname()[1])
        elif a[0] == "ping":
            ping(a[1], int(a[2]) if len(a) > 2 else 3)
        elif a[0] == "udp":
            udp(a[1], int(a[2]), a[3])
        elif a[0] == "tcp":
            tcp(a[1], int(a[2]), a[3])
        else:
            fail("unknown command " + a[0])
    except (OSError, socket.timeout) as e:
        fail("%s: %s" % (" ".join(a), e))


main()
