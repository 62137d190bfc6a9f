# SPDX-License-Identifier: GPL-3.0-or-later
"""Measurement: a busy flow under a TRACE rule with ``rate`` -- how many packets' lines reach the kernel log
per second (tests/integration/flood.py; asserted in test_faults.py::test_busy_flow_under_trace_stays_at_the_rate).

A namespace guest of a legacy-xtables host (el7: TRACE writes to the kernel log) sends UDP to the host's
bridge address at BENCH_PPS (default 2000) datagrams per second for BENCH_SECONDS (4), once per rate in
BENCH_RATES (default 10,25). Recorded per rate: datagrams sent, packets traced, kernel log lines, lines per
packet, per-second packets and lines, and the bound burst + rate x seconds. Rates are kept low: the kernel
ring buffer is shared by every lab on the machine. Run: .venv/bin/python bench/bench_trace_rate.py (root;
BENCH_LAB, default ``bench``). Writes bench/results/trace_rate.json.
"""
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

import flood  # noqa: E402
from labansible import playbook  # noqa: E402

HOST = 'el7-1'
PORT = 4799


def play(lab, tasks):
    out = playbook(lab, json.dumps([{'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]) + '\n')
    if out['rc'] != 0:
        raise SystemExit('playbook failed:\n%s' % out['stdout'][-3000:])


def main():
    import virtlab
    lab = virtlab.Lab(os.environ.get('BENCH_LAB') or 'bench')
    was_up = lab.is_up()
    lab.up(personas=['el7'])
    pps = int(os.environ.get('BENCH_PPS', '2000'))
    seconds = float(os.environ.get('BENCH_SECONDS', '4'))
    rates = [int(r) for r in os.environ.get('BENCH_RATES', '10,25').split(',')]
    results = []
    guest = lab.guest_add('bflood', HOST)
    try:
        play(lab, [{'name': 'log', 'virtops.virtnet.nf_log': {'families': ['ipv4']}}])
        for rate in rates:
            play(lab, [{'name': 'trace', 'virtops.virtnet.trace_rule': dict(
                name='bflood', protocol='udp', destination_port=[str(PORT)], rate=rate, expires=300)}])
            res = flood.measure(lab, 'bflood', guest['gateway'], PORT, pps, seconds)
            play(lab, [{'name': 'rm', 'virtops.virtnet.trace_rule': dict(name='bflood', state='absent')}])
            res.update(rate=rate, burst=max(5, rate), pps=pps, seconds=seconds,
                       bound_packets=max(5, rate) + rate * seconds,
                       packets_per_second_after_burst=round(
                           (res['packets'] - max(5, rate)) / max(res.get('span_seconds') or 1, 1e-3), 2))
            print('rate %d: sent %d in %.2f s; traced %d packets, %d lines (%.1f lines/packet); per second %s'
                  % (rate, res['sent'], res['send_seconds'], res['packets'], res['lines'],
                     res.get('lines_per_packet') or 0, [b['packets'] for b in res['per_second']]))
            results.append(res)
    finally:
        lab.guest_del('bflood')
        if not was_up:
            lab.down()
    path = os.path.join(HERE, 'results', 'trace_rate.json')
    with open(path, 'w') as f:
        json.dump({'name': 'trace_rate', 'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                   'machine': {'cpus': os.cpu_count(), 'kernel': platform.release()},
                   'host': HOST, 'results': results}, f, indent=1, sort_keys=True)
        f.write('\n')
    print('wrote', path)


if __name__ == '__main__':
    main()
