# SPDX-License-Identifier: GPL-3.0-or-later
"""A busy flow under a rate-limited TRACE rule, and what reaches the kernel log (used by
test_faults.py::test_busy_flow_under_trace_stays_at_the_rate and bench/bench_trace_rate.py).

A namespace guest on the host's libvirt network sends UDP datagrams from one connected socket (so the
kernel numbers their IP IDs one by one) to the host's own bridge address (private lab addresses only),
paced at ``pps`` for ``seconds``, at most ``pps * seconds`` datagrams. Meanwhile the controller reads
``/dev/kmsg`` from its end (the lab sets ``net.netfilter.nf_log_all_netns=1``, so the hosts' TRACE lines
arrive there) and keeps the TRACE lines of this flow (SRC= the guest, DPT= the port): each record has
the kernel's own timestamp, and a packet is told by its IP ID.
"""
import os
import re
import threading
import time

SENDER = r'''
import socket, sys, time
dst, port, pps, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, port))
total = int(pps * seconds)
t0 = time.time()
n = 0
while n < total:
    try:
        s.send(b'virtnet-flood')
    except OSError:
        pass  # ICMP port unreachable answers a connected UDP socket with ECONNREFUSED: keep sending
    n += 1
    if n % 50 == 0:
        ahead = t0 + n / pps - time.time()
        if ahead > 0:
            time.sleep(ahead)
print(n, time.time() - t0)
'''

_RECORD = re.compile(r'^\d+,\d+,(\d+),[^;]*;(.*)$')


def _read_kmsg(ready, stop, out, src, port):
    """Read /dev/kmsg from its end; after ``stop``, drain what is there and return."""
    fd = os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        ready.set()
        needle_src, needle_port = 'SRC=%s ' % src, 'DPT=%d ' % port
        while True:
            try:
                rec = os.read(fd, 8192).decode('utf-8', 'replace')
            except BlockingIOError:
                if stop.is_set():
                    return  # printk is synchronous: every line of a sent packet is in the log by now
                time.sleep(0.005)
                continue
            except BrokenPipeError:  # records overwritten before we read them: counted by the caller
                out['overrun'] += 1
                continue
            m = _RECORD.match(rec.split('\n', 1)[0])
            if m and 'TRACE: ' in m.group(2) and needle_src in m.group(2) and needle_port in m.group(2):
                pid = re.search(r' ID=(\d+) ', m.group(2))
                out['lines'].append((int(m.group(1)) / 1e6, pid.group(1) if pid else None))
    finally:
        os.close(fd)


def measure(lab, guest, dst, port, pps, seconds):
    """Flood and read: {sent, send_seconds, lines, packets, per_second: [{second, lines, packets}],
    span_seconds, lines_per_packet, overrun}."""
    out = {'lines': [], 'overrun': 0}
    g = lab.state()['guests'][guest]
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(target=_read_kmsg, args=(ready, stop, out, g['ip'], port))
    reader.start()
    try:
        assert ready.wait(10), 'the /dev/kmsg reader did not start within 10 s'
        p = lab.guest_exec(guest, ['python3', '-c', SENDER, dst, str(port), str(pps), str(seconds)],
                           timeout=seconds + 60)
        sent, took = p.stdout.split()
    finally:
        stop.set()
        reader.join()
    lines = out['lines']
    res = {'sent': int(sent), 'send_seconds': round(float(took), 3), 'lines': len(lines),
           'packets': len(set(i for _t, i in lines)), 'overrun': out['overrun'], 'per_second': []}
    if lines:
        t0 = lines[0][0]
        bins = {}
        for t, ident in lines:
            b = bins.setdefault(int(t - t0), {'lines': 0, 'ids': set()})
            b['lines'] += 1
            b['ids'].add(ident)
        res['per_second'] = [{'second': s, 'lines': bins[s]['lines'], 'packets': len(bins[s]['ids'])}
                             for s in sorted(bins)]
        res['span_seconds'] = round(lines[-1][0] - t0, 3)
        res['lines_per_packet'] = round(len(lines) / float(res['packets']), 2)
    return res
