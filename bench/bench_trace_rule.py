# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: virtops.virtnet.trace_rule vs ansible.builtin.iptables in a loop, same lab host.

The job: trace 50 destination ports (``iptables -t raw -I PREROUTING -p tcp --dport N -j TRACE``).
Theirs: one ``ansible.builtin.iptables`` task looping over the 50 ports (table raw, chain
PREROUTING, jump TRACE) -- 50 module runs, each with Python on the host and one iptables process
per check and per change. Ours: ONE ``trace_rule`` task with ``destination_port`` listing the 50
ports -- a probe, one iptables-save and one iptables-restore --noflush, shell only.

Steps (wall time of ``ansible-playbook`` per side, alternating, medians over BENCH_RUNS):
1. add 50 rules (raw PREROUTING empty before each side);
2. re-run unchanged;
3. remove the 50 rules;
4. one ``ansible.builtin.ping`` task, for scale (goal: ours <= 2x ping for add and re-run).
``net_*`` facts subtract the time of an empty playbook (ansible-playbook start-up) from each side.

Run:  .venv/bin/python bench/bench_trace_rule.py    (root; lab name from BENCH_LAB, default ``bench``)
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

from _ansible import PlaybookRunner  # noqa: E402
from _harness import Bench  # noqa: E402

HOST = os.environ.get('BENCH_HOST', 'debian12-1')
PORTS = [str(p) for p in range(20001, 20051)]

BOOKS = {
    'ours_add': [{'name': 't', 'virtops.virtnet.trace_rule': {
        'name': 'bench', 'protocol': 'tcp', 'destination_port': PORTS}}],
    'ours_remove': [{'name': 't', 'virtops.virtnet.trace_rule': {'name': 'bench', 'state': 'absent'}}],
    'theirs_add': [{'name': 't', 'ansible.builtin.iptables': {
        'table': 'raw', 'chain': 'PREROUTING', 'protocol': 'tcp', 'destination_port': '{{ item }}',
        'jump': 'TRACE', 'action': 'insert'}, 'loop': PORTS}],
    'theirs_remove': [{'name': 't', 'ansible.builtin.iptables': {
        'table': 'raw', 'chain': 'PREROUTING', 'protocol': 'tcp', 'destination_port': '{{ item }}',
        'jump': 'TRACE', 'state': 'absent'}, 'loop': PORTS}],
    'ping': [{'name': 't', 'ansible.builtin.ping': {}}],
    'empty': [{'name': 't', 'ansible.builtin.meta': 'noop'}],
}


class Runner(PlaybookRunner):
    def __init__(self, lab):
        super(Runner, self).__init__(lab, HOST, 'bench-trace-rule-', facts=('invocations', 'changed'))
        for key, tasks in BOOKS.items():
            self.add_book(key, json.dumps([{'hosts': HOST, 'gather_facts': False, 'tasks': tasks}]))

    def raw_rules(self):
        out = self.lab.exec(HOST, ['iptables-save', '-t', 'raw']).stdout
        return [x for x in out.splitlines() if x.startswith('-A PREROUTING')]

    def flush(self, side=None):
        self.lab.exec(HOST, ['iptables', '-t', 'raw', '-F', 'PREROUTING'])

    def ensure(self, side):
        """Each side starts from its own 50 rules (for re-run and remove)."""
        self.flush()
        self.play('%s_add' % side)


def main():
    import virtlab
    name = os.environ.get('BENCH_LAB') or 'bench'
    lab = virtlab.Lab(name)
    was_up = lab.is_up()
    lab.up(personas=['debian12'])
    run = Runner(lab)
    bench = Bench('trace_rule', runs=int(os.environ.get('BENCH_RUNS', 3)))
    try:
        run.play('ping')   # warm the ssh control master
        baseline = []
        for dummy in range(bench.runs):
            start = time.perf_counter()
            run.play('empty')
            baseline.append(time.perf_counter() - start)
        base = statistics.median(baseline)

        def checked(key, expect_rules):
            def fn():
                res = run.play(key)
                res['rules_after'] = len(run.raw_rules()) if expect_rules is not None else None
                return res
            return fn

        bench.step('add 50 TRACE rules', ours=checked('ours_add', 50), theirs=checked('theirs_add', 50),
                   setup=run.flush, goal=10)
        bench.step('re-run unchanged (50 rules)', ours=checked('ours_add', 50), theirs=checked('theirs_add', 50),
                   setup=run.ensure, goal=10)
        bench.step('remove 50 rules', ours=checked('ours_remove', 0), theirs=checked('theirs_remove', 0),
                   setup=run.ensure)
        bench.step('one ansible.builtin.ping task', ours=lambda: run.play('ping'))
        run.flush()

        ping = bench.steps[-1].median_ours
        for step in bench.steps:
            if step.median_theirs is not None:
                step.facts['net_ours_s'] = round(step.median_ours - base, 3)
                step.facts['net_theirs_s'] = round(step.median_theirs - base, 3)
                step.facts['net_ratio'] = round((step.median_theirs - base) / max(step.median_ours - base, 1e-3), 1)
                step.facts['ours_over_ping'] = round(step.median_ours / ping, 2)
        goals = {
            'add_ratio_ge_10': bench.steps[0].ratio >= 10,
            'rerun_ratio_ge_10': bench.steps[1].ratio >= 10,
            'add_le_2x_ping': bench.steps[0].median_ours <= 2 * ping,
            'rerun_le_2x_ping': bench.steps[1].median_ours <= 2 * ping,
        }
        bench.write(extra={'lab': name, 'host': HOST, 'rules': len(PORTS), 'empty_playbook_s': round(base, 3),
                           'ping_s': ping, 'goals': goals,
                           'ours': 'virtops.virtnet.trace_rule (one task, destination_port list)',
                           'theirs': 'ansible.builtin.iptables in a loop of %d' % len(PORTS)})
        print('goals: %s' % goals)
    finally:
        try:
            run.flush()
        except Exception:  # the lab may already be gone
            pass
        if not was_up:
            lab.down()


if __name__ == '__main__':
    main()
