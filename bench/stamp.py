#!/usr/bin/env python3
# stamp.py START_RE END_RE CMD [ARGS]: runs CMD (stdin /dev/null, stderr
# discarded) and prints, like bench/boottime, "first_byte_ms exit_ms
# maxrss_kib user_ms sys_ms status", then the milliseconds between the
# first output line matching START_RE and the first matching END_RE
# after it (-1 when either is missing), by the host's clock as the lines
# arrive: a guest's workload timed from outside, without its boot.
import os
import re
import subprocess
import sys
import time

start_re, end_re, cmd = re.compile(sys.argv[1]), re.compile(sys.argv[2]), sys.argv[3:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)
first = -1.0
t_start = t_end = None
for line in p.stdout:
    now = time.monotonic()
    if first < 0:
        first = (now - t0) * 1e3
    text = line.decode(errors="replace")
    if t_start is None and start_re.search(text):
        t_start = now
    elif t_start is not None and t_end is None and end_re.search(text):
        t_end = now
_, st, ru = os.wait4(p.pid, 0)
p.returncode = 0
end = (time.monotonic() - t0) * 1e3
status = os.waitstatus_to_exitcode(st)
if status < 0:
    status = 128 - status
work = (t_end - t_start) * 1e3 if t_start is not None and t_end is not None else -1
print("%.2f %.2f %d %.2f %.2f %d %.2f" % (first, end, ru.ru_maxrss, ru.ru_utime * 1e3,
                                           ru.ru_stime * 1e3, status, work))
