# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-playbook runner for the lab benchmarks (bench_network, bench_trace_rule).

``PlaybookRunner(lab, host, prefix)`` writes playbooks into a temporary directory
(``add_book(key, text)``) and runs them with the venv's ``ansible-playbook`` against the lab's
inventory, with the json callback environment of ``tests/lab/labansible.py``. ``play(key,
extra)`` raises when a task failed or ansible-playbook returned non-zero, else returns the
counts a benchmark records per run: tasks, module invocations (loop items count one each) and
how many of them changed.
"""
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PlaybookRunner(object):
    FACTS = ('tasks', 'invocations', 'changed')

    def __init__(self, lab, host, prefix, collections_path=None, facts=None):
        import labansible  # tests/lab, put on sys.path by the benchmark
        self.lab = lab
        self.host = host
        self.env = labansible.ansible_env(lab)
        if collections_path:
            self.env['ANSIBLE_COLLECTIONS_PATH'] = collections_path
        self.facts = tuple(facts or self.FACTS)
        self.bin = os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook')
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.books = {}

    def add_book(self, key, text):
        path = os.path.join(self.dir, '%s.yml' % key)
        with open(path, 'w') as fh:
            fh.write(text)
        self.books[key] = path
        return path

    def play(self, key, extra=None):
        argv = [self.bin, '-i', self.lab.inventory_path, self.books[key]]
        if extra is not None:
            argv += ['-e', json.dumps(extra)]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           env=self.env, cwd=self.dir, timeout=900, check=False)
        doc = json.JSONDecoder().raw_decode(p.stdout[p.stdout.find('{'):])[0]
        counts = dict(tasks=0, invocations=0, changed=0)
        failed = 0
        for play in doc.get('plays', []):
            for t in play.get('tasks', []):
                counts['tasks'] += 1
                res = t['hosts'].get(self.host, {})
                items = res.get('results') or [res]
                counts['invocations'] += len(items)
                counts['changed'] += sum(1 for r in items if r.get('changed'))
                failed += sum(1 for r in items if r.get('failed'))
        if failed or p.returncode:
            raise RuntimeError('%s failed (rc=%d):\n%s' % (key, p.returncode, p.stdout[-3000:]))
        return dict((k, counts[k]) for k in self.facts)
