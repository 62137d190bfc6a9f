# SPDX-License-Identifier: GPL-3.0-or-later
"""Ruleset model: iptables-save parsing (real outputs, legacy and nft), validation, plans, batches."""
import os
import pty
import shutil
import subprocess
import time

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _ruleset as R
from nf_fixtures import fixture

NOW = 1795726964


def params(**kw):
    p = dict(name='t1', state='present', family='ipv4', chains=['PREROUTING'], protocol=None, source=None,
             destination=None, source_port=None, destination_port=None, in_interface=None, out_interface=None,
             extra=None, rate=None, expires=None, backend='auto', table='filter', chain='INPUT', position='append',
             prefix=None, level='warning')
    p.update(kw)
    return p


@pytest.mark.parametrize('name', ['save_libvirt_legacy.txt', 'save_libvirt_nft.txt'])
def test_parse_save(name):
    rs = R.parse_save(fixture(name))
    assert set(rs.tables) == {'filter', 'nat', 'raw'}
    assert rs.tables['filter']['chains'] == {'INPUT': 'ACCEPT', 'FORWARD': 'ACCEPT', 'OUTPUT': 'ACCEPT',
                                             'LIBVIRT_INP': '-'}
    assert len(list(rs.rules('filter'))) == 13
    ours = rs.ours()
    assert sorted(r.tag['name'] for r in ours) == ['lg', 'natlog', 'old', 'proxy', 'proxy']
    assert [r.comment for r in rs.rules('filter') if r.comment] == ['user: ssh from lan', 'virtnet:lg:0a1b2c3d']
    assert rs.ours('raw', 'proxy')[1].tag == dict(name='proxy', hash='77777777', exp=2000000000)
    assert 'user trace' not in [r.tag for r in rs.ours('raw')]
    assert len(rs.others('raw')) == 1
    assert rs.has_chain('filter', 'LIBVIRT_INP') and not rs.has_chain('nat', 'LIBVIRT_INP')


def test_delete_line_is_the_saved_spec():
    rs = R.parse_save(fixture('save_libvirt_nft.txt'))
    r = rs.ours('filter', 'lg')[0]
    assert r.delete_line.startswith('-D INPUT -m comment --comment "virtnet:lg:0a1b2c3d"')


@pytest.mark.parametrize('tag,expected', [
    ('virtnet:a:0123abcd', dict(name='a', hash='0123abcd', exp=None)),
    ('virtnet:a.b-c_d:0123abcd:exp=17', dict(name='a.b-c_d', hash='0123abcd', exp=17)),
    ('virtnet:x y', None), ('virtnet:t1:exp=1999999999', None), ('libvirt', None), (None, None),
])
def test_parse_tag(tag, expected):
    assert R.parse_tag(tag) == expected


def test_build_trace_rules_one_per_port_and_chain():
    rules = R.build_rules('trace', params(protocol='tcp', destination_port=['3128', '80-90'],
                                          chains=['PREROUTING', 'OUTPUT'], rate=10))
    assert len(rules) == 4
    line = rules[0].line(op='-I', index=1)
    assert line.startswith('-I PREROUTING 1 -p tcp -m tcp --dport 3128 -m comment --comment virtnet:t1:')
    assert '-m limit --limit 10/second' in line and line.endswith('-j TRACE')
    assert rules[1].matches[-1] == '80:90'
    assert len(set(r.hash for r in rules)) == 4


def test_expiry_renders_time_match_in_utc():
    r = R.build_rules('trace', params(expires=60))[0]
    line = r.line(exp=2000000000)
    assert ':exp=2000000000' in line and '--datestop 2033-05-18T03:33:20' in line
    assert R.build_rules('trace', params())[0].hash != r.hash   # expiring rules are different rules


def test_family_both_makes_ipv6_rules_too():
    rules = R.build_rules('trace', params(family='both', protocol='tcp', destination_port=['22']))
    assert [r.family for r in rules] == ['ipv4', 'ipv6']


def test_log_rule_words():
    r = R.build_rules('log', params(table='nat', chain='POSTROUTING', source='192.168.122.0/24',
                                    prefix='virbr0 nat: ', level='info'))[0]
    assert r.line(op='-A') == ('-A POSTROUTING -s 192.168.122.0/24 -m comment --comment virtnet:t1:%s -j LOG '
                               '--log-prefix "virbr0 nat: " --log-level 6' % r.hash)


BAD = [
    (dict(protocol='tcp', destination_port=['0']), 'destination_port.*out of range'),
    (dict(protocol='tcp', destination_port=['70000']), 'out of range'),
    (dict(protocol='tcp', destination_port=['90:80']), 'reversed'),
    (dict(protocol='tcp', source_port='a'), 'source_port.*not a port'),
    (dict(destination_port=['80']), 'ports need protocol'),
    (dict(protocol='icmp', destination_port=['80']), 'ports need protocol'),
    (dict(source='10.0.0.0/33'), 'source.*not an IP address'),
    (dict(destination='300.1.1.1'), 'destination.*not an IP'),
    (dict(source='2001:db8::1'), 'IPv6 address but family is ipv4'),
    (dict(family='ipv6', source='10.0.0.1'), 'IPv4 address but family is ipv6'),
    (dict(family='both', source='10.0.0.1'), 'family is both'),
    (dict(in_interface='averyveryverylongname'), 'at most 15'),
    (dict(in_interface='eth0/1'), 'cannot contain'),
    (dict(in_interface='eth 0'), 'cannot contain'),
    (dict(in_interface='$(id)'), 'cannot contain'),
    (dict(chains=['OUTPUT'], in_interface='eth0'), 'no input interface'),
    (dict(out_interface='eth0'), 'no output interface'),
    (dict(extra=['; reboot']), 'extra'),
    (dict(extra=['`id`']), 'extra'),
    (dict(extra=['-j', 'ACCEPT']), 'set by the module'),
    (dict(extra=['--comment', 'x']), 'set by the module'),
    (dict(extra=['-A']), 'set by the module'),
    (dict(protocol='tcpx'), 'unknown protocol'),
    (dict(protocol='256'), '0 to 255'),
    (dict(family='ipv6', protocol='icmp'), 'icmpv6'),
    (dict(chains=['INPUT']), 'TRACE works only'),
    (dict(name='all'), 'reserved'),
    (dict(name='a:b'), 'name'),
    (dict(name='x' * 65), 'name'),
    (dict(rate=0), 'rate'),
    (dict(expires=0), 'expires'),
]


@pytest.mark.parametrize('kw,match', BAD)
def test_bad_trace_input(kw, match):
    with pytest.raises(R.RuleError, match=match):
        R.build_rules('trace', params(**kw))


@pytest.mark.parametrize('kw,match', [
    (dict(prefix='x' * 30), 'at most 29'),
    (dict(prefix='a"b'), 'quotes'),
    (dict(prefix="a'b"), 'quotes'),
    (dict(prefix='a$(id)'), 'shell'),
    (dict(prefix='a\\n'), 'backslashes'),
    (dict(chain='IN PUT'), 'chain'),
    (dict(chain='INPUT', out_interface='eth0'), 'no output interface'),
    (dict(level='loud'), 'level'),
])
def test_bad_log_input(kw, match):
    with pytest.raises(R.RuleError, match=match):
        R.build_rules('log', params(**kw))


def test_valid_edge_values():
    R.build_rules('trace', params(protocol='tcp', destination_port=['1', '65535', '1:65535'], in_interface='virbr0-nic+'))
    R.build_rules('trace', params(family='ipv6', protocol='icmpv6', source='2001:db8::/32'))
    R.build_rules('log', params(prefix='x' * 29, protocol='17', destination_port=['53']))


# --------------------------------------------------------------------------- plans
def rulesets(name='save_libvirt_nft.txt'):
    return {'ipv4': R.parse_save(fixture(name))}


def test_plan_adds_and_purges_expired():
    rules = R.build_rules('trace', params(name='new', protocol='tcp', destination_port=['22', '23']))
    plans = R.plan(rules, rulesets(), 'new', 'present', 'raw', NOW)
    fp = plans['ipv4']
    assert [r.tag['name'] for r in fp.purged] == ['old']      # exp=1000000000 is in the past
    assert fp.batch[0] == '*raw' and fp.batch[-1] == 'COMMIT'
    assert fp.batch[1].startswith('-D PREROUTING -p tcp -m tcp --dport 80 ')
    assert fp.batch[2].startswith('-I PREROUTING 1 ') and fp.batch[3].startswith('-I PREROUTING 2 ')
    assert len(fp.batch) == 5


def test_plan_unchanged_when_the_hashes_are_there():
    rules = R.build_rules('trace', params(name='proxy', protocol='tcp', destination_port=['3128']))
    rs = rulesets()
    # give the fixture rule the hash our rule has
    text = fixture('save_libvirt_nft.txt').replace('virtnet:proxy:8c453d71', rules[0].tag())
    text = text.replace('virtnet:old:aabbccdd:exp=1000000000', 'virtnet:old:aabbccdd:exp=2100000000')
    rs = {'ipv4': R.parse_save(text)}
    fp = R.plan(rules, rs, 'proxy', 'present', 'raw', NOW)['ipv4']
    # the second 'proxy' rule (udp 53) is no longer wanted: replaced, i.e. deleted
    assert [r.tag['hash'] for r in fp.keep] == [rules[0].hash]
    assert [r.tag['hash'] for r in fp.delete] == ['77777777']
    assert fp.add == []


def test_plan_absent_and_all():
    fp = R.plan([], rulesets(), 'proxy', 'absent', 'raw', NOW)['ipv4']
    assert sorted(r.tag['name'] for r in fp.delete) == ['old', 'proxy', 'proxy']
    fp = R.plan([], rulesets(), 'all', 'absent', 'raw', NOW)['ipv4']
    assert len(fp.delete) == 3 and not any('user trace' in line for line in fp.batch)
    fp = R.plan([], rulesets(), 'all', 'absent', 'filter', NOW)['ipv4']
    assert [r.tag['name'] for r in fp.delete] == ['lg']


def test_plan_nothing_to_do_gives_empty_batch():
    fp = R.plan([], rulesets(), 'nosuch', 'absent', 'nat', NOW)['ipv4']
    assert fp.batch == []


def test_log_rule_append_positions():
    rules = R.build_rules('log', params(name='x', chain='INPUT', destination_port=['1', '2'], protocol='udp'))
    fp = R.plan(rules, rulesets(), 'x', 'present', 'filter', NOW)['ipv4']
    assert [line.split()[0] for line in fp.add] == ['-A', '-A']


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
    r = subprocess.run([shutil.which('sh'), '-c', R.REMOVER_SCRIPT, 'x', save, restore, wait, 'raw', name, exp, ack],
                       capture_output=True, text=True, timeout=20, check=False, env=env)
    log = (tmp_path / 'expire.log').read_text() if (tmp_path / 'expire.log').exists() else ''
    slept = (tmp_path / 'slept.txt').read_text().split() if (tmp_path / 'slept.txt').exists() else []
    return r, log, slept


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


def test_remover_removes_and_verifies(tmp_path):
    save, restore, state = _stateful_bins(tmp_path, EXPIRED)
    r, log, slept = _remover(tmp_path, save, restore, '-w', 'proxy', '1500000000')
    assert r.returncode == 0, log
    assert ':exp=1500000000' not in state.read_text() and 'virtnet:proxy:8c453d71' in state.read_text() and 'virtnet:old:' in state.read_text()
    assert 'removed 1 rule(s) (attempt 2)' in log and slept == []


def test_remover_retries_a_failed_read_instead_of_taking_it_for_nothing_left(tmp_path):
    save, restore, state = _stateful_bins(tmp_path, EXPIRED, read_failures=2)
    r, log, slept = _remover(tmp_path, save, restore, '-w', 'proxy', '1500000000')
    assert r.returncode == 0, log
    assert ':exp=1500000000' not in state.read_text() and 'virtnet:proxy:8c453d71' in state.read_text()
    assert log.count('read failed: iptables-save: Resource temporarily unavailable') == 2
    assert slept == ['1', '2'] and 'removed 1 rule(s) (attempt 4)' in log


def test_remover_retries_a_failed_restore_with_backoff(tmp_path):
    save, restore, state = _stateful_bins(tmp_path, EXPIRED, restore_failures=3)
    r, log, slept = _remover(tmp_path, save, restore, '-w', 'proxy', '1500000000')
    assert r.returncode == 0, log
    assert ':exp=1500000000' not in state.read_text() and 'virtnet:proxy:8c453d71' in state.read_text()
    assert log.count('fake-restore failed: iptables-restore: line 2 failed') == 3
    assert slept == ['1', '2', '4']


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
            os.execv(shutil.which('sh'), ['sh', '-c', R.APPLY_SCRIPT, 'virtnet'] + args)
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
        started = R.parse_removers(out.decode().replace('\r\n', '\n'))
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
    r = subprocess.run(['sh', '-c', R.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    calls = [line for line in (tmp_path / 'in.txt').read_text().splitlines() if line.startswith('ARGS')]
    assert calls == ['ARGS --noflush --test', 'ARGS --noflush -w --test', 'ARGS --noflush', 'ARGS --noflush -w']
    assert r.stdout.count('@@save') == 2 and R.saved_tables(r.stdout)[save].startswith('*raw')
    assert '@@remover' not in r.stdout


def test_scripts_are_posix_sh():
    for script in (R.APPLY_SCRIPT, R.REMOVER_SCRIPT, R.SAVE_SCRIPT):
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
    r = subprocess.run(['sh', '-c', R.PROBE_SAVE_TAIL, 'x', 'raw', backend, 'iptables'], capture_output=True,
                       text=True, env={'PATH': '%s:/usr/bin:/bin' % tmp_path}, check=False)
    assert list(R.saved_tables(r.stdout)) == [expected]


def test_without_time_match_the_expiry_is_only_in_the_tag():
    rules = R.build_rules('trace', params(name='e', expires=30))
    fp = R.plan(rules, rulesets(), 'e', 'present', 'raw', NOW, expires=30, time_match=False)['ipv4']
    assert ':exp=%d' % (NOW + 30) in fp.add[0] and '-m time' not in fp.add[0]


def test_apply_script_leaves_a_table_changed_since_the_read_alone(tmp_path):
    """Another run added a rule of ours after this task's read: exit 40, nothing applied (the task reads and
    plans again); with the fingerprint of what is there now, the batch is applied."""
    full = fixture('save_libvirt_legacy.txt')
    start = full.index('*raw')
    text = full[start:full.index('COMMIT', start) + 7]   # what iptables-save -t raw prints
    save, restore = _fake_bins(tmp_path, text)
    stale = R.fingerprint(R.parse_save(text.replace('virtnet:old:', 'virtnet:gone:')), 'raw')
    args = [restore, '', save, '*raw\n-A X\nCOMMIT', '', '', '', '', 'raw', '', '', '', stale, '']
    r = subprocess.run(['sh', '-c', R.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 40 and 'changed since it was read' in r.stderr
    assert not (tmp_path / 'in.txt').exists()
    args[12] = R.fingerprint(R.parse_save(text), 'raw')
    assert args[12].count('virtnet:') >= 2
    r = subprocess.run(['sh', '-c', R.APPLY_SCRIPT, 'virtnet'] + args, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'in.txt').read_text().splitlines()[0] == 'ARGS --noflush'
