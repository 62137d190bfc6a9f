# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: virtops.virtnet.network vs community.libvirt.virt_net, same lab host, one run.

Theirs is used the way its documentation shows: a Jinja2 template rendered into
``virt_net command=define``, then ``state=active``, then ``autostart=true`` (three tasks, each
looping over the networks). Ours: one ``network`` task looping over the same networks.

Steps (each side on its own ten networks, so neither sees the other's state):
1. converge 10 networks from nothing;
2. re-run unchanged;
3. change one DHCP host of one network, the user's way: edit the data, re-run the same playbook;
4. (theirs' other documented way) the same change with ``virt_net command=modify`` and a host
   XML snippet, next to ours re-run.
Facts per step: task definitions, module invocations, whether the running network (live XML)
and the persistent definition got the change, and how many bridge ports (a guest namespace
plugged into the network) went missing.

community.libvirt comes from the ``ansible`` package on PyPI (galaxy is not reachable from the
lab machine): ``pip download ansible`` then ``ansible_collections/community/libvirt`` is
extracted into a temporary collections path.

Run:  .venv/bin/python bench/bench_network.py     (root; BENCH_RUNS=3 by default)
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab'))

from _ansible import PlaybookRunner  # noqa: E402
from _harness import Bench  # noqa: E402

HOST = 'debian12-1'
N_NETS = 10
ANSIBLE_PKG = 'ansible==10.7.0'   # ships community.libvirt 1.3.0

TEMPLATE = """<network>
  <name>{{ item.name }}</name>
  <forward mode='nat'/>
  <bridge name='{{ item.bridge }}' stp='on' delay='0'/>
  <ip address='{{ item.prefix }}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='{{ item.prefix }}.100' end='{{ item.prefix }}.200'/>
{% for h in item.hosts %}
      <host mac='{{ h.mac }}' name='{{ h.name }}' ip='{{ h.ip }}'/>
{% endfor %}
    </dhcp>
  </ip>
</network>
"""

OURS = """- hosts: %(host)s
  gather_facts: false
  tasks:
    - name: networks
      virtops.virtnet.network:
        name: "{{ item.name }}"
        forward: nat
        bridge:
          name: "{{ item.bridge }}"
        ips:
          - address: "{{ item.prefix }}.1"
            prefix: 24
            ranges:
              - start: "{{ item.prefix }}.100"
                end: "{{ item.prefix }}.200"
            hosts: "{{ item.hosts }}"
        autostart: true
      loop: "{{ nets }}"
"""

THEIRS = """- hosts: %(host)s
  gather_facts: false
  tasks:
    - name: define
      community.libvirt.virt_net:
        command: define
        name: "{{ item.name }}"
        xml: "{{ lookup('template', 'net.xml.j2') }}"
      loop: "{{ nets }}"
    - name: start
      community.libvirt.virt_net:
        state: active
        name: "{{ item.name }}"
      loop: "{{ nets }}"
    - name: autostart
      community.libvirt.virt_net:
        autostart: true
        name: "{{ item.name }}"
      loop: "{{ nets }}"
"""

THEIRS_MODIFY = """- hosts: %(host)s
  gather_facts: false
  tasks:
    - name: modify
      community.libvirt.virt_net:
        command: modify
        name: "{{ net.name }}"
        xml: "<host mac='{{ host.mac }}' name='{{ host.name }}' ip='{{ host.ip }}'/>"
"""


def nets(side, variant=0):
    base = 60 if side == 'ours' else 70
    out = []
    for i in range(N_NETS):
        prefix = '10.%d.%d' % (base, i)
        hosts = [{'mac': '52:54:00:%02x:%02x:01' % (base, i), 'name': 'h%d' % i, 'ip': '%s.10' % prefix}]
        if i == 0 and variant:
            hosts[0]['ip'] = '%s.%d' % (prefix, 10 + variant)
        out.append({'name': '%s-n%d' % ('bo' if side == 'ours' else 'bt', i),
                    'bridge': '%s%d' % ('vbo' if side == 'ours' else 'vbt', i),
                    'prefix': prefix, 'hosts': hosts})
    return out


def community_libvirt():
    """A collections path holding community.libvirt (from the ansible package on PyPI)."""
    dest = os.path.join(tempfile.gettempdir(), 'virtnet-bench-collections')
    if os.path.isdir(os.path.join(dest, 'ansible_collections', 'community', 'libvirt')):
        return dest
    dl = tempfile.mkdtemp(prefix='ansible-dl-')
    try:
        subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'pip'), 'download', '--no-deps', '-q', '-d', dl,
                        ANSIBLE_PKG], check=True)
        wheel = glob.glob(os.path.join(dl, 'ansible-*.whl'))[0]
        with zipfile.ZipFile(wheel) as z:
            for n in z.namelist():
                if n.startswith('ansible_collections/community/libvirt/'):
                    z.extract(n, dest)
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    return dest


class Runner(PlaybookRunner):
    def __init__(self, lab, theirs_path):
        super(Runner, self).__init__(
            lab, HOST, 'bench-network-',
            collections_path='%s:%s' % (os.path.join(ROOT, 'build', 'collections'), theirs_path))
        os.makedirs(os.path.join(self.dir, 'templates'))
        with open(os.path.join(self.dir, 'templates', 'net.xml.j2'), 'w') as fh:
            fh.write(TEMPLATE)
        for key, text in (('ours', OURS), ('theirs', THEIRS), ('theirs_modify', THEIRS_MODIFY)):
            self.add_book(key, text % {'host': HOST})

    def remove_all(self, side):
        for n in nets(side):
            self.lab.virsh(HOST, 'net-destroy', n['name'], check=False)
            self.lab.virsh(HOST, 'net-undefine', n['name'], check=False)


def main():
    import virtlab
    name = os.environ.get('BENCH_LAB')
    if not name:
        name = 'benchnet' if virtlab.Lab('bench').is_up() else 'bench'
    lab = virtlab.Lab(name)
    was_up = lab.is_up()
    lab.up(personas=['debian12'])
    theirs_path = community_libvirt()
    run = Runner(lab, theirs_path)
    bench = Bench('network', runs=int(os.environ.get('BENCH_RUNS', 3)))
    book = {'ours': 'ours', 'theirs': 'theirs'}
    try:
        # 1. converge from nothing
        bench.step('converge 10 networks',
                   ours=lambda: run.play('ours', {'nets': nets('ours')}),
                   theirs=lambda: run.play('theirs', {'nets': nets('theirs')}),
                   setup=run.remove_all)
        # 2. unchanged re-run
        for side in ('ours', 'theirs'):
            run.play(book[side], {'nets': nets(side)})
        bench.step('re-run unchanged',
                   ours=lambda: run.play('ours', {'nets': nets('ours')}),
                   theirs=lambda: run.play('theirs', {'nets': nets('theirs')}), goal=2.0)
        # 3. change one DHCP host: same playbook, edited data
        guests = {}
        for side in ('ours', 'theirs'):
            n0 = nets(side)[0]
            guests[side] = (lab.guest_add('bg%s' % side[0], HOST, network=n0['name'], kind='ns'), n0['bridge'])
        state = {'variant': 0, 'facts': {}}

        def change(side, key=None):
            state['variant'] += 1
            v = state['variant']
            data = nets(side, variant=v)
            bridge = guests[side][1]
            ports = set(lab.exec(HOST, ['ls', '/sys/class/net/%s/brif' % bridge]).stdout.split())
            if key == 'theirs_modify':
                res = run.play(key, {'net': data[0], 'host': data[0]['hosts'][0]})
            else:
                res = run.play(book[side], {'nets': data})
            ip = data[0]['hosts'][0]['ip']
            live = "ip='%s'" % ip in lab.virsh(HOST, 'net-dumpxml', data[0]['name']).stdout
            config = "ip='%s'" % ip in lab.virsh(HOST, 'net-dumpxml', '--inactive', data[0]['name']).stdout
            after = set(lab.exec(HOST, ['ls', '/sys/class/net/%s/brif' % bridge]).stdout.split())
            res.update(live_changed=live, config_changed=config, ports_detached=len(ports - after))
            return res

        bench.step('change one DHCP host (edit data, re-run)',
                   ours=lambda: change('ours'), theirs=lambda: change('theirs'))
        bench.step('change one DHCP host (theirs: virt_net command=modify)',
                   ours=lambda: change('ours'), theirs=lambda: change('theirs', 'theirs_modify'))
        for step in bench.steps:
            f = step.facts
            summary = {}
            for side in ('ours', 'theirs'):
                if '%s_tasks' % side in f:
                    summary['%s_task_definitions' % side] = max(f['%s_tasks' % side])
                    summary['%s_module_invocations' % side] = max(f['%s_invocations' % side])
                if '%s_live_changed' % side in f:
                    summary['%s_running_network_got_change' % side] = all(f['%s_live_changed' % side])
                    summary['%s_definition_got_change' % side] = all(f['%s_config_changed' % side])
                    summary['%s_guest_ports_detached' % side] = sum(f['%s_ports_detached' % side])
            f['summary'] = summary
        bench.write(extra={'lab': name, 'host': HOST, 'theirs': 'community.libvirt 1.3.0 virt_net (from %s)' % ANSIBLE_PKG,
                           'ours': 'virtops.virtnet.network'})
    finally:
        for side in ('ours', 'theirs'):
            lab.guest_del('bg%s' % side[0])
            run.remove_all(side)
        shutil.rmtree(run.dir, ignore_errors=True)
        if not was_up:
            lab.down()


if __name__ == '__main__':
    main()
