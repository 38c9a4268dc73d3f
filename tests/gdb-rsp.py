#!/usr/bin/env python3
# A raw GDB remote-protocol client for tests/gdb.bats. Usage:
#   gdb-rsp.py PORT interrupt   continue the guest, send Ctrl-C, print the
#                               stop reply, read a register, detach
#   gdb-rsp.py PORT malformed   a bad checksum (expects '-'), then an
#                               oversized packet after which lkvm must
#                               close the connection; prints what it saw
#   gdb-rsp.py PORT garbage     random bytes until lkvm closes
#   gdb-rsp.py PORT packets P.. sends each packet, prints each reply
#   gdb-rsp.py PORT exit        a second client is turned away; then
#                               continue and print what comes when the
#                               guest ends
import os, socket, sys

port, what = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
buf = b""

def frame(body):
    return b"$" + body + b"#%02x" % (sum(body) & 0xff)

def read_byte():
    global buf
    if not buf:
        buf = s.recv(65536)
        if not buf:
            raise EOFError
    b, buf = buf[:1], buf[1:]
    return b

def reply():
    # Skips acks up to '$', reads the body, checks the checksum, acks.
    while read_byte() != b"$":
        pass
    body = b""
    while True:
        c = read_byte()
        if c == b"#":
            break
        body += c
    csum = read_byte() + read_byte()
    assert int(csum, 16) == sum(body) & 0xff, "bad checksum from lkvm"
    s.sendall(b"+")
    return body.decode()

def command(body):
    s.sendall(frame(body.encode()))
    return reply()

def closed():
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True

if what == "interrupt":
    print("stop", command("?"))
    s.sendall(frame(b"c"))
    ack = read_byte()
    s.sendall(b"\x03")
    print("ack", ack.decode(), "interrupted", reply())
    print("rip", command("p10"))
    print("detach", command("D"))
elif what == "malformed":
    command("?")
    s.sendall(b"$g#00")
    print("bad checksum:", read_byte().decode())
    print("after it:", command("qC"))
    s.sendall(b"$" + b"m" * 20000 + b"#00")
    print("oversized: closed" if closed() else "oversized: open")
elif what == "garbage":
    try:
        for _ in range(64):
            s.sendall(os.urandom(1024).replace(b"$", b"x"))
    except OSError:
        pass
    print("garbage: closed" if closed() else "garbage: open")
elif what == "packets":
    for p in sys.argv[3:]:
        print(p, "->", command(p))
elif what == "exit":
    command("?")
    t = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        second = t.recv(64)
    except ConnectionResetError:
        second = b""
    print("second client:", "closed" if second == b"" else second)
    s.sendall(frame(b"c"))
    print("continued", flush=True)
    s.settimeout(60)
    print("end", reply())
