#!/bin/bash
# virtio-net over tap: packets per second and throughput, guest to host
# and host to guest, and the VMM's CPU time per packet (user + system of
# its process, less a run of the same guest that sends nothing), for lkvm
# and for QEMU doing the same test-kernel work (virtio-net-flood) on the
# same transport (virtio-mmio version 2: lkvm --virtio-transport mmio,
# QEMU microvm with force-legacy=false). Medians of RUNS runs; lkvm/QEMU ratios.
# Then, for each VMM and direction, every run's CPU per packet (the
# spread is this machine's noise) and the part of it spent outside the
# vCPU thread (the VMM's own device work; from /proc/PID/task/*/sched).
#
#   bench/net.sh [FRAMES [RUNS]]     (defaults 5000 and 3; needs root)
set -e
cd "$(dirname "$0")/.."
FRAMES=${1:-5000}
RUNS=${2:-3}
[ "$(id -u)" -eq 0 ] || { echo "bench/net.sh: needs root (netns, tap)" >&2; exit 1; }
[ -x ./lkvm ] || { echo "bench/net.sh: build lkvm first (make)" >&2; exit 1; }
NS=lkvm-bench-$$
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev bt0 mode tap
ip -n "$NS" addr add 10.77.0.1/24 dev bt0
ip -n "$NS" link set bt0 up
ip netns exec "$NS" python3 - "$FRAMES" "$RUNS" <<'EOF'
import os, re, resource, shutil, socket, statistics, subprocess, sys, threading, time

FRAMES, RUNS = int(sys.argv[1]), int(sys.argv[2])
TAP, HOST, GUEST, PORT = "bt0", "10.77.0.1", "10.77.0.2", 9000
KERNEL = "x86-kernel/test-kernel.elf"

def vmm_cmd(vmm, flood):
    params = "tests=virtio-net-flood net_ip=%s net_peer=%s:%d net_flood=%s" % (GUEST, HOST, PORT, flood)
    if vmm == "lkvm":
        return ["./lkvm", "run", "-k", KERNEL, "-m", "128", "--virtio-transport", "mmio",
                "-n", "mode=tap,tapif=" + TAP, "-p", params]
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm,acpi=off", "-m", "128",
            "-smp", "1", "-kernel", KERNEL, "-append", params, "-display", "none",
            "-nodefaults", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no,vhost=off" % TAP,
            "-global", "virtio-mmio.force-legacy=false",
            "-device", "virtio-net-device,netdev=n0"]

class Host(threading.Thread):
    """Echoes the guest's hello; counts what the guest floods; in rx mode
    floods the guest from the moment it said hello until stopped."""
    def __init__(self, blast):
        super().__init__(daemon=True)
        self.blast, self.stop, self.n, self.bytes = blast, False, 0, 0
        self.t0 = self.t1 = None
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((HOST, PORT))
        self.s.settimeout(0.2)
    def run(self):
        peer = None
        payload = b"h" * 1472
        while not self.stop:
            if peer and self.blast:
                for _ in range(64):
                    try:
                        self.s.sendto(payload, (GUEST, 9))
                    except OSError:
                        pass
                self.s.setblocking(False)
            try:
                d, a = self.s.recvfrom(4096)
            except (socket.timeout, BlockingIOError):
                continue
            if d == b"lkvm-net-flood":
                self.s.sendto(d, a)
                peer = a
                continue
            now = time.time()
            self.t0 = self.t0 or now
            self.t1 = now
            self.n += 1
            self.bytes += len(d)
        self.s.close()

def thread_times(pid):
    """Run time in seconds of each thread of pid (the scheduler's
    se.sum_exec_runtime), by thread id; {} where /proc does not say."""
    times = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return times
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/sched" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        times[tid] = float(line.split(":")[1]) / 1000
        except (OSError, ValueError, IndexError):
            pass
    return times

class Threads(threading.Thread):
    """Samples the VMM's threads every 50 ms until it exits: afterwards
    `other` is the run time of all but the busiest (the vCPU's) thread,
    or None when /proc has no scheduler statistics."""
    def __init__(self, p):
        super().__init__(daemon=True)
        self.p, self.last, self.other = p, {}, None
    def run(self):
        while self.p.poll() is None:
            now = thread_times(self.p.pid)
            for tid, t in now.items():
                self.last[tid] = max(t, self.last.get(tid, 0))
            time.sleep(0.05)
        if self.last:
            self.other = sum(self.last.values()) - max(self.last.values())

def one(vmm, flood, blast):
    host = Host(blast)
    host.start()
    p = subprocess.Popen(vmm_cmd(vmm, flood),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    threads = Threads(p)
    threads.start()
    out = p.communicate(timeout=300)[0].decode(errors="replace")
    threads.join()
    host.stop = True
    host.join()
    host.other = threads.other
    m = re.search(r"flood (tx|rx): (\d+) frames in (\d+) ms", out)
    if p.returncode != 0 or not m:
        sys.exit("bench/net.sh: %s %s failed (status %d):\n%s" % (vmm, flood, p.returncode, out))
    return int(m.group(2)), int(m.group(3)), host

def cpu_of(fn):
    # getrusage, not os.times(): the same user + system time of the
    # reaped VMM, in microseconds rather than 10 ms clock ticks (2 us a
    # packet at 5000 frames).
    def used():
        u = resource.getrusage(resource.RUSAGE_CHILDREN)
        return u.ru_utime + u.ru_stime
    before = used()
    r = fn()
    return r, used() - before

def main():
    vmms = ["lkvm"] + (["qemu"] if shutil.which("qemu-system-x86_64") else [])
    # Runs alternate between the VMMs, so that a change in the machine's
    # load falls on both.
    base = {v: [] for v in vmms}
    base_other = {v: [] for v in vmms}
    samples = {(v, d): [] for v in vmms for d in ("tx", "rx")}
    other = {(v, d): [] for v in vmms for d in ("tx", "rx")}
    for _ in range(RUNS):
        for v in vmms:
            (_, _, host), cpu = cpu_of(lambda: one(v, "tx:0", False))
            base[v].append(cpu)
            if host.other is not None:
                base_other[v].append(host.other)
    for _ in range(RUNS):
        for d in ("tx", "rx"):
            for v in vmms:
                (n, ms, host), cpu = cpu_of(lambda: one(v, "%s:%d" % (d, FRAMES), d == "rx"))
                # The guest's own clock times the N frames (the host's
                # Python receiver is the noisier clock); transmitted
                # frames must also all have reached the host.
                if d == "tx" and host.n < n:
                    sys.exit("bench/net.sh: %s: %d of %d frames reached the host" % (v, host.n, n))
                pps = n / (ms / 1000)
                mbit = pps * 1472 * 8 / 1e6
                b = statistics.median(base[v])
                samples[v, d].append((pps, mbit, (cpu - b) / n * 1e6))
                if host.other is not None and base_other[v]:
                    other[v, d].append((host.other - statistics.median(base_other[v])) / n * 1e6)
    res = {}
    for (v, d), l in samples.items():
        res[v, d] = tuple(statistics.median(x[i] for x in l) for i in range(3))
        print("%-5s %s: %8.0f pps %7.1f Mbit/s (UDP payload)  VMM CPU %7.1f us/packet  (medians of %d, %d frames; base %.2f s)"
              % (v, "guest->host" if d == "tx" else "host->guest", *res[v, d], RUNS, FRAMES,
                 statistics.median(base[v])), flush=True)
    if "qemu" in vmms:
        for d in ("tx", "rx"):
            l, q = res["lkvm", d], res["qemu", d]
            print("ratio lkvm/qemu %s: pps %.2f, CPU per packet %.2f"
                  % ("guest->host" if d == "tx" else "host->guest", l[0] / q[0], l[2] / q[2]))
    # What the CPU per packet is made of: each run's figure (the spread
    # is the machine's noise), and the part outside the vCPU thread (the
    # busiest thread: the guest's code, its exits, and the in-kernel
    # device paths it triggers run there) -- the VMM's own device work.
    for (v, d), l in samples.items():
        o = other[v, d]
        print("%-5s %s: CPU per packet by run %s us; threads other than the vCPU's %s"
              % (v, "guest->host" if d == "tx" else "host->guest",
                 " ".join("%.1f" % x[2] for x in l),
                 "%.1f us/packet (median)" % statistics.median(o) if o else "not measured"))

main()
EOF
