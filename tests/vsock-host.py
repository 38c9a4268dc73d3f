#!/usr/bin/env python3
"""The host side of tests/vsock.bats: programs that talk to a guest's
virtio-vsock through lkvm's Unix socket (the Firecracker protocol).

  echo PATH PORT BYTES   CONNECT PORT, send BYTES random bytes from one
                         thread while reading them back; prints
                         "echo ok BYTES hostport N" or fails
  halfclose PATH PORT BYTES  sends BYTES, shuts its sending side down,
                         then reads the echo to the end (the guest's
                         close)
  refused PATH PORT      CONNECT PORT must be closed without an OK
  garbage PATH LINE      LINE must be answered with ERROR and a close
  listen SOCK            accepts one guest connection on SOCK, answers the
                         line it reads with "pong: LINE", prints the line
  sink SOCK              accepts one guest connection on SOCK and reads
                         nothing until the guest's lkvm closes it
"""
import os
import socket
import sys
import threading
import time

TIMEOUT = 30


def connect(path, port):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            return s, None
        line += b
    return s, line.decode()


def echo(path, port, nbytes):
    s, line = connect(path, port)
    if not line or not line.startswith("OK "):
        sys.exit("no OK after CONNECT %d: %r" % (port, line))
    data = os.urandom(nbytes)
    t = threading.Thread(target=s.sendall, args=(data,))
    t0 = time.monotonic()
    t.start()
    got = bytearray()
    while len(got) < nbytes:
        b = s.recv(65536)
        if not b:
            break
        got += b
    t.join()
    if bytes(got) != data:
        sys.exit("echo differs: %d of %d bytes back" % (len(got), nbytes))
    print("echo ok %d hostport %s in %.2f s" %
          (nbytes, line.split()[1], time.monotonic() - t0))
    s.close()


def halfclose(path, port, nbytes):
    s, line = connect(path, port)
    if not line or not line.startswith("OK "):
        sys.exit("no OK after CONNECT %d: %r" % (port, line))
    data = os.urandom(nbytes)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    if bytes(got) != data:
        sys.exit("echo after a half-close differs: %d of %d bytes back" %
                 (len(got), nbytes))
    print("halfclose ok %d" % nbytes)


def refused(path, port):
    s, line = connect(path, port)
    if line is not None:
        sys.exit("CONNECT %d answered %r, expected a close" % (port, line))
    print("refused")


def garbage(path, text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    s.sendall(text.encode() + b"\n")
    got = b""
    while True:
        b = s.recv(100)
        if not b:
            break
        got += b
    print(got.decode().strip())


def accept_one(sock):
    """Listens on sock, says so, and returns the first connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.listen(1)
    s.settimeout(TIMEOUT * 2)
    print("listening", flush=True)
    c, _ = s.accept()
    c.settimeout(TIMEOUT)
    return c


def listen(sock):
    c = accept_one(sock)
    line = b""
    while not line.endswith(b"\n"):
        b = c.recv(100)
        if not b:
            sys.exit("the guest closed before a whole line: %r" % line)
        line += b
    c.sendall(b"pong: " + line)
    print("got " + line.decode().strip(), flush=True)
    c.recv(10)   # until the guest shuts the connection down


def sink(sock):
    c = accept_one(sock)
    print("accepted", flush=True)
    # Reads nothing until the peer is gone: poll for the hang-up only.
    import select
    p = select.poll()
    p.register(c, select.POLLRDHUP if hasattr(select, "POLLRDHUP") else 0)
    p.poll(TIMEOUT * 1000)
    print("closed", flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "echo":
        echo(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "halfclose":
        halfclose(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "refused":
        refused(sys.argv[2], int(sys.argv[3]))
    elif cmd == "garbage":
        garbage(sys.argv[2], sys.argv[3])
    elif cmd == "listen":
        listen(sys.argv[2])
    elif cmd == "sink":
        sink(sys.argv[2])
    else:
        sys.exit("unknown command " + cmd)
