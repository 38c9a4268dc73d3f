#!/usr/bin/env python3
# A raw KVMI tool for tests/introspect.bats: authenticates with the
# cookie (docs/kvmi.md, "Handshake"), then sends malformed commands and
# prints, for each, the error code of lkvm's reply; then a header that
# announces an oversized message, after which lkvm must close.
import hashlib, hmac, os, socket, struct, sys

sock_path, cookie_path = sys.argv[1], sys.argv[2]
cookie = open(cookie_path, "rb").read()

def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def recv_msg():
    mid, size, seq = struct.unpack("=HHI", recv_exact(8))
    return mid, seq, recv_exact(size)

def send(mid, seq, data=b""):
    s.sendall(struct.pack("=HHI", mid, len(data), seq) + data)

def handshake():
    global s
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    _, _, hello = recv_msg()
    nv = hello[16:48]
    nt = os.urandom(32)
    mac = hmac.new(cookie, b"lkvm-kvmi-v1 tool" + nv + nt,
                   hashlib.sha256).digest()
    send(0x602, 0, nt + mac)
    recv_msg()  # the welcome

def closed():
    try:
        return "closed" if not s.recv(64) else "open"
    except ConnectionResetError:
        return "closed"
    except socket.timeout:
        return "open"

handshake()

events = []

def cmd(name, mid, data=b""):
    seq = cmd.seq = getattr(cmd, "seq", 100) + 1
    send(mid, seq, data)
    while True:
        rid, rseq, reply = recv_msg()
        if rid in (0, 1):       # an event, not the reply: keep it
            events.append((rid, rseq, reply))
            continue
        break
    assert (rid, rseq) == (mid, seq), (rid, rseq, mid, seq)
    print(name, struct.unpack("=i", reply[:4])[0])

VCPU0 = struct.pack("=HHI", 0, 0, 0)

if len(sys.argv) > 3 and sys.argv[3] == "events":
    # Events (docs/kvmi.md): what check event/command say, page access
    # values, SET_REGISTERS outside an event, a PAUSE event and a reply
    # to it with the wrong seq, which closes the connection.
    gpa = int(sys.argv[4], 0)
    for name, ev in (("pf", 17), ("msr", 15), ("agent", 225), ("cr", 7),
                     ("xsetbv", 11), ("descriptor", 13)):
        cmd("check-event-" + name, 6, struct.pack("=HHI", ev, 0, 0))
    cmd("check-command-control-cr", 4, struct.pack("=HHI", 13, 0, 0))
    for name, acc in (("read-only", 5), ("no-read", 6), ("no-exec", 3)):
        cmd("access-" + name, 20, struct.pack("=HHI", 1, 0, 0) +
            struct.pack("=QB7x", gpa, acc))
    send(20, 99, struct.pack("=HHI", 1, 0, 0) + struct.pack("=QB7x", gpa, 7))
    recv_msg()                  # released again
    cmd("set-registers-outside-event", 9, VCPU0 + b"\0" * 144)
    # XCR0 has x87 state (bit 0) always; XSAVE is a whole struct kvm_xsave.
    seq = 96
    send(17, seq, VCPU0 + struct.pack("=B7x", 0))
    while True:
        rid, rseq, reply = recv_msg()
        if rid not in (0, 1):
            break
        events.append((rid, rseq, reply))
    err, _, xcr0 = struct.unpack("=iIQ", reply[:16])
    print("get-xcr0", err, "x87", xcr0 & 1)
    send(19, 95, VCPU0)
    while True:
        rid, rseq, reply = recv_msg()
        if rid not in (0, 1):
            break
        events.append((rid, rseq, reply))
    print("get-xsave", struct.unpack("=i", reply[:4])[0], len(reply) - 8)
    cmd("get-xcr1", 17, VCPU0 + struct.pack("=B7x", 1))
    # MAP_MEMORY: a read-only descriptor of guest RAM on the reply.
    import array, mmap
    send(0x400, 97, b"\0" * 8)
    msg, fds, _, _ = socket.recv_fds(s, 8192, 1)
    mid, size, seq = struct.unpack("=HHI", msg[:8])
    err, _, fsize, count, wr = struct.unpack("=iIQHB", msg[8:27])
    regions = [struct.unpack("=QQQ", msg[24 + 8 + 24 * i:24 + 8 + 24 * (i + 1)])
               for i in range(count)]
    print("map-memory", err, "fds", len(fds), "writable", wr)
    m = mmap.mmap(fds[0], fsize, mmap.MAP_SHARED, mmap.PROT_READ)
    for rgpa, rsize, roff in regions:
        if rgpa <= gpa < rgpa + rsize:
            # The guest's own first word of the watched page: 0x1000 + K.
            word = struct.unpack("=Q", m[roff + gpa - rgpa:roff + gpa - rgpa + 8])[0]
            print("mapped-word-ok", int(0x1000 <= word < 0x100000))
    try:
        mmap.mmap(fds[0], fsize, mmap.MAP_SHARED, mmap.PROT_WRITE)
        print("writable-mapping allowed")
    except OSError:
        print("writable-mapping refused")
    send(16, 98, struct.pack("=HBBI", 0, 1, 0, 0))   # pause vCPU 0, wait
    paused = False
    while not events or not paused:
        rid, rseq, reply = recv_msg()
        if rid in (0, 1):
            events.append((rid, rseq, reply))
        else:
            paused = (rid, rseq) == (16, 98)
    rid, eseq, ev = events.pop(0)
    print("pause-event", struct.unpack("=H", ev[:2])[0])
    cmd("get-registers-in-event", 7, VCPU0 + struct.pack("=HHI", 0, 0, 0))
    send(1, eseq + 1000, VCPU0 + struct.pack("=BBHI", 0, 1, 0, 0))
    print("reply-wrong-seq", closed())
    s.close()
    sys.exit(0)

if len(sys.argv) > 5 and sys.argv[3] == "channel":
    # lkvm's event channel (docs/kvmi.md): asked for, mapped, the PF
    # event read from vCPU 0's slot and answered there as MODE says:
    # continue-retry (CONTINUE, then RETRY on the next, then let go),
    # garbage (bytes that are no reply), stall (never answered).
    import mmap, time
    gpa, mode = int(sys.argv[4], 0), sys.argv[5]
    cmd("check-command-event-channel", 4, struct.pack("=HHI", 0x404, 0, 0))
    cmd("event-channel-bad-flag", 0x404, b"\2" + b"\0" * 7)
    send(0x404, 90, struct.pack("=B7x", 1))
    msg, fds, _, _ = socket.recv_fds(s, 8192, 4)
    err, _, fsize, soff, ssize, nslots, _ = struct.unpack("=iIIIIHH",
                                                          msg[8:32])
    print("event-channel", err, "fds", len(fds), "slots", nslots)
    cmd("event-channel-again", 0x404, struct.pack("=B7x", 1))
    m = mmap.mmap(fds[0], fsize, mmap.MAP_SHARED,
                  mmap.PROT_READ | mmap.PROT_WRITE)
    bell = socket.socket(fileno=fds[1])
    EV, REPLY = soff + 64, soff + 64 + 768

    def slot_event():
        # Up to 10 s for an event in the slot (state 1), then taken (2).
        end = time.time() + 10
        while struct.unpack_from("=I", m, soff)[0] != 1:
            if time.time() > end:
                raise TimeoutError("no event in the slot")
            time.sleep(0.001)
        n = struct.unpack_from("=I", m, soff + 8)[0]
        ev = m[EV:EV + n]
        struct.pack_into("=I", m, soff, 2)
        return ev

    def slot_reply(r, ring=True):
        # After the vCPU stopped looking (its polling window is 50 us at
        # most): the reply then goes through the doorbell and the server.
        end = time.time() + 10
        while not struct.unpack_from("=I", m, soff + 4)[0]:
            if time.time() > end:
                raise TimeoutError("the vCPU never slept")
            time.sleep(0.001)
        m[REPLY:REPLY + len(r)] = r
        struct.pack_into("=I", m, soff + 12, len(r))
        struct.pack_into("=I", m, soff, 3)
        # The vCPU sleeps (a Python tool is slow): ring the doorbell.
        if ring and struct.unpack_from("=I", m, soff + 4)[0]:
            bell.send(b"x")
            print("rang-doorbell")

    def answer(ev, action, ring=True):
        eseq = struct.unpack("=HHI", ev[:8])[2]
        event = struct.unpack("=H", ev[8:10])[0]
        slot_reply(struct.pack("=HHI", 1, 16, eseq) + VCPU0 +
                   struct.pack("=BBHI", action, event, 0, 0), ring)
        return eseq

    cmd("control-pf", 5, VCPU0 + struct.pack("=HBBI", 17, 1, 0, 0))
    cmd("protect", 20, struct.pack("=HHI", 1, 0, 0) +
        struct.pack("=QB7x", gpa, 5))
    ev = slot_event()
    print("slot-event", struct.unpack("=H", ev[8:10])[0],
          "gpa-ok", int(struct.unpack("=Q", ev[8 + 8 + 544 + 8:][:8])[0] ==
                        gpa))
    if mode == "continue-retry":
        first = answer(ev, 0)
        second = answer(slot_event(), 1)
        print("second-event-new", int(second != first))
        cmd("release", 20, struct.pack("=HHI", 1, 0, 0) +
            struct.pack("=QB7x", gpa, 7))
    elif mode == "garbage":
        slot_reply(b"\xff" * 24)
        print("after-garbage", closed())
    elif mode == "stall":
        print("after-stall", closed())
    elif mode == "retry-close":
        # RETRY written in the slot while the vCPU sleeps, the doorbell
        # not rung, and the tool gone at once: as a reply sent on the
        # socket before closing, it counts.
        answer(ev, 1, ring=False)
        s.close()
        print("replied-and-closed")
        sys.exit(0)
    elif mode == "chaos":
        # For 2 s, anything in vCPU 0's slot at any time, racing lkvm:
        # random states, lengths and bytes, valid replies among them,
        # the doorbell rung at random. lkvm drops the tool at the first
        # bad reply it takes, or the timeout ends it; either way, closed.
        import random
        rnd = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 1)
        s.setblocking(False)
        end, n = time.time() + 2, 0
        while time.time() < end:
            k = rnd.randrange(6)
            if k == 0:
                struct.pack_into("=I", m, soff, rnd.randrange(5))
            elif k == 1:
                struct.pack_into("=I", m, soff + 12,
                                 rnd.choice([0, 7, 8, 24, 192, 193,
                                             0xffffffff]))
            elif k == 2:
                off = REPLY + rnd.randrange(192)
                m[off:off + 1] = bytes([rnd.randrange(256)])
            elif k == 3:
                ev = m[EV:EV + struct.unpack_from("=I", m, soff + 8)[0]]
                if len(ev) >= 10:
                    eseq = struct.unpack("=HHI", ev[:8])[2]
                    r = (struct.pack("=HHI", 1, 16, eseq) + VCPU0 +
                         struct.pack("=BBHI", 0, 17, 0, 0))
                    m[REPLY:REPLY + len(r)] = r
                    struct.pack_into("=I", m, soff + 12, len(r))
                    struct.pack_into("=I", m, soff, 3)
            elif k == 4:
                try:
                    bell.send(b"x")
                except OSError:
                    pass
            else:
                struct.pack_into("=I", m, 0, rnd.randrange(2))
            n += 1
            try:
                if s.recv(64) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
        s.setblocking(True)
        s.settimeout(10)
        print("after-chaos", closed())
    elif mode == "hostile":

        # Descriptors where none are expected: 64 with a command on the
        # socket, more with datagrams on the doorbell (and one too large
        # for it); then the doorbell closed and a reply that needs it.
        nulls = [os.open("/dev/null", os.O_RDONLY) for _ in range(64)]
        seq = 400
        socket.send_fds(s, [struct.pack("=HHI", 2, 0, seq)], nulls)
        rid, rseq, reply = recv_msg()
        print("version-with-fds", rid, rseq == seq,
              struct.unpack("=i", reply[:4])[0])
        for _ in range(8):
            socket.send_fds(bell, [b"x"], nulls[:16])
        try:
            bell.send(b"y" * 65536)
        except OSError:
            pass
        for fd in nulls:
            os.close(fd)
        cmd("version-after-bell", 2)
        bell.close()
        answer(ev, 0, ring=False)
        print("after-dead-bell", closed())
    s.close()
    sys.exit(0)


def read_req(seq, gpa, size=4096, pad=0):
    return struct.pack("=HHIQHHI", 12, 16, seq, gpa, size, pad, 0)

if len(sys.argv) > 3 and sys.argv[3] == "pipeline":
    # Reads pipelined (docs/kvmi.md, "Reads"): 200 sent at once, with a
    # read outside guest memory, one with padding set, and a write in
    # the middle; each gets its own reply, in order, and a read after
    # the write sees it while one before it does not.
    gpa = int(sys.argv[4], 0) & ~0xfff
    probe = gpa + 0x200
    pattern = os.urandom(8)
    msgs, expect = [], []
    for i in range(200):
        seq = 1000 + i
        if i == 100:
            msgs.append(read_req(seq, 0xffffffff000))
            expect.append((12, seq, -14))
        elif i == 120:
            msgs.append(struct.pack("=HHIQHHI", 14, 16 + 8, seq, probe, 8, 0, 0)
                        + pattern)
            expect.append((14, seq, 0))
        elif i == 150:
            msgs.append(read_req(seq, gpa, pad=1))
            expect.append((12, seq, -22))
        else:
            msgs.append(read_req(seq, gpa))
            expect.append((12, seq, 0))
    s.sendall(b"".join(msgs))
    got, bad, seen = [], [], {}
    for mid, seq, err in expect:
        rid, rseq, reply = recv_msg()
        while rid in (0, 1):
            rid, rseq, reply = recv_msg()
        rerr = struct.unpack("=i", reply[:4])[0]
        size = len(reply) - 8
        want = 4096 if mid == 12 and err == 0 else 0
        if (rid, rseq, rerr, size) != (mid, seq, err, want):
            bad.append((rid, rseq, rerr, size))
        if rerr:
            got.append("%d:%d" % (seq - 1000, rerr))
        if mid == 12 and not rerr and seq - 1000 in (119, 121):
            seen[seq - 1000] = reply[8 + 0x200:8 + 0x208] == pattern
    print("replies", len(expect), "in-order" if not bad else bad[:3])
    print("errors", " ".join(got))
    print("before-write", "new" if seen.get(119) else "old")
    print("after-write", "new" if seen.get(121) else "old")
    s.close()
    sys.exit(0)

if len(sys.argv) > 3 and sys.argv[3] == "drop":
    # A tool that sends a batch of reads and goes away without reading
    # their replies, then one that stops inside a message.
    gpa = int(sys.argv[4], 0) & ~0xfff
    s.sendall(b"".join(read_req(i + 1, gpa) for i in range(2000)))
    s.close()
    handshake()
    s.sendall(b"".join(read_req(i + 1, gpa) for i in range(50)) +
              read_req(51, gpa)[:12])
    s.close()
    print("dropped")
    sys.exit(0)

if len(sys.argv) > 5 and sys.argv[3] == "deaf":
    # A tool that sends reads and never takes their replies (8 MiB, far
    # more than a socket holds): lkvm gives up within its send timeout,
    # says why in LOG, and closes; the tool then reads what was sent
    # before that, up to the end.
    import time
    gpa, log = int(sys.argv[4], 0) & ~0xfff, sys.argv[5]
    s.sendall(b"".join(read_req(i + 1, gpa) for i in range(2000)))
    end = time.time() + 20
    while ("dropping the tool: it does not read its replies" not in
           open(log, errors="replace").read()):
        if time.time() > end:
            print("not dropped")
            sys.exit(1)
        time.sleep(0.05)
    try:
        while s.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    print("dropped closed")
    sys.exit(0)

cmd("unknown", 0x7fe)
cmd("version-with-data", 2, b"\0" * 8)
cmd("version", 2)
cmd("read-padding", 12, struct.pack("=QHHI", 0x1000, 8, 1, 0))
cmd("read-cross-page", 12, struct.pack("=QHHI", 0xffc, 8, 0, 0))
cmd("vcpu-out-of-range", 3, struct.pack("=HHI", 5, 0, 0))
cmd("vcpu-padding", 3, struct.pack("=HHI", 0, 1, 0))
cmd("check-event-pause", 6, struct.pack("=HHI", 1, 0, 0))
cmd("check-command-map-memory", 4, struct.pack("=HHI", 0x400, 0, 0))
cmd("map-memory-bad-flag", 0x400, b"\2" + b"\0" * 7)
cmd("control-events", 10, struct.pack("=HBBI", 0, 1, 0, 0))
# An event reply when no event is pending, then more: lkvm closes.
send(1, 7, struct.pack("=HHI", 0, 0, 0) + struct.pack("=BBHI", 0, 1, 0, 0))
print("after-bad-reply", closed())
s.close()
# A header announcing more than KVMI_MAX_MSG_SIZE: lkvm closes.
handshake()
s.sendall(struct.pack("=HHI", 2, 0xffff, 1))
print("after-oversized", closed())
s.close()
# A message cut short: lkvm closes when the tool does, nothing waits.
handshake()
s.sendall(struct.pack("=HHI", 12, 16, 1) + b"\0" * 4)
s.close()
