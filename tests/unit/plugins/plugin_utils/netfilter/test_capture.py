# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure parts of trace_capture, on real lab captures (tests/unit/fixtures/capture/README.md)."""

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _capture as cap
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _wire as wire

FIX = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'fixtures', 'capture')


def read(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


def lines(name):
    return read(name).splitlines()


# ------------------------------------------------------------------------------ ids and markers
def test_capture_ids_are_valid_and_unique():
    ids = set(cap.new_capture_id() for dummy in range(50))
    assert len(ids) == 50
    for cid in ids:
        assert cap.check_capture_id(cid) == cid


@pytest.mark.parametrize('bad', ['', 'abc', 'ABCDEF12', 'abc def1', 'abc;rm -rf', '../../etc', 'a' * 33, None, 12345678])
def test_bad_capture_ids(bad):
    with pytest.raises(cap.CaptureError):
        cap.check_capture_id(bad)


def marker(cid, which):
    """The marker START_SCRIPT and STOP_SCRIPT write to the kernel log."""
    return 'virtnet-capture:%s:%s' % (cid, which)


def window(lines, cid):
    """The test's own oracle of the host's cut: the lines strictly between the markers of ``cid``
    (nothing without a start marker), and whether each marker was found."""
    start, stop = marker(cid, 'start'), marker(cid, 'stop')
    out, found_start, found_stop = [], False, False
    for line in lines:
        if not found_start:
            found_start = start in line
            continue
        if stop in line:
            found_stop = True
            break
        out.append(line)
    return out, found_start, found_stop


def test_the_fixture_windows():
    text = lines('el7_dmesg.txt')
    out, start, stop = window(text, 'fxel7-1')
    assert start and stop and len(out) == len(text) - 2
    # another lab's bridge noise is in the window too (the ring buffer is shared): the host's awk drops it
    assert [x for x in out if 'TRACE: ' not in x] == [
        '[  526.171094] virbr0: port 1(vnet0) entered forwarding state',
        '[  526.171101] virbr0: topology change detected, propagating']
    text = lines('el7_syslog_messages.txt')
    out, start, stop = window(text, 'fxsyslog')
    assert start and stop and len(out) == len(text) - 2
    assert all(x.startswith('Nov 26 21:15:02 el7-1 kernel: TRACE: ') for x in out)
    kept, foreign = cap.host_line_filter(out, el7_ifaces())
    assert foreign == 0 and kept == out


AWK = shutil.which('awk')


@pytest.mark.skipif(AWK is None, reason='needs awk')
@pytest.mark.parametrize('name,cid', [('el7_dmesg.txt', 'fxel7-1'), ('el6_dmesg.txt', 'fxel6-1'),
                                      ('el7_dmesg_shared_ringbuffer.txt', 'fxmix')])
def test_host_side_awk_cut_equals_the_controller_cut(name, cid):
    noise = 'virbr0: port 1(vg-g1) entered forwarding state\n'
    text = 'TRACE: before the marker\n' + read(name).replace('\n', '\n' + noise, 3) + 'TRACE: after the stop marker\n'
    res = subprocess.run([AWK, '-v', 'a=' + marker(cid, 'start'), '-v', 'b=' + marker(cid, 'stop'),
                          '-v', 'k=' + cap.KEEP_RE, '-v', 'm=100000', cap.CUT_AWK],
                         input=text, capture_output=True, text=True, check=True)
    sec = wire.parse('@@lines\n' + res.stdout)
    expected, dummy, dummy2 = window(text.splitlines(), cid)
    expected = [x for x in expected if re.search(cap.KEEP_RE, x)]
    assert sec.get('lines') == expected and 'TRACE: before the marker' not in expected
    assert wire.parse_kv(sec.get('cut')) == dict(start='1', stop='1', kept=str(len(expected)))


@pytest.mark.skipif(AWK is None, reason='needs awk')
def test_host_side_awk_cut_limits_lines_and_reports_missing_marker():
    text = read('el7_dmesg.txt')
    res = subprocess.run([AWK, '-v', 'a=' + marker('fxel7-1', 'start'), '-v', 'b=' + marker('fxel7-1', 'stop'),
                          '-v', 'k=' + cap.KEEP_RE, '-v', 'm=5', cap.CUT_AWK],
                         input=text, capture_output=True, text=True, check=True)
    sec = wire.parse('@@lines\n' + res.stdout)
    assert len(sec.get('lines')) == 5
    assert wire.parse_kv(sec.get('cut'))['kept'] == '81'  # the TRACE lines, not the bridge noise
    res = subprocess.run([AWK, '-v', 'a=virtnet-capture:nope:start', '-v', 'b=x', '-v', 'k=' + cap.KEEP_RE,
                          '-v', 'm=5', cap.CUT_AWK], input=text, capture_output=True, text=True, check=True)
    assert res.stdout == '@@cut\nstart=0\nstop=0\nkept=0\n'


def test_scripts_carry_no_user_values():
    for script in (cap.START_SCRIPT, cap.STOP_SCRIPT, cap.PROBE_CMD_SCRIPT):
        assert 'CUT_AWK' not in script and 'KEEP_RE' not in script
    assert "'" not in cap.CUT_AWK  # it sits inside single quotes in STOP_SCRIPT


@pytest.mark.skipif(shutil.which('sh') is None, reason='needs sh')
def test_scripts_parse_with_sh():
    for script in (cap.START_SCRIPT, cap.STOP_SCRIPT, cap.PROBE_CMD_SCRIPT):
        subprocess.run(['sh', '-n', '-c', script], check=True)


# ------------------------------------------------------------------------------ remote output
def test_stop_output_sections():
    text = '@@state\nid=abc123\nsource=kernel_log\n@@ifaces\nbond0 92:55:D8:65:72:4e\nlo\n@@addrs\n10.0.0.1/24\n' \
           'fe80::1/64\nbogus\n@@end\n'
    sec = wire.parse(text)
    assert wire.parse_kv(sec.get('state')) == dict(id='abc123', source='kernel_log')
    assert cap.parse_ifaces(sec.get('ifaces')) == {'bond0': '92:55:d8:65:72:4e', 'lo': ''}
    assert cap.parse_addrs(sec.get('addrs')) == {'10.0.0.1', 'fe80::1'}
    assert sec.ended


def test_trace_lines_that_look_odd_stay_in_the_lines_section():
    sec = wire.parse('@@lines\n@@ not a header\n TRACE: 2 abc raw:PREROUTING:policy:ACCEPT\n')
    assert sec.get('lines') == ['@@ not a header', ' TRACE: 2 abc raw:PREROUTING:policy:ACCEPT']


# ------------------------------------------------------------------------------ host filter
def el7_ifaces():
    return cap.parse_ifaces(lines('el7_interfaces.txt'))


def test_host_filter_drops_the_other_hosts_lines_of_a_shared_ring_buffer():
    text, dummy, dummy2 = window(lines('el7_dmesg_shared_ringbuffer.txt'), 'fxmix')
    kept, foreign = cap.host_line_filter(text, el7_ifaces(), {'10.44.32.11', '172.31.255.11', '192.168.122.1'})
    assert foreign > 0 and kept
    assert len(kept) + foreign == len(text)
    # el6-1's guest port and MACs are gone; every kept line is el7-1's (its guest port or its bond0 MAC)
    assert not [x for x in kept if 'vg-g6' in x]
    for line in kept:
        assert 'PHYSIN=vg-g7' in line or 'MAC=92:55:d8:65:72:4e' in line, line
    # and all of el7-1's lines were kept
    own = [x for x in text if 'PHYSIN=vg-g7' in x or 'MAC=92:55:d8:65:72:4e' in x]
    assert kept == own


def test_host_filter_keeps_everything_of_a_single_host_capture():
    text, dummy, dummy2 = window(lines('el7_dmesg.txt'), 'fxel7-1')
    kept, foreign = cap.host_line_filter(text, el7_ifaces())
    assert foreign == 0 and kept == text


def test_host_filter_local_packets_by_source_address():
    line = '[ 1.0] TRACE: raw:OUTPUT:policy:2 IN= OUT=bond0 SRC=%s DST=10.44.32.217 LEN=60 TTL=64 ID=1 PROTO=TCP ' \
           'SPT=1 DPT=3128'
    kept, foreign = cap.host_line_filter([line % '10.44.32.11', line % '10.44.32.12'], el7_ifaces(),
                                         {'10.44.32.11'})
    assert kept == [line % '10.44.32.11'] and foreign == 1


def test_host_filter_without_interfaces_keeps_all():
    text = lines('el7_dmesg_shared_ringbuffer.txt')
    assert cap.host_line_filter(text, {}) == (text, 0)


def test_host_filter_keeps_broadcast_and_non_trace_lines():
    bc = '[ 1.0] TRACE: raw:PREROUTING:policy:2 IN=virbr0 OUT= MAC=ff:ff:ff:ff:ff:ff:aa:08:11:11:fd:e9:08:00 ' \
         'SRC=0.0.0.0 DST=255.255.255.255 PROTO=UDP SPT=68 DPT=67'
    other = '[ 2.0] net_ratelimit: 3 callbacks suppressed'
    kept, foreign = cap.host_line_filter([bc, other], el7_ifaces())
    assert kept == [bc, other] and foreign == 0


# ------------------------------------------------------------------------------ flow filter
def pkt(proto='tcp', hops=()):
    return dict(family='ipv4', proto=proto, hops=[dict(zip(('table', 'chain', 'in', 'src', 'dst', 'sport', 'dport'), h))
                                                  for h in hops])


SYN = pkt(hops=[('raw', 'PREROUTING', 'virbr0', '192.168.122.200', '10.44.32.217', 39126, 3128),
                ('nat', 'POSTROUTING', None, '192.168.122.200', '10.44.32.217', 39126, 3128)])
SYNACK = pkt(hops=[('raw', 'PREROUTING', 'bond0', '10.44.32.217', '10.44.32.11', 3128, 39126),
                   ('mangle', 'FORWARD', 'bond0', '10.44.32.217', '192.168.122.200', 3128, 39126)])
DNS = pkt('udp', hops=[('raw', 'PREROUTING', 'virbr0', '192.168.122.200', '192.168.122.1', 5353, 53)])
FLOW = dict(protocol='tcp', destination='10.44.32.217', destination_port=['3128'])


def test_flow_filter_original_and_reply():
    assert cap.flow_matches(SYN, FLOW)
    assert cap.flow_matches(SYNACK, FLOW)
    assert not cap.flow_matches(SYNACK, FLOW, both_directions=False)
    assert not cap.flow_matches(DNS, FLOW)
    kept, dropped = cap.filter_packets([SYN, DNS, SYNACK], FLOW)
    assert kept == [SYN, SYNACK] and dropped == 1


def test_flow_filter_sees_addresses_after_nat():
    # the reply is addressed to the host (10.44.32.11) before de-NAT, to the guest after
    assert cap.flow_matches(SYNACK, dict(destination='192.168.122.0/24', both_directions=False))
    assert cap.flow_matches(SYNACK, dict(source='192.168.122.200', source_port='39126'))


@pytest.mark.parametrize('match,expected', [
    (dict(), True),
    (dict(protocol='6'), True),
    (dict(protocol='udp'), False),
    (dict(protocol='all'), True),
    (dict(destination_port=['3000:3200']), True),
    (dict(destination_port=['80', '443']), False),
    (dict(source_port='1024:'), True),
    (dict(source='10.0.0.0/8', destination='10.44.32.217'), False),
    (dict(in_interface='virbr+'), True),
    (dict(in_interface='bond0'), False),
    (dict(destination='not an address'), False),
])
def test_flow_filter_table(match, expected):
    assert cap.flow_matches(SYN, match, both_directions=False) is expected


def test_drop_orphans():
    orphan = pkt(hops=[('nat', 'POSTROUTING', None, '192.168.122.200', '10.44.32.217', 1, 3128)])
    kept, dropped = cap.drop_orphans([SYN, orphan, dict(hops=[])])
    assert kept == [SYN, dict(hops=[])] and dropped == 1


# ------------------------------------------------------------------------------ loss warnings
LOSS_LINES = [
    '[  812.044312] net_ratelimit: 12 callbacks suppressed',
    '[  813.044312] net_ratelimit: 30 callbacks suppressed',
    'Nov 26 21:08:11 el7-1 rsyslogd: imjournal: 1532 messages lost due to rate-limiting',
    'Nov 26 21:08:12 el7-1 rsyslogd: imjournal: begin to drop messages due to rate-limiting',
    '2026-11-26T21:08:13+0000 debian12-1 systemd-journald[211]: Suppressed 214 messages from /system.slice/x.service',
    '2026-11-26T21:08:14+0000 debian12-1 systemd-journald[211]: Missed 97 kernel messages',
    '[  900.000000] ** 41 printk messages dropped **',
    'netlink: Error: No buffer space available',
]


def test_loss_warnings():
    warnings = cap.loss_warnings(LOSS_LINES)
    assert 'the kernel suppressed 42 log lines (net_ratelimit callbacks suppressed)' in warnings[0]
    text = '\n'.join(warnings)
    assert 'imjournal) lost 1532 messages' in text
    assert 'journald suppressed 214 messages' in text
    assert 'journald missed 97 kernel messages' in text
    assert 'dropped 41 printk messages' in text
    assert 'No buffer space available' in text
    assert len(warnings) == 6


def test_no_loss_warnings_on_clean_captures():
    for name in ('el7_dmesg.txt', 'el6_dmesg.txt', 'debian12_xtables_monitor.txt', 'debian12_nft_monitor_trace.txt'):
        assert cap.loss_warnings(lines(name)) == []


def test_keep_regex_keeps_trace_and_loss_lines():
    keep = re.compile(cap.KEEP_RE)
    assert all(keep.search(x) for x in LOSS_LINES)
    assert all(keep.search(x) for x in lines('el7_dmesg.txt') if 'TRACE: ' in x)
    assert not keep.search('[  539.323075] virbr0: port 1(vg-g1) entered forwarding state')


# ------------------------------------------------------------------------------ NAT: the parser's, alone
def implied(rule, chain='POSTROUTING', out='bond0'):
    """The parser's implied NAT entries for one hop that matched ``rule``."""
    hop = dict(table='nat', chain=chain, kind='rule', rule=rule, out=out, src='192.168.122.200', dst='10.0.0.1')
    return [dict((k, e[k]) for k in ('field', 'after', 'target')) for e in tp._implied_nat(0, hop)]


def test_the_parser_says_what_the_nat_rules_imply():
    """What trace_capture's own NAT notes said (hop ``nat_rule``, gone) is in the parser's ``nat`` entries."""
    masq = [x for x in read('el7_iptables_save.txt').splitlines() if 'MASQUERADE' in x]
    assert implied(masq[0]) == [dict(field='src', after='address of bond0 ports 1024-65535', target='MASQUERADE')]
    nft = [x for x in lines('debian12_nft_monitor_trace.txt') if 'masquerade' in x]
    assert implied(nft[0])[0]['target'] == 'MASQUERADE'
    assert implied('-A PREROUTING -d 10.0.0.1/32 -p tcp -j DNAT --to-destination 192.168.122.5:80', 'PREROUTING') == \
        [dict(field='dst', after='192.168.122.5:80', target='DNAT')]
    assert implied('-A POSTROUTING -o bond0 -j SNAT --to-source 10.44.32.11') == \
        [dict(field='src', after='10.44.32.11', target='SNAT')]
    assert implied('-A PREROUTING -p tcp -j REDIRECT --to-ports 3129', 'PREROUTING') == \
        [dict(field='dst', after='local address port 3129', target='REDIRECT')]
    assert implied('-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT') == []


# ------------------------------------------------------------------------------ diagnosis
FACTS_EL7 = dict(iptables_backend='legacy', nf_log_sysctl={2: 'nf_log_ipv4', 10: None}, in_netns=True,
                 nf_log_all_netns=None, epoch=1795727300, tools={'dmesg': '/usr/bin/dmesg'})


def test_trace_rules_in_real_snapshots():
    for name in ('el7_iptables_save.txt', 'el6_iptables_save.txt', 'debian12_iptables_save.txt'):
        rules = cap.trace_rules_in(read(name))
        assert len(rules) == 2 and all(r['ours'] for r in rules), name


def test_diagnosis_no_logger_bound():
    facts = dict(FACTS_EL7, nf_log_sysctl={2: None}, in_netns=False)
    causes = cap.diagnose_empty('kernel_log', facts, {'ipv4': read('el7_iptables_save.txt')}, cut=dict(start=True))
    assert causes[0].startswith('no kernel logger is bound to net.netfilter.nf_log.2')


def test_diagnosis_no_rule_of_ours():
    save = '\n'.join(x for x in read('el7_iptables_save.txt').splitlines() if 'TRACE' not in x)
    causes = cap.diagnose_empty('kernel_log', dict(FACTS_EL7, in_netns=False), {'ipv4': save}, cut=dict(start=True))
    assert causes == ['no TRACE rule in the raw table (add one with virtops.virtnet.trace_rule; an expired rule of '
                      'ours is removed by its remover)']
    theirs = save.replace('COMMIT', '-A PREROUTING -p icmp -j TRACE\nCOMMIT', 1).replace('*nat', '*raw', 0)
    raw = '*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p icmp -j TRACE\nCOMMIT\n'
    causes = cap.diagnose_empty('kernel_log', dict(FACTS_EL7, in_netns=False), {'ipv4': raw + theirs})
    assert causes[0].startswith('no TRACE rule of ours (comment virtnet:)')


def test_diagnosis_expired_rule():
    raw = '*raw\n-A PREROUTING -p tcp -m time --datestop 2026-11-26T21:00:00 -m comment --comment ' \
          '"virtnet:proxy:1f2e3d4c:exp=1795726800" -j TRACE\nCOMMIT\n'
    causes = cap.diagnose_empty('kernel_log', dict(FACTS_EL7, in_netns=False), {'ipv4': raw})
    assert causes[0] == 'our TRACE rules have expired (-m time --datestop): they no longer match'


def test_diagnosis_wrong_backend_for_the_source():
    facts = dict(iptables_backend='nft', nf_log_sysctl={2: 'nf_log_ipv4'}, in_netns=False)
    save = read('debian12_iptables_save.txt')
    causes = cap.diagnose_empty('kernel_log', facts, {'ipv4': save})
    assert 'use source=nfnetlink' in causes[0]
    causes = cap.diagnose_empty('nfnetlink', dict(FACTS_EL7, in_netns=False), {'ipv4': read('el7_iptables_save.txt')})
    assert 'use source=kernel_log' in causes[0]


def test_diagnosis_netns_and_marker_and_foreign_lines():
    causes = cap.diagnose_empty('kernel_log', FACTS_EL7, {'ipv4': read('el7_iptables_save.txt')},
                                cut=dict(start=False), raw_count=10, foreign=10)
    text = '\n'.join(causes)
    assert 'start marker was not found' in causes[0]
    assert 'all from other network namespaces' in text
    assert 'nf_log_all_netns=1' in text


def test_diagnosis_flow_filter_and_probe():
    causes = cap.diagnose_empty('nfnetlink', dict(iptables_backend='nft'), {'ipv4': read('debian12_iptables_save.txt')},
                                raw_count=47, flow_dropped=3, probe_result=dict(rc=1))
    assert causes[0].startswith('3 traced packets were captured but none matched')
    assert 'probe command failed (rc=1)' in causes[-1]


def test_diagnosis_default():
    causes = cap.diagnose_empty('kernel_log', dict(FACTS_EL7, in_netns=False), {'ipv4': read('el7_iptables_save.txt')},
                                cut=dict(start=True))
    assert causes == ['no matching traffic passed the host during the capture']


# ------------------------------------------------------------------------------ choices
NFT_FACTS = dict(iptables_backend='nft', tools={'xtables-monitor': '/usr/sbin/xtables-monitor', 'nft': '/usr/sbin/nft',
                                                'dmesg': '/usr/bin/dmesg', 'journalctl': '/usr/bin/journalctl'},
                 systemd=True)
EL6_FACTS = dict(iptables_backend='legacy', tools={'dmesg': '/bin/dmesg'}, systemd=False)


def test_choose_source():
    assert cap.choose_source(NFT_FACTS) == 'nfnetlink'
    assert cap.choose_source(NFT_FACTS, backend='legacy') == 'kernel_log'
    assert cap.choose_source(dict(NFT_FACTS, tools={})) == 'kernel_log'
    assert cap.choose_source(EL6_FACTS) == 'kernel_log'
    assert cap.choose_source(EL6_FACTS, 'nfnetlink') == 'nfnetlink'


def test_choose_reader_and_monitor():
    assert cap.choose_reader(EL6_FACTS) == 'dmesg'
    assert cap.choose_reader(dict(tools={'journalctl': '/bin/journalctl'}, systemd=True)) == 'journalctl'
    assert cap.choose_reader(dict(tools={}, systemd=False)) == 'syslog'
    assert cap.choose_reader(EL6_FACTS, 'syslog') == 'syslog'
    assert cap.choose_monitor(NFT_FACTS) == 'xtables-monitor'
    assert cap.choose_monitor(dict(tools={'nft': '/usr/sbin/nft'})) == 'nft'
    with pytest.raises(cap.CaptureError):
        cap.choose_monitor(EL6_FACTS)


# ------------------------------------------------------------------------------ the action plugin, fake host
# The action plugin's flow (start, probe, stop, filters, snapshot, annotate, diagnosis) with the
# remote side answered from the real captures above; no connection, no lab.
from ansible_collections.virtops.virtnet.plugins.action import trace_capture as action_mod  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _capture_task as task_mod  # noqa: E402
from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import (  # noqa: E402
    CommandResult, ModuleFailed)


class FakeHost:
    """Module-like object answering the capture scripts like a lab host would."""

    def __init__(self, params, stop_output, save_text='', check_mode=False, probe_rc=0,
                 nft_tables='table ip filter\ntable ip nat\ntable ip raw\n'):
        spec = action_mod.ActionModule.ARGUMENT_SPEC
        self.params = dict((k, v.get('default')) for k, v in spec.items())
        self.params.update(params)
        for key in ('match', 'probe'):
            if self.params.get(key) is not None:
                sub = dict((k, v.get('default')) for k, v in spec[key]['options'].items())
                sub.update(self.params[key])
                self.params[key] = sub
        self.check_mode = check_mode
        self.host = 'el7-1'
        self.task_vars = {}
        self.cache = {}
        self.commands = []
        self.warnings = []
        self.stop_output = stop_output
        self.save_text = save_text
        self.probe_rc = probe_rc
        self.nft_tables = nft_tables
        self.scripts = []

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, msg, **kw):
        raise ModuleFailed(msg, result=kw)

    def run(self, argv, check_rc=True, **kw):
        self.commands.append(argv)
        if argv == ['nft', 'list', 'tables']:
            return CommandResult(0, self.nft_tables, '', argv)
        return CommandResult(0, self.save_text, '', argv)

    def run_script(self, script, args=(), check_rc=True, **kw):
        if script == cap.START_SCRIPT:
            self.scripts.append('start')
            cid, src, tool = args[0], args[1], args[2]
            return CommandResult(0, '@@state\nid=%s\nsource=%s\ntool=%s\nfile=\npid=\n' % (cid, src, tool), '', '')
        if script == cap.STOP_SCRIPT:
            self.scripts.append('stop')
            return CommandResult(0, self.stop_output(args[0]), '', '')
        if script == cap.PROBE_CMD_SCRIPT:
            self.scripts.append('probe')
            return CommandResult(self.probe_rc, '', 'nc: connection refused' if self.probe_rc else '', '')
        raise AssertionError('unexpected script')


EL7_FACTS = dict(FACTS_EL7, tools={'dmesg': '/usr/bin/dmesg', 'iptables-save': '/usr/sbin/iptables-save',
                                   'iptables-restore': '/usr/sbin/iptables-restore', 'iptables': '/usr/sbin/iptables'},
                 iptables={'iptables': dict(version='1.4.21', version_tuple=(1, 4, 21), backend='legacy')})
DEB_FACTS = dict(NFT_FACTS, nf_log_sysctl={2: 'nf_log_ipv4'}, in_netns=True,
                 tools=dict(NFT_FACTS['tools'], **{'iptables-nft-save': '/usr/sbin/iptables-nft-save',
                                                   'iptables-nft-restore': '/usr/sbin/iptables-nft-restore',
                                                   'iptables-nft': '/usr/sbin/iptables-nft'}),
                 iptables={'iptables': dict(version='1.8.9', version_tuple=(1, 8, 9), backend='nft')})


def kernel_stop_output(fixture, fixture_cid, ifaces='el7_interfaces.txt', tool='dmesg'):
    def out(cid):
        window_lines, start, stop = window(lines(fixture), fixture_cid)
        kept = [x for x in window_lines if re.search(cap.KEEP_RE, x)]
        return '\n'.join(['@@state', 'id=' + cid, 'source=kernel_log', 'tool=' + tool, '@@ifaces'] + lines(ifaces)
                         + ['@@addrs', '10.44.32.11/24', '@@lines'] + kept
                         + ['@@cut', 'start=%d' % int(start), 'stop=%d' % int(stop), 'kept=%d' % len(kept), '@@loss', '@@end'])
    return out


def run_action(host, facts, monkeypatch):
    monkeypatch.setattr(task_mod, 'probe', lambda module: facts)
    act = action_mod.ActionModule.__new__(action_mod.ActionModule)
    return act.run_module(host)


def test_action_stop_on_a_shared_ring_buffer(monkeypatch):
    host = FakeHost(dict(action='stop', capture_id='abcdef123456', match=FLOW),
                    kernel_stop_output('el7_dmesg_shared_ringbuffer.txt', 'fxmix'), read('el7_iptables_save.txt'))
    res = run_action(host, EL7_FACTS, monkeypatch)
    assert res['changed'] is True and res['source_used'] == 'kernel_log' and res['marker_found'] is True
    assert res['stats']['foreign_lines'] > 0 and res['stats']['returned_packets'] == len(res['packets']) > 0
    for p in res['packets']:
        assert all(h.get('physin') in (None, 'vg-g7') for h in p['hops'])
    syn = res['packets'][0]
    assert [h['rule'] for h in syn['hops'] if h['table'] == 'filter' and h['chain'] == 'LIBVIRT_FWO'] == \
        ['-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT']
    masq = [i for i, h in enumerate(syn['hops']) if 'MASQUERADE' in (h.get('rule') or '')]
    assert masq and [(n['hop'], n['target']) for n in syn['nat'] if n['implied']] == [(masq[0], 'MASQUERADE')]
    assert not any('nat_rule' in h for p in res['packets'] for h in p['hops'])
    replies = [p for p in res['packets'] if p['src'] == '10.44.32.217']
    assert replies and any(n['field'] == 'dst' and n['after'] == '192.168.122.200' for n in replies[0]['nat'])
    assert res['rules_snapshot']['ipv4'][0].startswith('# Generated by iptables-save')
    assert host.commands == [['iptables-save']] and 'diagnosis' not in res and host.warnings == []


def test_action_stop_xtables_monitor(monkeypatch):
    def out(cid):
        return '\n'.join(['@@state', 'id=' + cid, 'source=nfnetlink', 'tool=xtables-monitor', '@@ifaces', '@@addrs',
                          '@@lines'] + lines('debian12_xtables_monitor.txt')
                         + ['@@cut', 'start=1', 'stop=1', 'kept=77', 'alive=1', '@@loss', '@@end'])
    host = FakeHost(dict(action='stop', capture_id='abcdef123456', match=FLOW), out, read('debian12_iptables_save.txt'))
    res = run_action(host, DEB_FACTS, monkeypatch)
    assert res['source_used'] == 'nfnetlink' and len(res['packets']) == 7
    assert host.commands == [['iptables-nft-save']]
    assert any('MASQUERADE' in (h.get('rule') or '') for h in res['packets'][0]['hops'])


def test_action_nothing_captured_is_diagnosed(monkeypatch):
    host = FakeHost(dict(action='stop', capture_id='abcdef123456', match=FLOW),
                    kernel_stop_output('debian12_xtables_monitor.txt', 'none'), read('debian12_iptables_save.txt'))
    res = run_action(host, DEB_FACTS, monkeypatch)
    assert res['packets'] == [] and res['marker_found'] is False
    assert 'use source=nfnetlink' in res['diagnosis'][0]
    assert any(w.startswith('nothing was captured on el7-1; likely cause: the host\'s iptables uses the nf_tables')
               for w in host.warnings)
    assert any('start marker' in w for w in host.warnings)


def test_action_oneshot_stops_and_reports_a_failed_probe(monkeypatch):
    monkeypatch.setattr(task_mod.time, 'sleep', lambda s: None)
    host = FakeHost(dict(duration=1, match=FLOW, probe=dict(command=['nc', '-z', '10.44.32.217', '3128'], netns='g1')),
                    kernel_stop_output('el7_dmesg.txt', 'fxel7-1'), read('el7_iptables_save.txt'), probe_rc=1)
    res = run_action(host, EL7_FACTS, monkeypatch)
    assert host.scripts == ['start', 'probe', 'stop']
    assert res['changed'] is False and res['probe_result']['rc'] == 1 and res['packets']
    assert any('exited with rc=1' in w for w in host.warnings)


def test_action_check_mode_does_nothing(monkeypatch):
    for action, changed in (('start', True), ('oneshot', False)):
        host = FakeHost(dict(action=action), kernel_stop_output('el7_dmesg.txt', 'fxel7-1'), check_mode=True)
        res = run_action(host, DEB_FACTS, monkeypatch)
        # only the read-only table listing that picks the monitor
        assert host.scripts == [] and host.commands == [['nft', 'list', 'tables']]
        assert res['changed'] is changed and res['source_used'] == 'nfnetlink' and res['tool'] == 'xtables-monitor'
        assert res['msg'].startswith('check mode: would start capturing from nfnetlink')


@pytest.mark.parametrize('params,msg', [
    (dict(action='stop', capture_id='X;reboot'), 'capture_id must be'),
    (dict(match=dict(destination_port=['70000'])), 'bad port'),
    (dict(match=dict(source_port='90:80')), 'bad port'),
    (dict(match=dict(source='10.0.0.300')), 'not an IP address'),
    (dict(match=dict(in_interface='a' * 16)), 'not an interface name'),
    (dict(probe=dict(command=['true'], netns='x y')), 'not a network namespace'),
    (dict(action='start', probe=dict(command=['true'])), 'only used with action=oneshot'),
    (dict(duration=0), 'duration'),
    (dict(action='start', lifetime=5), 'lifetime'),
    (dict(syslog_file='var/log/messages'), 'absolute path'),
    (dict(probe=dict(command=['true'], host='localhost')), "probe.host: 'localhost' is not the traced host 'el7-1'"
                                                           ".*action=start.*delegate_to: localhost.*action=stop"),
    (dict(probe_result=dict(rc=0)), 'probe_result is only used with action=stop'),
])
def test_action_bad_input(monkeypatch, params, msg):
    host = FakeHost(params, None)
    with pytest.raises(ModuleFailed, match=msg):
        run_action(host, EL7_FACTS, monkeypatch)
    assert host.scripts == []


def test_leftover_warnings():
    lines = ['removed 0123abcd 4242', 'ended 0123abce 4243', 'running 0123abcf 4244', 'garbage']
    w = cap.leftover_warnings(lines)
    assert len(w) == 3
    assert 'removed what capture 0123abcd left' in w[0] and 'pid 4242' in w[0]
    assert 'action=stop capture_id=0123abce' in w[1]
    assert 'still running' in w[2] and '4244' in w[2]


def test_running_does_not_count_a_zombie():
    """A monitor that exited but is not reaped yet answers kill -0; the scripts' running() says it ended."""
    import time
    live = subprocess.Popen(['sleep', '30'])
    dead = subprocess.Popen(['true'])
    try:
        deadline = time.time() + 10
        while not open('/proc/%d/stat' % dead.pid).read().rsplit(')', 1)[1].split()[0] == 'Z':
            assert time.time() < deadline, 'the child did not exit'
            time.sleep(0.01)

        def running(pid):
            return subprocess.call(['sh', '-c', cap.RUNNING_FN + '\nrunning "$1"', 'sh', str(pid)])
        assert running(live.pid) == 0
        assert running(dead.pid) == 1                     # a zombie: exited, not reaped
        assert subprocess.call(['kill', '-0', str(dead.pid)]) == 0   # which kill -0 alone took for running
    finally:
        live.kill()
        live.wait()
        dead.wait()
    assert running(dead.pid) == 1                         # gone altogether


# `nft list tables` on an el10 lab host (libvirt 11.3, firewall_backend = "nftables", a TRACE rule in iptables-nft)
EL10_TABLES = 'table ip libvirt_network\ntable ip6 libvirt_network\ntable ip raw\n'


def test_native_nft_tables():
    assert cap.native_nft_tables(EL10_TABLES) == ['ip libvirt_network', 'ip6 libvirt_network']
    assert cap.native_nft_tables('table ip filter\ntable ip6 nat\ntable bridge filter\n') == []
    assert cap.native_nft_tables('') == [] and cap.native_nft_tables(None) == []


@pytest.mark.parametrize('tables,tool', [(EL10_TABLES, 'nft'), ('table ip filter\n', 'xtables-monitor')])
def test_action_picks_nft_monitor_when_native_tables_hold_rules(monkeypatch, tables, tool):
    """xtables-monitor prints libvirt's nft rules as made-up iptables commands (``-p tcp`` for the
    ``masquerade to :1024-65535`` rule): with native tables, ``nft monitor trace`` is used."""
    host = FakeHost(dict(action='start'), None, check_mode=True, nft_tables=tables)
    res = run_action(host, DEB_FACTS, monkeypatch)
    assert res['tool'] == tool
    assert cap.choose_monitor(DEB_FACTS, 'xtables-monitor', ['ip libvirt_network']) == 'xtables-monitor'


def test_action_probe_on_the_traced_host_by_name(monkeypatch):
    monkeypatch.setattr(task_mod.time, 'sleep', lambda s: None)
    host = FakeHost(dict(duration=1, match=FLOW, probe=dict(command=['true'], host='el7-1')),
                    kernel_stop_output('el7_dmesg.txt', 'fxel7-1'), read('el7_iptables_save.txt'))
    res = run_action(host, EL7_FACTS, monkeypatch)
    assert host.scripts == ['start', 'probe', 'stop']
    assert res['probe_result'] == dict(rc=0, stdout='', stderr='', host='el7-1', command=['true'])


def test_action_stop_takes_the_delegated_probe_result(monkeypatch):
    """The probe run as its own task (delegate_to) between start and stop: stop returns, warns and diagnoses it
    as oneshot does its own probe."""
    registered = dict(rc=124, stdout='', stderr='', cmd=['timeout', '3', 'nc', '-z', '10.44.32.217', '3128'],
                      changed=False, stdout_lines=[], host='guest1', command=['nc', '-z', '10.44.32.217', '3128'])
    host = FakeHost(dict(action='stop', capture_id='abcdef123456', match=FLOW, probe_result=registered),
                    kernel_stop_output('el7_dmesg.txt', 'deadbeef00'), read('el7_iptables_save.txt'))
    res = run_action(host, EL7_FACTS, monkeypatch)
    assert res['probe_result'] == dict(rc=124, stdout='', stderr='', host='guest1',
                                       command=['nc', '-z', '10.44.32.217', '3128'])
    assert 'the probe command nc -z 10.44.32.217 3128 on guest1 exited with rc=124 (killed by timeout)' in host.warnings
    assert res['packets'] == [] and 'the probe command failed (rc=124): maybe no traffic was sent' in res['diagnosis']
    assert host.scripts == ['stop']


def test_action_stop_runs_whatever_the_probe_task_returned(monkeypatch):
    host = FakeHost(dict(action='stop', capture_id='abcdef123456', match=FLOW,
                         probe_result=dict(unreachable=True, msg='ssh: connect to host guest1 port 22')),
                    kernel_stop_output('el7_dmesg.txt', 'fxel7-1'), read('el7_iptables_save.txt'))
    res = run_action(host, EL7_FACTS, monkeypatch)
    assert host.scripts == ['stop'] and res['packets'] and res['probe_result']['rc'] is None
    assert any(w.startswith('probe_result has no rc: the probe task did not run its command (ssh: connect')
               for w in host.warnings)
