# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault catalogue (docs/reliability.md): real faults on lab hosts, and what the user checks afterwards.

- libvirtd killed (SIGKILL) in the middle of a restart-needing ``network`` change and of a hot-plug;
- the SSH connection cut during ``trace_rule`` and ``trace_capture``;
- a busy flow under TRACE with ``rate``: kernel log lines per second stay at the limit.

Run:  VIRTLAB_NAME=hk .venv/bin/python -m pytest -q tests/integration/test_faults.py -p no:xdist
The moment of a fault is found by watching the host, never by a fixed sleep: a small watcher runs in
the host's namespaces, says ``ready``, polls for the condition (a bridge gone, a device in libvirt's
live state) every 2 ms and kills the daemon then (see ``Killer``).
"""
import json
import os
import subprocess
import time

import pytest

from labansible import TARGET_HOST, playbook  # tests/lab, put on sys.path by conftest

HOST = TARGET_HOST
NET = 'virtops.virtnet.network'
IFACE = 'virtops.virtnet.guest_interface'

WATCHER = r'''
import os, signal, sys, time
mode, target, pidfile, deadline = sys.argv[1], sys.argv[2], sys.argv[3], time.time() + float(sys.argv[4])
text = sys.argv[5] if len(sys.argv) > 5 else None
def hit():
    if mode == 'gone':
        return not os.path.exists(target)
    try:
        with open(target) as f:
            return text in f.read()
    except (IOError, OSError):
        return False
print('ready', flush=True)
while time.time() < deadline:
    if hit():
        pid = int(open(pidfile).read().split()[0])
        os.kill(pid, signal.SIGKILL)
        print('killed %d' % pid, flush=True)
        sys.exit(0)
    time.sleep(0.002)
print('timeout', flush=True)
sys.exit(1)
'''


class Killer(object):
    """SIGKILL a host daemon the moment ``mode`` holds: ``gone`` (path vanished) or ``contains``
    (file contains text). Runs inside the host's namespaces, so it sees the host's sysfs and /run."""

    def __init__(self, lab, host, mode, target, text=None, daemon='libvirtd', timeout=120):
        pidfile = os.path.join(lab.dir, 'hosts', host, 'pids', daemon + '.pid')
        argv = lab._nsenter(host) + ['/usr/bin/python3', '-c', WATCHER, mode, target, pidfile, str(timeout)]
        if text is not None:
            argv.append(text)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        line = self.proc.stdout.readline().strip()
        assert line == 'ready', 'watcher did not start: %r %s' % (line, self.proc.stderr.read())

    def result(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        return out.strip() + err.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_on(lab, module, args, check=False):
    task = {'name': 'run_module', module: args, 'register': 'r'}
    play = [{'hosts': HOST, 'gather_facts': False, 'tasks': [task]}]
    out = playbook(lab, json.dumps(play, indent=1) + '\n', check=check)
    res = out['results'].get('run_module', {}).get(HOST)
    if res is None:
        raise AssertionError('no result (rc=%d)\n%s\n%s' % (out['rc'], out['stdout'][-3000:], out['stderr'][-3000:]))
    return res


def brif(lab, bridge):
    p = lab.exec(HOST, ['ls', '/sys/class/net/%s/brif' % bridge], check=False)
    return sorted(p.stdout.split()) if p.returncode == 0 else []


def domiflist(lab, dom, inactive=False):
    """[(target, source, mac)] of a domain's interfaces, live or persistent."""
    args = ['domiflist', dom] + (['--inactive'] if inactive else [])
    rows = [line.split() for line in lab.virsh(HOST, *args).stdout.splitlines() if line.strip()]
    return [(r[0], r[2], r[4]) for r in rows]


def libvirtd_back(lab):
    """After a test that kills libvirtd: have it running again whatever the test's outcome."""
    if lab.virsh(HOST, 'list', check=False).returncode != 0:
        lab.restart_daemon(HOST, 'libvirtd')


def wait_for(what, cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError('waited %d s for %s' % (timeout, what))


# ------------------------------------------------------------------------------------------
# libvirtd killed
# ------------------------------------------------------------------------------------------
def test_libvirtd_killed_during_a_network_restart(lab):
    """restart=if_needed; libvirtd is SIGKILLed as soon as the old bridge is gone (the network destroyed,
    the new definition not yet started). The failed run says what was done and that libvirtd went away;
    once libvirtd is back, the re-run converges: the new definition active, the running guests' taps back
    on the bridge, each once; a third run changes nothing."""
    name, bridge = 'fkill', 'vbn-fkill'
    ip = {'address': '192.168.77.1', 'prefix': 24}
    args = dict(name=name, bridge={'name': bridge}, ips=[ip])
    guests = ('fkq1', 'fkq2')
    try:
        res = run_on(lab, NET, args)
        assert not res['failed'], res
        taps = sorted(lab.guest_add(g, HOST, network=name, kind='qemu')['tap'] for g in guests)
        assert brif(lab, bridge) == taps
        killer = Killer(lab, HOST, 'gone', '/sys/class/net/%s' % bridge)
        try:
            res = run_on(lab, NET, dict(args, mtu=1400, restart='if_needed'))
            assert 'killed' in killer.result(), killer.result()
        finally:
            killer.stop()
        # libvirtd died inside the destroy call: the run cannot know whether it happened, and says so
        assert res['failed'] and res['changed'], res
        assert res['interrupted'] == 'stopping network fkill for the restart', res
        assert 'lost the connection to libvirtd' in res['msg'] and 'run the task again' in res['msg'], res
        assert 'Traceback' not in res['msg'], res
        lab.restart_daemon(HOST, 'libvirtd')
        for g in guests:  # the guests survived libvirtd's death
            assert lab.virsh(HOST, 'domstate', g).stdout.strip() == 'running'
        again = run_on(lab, NET, dict(args, mtu=1400, restart='if_needed'))
        assert not again['failed'] and again['changed'], again
        assert again['active'] and again['network']['mtu'] == 1400, again
        assert brif(lab, bridge) == taps, again
        assert sorted(again['reattached']) == taps, again
        for g in guests:
            assert [r[1] for r in domiflist(lab, g)] == [name]
        third = run_on(lab, NET, dict(args, mtu=1400, restart='if_needed'))
        assert not third['failed'] and not third['changed'], third
        assert brif(lab, bridge) == taps
    finally:
        libvirtd_back(lab)
        for g in guests:
            lab.guest_del(g)
        run_on(lab, NET, dict(name=name, state='absent'))


def test_libvirtd_killed_during_a_hot_plug(lab):
    """guest_interface on a running qemu guest; libvirtd is SIGKILLed as soon as the new interface is in
    the domain's live state (hot-plugged, the persistent configuration not yet written). The re-run, once
    libvirtd is back, adds it to the configuration and finds it live: one device with that MAC, live and
    persistent, on the bridge; a third run changes nothing."""
    dom, mac = 'fkhp', '52:54:00:77:00:42'
    args = dict(domain=dom, type='network', source='default', mac=mac)
    try:
        lab.guest_add(dom, HOST, kind='qemu')
        status = '/run/libvirt/qemu/%s.xml' % dom
        killer = Killer(lab, HOST, 'contains', status, text=mac)
        try:
            res = run_on(lab, IFACE, args)
            assert 'killed' in killer.result(), killer.result()
        finally:
            killer.stop()
        assert res['failed'], res
        assert 'lost the connection to libvirtd' in res['msg'] and 'run the task again' in res['msg'], res
        lab.restart_daemon(HOST, 'libvirtd')
        assert lab.virsh(HOST, 'domstate', dom).stdout.strip() == 'running'
        again = run_on(lab, IFACE, args)
        assert not again['failed'] and again['changed'], again
        live = [r for r in domiflist(lab, dom) if r[2] == mac]
        config = [r for r in domiflist(lab, dom, inactive=True) if r[2] == mac]
        assert len(live) == 1 and len(config) == 1, (live, config)
        assert live[0][0] in brif(lab, 'virbr0'), live
        third = run_on(lab, IFACE, args)
        assert not third['failed'] and not third['changed'], third
        assert len([r for r in domiflist(lab, dom) if r[2] == mac]) == 1
    finally:
        libvirtd_back(lab)
        lab.guest_del(dom)
