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

from labansible import TARGET_HOST, playbook  # tests/lab, put on sys.path by conftest
from waits import wait_for

HOST = TARGET_HOST
NET = 'virtops.virtnet.network'
IFACE = 'virtops.virtnet.guest_interface'

WATCHER = r'''
import glob, os, signal, sys, time
mode, target, text, action, pidfile = sys.argv[1:6]
deadline = time.time() + float(sys.argv[6])
def hit():
    if mode == 'gone':
        return not os.path.exists(target)
    if mode == 'glob':
        return bool(glob.glob(target))
    if mode == 'proc':  # a process whose command line has every word of target
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmd = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            except (IOError, OSError):
                continue
            if pid.isdigit() and int(pid) != os.getpid() and all(w in cmd for w in target.split('|')):
                return True
        return False
    try:
        with open(target) as f:
            return text in f.read()
    except (IOError, OSError):
        return False
def children(ppid):
    out = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/stat' % pid) as f:
                if pid.isdigit() and int(f.read().rsplit(')', 1)[1].split()[1]) == ppid:
                    out.append(int(pid))
        except (IOError, OSError, IndexError, ValueError):
            pass
    return out
print('ready', flush=True)
while time.time() < deadline:
    if hit():
        pid = int(open(pidfile).read().split()[0])
        # 'kill': the daemon itself; 'sessions': the daemon's children (sshd: one per connection)
        victims = [pid] if action == 'kill' else children(pid)
        for v in victims:
            os.kill(v, signal.SIGKILL)
        print('killed %s' % ' '.join(map(str, victims)), flush=True)
        sys.exit(0)
    time.sleep(0.002)
print('timeout', flush=True)
sys.exit(1)
'''


class Killer(object):
    """SIGKILL a host daemon (``action='kill'``) or its children (``'sessions'``: sshd's connections) the
    moment ``mode`` holds: ``gone`` (path vanished), ``glob`` (a path matching appeared), ``contains``
    (file contains text) or ``proc`` (a process whose command line has every ``|``-separated word of target). Runs inside the host's namespaces, so it
    sees the host's sysfs and /run."""

    def __init__(self, lab, host, mode, target, text='', daemon='libvirtd', action='kill', timeout=120):
        pidfile = os.path.join(lab.dir, 'hosts', host, 'pids', daemon + '.pid')
        argv = lab._nsenter(host) + ['/usr/bin/python3', '-c', WATCHER, mode, target, text, action, pidfile,
                                     str(timeout)]
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


class SyscallKiller(object):
    """SIGKILL libvirtd at one exact moment: when any of its threads enters ``open``/``openat`` of ``path``.
    strace attaches to every thread of the daemon and injects the signal at that syscall's entry (strace's
    ``-e inject=SYSCALL:signal=KILL`` with ``-P path``), so the daemon dies inside the call being tested, not
    a poll interval later. Used where the moment between two libvirt calls is too short for ``Killer``."""

    def __init__(self, lab, host, path, daemon='libvirtd', timeout=120):
        pidfile = os.path.join(lab.dir, 'hosts', host, 'pids', daemon + '.pid')
        with open(pidfile) as f:
            pid = f.read().split()[0]
        argv = lab._nsenter(host) + ['timeout', str(timeout), 'strace', '-f', '-p', pid, '-e', 'signal=none',
                                     '-e', 'trace=open,openat', '-P', path,
                                     '-e', 'inject=open,openat:signal=KILL']
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        self.first = self.proc.stderr.readline()
        assert 'attached' in self.first, 'strace did not attach to %s %s: %r' % (daemon, pid, self.first)

    def result(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        return 'killed' if '+++ killed by SIGKILL +++' in err else 'not killed: ' + self.first + err[-2000:]

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


def ended(lab, host, pid):
    """The process has exited: gone, or a zombie (the machine's init reaps when it gets to it; a zombie
    answers kill -0 but runs nothing)."""
    state = lab.exec(host, ['ps', '-o', 'stat=', '-p', str(pid)], check=False).stdout.strip()
    return not state or state.startswith('Z')


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
    """guest_interface on a running qemu guest; libvirtd is SIGKILLed the moment it opens the domain's
    persistent configuration to write the new interface into it (the interface is hot-plugged, the
    configuration not yet written). The re-run, once libvirtd is back, adds it to the configuration and
    finds it live: one device with that MAC, live and persistent, on the bridge; a third run changes nothing."""
    dom, mac = 'fkhp', '52:54:00:77:00:42'
    args = dict(domain=dom, type='network', source='default', mac=mac)
    try:
        lab.guest_add(dom, HOST, kind='qemu')
        killer = SyscallKiller(lab, HOST, '/etc/libvirt/qemu/%s.xml.new' % dom)
        try:
            res = run_on(lab, IFACE, args)
            assert 'killed' in killer.result(), killer.result()
        finally:
            killer.stop()
        assert res['failed'] and res['changed'], res
        assert res['interrupted'] == 'writing the interface to the configuration of domain %s' % dom, res
        assert 'lost the connection to libvirtd' in res['msg'] and 'run the task again' in res['msg'], res
        assert 'Traceback' not in res['msg'], res
        lab.restart_daemon(HOST, 'libvirtd')
        assert lab.virsh(HOST, 'domstate', dom).stdout.strip() == 'running'
        assert [r for r in domiflist(lab, dom) if r[2] == mac], 'the hot-plug happened before the kill'
        assert not [r for r in domiflist(lab, dom, inactive=True) if r[2] == mac], 'the configuration was written'
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


# ------------------------------------------------------------------------------------------
# the SSH connection cut
# ------------------------------------------------------------------------------------------
EXPIRE_LOG = '/var/tmp/virtnet-expire.log'  # the lab has no syslog daemon: the remover's log file


def raw_rules(lab, host, name):
    out = lab.exec(host, ['iptables-save', '-t', 'raw']).stdout
    return [x for x in out.splitlines() if x.startswith('-A ') and 'virtnet:%s:' % name in x]


def cut_playbook(lab, host, task):
    play = [{'hosts': host, 'gather_facts': False, 'tasks': [dict(task, name='cut')]}]
    return playbook(lab, json.dumps(play) + '\n')


def test_ssh_cut_during_trace_rule(lab):
    """The SSH connection is cut (the host's sshd session processes SIGKILLed) while trace_rule runs,
    after its rule is in the table and its remover started, before the result comes back. The playbook
    fails for the host; the rule is there, and is still removed at its expiry by the detached remover
    (logged); the next run finds nothing of it left."""
    host, name = HOST, 'fcut'
    killer = Killer(lab, host, 'proc', 'virtnet-expire ip| %s ' % name, daemon='sshd', action='sessions')
    try:
        t0 = time.time()
        task = {'virtops.virtnet.trace_rule': dict(name=name, protocol='tcp', destination_port=['4711'], expires=15)}
        out = cut_playbook(lab, host, task)
        t1 = time.time()
        assert 'killed' in killer.result(), killer.result()
    finally:
        killer.stop()
    st = out['stats'][host]
    assert out['rc'] != 0 and (st['unreachable'] or st['failures']), out['stats']
    rules = raw_rules(lab, host, name)
    assert len(rules) == 1, rules  # applied before the cut (15 s leave room for a slow, loaded start)
    exp = int(rules[0].split(':exp=')[1].split()[0].strip('"'))
    assert t0 + 15 - 1 <= exp <= t1 + 15 + 1, (t0, exp, t1)   # this run's rule: now + expires
    wait_for('the rule removed at its expiry', lambda: not raw_rules(lab, host, name), timeout=exp - time.time() + 20)

    def logged():
        text = lab.exec(host, ['sh', '-c', 'cat %s 2>/dev/null || true' % EXPIRE_LOG]).stdout
        return [x for x in text.splitlines() if ' name=%s exp=%d ' % (name, exp) in x and 'host=%s ' % host in x]
    assert 'removed 1 rule(s)' in wait_for('the remover\'s log line', logged, timeout=10)[-1]
    again = cut_playbook(lab, host, {'virtops.virtnet.trace_rule': dict(name=name, state='absent')})
    res = again['results']['cut'][host]
    assert not res['failed'] and not res['changed'], res


def cut_capture(lab, host, task):
    """Run a trace_capture ``task`` on ``host`` and cut its SSH connection the moment its monitor's pid file
    appears (before the state file and the result): (capture id, monitor pid) of what it left."""
    pidglob = '/run/virtnet-capture-*.pid'
    assert not lab.exec(host, ['sh', '-c', 'ls %s 2>/dev/null || true' % pidglob]).stdout.strip()
    killer = Killer(lab, host, 'glob', pidglob, daemon='sshd', action='sessions')
    try:
        out = cut_playbook(lab, host, task)
        assert 'killed' in killer.result(), killer.result()
    finally:
        killer.stop()
    assert out['rc'] != 0, out['stats']
    pidfile = lab.exec(host, ['sh', '-c', 'ls %s' % pidglob]).stdout.split()
    assert len(pidfile) == 1, pidfile
    cid = pidfile[0].split('virtnet-capture-')[1][:-len('.pid')]
    return cid, lab.exec(host, ['cat', pidfile[0]]).stdout.strip()


def test_ssh_cut_during_trace_capture_start(lab):
    """The SSH connection is cut while trace_capture action=start runs, right after its nfnetlink monitor
    started (its pid file written), before the state file and the result. The monitor ends by itself at
    its lifetime; the next start on the host reports and removes what was left."""
    host = HOST
    start = {'virtops.virtnet.trace_capture': dict(action='start', source='nfnetlink', lifetime=10)}
    cid, pid = cut_capture(lab, host, start)
    assert lab.exec(host, ['kill', '-0', pid], check=False).returncode == 0, 'monitor %s not running' % pid
    assert lab.exec(host, ['test', '-e', '/run/virtnet-capture-%s.state' % cid], check=False).returncode != 0
    wait_for('monitor %s to end by itself (lifetime 10 s)' % pid,
             lambda: ended(lab, host, pid), timeout=30)
    nxt = cut_playbook(lab, host, start)
    res = nxt['results']['cut'][host]
    assert not res['failed'], res
    assert any('removed what capture %s left' % cid in w for w in res.get('warnings', [])), res
    left = lab.exec(host, ['sh', '-c', 'ls /run/virtnet-capture-%s.* /tmp/virtnet-capture-%s.* 2>/dev/null || true'
                           % (cid, cid)]).stdout
    assert not left.strip(), left
    stop = cut_playbook(lab, host, {'virtops.virtnet.trace_capture': dict(action='stop', capture_id=res['capture_id'])})
    assert not stop['results']['cut'][host]['failed'], stop


def test_ssh_cut_during_trace_capture_oneshot(lab):
    """The same cut during action=oneshot (duration 3 s): its monitor is bounded by the oneshot's lifetime
    (duration + 120 s, as ``timeout`` on the host), and the next start reports it as still running. Its lifetime
    is not waited out here (the start test does that): the test ends the monitor itself, as the lifetime
    would, and the following start removes what was left."""
    host = HOST
    oneshot = {'virtops.virtnet.trace_capture': dict(action='oneshot', source='nfnetlink', duration=3)}
    cid, pid = cut_capture(lab, host, oneshot)
    cmd = lab.exec(host, ['sh', '-c', "tr '\\000' ' ' < /proc/%s/cmdline" % pid]).stdout.split()
    assert cmd[:2] == ['timeout', '123'], cmd  # duration 3 + 120 s: it cannot run for ever
    start = {'virtops.virtnet.trace_capture': dict(action='start', source='nfnetlink', lifetime=10)}
    nxt = cut_playbook(lab, host, start)['results']['cut'][host]
    assert not nxt['failed'], nxt
    assert any('capture %s is still running on the host (monitor pid %s)' % (cid, pid) in w
               for w in nxt.get('warnings', [])), nxt
    stop = cut_playbook(lab, host, {'virtops.virtnet.trace_capture': dict(action='stop', capture_id=nxt['capture_id'])})
    assert not stop['results']['cut'][host]['failed'], stop
    lab.exec(host, ['kill', pid])  # stands in for the lifetime
    wait_for('monitor %s to end' % pid, lambda: ended(lab, host, pid), timeout=30)
    last = cut_playbook(lab, host, start)['results']['cut'][host]
    assert any('removed what capture %s left' % cid in w for w in last.get('warnings', [])), last
    cut_playbook(lab, host, {'virtops.virtnet.trace_capture': dict(action='stop', capture_id=last['capture_id'])})


# ------------------------------------------------------------------------------------------
# a busy flow under TRACE with rate
# ------------------------------------------------------------------------------------------
RATE_HOST = 'el7-1'  # legacy xtables: TRACE goes to the kernel log (iptables-nft's goes to nfnetlink)
FLOOD_PORT = 4799


def test_busy_flow_under_trace_stays_at_the_rate(lab):
    """A guest sends 2,000 UDP datagrams per second for 4 s to its host; a TRACE rule for the flow with
    rate=10 (burst 10): the kernel log gets the lines of at most burst + rate x seconds packets (+2), at
    least 80 % of rate x seconds (the limit is reached, not undershot), and after the first second's burst
    at most rate + 1 packets' lines in any second (6 lines a packet here: 60 lines/s). Numbers: bench/bench_trace_rate.py."""
    import flood
    rate, pps, seconds = 10, 2000, 4
    guest = 'fkflood'
    g = lab.guest_add(guest, RATE_HOST)
    task = [{'name': 'log', 'virtops.virtnet.nf_log': {'families': ['ipv4']}},
            {'name': 'trace', 'virtops.virtnet.trace_rule': dict(
                name='fflood', protocol='udp', destination_port=[str(FLOOD_PORT)], rate=rate, expires=300)}]
    play = [{'hosts': RATE_HOST, 'gather_facts': False, 'tasks': task}]
    try:
        out = playbook(lab, json.dumps(play) + '\n')
        assert out['rc'] == 0, out['stdout'][-2000:]
        res = flood.measure(lab, guest, g['gateway'], FLOOD_PORT, pps, seconds)
        assert res['sent'] == pps * seconds, res
        bound = rate + rate * res['send_seconds'] + 2  # burst + rate x seconds, 2 packets of slack
        assert rate * seconds * 0.8 <= res['packets'] <= bound, res
        for b in res['per_second'][1:]:  # after the first second's burst: the rate, with one token of slack
            assert b['packets'] <= rate + 1, res
    finally:
        play = [{'hosts': RATE_HOST, 'gather_facts': False,
                 'tasks': [{'name': 'rm', 'virtops.virtnet.trace_rule': dict(name='fflood', state='absent')}]}]
        playbook(lab, json.dumps(play) + '\n')
        lab.guest_del(guest)
