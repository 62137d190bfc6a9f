# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: trace_rule on a crowded host -- 10,000 rules of other owners (libvirt-like, Docker-like, the
user's) in raw, nat and filter, as in tests/integration/test_trace_rule.py::test_ten_thousand_foreign_rules_...

Steps (wall time of ``ansible-playbook``, medians over BENCH_RUNS), ours against ``ansible.builtin.iptables``
doing the same two rules in a loop, each side from an empty raw PREROUTING with the 10,000 rules loaded:
1. add 2 TRACE rules;  2. remove them.  ``net_*`` facts subtract an empty playbook's time.
The integration test proves the 10,000 rules stay byte-identical; this records how long our add and remove
take among them.  Run: .venv/bin/python bench/bench_trace_rule_crowded.py (root; BENCH_LAB, BENCH_HOST).
"""
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

from _ansible import PlaybookRunner  # noqa: E402
from _harness import Bench  # noqa: E402
import crowd  # noqa: E402

HOST = os.environ.get('BENCH_HOST', 'debian12-1')
PORTS = ['3128', '8080']


def books():
    rule = {'table': 'raw', 'chain': 'PREROUTING', 'protocol': 'tcp', 'destination_port': '{{ item }}',
            'jump': 'TRACE'}
    return {
        'ours_add': [{'name': 't', 'virtops.virtnet.trace_rule': {'name': 'crowd', 'protocol': 'tcp',
                                                                  'destination_port': PORTS}}],
        'ours_remove': [{'name': 't', 'virtops.virtnet.trace_rule': {'name': 'crowd', 'state': 'absent'}}],
        'theirs_add': [{'name': 't', 'ansible.builtin.iptables': dict(rule, action='insert'), 'loop': PORTS}],
        'theirs_remove': [{'name': 't', 'ansible.builtin.iptables': dict(rule, state='absent'), 'loop': PORTS}],
        'empty': [{'name': 't', 'ansible.builtin.meta': 'noop'}],
    }


def main():
    import virtlab
    name = os.environ.get('BENCH_LAB') or 'bench'
    lab = virtlab.Lab(name)
    was_up = lab.is_up()
    lab.up(personas=['debian12'])
    run = PlaybookRunner(lab, HOST, 'bench-crowded-', facts=('invocations', 'changed'))
    for key, tasks in books().items():
        run.add_book(key, json.dumps([{'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]))
    bench = Bench('trace_rule_crowded', runs=int(os.environ.get('BENCH_RUNS', 3)))

    def flush(side=None):
        lab.exec(HOST, ['iptables', '-t', 'raw', '-F', 'PREROUTING'])

    def ensure(side):
        flush()
        run.play('%s_add' % side)

    lab.exec(HOST, ['iptables-restore', '--noflush'], input=crowd.batch(), timeout=120)
    try:
        count = len([x for x in lab.exec(HOST, ['iptables-save']).stdout.splitlines() if x.startswith('-A ')])
        run.play('empty')
        base = []
        for dummy in range(bench.runs):
            start = time.perf_counter()
            run.play('empty')
            base.append(time.perf_counter() - start)
        base = statistics.median(base)
        bench.step('add 2 TRACE rules among 10,000', ours=lambda: run.play('ours_add'),
                   theirs=lambda: run.play('theirs_add'), setup=flush)
        bench.step('remove them', ours=lambda: run.play('ours_remove'), theirs=lambda: run.play('theirs_remove'),
                   setup=ensure)
        for step in bench.steps:
            step.facts['net_ours_s'] = round(step.median_ours - base, 3)
            step.facts['net_theirs_s'] = round(step.median_theirs - base, 3)
        bench.write(extra={'lab': name, 'host': HOST, 'foreign_rules': count, 'empty_playbook_s': round(base, 3),
                           'ours': 'virtops.virtnet.trace_rule (one task)',
                           'theirs': 'ansible.builtin.iptables in a loop of %d' % len(PORTS)})
    finally:
        flush()
        lab.exec(HOST, ['iptables-restore', '--noflush'], input=crowd.remove_batch(), check=False)
        if not was_up:
            lab.down()


if __name__ == '__main__':
    main()
