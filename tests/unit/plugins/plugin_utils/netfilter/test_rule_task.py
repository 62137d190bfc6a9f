# SPDX-License-Identifier: GPL-3.0-or-later
"""RuleTask and NfLogTask end to end against a scripted host (canned probe and iptables-save outputs)."""
import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _nflog, _ruleset as R
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
        if script.startswith(R.PROBE_SCRIPT) or script == _nflog.READ_FILES_SCRIPT:
            if script == _nflog.READ_FILES_SCRIPT:
                return CommandResult(0, ''.join('@@file %s\n' % a for a in args) + '@@end\n', '', '')
            out = self.probe
            if script != R.PROBE_SCRIPT:     # probe + table read
                out += '@@save iptables-save\n%s@@end\n' % self.save
            return CommandResult(0, out, '', '')
        if script == R.APPLY_SCRIPT:
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
    res = R.RuleTask(h, 'trace').run()
    assert res['changed'] and len(h.scripts) == 1          # one round trip: probe + table read
    assert res['rules'][0].startswith('-A PREROUTING -p tcp -m tcp --dport 3128')
    assert [x.split()[0] for x in res['batch']['ipv4']] == ['*raw', '-D', '-I', 'COMMIT']   # expired 'old' purged
    assert len(res['purged']) == 1
    assert 'ipv4: -A PREROUTING' in res['diff']['after']


def test_apply_is_one_more_round_trip_and_reports_saved_lines():
    h = Host(trace())
    res = R.RuleTask(h, 'trace').run()
    assert res['changed'] and len(h.scripts) == 2
    script, args = h.scripts[1]
    assert script == R.APPLY_SCRIPT
    assert args[0] == 'iptables-restore' and args[1] == ''   # 1.4.21: no --wait for iptables-restore
    assert args[9] == ''                                        # no expiry: no remover
    assert res['rules'] and 'virtnet:t1:' in res['rules'][0]


def test_expires_starts_the_remover():
    h = Host(trace(expires=60))
    res = R.RuleTask(h, 'trace').run()
    args = h.scripts[1][1]
    assert args[9] == R.REMOVER_SCRIPT and args[10] == 't1' and args[11] == str(1795726964 + 60)
    assert res['expires_at'] == 1795726964 + 60


def test_bad_input_touches_nothing():
    h = Host(trace(destination_port=['70000']))
    with pytest.raises(ModuleFailed, match='destination_port'):
        R.RuleTask(h, 'trace').run()
    assert h.scripts == []


def test_log_rule_unknown_chain():
    p = dict(trace(), table='nat', chain='NOPE', position='append', prefix=None, level='warning')
    with pytest.raises(ModuleFailed, match="chain='NOPE'"):
        R.RuleTask(Host(p), 'log').run()


def test_nft_backend_missing_on_el6():
    with pytest.raises(ModuleFailed, match='backend nft needs'):
        R.RuleTask(Host(trace(backend='nft'), probe='probe_el6.txt'), 'trace').run()


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
