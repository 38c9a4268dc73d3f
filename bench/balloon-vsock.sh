#!/bin/bash
# virtio-balloon and virtio-vsock, medians of RUNS runs:
# - balloon: the test kernel's driver (tests=virtio-balloon) has touched
#   a pool of MIB + 8 MiB; the host asks for MIB MiB (lkvm: `lkvm balloon
#   --inflate`; QEMU: the monitor's `balloon`), and we measure the time
#   until the guest reports the balloon full (its "actual N pages" line),
#   the VMM process's CPU time over that span (utime + stime from /proc:
#   its I/O thread, and the guest's emulated CPL-0 work, which is the same
#   kernel in both), and how much its resident memory dropped. QEMU boots
#   through qboot where it is installed (SeaBIOS costs seconds).
# - vsock: ECHO_MIB MiB through the test kernel's echo service (host
#   program -> lkvm's Unix socket -> guest -> back), MiB/s and lkvm's CPU
#   per MiB. QEMU's vsock needs vhost (/dev/vhost-vsock); without it there
#   is no QEMU figure, and the script says so.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
MIB=${MIB:-64}
ECHO_MIB=${ECHO_MIB:-1}
make -s lkvm x86-kernel/test-kernel.elf >/dev/null
tmp=$(mktemp -d /var/tmp/lkvm-bv.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export LKVM_HOME=$tmp/home

exec python3 - "$tmp" "$RUNS" "$MIB" "$ECHO_MIB" <<'EOF'
import json, os, re, socket, statistics, subprocess, sys, threading, time

tmp, runs, mib, echo_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
K = "x86-kernel/test-kernel.elf"
HZ = os.sysconf("SC_CLK_TCK")
PAGES = mib * 256


def cpu_ms(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / HZ


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def wait_line(path, pattern, secs=60):
    rx = re.compile(pattern, re.M)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            if rx.search(open(path, errors="replace").read()):
                return
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    sys.exit(f"bench/balloon-vsock.sh: no '{pattern}' in {path} within {secs} s")


def lkvm_pid(name):
    for g in json.loads(subprocess.check_output(["./lkvm", "list", "--json"])):
        if g["name"] == name:
            return int(g["pid"])


def balloon_params():
    return f"tests=virtio-balloon balloon_pool={mib + 8} balloon_wait=120"


def measure(pid, log, ask):
    rss0, cpu0, t0 = rss_kib(pid), cpu_ms(pid), time.monotonic()
    ask()
    wait_line(log, rf"^# virtio-balloon: actual {PAGES} pages$")
    t1, cpu1, rss1 = time.monotonic(), cpu_ms(pid), rss_kib(pid)
    return (t1 - t0) * 1000, cpu1 - cpu0, (rss0 - rss1) / 1024


def lkvm_balloon(i):
    name, log = f"bvb{i}", f"{tmp}/bvb{i}.log"
    subprocess.check_call(["./lkvm", "run", "--detach", "--name", name, "--console-log", log,
                           "-k", K, "-m", "128", "--balloon", "-p", balloon_params()],
                          stdout=subprocess.DEVNULL)
    wait_line(log, r"^# virtio-balloon: serving")
    r = measure(lkvm_pid(name), log, lambda: subprocess.check_call(
        ["./lkvm", "balloon", name, "--inflate", str(mib)], stdout=subprocess.DEVNULL))
    subprocess.check_call(["./lkvm", "balloon", name, "--deflate", str(mib)],
                          stdout=subprocess.DEVNULL)
    if subprocess.call(["./lkvm", "wait", name], stdout=subprocess.DEVNULL):
        sys.exit(f"bench/balloon-vsock.sh: the lkvm guest failed; see {log}")
    return r


class Hmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(path)
        self.read()

    def read(self):
        buf = b""
        while b"(qemu) " not in buf:
            buf += self.s.recv(4096)

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\n")
        self.read()


def qemu_balloon(i, qemu, bios):
    log, mon = f"{tmp}/q{i}.log", f"{tmp}/q{i}.mon"
    p = subprocess.Popen([qemu, "-accel", "kvm", "-M", "pc", "-m", "128", *bios,
                          "-kernel", K, "-append", balloon_params(),
                          "-display", "none", "-nodefaults", "-serial", f"file:{log}",
                          "-monitor", f"unix:{mon},server,nowait", "-no-reboot",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                          "-device", "virtio-balloon-pci,deflate-on-oom=on"],
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_line(log, r"^# virtio-balloon: serving")
        h = Hmp(mon)
        r = measure(p.pid, log, lambda: h.cmd(f"balloon {128 - mib}"))
        h.cmd("balloon 128")
        if p.wait(60) != 0:
            sys.exit(f"bench/balloon-vsock.sh: the QEMU guest failed; see {log}")
        return r
    finally:
        p.kill()


def med(rows, k):
    return statistics.median(r[k] for r in rows)


lk = [lkvm_balloon(i) for i in range(runs)]
qemu = subprocess.run(["sh", "-c", "command -v qemu-system-x86_64"], capture_output=True,
                      text=True).stdout.strip()
bios = ["-bios", "/usr/share/qemu/qboot.rom"] if os.path.exists("/usr/share/qemu/qboot.rom") else []
qm = [qemu_balloon(i, qemu, bios) for i in range(runs)] if qemu else []

print(f"balloon: inflate by {mib} MiB ({PAGES} pages), medians of {runs} runs")
print(f"  {'':6} {'time ms':>9} {'VMM CPU ms':>11} {'RSS drop MiB':>13}")
for name, rows in (("lkvm", lk), ("qemu", qm)):
    if rows:
        print(f"  {name:6} {med(rows, 0):9.0f} {med(rows, 1):11.0f} {med(rows, 2):13.1f}")
if qm:
    print(f"  lkvm/qemu: time {med(lk, 0) / med(qm, 0):.2f}, CPU "
          f"{med(lk, 1) / max(med(qm, 1), 1):.2f}, RSS drop {med(lk, 2) / med(qm, 2):.2f}")
else:
    print("  no QEMU figures: qemu-system-x86_64 is not installed")

# ---- vsock ----
name, log, sock = "bvv", f"{tmp}/bvv.log", f"{tmp}/v.sock"
subprocess.check_call(["./lkvm", "run", "--detach", "--name", name, "--console-log", log, "-k", K,
                       "-m", "64", "--vsock", f"3,{sock}", "-p",
                       f"tests=virtio-vsock vsock_port=1234 vsock_wait=600 vsock_sessions={runs}"],
                      stdout=subprocess.DEVNULL)
wait_line(log, r"^# virtio-vsock: listening")
pid = lkvm_pid(name)
rows = []
data = os.urandom(echo_mib << 20)
for i in range(runs):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"CONNECT 1234\n")
    ok = b""
    while not ok.endswith(b"\n"):
        ok += s.recv(1)
    c0, t0 = cpu_ms(pid), time.monotonic()
    th = threading.Thread(target=s.sendall, args=(data,))
    th.start()
    got = bytearray()
    while len(got) < len(data):
        b = s.recv(1 << 20)
        if not b:
            break
        got += b
    th.join()
    t1, c1 = time.monotonic(), cpu_ms(pid)
    s.close()
    if bytes(got) != data:
        sys.exit("bench/balloon-vsock.sh: the echo differs")
    rows.append((echo_mib / (t1 - t0), (c1 - c0) / echo_mib))
if subprocess.call(["./lkvm", "wait", name], stdout=subprocess.DEVNULL):
    sys.exit(f"bench/balloon-vsock.sh: the vsock guest failed; see {log}")
print(f"vsock: {echo_mib} MiB echoed through the guest, medians of {runs} runs")
print(f"  lkvm   {med(rows, 0):.2f} MiB/s each way, {med(rows, 1):.0f} ms of lkvm CPU per MiB "
      "(the guest's copies at CPL 0 included)")
if os.path.exists("/dev/vhost-vsock"):
    print("  QEMU: not measured by this script (vhost-vsock-pci; its host side is AF_VSOCK)")
else:
    print("  no QEMU figure: QEMU's vsock needs /dev/vhost-vsock, which this host lacks")
EOF
