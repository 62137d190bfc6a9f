# SPDX-License-Identifier: GPL-3.0-or-later
"""Ruleset model: iptables-save parsing (real outputs, legacy and nft), validation, plans, batches."""

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


def test_without_time_match_the_expiry_is_only_in_the_tag():
    rules = R.build_rules('trace', params(name='e', expires=30))
    fp = R.plan(rules, rulesets(), 'e', 'present', 'raw', NOW, expires=30, time_match=False)['ipv4']
    assert ':exp=%d' % (NOW + 30) in fp.add[0] and '-m time' not in fp.add[0]


def test_log_rule_append_positions():
    rules = R.build_rules('log', params(name='x', chain='INPUT', destination_port=['1', '2'], protocol='udp'))
    fp = R.plan(rules, rulesets(), 'x', 'present', 'filter', NOW)['ipv4']
    assert [line.split()[0] for line in fp.add] == ['-A', '-A']
