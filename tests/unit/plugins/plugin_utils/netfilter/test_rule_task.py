# SPDX-License-Identifier: GPL-3.0-or-later
"""RuleTask and NfLogTask end to end against a scripted host (canned probe and iptables-save outputs), and
RuleTask's remote scripts under a real sh."""
import os
import pty
import shutil
import subprocess
import time

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _nflog, _rule_task as T, _ruleset as R
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire
from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import CommandResult, ModuleFailed
from nf_fixtures import fixture


class Host:
    """A module-like object whose remote scripts answer from fixtures; records what would run."""

    def __init__(self, params, probe='probe_el7.txt', save='save_libvirt_legacy.txt', check=False, diff=True):
        self.params = params
        self.check_mode = check
        self.diff_mode = diff
        self.host = 'h'
        self.cache = {}
        self.warnings = []
        self.scripts = []
        self.probe = fixture(probe)
        self.save = fixture(save)

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, msg, **kw):
        raise ModuleFailed(msg, result=kw)

    def run_script(self, script, args=(), what='', check_rc=True, ok_rcs=(0,), become=None):
        self.scripts.append((script, list(args)))
        if script.startswith(T.PROBE_SCRIPT) or script == _nflog.READ_FILES_SCRIPT:
            if script == _nflog.READ_FILES_SCRIPT:
                return CommandResult(0, ''.join('@@file %s\n' % a for a in args) + '@@end\n', '', '')
            out = self.probe
            if script != T.PROBE_SCRIPT:     # probe + table read
                out += '@@save iptables-save\n%s@@end\n' % self.save
            return CommandResult(0, out, '', '')
        if script == T.APPLY_SCRIPT:
            return CommandResult(0, '@@save iptables-save\n%s@@end\n' % self.applied(args), '', '')
        if script == _nflog.APPLY_SCRIPT:
            return CommandResult(0, '@@bindings\nnet.netfilter.nf_log.2 = nf_log_ipv4\n'
                                    'net.netfilter.nf_log.10 = nf_log_ipv6\n', '', '')
        raise AssertionError('unexpected script %r' % script[:60])

    def applied(self, args):
        """Apply the ipv4 batch to the saved text (enough for the after-read)."""
        lines = self.save.splitlines()
        batch = args[3].splitlines()
        table = batch[0][1:]
        out, current = [], None
        deletes = ['-A' + x[2:] for x in batch if x.startswith('-D ')]
        adds = []
        for x in batch:
            if x.startswith(('-A ', '-I ')):
                words = x.split()
                if x.startswith('-I '):
                    del words[2]
                words = ['-A'] + words[1:]
                i = words.index('--comment') + 1
                words[i] = '"%s"' % words[i]          # iptables-save quotes the comment
                adds.append(' '.join(words))
        for line in lines:
            if line.startswith('*'):
                current = line[1:]
            if current == table and line in deletes:
                continue
            if current == table and line == 'COMMIT':
                out += adds
            out.append(line)
        return '\n'.join(out) + '\n'


def trace(**kw):
    p = dict(name='t1', state='present', family='ipv4', chains=['PREROUTING'], protocol='tcp', source=None,
             destination=None, source_port=None, destination_port=['3128'], in_interface=None, out_interface=None,
             extra=None, rate=None, expires=None, backend='auto')
    p.update(kw)
    return p


def test_check_mode_runs_probe_only_and_predicts():
    h = Host(trace(), check=True)
    res = T.RuleTask(h, 'trace').run()
    assert res['changed'] and len(h.scripts) == 1          # one round trip: probe + table read
    assert res['rules'][0].startswith('-A PREROUTING -p tcp -m tcp --dport 3128')
    assert [x.split()[0] for x in res['batch']['ipv4']] == ['*raw', '-D', '-I', 'COMMIT']   # expired 'old' purged
    assert len(res['purged']) == 1
    assert 'ipv4: -A PREROUTING' in res['diff']['after']


def test_apply_is_one_more_round_trip_and_reports_saved_lines():
    h = Host(trace())
    res = T.RuleTask(h, 'trace').run()
    assert res['changed'] and len(h.scripts) == 2
    script, args = h.scripts[1]
    assert script == T.APPLY_SCRIPT
    assert args[0] == 'iptables-restore' and args[1] == ''   # 1.4.21: no --wait for iptables-restore
    assert args[9] == ''                                        # no expiry: no remover
    assert res['rules'] and 'virtnet:t1:' in res['rules'][0]


def test_expires_starts_the_remover():
    h = Host(trace(expires=60))
    res = T.RuleTask(h, 'trace').run()
    args = h.scripts[1][1]
    assert args[9] == T.REMOVER_SCRIPT and args[10] == 't1' and args[11] == str(1795726964 + 60)
    assert res['expires_at'] == 1795726964 + 60


def test_bad_input_touches_nothing():
    h = Host(trace(destination_port=['70000']))
    with pytest.raises(ModuleFailed, match='destination_port'):
        T.RuleTask(h, 'trace').run()
    assert h.scripts == []


def test_log_rule_unknown_chain():
    p = dict(trace(), table='nat', chain='NOPE', position='append', prefix=None, level='warning')
    with pytest.raises(ModuleFailed, match="chain='NOPE'"):
        T.RuleTask(Host(p), 'log').run()


def test_nft_backend_missing_on_el6():
    with pytest.raises(ModuleFailed, match='backend nft needs'):
        T.RuleTask(Host(trace(backend='nft'), probe='probe_el6.txt'), 'trace').run()


def test_nf_log_task_el9_check_and_apply():
    p = dict(families=['ipv4', 'ipv6'], state='present', persistent=True, all_netns=False, force=False)
    h = Host(p, probe='probe_el9.txt', check=True)
    res = _nflog.NfLogTask(h).run()
    assert res['changed'] and res['chosen']['ipv4']['module'] == 'nf_log_syslog'
    assert sorted(res['files']) == ['/etc/modules-load.d/virtnet.conf', '/etc/sysctl.d/90-virtnet.conf']
    assert [s for s, a in h.scripts if s == _nflog.APPLY_SCRIPT] == []
    h = Host(p, probe='probe_el9.txt')
    res = _nflog.NfLogTask(h).run()
    assert res['families']['ipv6']['after'] == 'nf_log_ipv6'
    ops = [a for s, a in h.scripts if s == _nflog.APPLY_SCRIPT][0]
    assert ops[0] == 'write' and ops[4] == 'write'       # files staged first, moved into place last
    runtime = ops[8:]
    assert runtime[:5] == ['modprobe', 'nf_log_syslog', 'bind', '2', 'nf_log_ipv4']
    assert len(res['diff']) == 3


def _remover(tmp_path, save, restore, wait, name, exp, ack=''):
    """Run the remover locally with a fake ``sleep`` (records its argument, returns at once) and no
    ``logger`` on PATH, so its log goes to a file of the test."""
    fake = tmp_path / 'bin'
    fake.mkdir(exist_ok=True)
    (fake / 'sleep').write_text('#!/bin/sh\necho "$1" >> %s\n' % (tmp_path / 'slept.txt'))
    (fake / 'sleep').chmod(0o755)
    for tool in ('sh', 'date', 'uname', 'grep', 'sed', 'head', 'tr', 'cat', 'mv'):
        path = shutil.which(tool)
        if path and not (fake / tool).exists():
            (fake / tool).symlink_to(path)
    env = {'PATH': str(fake), 'VIRTNET_EXPIRE_LOG': str(tmp_path / 'expire.log')}
    r = subprocess.run([shutil.which('sh'), '-c', T.REMOVER_SCRIPT, 'x', save, restore, wait, 'raw', name, exp, ack],
                       capture_output=True, text=True, timeout=20, check=False, env=env)
    log = (tmp_path / 'expire.log').read_text() if (tmp_path / 'expire.log').exists() else ''
    slept = (tmp_path / 'slept.txt').read_text().split() if (tmp_path / 'slept.txt').exists() else []
    return r, log, slept


def test_apply_script_survives_the_pty_hangup(tmp_path):
    """Ansible's ssh runs our scripts under a pty (-tt); when the session ends, the kernel sends SIGHUP
    to its foreground process group.  Without SIGHUP ignored before the fork, a remover that had not
    reached setsid() yet died with the session (the CI flake of test_expiry_removed_by_detached_remover)."""
    dummy, restore, dummy = _stateful_bins(tmp_path, EXPIRED)
    save = shutil.which('true')  # the table read after the remover's start returns at once
    marker = tmp_path / 'survived'
    remover = 'echo "$$" > "$7"; sleep 1; touch %s.$$' % marker
    pids = []
    for i in range(15):
        args = [restore, '', save, '*raw\n-A X\nCOMMIT', '', '', '', '', 'raw', remover, 'n', '1500000000']
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - child
            os.execv(shutil.which('sh'), ['sh', '-c', T.APPLY_SCRIPT, 'virtnet'] + args)
        out = b''
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.waitpid(pid, 0)
        os.close(fd)
        started = T.removers(wire.parse(out.decode().replace('\r\n', '\n')))
        assert started.get(save), out
        pids.append(started[save])
    deadline = time.time() + 30
    while time.time() < deadline and not all(os.path.exists('%s.%d' % (marker, p)) for p in pids):
        time.sleep(0.2)
    lost = [p for p in pids if not os.path.exists('%s.%d' % (marker, p))]
    assert not lost, 'removers killed by the hangup: %s' % lost


def test_apply_script_tests_both_families_first(tmp_path):
    save, restore = _fake_bins(tmp_path, '*raw\nCOMMIT\n')
    args = [restore, '', save, '*raw\n-A X\nCOMMIT', restore, '-w', save, '*raw\n-A Y\nCOMMIT', 'raw', '', '', '']
    r = subprocess.run(['sh', '-c', T.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    calls = [line for line in (tmp_path / 'in.txt').read_text().splitlines() if line.startswith('ARGS')]
    assert calls == ['ARGS --noflush --test', 'ARGS --noflush -w --test', 'ARGS --noflush', 'ARGS --noflush -w']
    assert r.stdout.count('@@save') == 2 and T.saved_tables(wire.parse(r.stdout))[save].startswith('*raw')
    assert '@@remover' not in r.stdout


def test_scripts_are_posix_sh():
    for script in (T.APPLY_SCRIPT, T.REMOVER_SCRIPT, T.SAVE_SCRIPT):
        assert subprocess.run(['sh', '-n', '-c', script], check=False).returncode == 0


@pytest.mark.parametrize('version,backend,expected', [
    ('iptables v1.8.9 (nf_tables)', 'auto', 'iptables-nft-save'),
    ('iptables v1.8.9 (legacy)', 'auto', 'iptables-legacy-save'),
    ('iptables v1.4.7', 'auto', 'iptables-legacy-save'),
    ('iptables v1.8.9 (nf_tables)', 'legacy', 'iptables-legacy-save'),
])
def test_probe_save_tail_picks_the_save_command(tmp_path, version, backend, expected):
    for name, body in (('iptables', 'echo "%s"' % version), ('iptables-nft-save', 'echo "*raw nft"'),
                       ('iptables-legacy-save', 'echo "*raw legacy"')):
        f = tmp_path / name
        f.write_text('#!/bin/sh\n%s\n' % body)
        f.chmod(0o755)
    r = subprocess.run(['sh', '-c', T.PROBE_SAVE_TAIL, 'x', 'raw', backend, 'iptables'], capture_output=True,
                       text=True, env={'PATH': '%s:/usr/bin:/bin' % tmp_path}, check=False)
    assert list(T.saved_tables(wire.parse(r.stdout))) == [expected]


def test_apply_script_leaves_a_table_changed_since_the_read_alone(tmp_path):
    """Another run added a rule of ours after this task's read: exit 40, nothing applied (the task reads and
    plans again); with the fingerprint of what is there now, the batch is applied."""
    full = fixture('save_libvirt_legacy.txt')
    start = full.index('*raw')
    text = full[start:full.index('COMMIT', start) + 7]   # what iptables-save -t raw prints
    save, restore = _fake_bins(tmp_path, text)
    stale = T.fingerprint(R.parse_save(text.replace('virtnet:old:', 'virtnet:gone:')), 'raw')
    args = [restore, '', save, '*raw\n-A X\nCOMMIT', '', '', '', '', 'raw', '', '', '', stale, '']
    r = subprocess.run(['sh', '-c', T.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 40 and 'changed since it was read' in r.stderr
    assert not (tmp_path / 'in.txt').exists()
    args[12] = T.fingerprint(R.parse_save(text), 'raw')
    assert args[12].count('virtnet:') >= 2
    r = subprocess.run(['sh', '-c', T.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'in.txt').read_text().splitlines()[0] == 'ARGS --noflush'


# --------------------------------------------------------------------------- remote scripts, run locally
def _fake_bins(tmp_path, save_text):
    (tmp_path / 'save.txt').write_text(save_text)
    save = tmp_path / 'fake-save'
    save.write_text('#!/bin/sh\ncat %s\n' % (tmp_path / 'save.txt'))
    restore = tmp_path / 'fake-restore'
    restore.write_text('#!/bin/sh\necho "ARGS $*" >> %s\ncat >> %s\n' % (tmp_path / 'in.txt', tmp_path / 'in.txt'))
    for f in (save, restore):
        f.chmod(0o755)
    return str(save), str(restore)


def _stateful_bins(tmp_path, save_text, read_failures=0, restore_failures=0):
    """Fake save/restore over a state file: restore applies ``-D`` lines; each may fail N times first."""
    state = tmp_path / 'state.txt'
    state.write_text(save_text)
    save = tmp_path / 'fake-save'
    save.write_text('#!/bin/sh\nn=$(cat %(d)s/rf 2>/dev/null || echo 0)\n'
                    'if [ "$n" -lt %(rf)d ]; then echo $((n+1)) > %(d)s/rf; '
                    'echo "iptables-save: Resource temporarily unavailable" >&2; exit 4; fi\n'
                    'cat %(d)s/state.txt\n' % dict(d=tmp_path, rf=read_failures))
    restore = tmp_path / 'fake-restore'
    restore.write_text('#!/bin/sh\nn=$(cat %(d)s/wf 2>/dev/null || echo 0)\ncat > %(d)s/batch.txt\n'
                       'echo "ARGS $*" >> %(d)s/calls.txt\n'
                       'if [ "$n" -lt %(wf)d ]; then echo $((n+1)) > %(d)s/wf; '
                       'echo "iptables-restore: line 2 failed" >&2; exit 1; fi\n'
                       'grep "^-D " %(d)s/batch.txt | sed "s/^-D /-A /" > %(d)s/del.txt\n'
                       'grep -v -x -F -f %(d)s/del.txt %(d)s/state.txt > %(d)s/new.txt; '
                       'mv %(d)s/new.txt %(d)s/state.txt\n' % dict(d=tmp_path, wf=restore_failures))
    for f in (save, restore):
        f.chmod(0o755)
    return str(save), str(restore), state


EXPIRED = fixture('save_libvirt_legacy.txt').replace('exp=2000000000', 'exp=1500000000')


def test_remover_deletes_exactly_ours_with_that_expiry(tmp_path):
    # an expiry already past: the remover does not sleep
    save, restore = _fake_bins(tmp_path, EXPIRED)
    r, log, slept = _remover(tmp_path, save, restore, '-w', 'proxy', '1500000000')
    got = (tmp_path / 'in.txt').read_text().splitlines()[:4]
    assert got[0] == 'ARGS --noflush -w'
    assert got[1] == '*raw' and got[-1] == 'COMMIT'
    assert got[2].startswith('-D PREROUTING -p udp -m udp --dport 53')
    assert slept == []
    # the fake restore changes nothing: the remover sees the rule again, retries, gives up and says so
    assert r.returncode == 1 and 'GAVE UP after 10 attempts' in log and 'name=proxy exp=1500000000' in log


def test_remover_does_nothing_when_gone(tmp_path):
    save, restore = _fake_bins(tmp_path, fixture('save_libvirt_legacy.txt'))
    r, log, slept = _remover(tmp_path, save, restore, '', 'proxy', '1000000001')
    assert r.returncode == 0 and not (tmp_path / 'in.txt').exists()
    assert 'nothing left to remove (attempt 1)' in log


@pytest.mark.parametrize('read_failures,restore_failures,failure_line,slept_want,attempt', [
    (0, 0, None, [], 2),
    # a failed read is retried, not taken for "nothing left"
    (2, 0, 'read failed: iptables-save: Resource temporarily unavailable', ['1', '2'], 4),
    # a failed restore is retried with backoff
    (0, 3, 'fake-restore failed: iptables-restore: line 2 failed', ['1', '2', '4'], 5),
])
def test_remover_removes_and_verifies(tmp_path, read_failures, restore_failures, failure_line, slept_want, attempt):
    save, restore, state = _stateful_bins(tmp_path, EXPIRED, read_failures=read_failures,
                                          restore_failures=restore_failures)
    r, log, slept = _remover(tmp_path, save, restore, '-w', 'proxy', '1500000000')
    assert r.returncode == 0, log
    assert ':exp=1500000000' not in state.read_text() and 'virtnet:proxy:8c453d71' in state.read_text() and 'virtnet:old:' in state.read_text()
    if failure_line:
        assert log.count(failure_line) == len(slept_want)
    assert slept == slept_want and 'removed 1 rule(s) (attempt %d)' % attempt in log


def test_remover_gives_up_after_bounded_backoff_and_logs_it(tmp_path):
    save, restore, state = _stateful_bins(tmp_path, EXPIRED, read_failures=99)
    r, log, slept = _remover(tmp_path, save, restore, '', 'proxy', '1500000000')
    assert r.returncode == 1
    assert slept == ['1', '2', '4', '8', '16', '30', '30', '30', '30', '30']
    assert 'GAVE UP after 10 attempts (read failed' in log and ':exp=1500000000' in state.read_text()


def test_remover_sleeps_until_expiry_and_writes_its_pid_first(tmp_path):
    save, restore, dummy = _stateful_bins(tmp_path, EXPIRED)
    ack = tmp_path / 'ack'
    exp = str(int(time.time()) + 100)
    r, log, slept = _remover(tmp_path, save, restore, '', 'proxy', exp, ack=str(ack))
    assert ack.read_text().strip().isdigit()
    assert 95 <= int(slept[0]) <= 100 and 'nothing left to remove' in log
