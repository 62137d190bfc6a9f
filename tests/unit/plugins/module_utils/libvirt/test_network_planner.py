# SPDX-License-Identifier: GPL-3.0-or-later
"""Planner: which differences go live through virNetworkUpdate and which need redefine/restart;
host readers (routes, firewall)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

import pytest

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _planner as P
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _host as H
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import domain_interfaces

BASE = {
    'name': 'lab', 'forward': 'nat',
    'bridge': {'name': 'virbr10'},
    'ips': [{'address': '192.168.100.1', 'prefix': 24,
             'ranges': [{'start': '192.168.100.100', 'end': '192.168.100.199'}],
             'hosts': [{'mac': '52:54:00:00:10:01', 'ip': '192.168.100.10', 'name': 'web1'}]}],
    'dns': {'hosts': [{'ip': '192.168.100.10', 'hostnames': ['web1']}]},
    'portgroups': [{'name': 'a', 'default': True}],
}


def _current():
    """What libvirt would return for BASE: generated uuid/mac, stp/delay defaults."""
    m = N.from_xml(N.to_xml(N.model_from_params(BASE)))
    m['uuid'] = '11111111-2222-3333-4444-555555555555'
    m['mac'] = '52:54:00:AB:CD:EF'
    m['bridge'].update(stp=True, delay=0)
    return m


def _desired(**changes):
    d = copy.deepcopy(BASE)
    d.update(changes)
    return N.model_from_params(d)


def test_new_network_is_created():
    plan = P.plan_definition(None, _desired(), False, True)
    assert plan.changes == [{'what': 'network lab', 'how': 'create'}]
    assert plan.redefine


def test_unchanged():
    plan = P.plan_definition(_current(), _desired(), True, True)
    assert not plan.changed


@pytest.mark.parametrize('mutate,section', [
    (lambda d: d['ips'][0]['hosts'].append({'mac': '52:54:00:00:10:02', 'ip': '192.168.100.11'}), 'ip-dhcp-host'),
    (lambda d: d['ips'][0].update(hosts=[]), 'ip-dhcp-host'),
    (lambda d: d['ips'][0]['ranges'].append({'start': '192.168.100.200', 'end': '192.168.100.210'}), 'ip-dhcp-range'),
    (lambda d: d['dns']['hosts'].append({'ip': '192.168.100.11', 'hostnames': ['b']}), 'dns-host'),
    (lambda d: d['dns'].update(txt=[{'name': 't', 'value': 'v'}]), 'dns-txt'),
    (lambda d: d['dns'].update(srv=[{'service': 'ldap', 'protocol': 'tcp'}]), 'dns-srv'),
    (lambda d: d['portgroups'].append({'name': 'b'}), 'portgroup'),
    (lambda d: d['portgroups'][0].update(vlan={'tags': [{'id': 5}]}), 'portgroup'),
])
def test_live_updatable(mutate, section):
    d = copy.deepcopy(BASE)
    mutate(d)
    plan = P.plan_definition(_current(), N.model_from_params(d), True, True)
    assert plan.changed and not plan.redefine and not plan.restart_reasons
    assert set(c['how'] for c in plan.changes) == {'live-update'}
    assert set(op.as_dict()['section'] for op in plan.live_ops) == {section}


def test_modified_dhcp_host_is_delete_then_add():
    d = copy.deepcopy(BASE)
    d['ips'][0]['hosts'][0]['ip'] = '192.168.100.12'
    plan = P.plan_definition(_current(), N.model_from_params(d), True, True)
    cmds = [op.command for op in plan.live_ops]
    assert cmds == [P.CMD_DELETE, P.CMD_ADD_LAST]
    assert all(op.parent_index == 0 for op in plan.live_ops)
    assert "192.168.100.12" in plan.live_ops[1].xml


@pytest.mark.parametrize('changes,key', [
    ({'bridge': {'name': 'virbr10', 'stp': False}}, 'bridge'),
    ({'mtu': 9000}, 'mtu'),
    ({'forward': 'route'}, 'forward'),
    ({'domain': {'name': 'lab'}}, 'domain'),
    ({'routes': [{'address': '10.1.0.0', 'prefix': 16, 'gateway': '192.168.100.2'}]}, 'routes'),
])
def test_restart_needed(changes, key):
    plan = P.plan_definition(_current(), _desired(**changes), True, True)
    assert plan.redefine
    assert key in plan.restart_reasons
    assert {'what': 'network lab', 'how': 'restart'} in plan.changes


def test_inactive_network_is_redefined_not_restarted():
    d = copy.deepcopy(BASE)
    d['ips'][0]['hosts'] = []
    plan = P.plan_definition(_current(), N.model_from_params(d), False, False)
    assert plan.redefine and not plan.live_ops and not plan.restart_reasons
    plan = P.plan_definition(_current(), _desired(mtu=1400), True, False)
    assert plan.redefine and not plan.restart_reasons


def test_forward_interface_pool_live():
    cur = N.model_from_params({'name': 'p', 'forward': 'vepa', 'forward_interfaces': ['eth1', 'eth2']})
    des = N.model_from_params({'name': 'p', 'forward': 'vepa', 'forward_interfaces': ['eth1', 'eth2', 'eth3']})
    plan = P.plan_definition(cur, des, True, True)
    assert [op.as_dict()['section'] for op in plan.live_ops] == ['forward-interface']
    des = N.model_from_params({'name': 'p', 'forward': 'vepa', 'forward_interfaces': ['eth9', 'eth2']})
    assert P.plan_definition(cur, des, True, True).restart_reasons


def test_adding_first_dhcp_needs_restart():
    cur = N.model_from_params({'name': 'x', 'ips': [{'address': '10.0.0.1', 'prefix': 24}]})
    des = N.model_from_params({'name': 'x', 'ips': [{'address': '10.0.0.1', 'prefix': 24,
                                                     'hosts': [{'mac': '52:54:00:00:00:01', 'ip': '10.0.0.5'}]}]})
    assert P.plan_definition(cur, des, True, True).restart_reasons == ['ips']


ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
bond0\t00000000\t01202C0A\t0003\t0\t0\t0\t00000000\t0\t0\t0
bond0\t00202C0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
virbr0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
ROUTE6 = """fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 bond0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 bond0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo
"""


def test_proc_routes():
    routes = H.parse_proc_route(ROUTE) + H.parse_proc_ipv6_route(ROUTE6)
    cidrs = [r['cidr'] for r in routes]
    assert '10.44.32.0/24' in cidrs and '192.168.122.0/24' in cidrs and 'fd00::/64' in cidrs
    rel = [r['cidr'] for r in H.relevant_routes(routes, own_bridge='virbr0')]
    assert rel == ['10.44.32.0/24', 'fd00::/64']


IPT = """*nat
:LIBVIRT_PRT - [0:0]
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE
-A LIBVIRT_PRT -s 192.168.140.0/24 ! -d 192.168.140.0/24 -j MASQUERADE
COMMIT
*filter
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr01 -p udp -m udp --dport 53 -j ACCEPT
COMMIT
"""


def test_firewall_filter():
    rules = H.iptables_rules_for(IPT, 'virbr0', ['192.168.122.0/24'])
    assert [r['table'] for r in rules] == ['nat', 'filter']
    assert all('virbr01' not in r['rule'] and '192.168.140' not in r['rule'] for r in rules)
    assert H.nft_tables('table ip libvirt_network\ntable inet filter\n') == ['ip libvirt_network']


def test_domain_interfaces_for_guest_ports():
    """What HostView.running_guest_ports reads of a running domain's interface."""
    xml = ("<domain><devices><interface type='network'><mac address='52:54:00:AA:BB:CC'/>"
           "<source network='default'/><target dev='vnet3'/></interface></devices></domain>")
    got = domain_interfaces(xml)
    assert [dict((k, i[k]) for k in ('type', 'source', 'target_dev', 'mac')) for i in got] == [
        {'type': 'network', 'source': 'default', 'target_dev': 'vnet3', 'mac': '52:54:00:aa:bb:cc'}]


def _capture(name):
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, '..', '..', '..', 'fixtures', 'firewall_rules', name)) as f:
        return f.read()


def test_nft_rules_of_libvirts_nftables_backend():
    """libvirt 11.3 with firewall_backend = "nftables" (captured on the lab's el10 host)."""
    rules = H.nft_rules_for(_capture('el10_nft_libvirt_network.txt'), 'virbr0', ['192.168.122.0/24'])
    by_chain = {}
    for r in rules:
        by_chain.setdefault(r['chain'], []).append(r)
    assert sorted(by_chain) == ['guest_cross', 'guest_input', 'guest_nat', 'guest_output']
    out = by_chain['guest_output'][0]
    assert out == {'backend': 'nftables', 'family': 'ipv4', 'table': 'libvirt_network', 'chain': 'guest_output',
                   'rule': 'ip saddr 192.168.122.0/24 iif "virbr0" accept', 'packets': 0, 'bytes': 0,
                   'handle': out['handle']} and isinstance(out['handle'], int)
    masq = [r['rule'] for r in by_chain['guest_nat'] if 'masquerade to' in r['rule']]
    assert masq == ['meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535',
                    'meta l4proto udp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535']
    assert not [r for r in rules if r['chain'] == 'forward']   # jumps only, nothing of this network


def test_iptables_rules_with_counters_and_family():
    text = '*nat\n:POSTROUTING ACCEPT [0:0]\n[5:300] -A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE\nCOMMIT\n'
    rules = H.iptables_rules_for(text, 'virbr0', ['192.168.122.0/24'], 'ipv4')
    assert rules == [{'backend': 'iptables', 'family': 'ipv4', 'table': 'nat', 'chain': 'LIBVIRT_PRT',
                      'rule': '-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE',
                      'packets': 5, 'bytes': 300}]


def test_libvirt_firewall_backend_from_network_conf():
    assert H.libvirt_firewall_backend('#firewall_backend = "iptables"\nfirewall_backend = "nftables"\n') == 'nftables'
    assert H.libvirt_firewall_backend('# nothing set\n') is None


def test_dns_host_sharing_a_hostname_needs_a_restart_before_libvirt_9():
    """libvirt 7.0 (Debian 11) refuses a live DNS host whose hostname another record has; 9.0 accepts."""
    cur = N.model_from_params(dict(name='n', ips=[{'address': '192.168.190.1', 'prefix': 24}],
                                   dns={'hosts': [{'ip': '192.168.190.7', 'hostnames': ['seven']}]}))
    des = N.model_from_params(dict(name='n', ips=[{'address': '192.168.190.1', 'prefix': 24}],
                                   dns={'hosts': [{'ip': '192.168.190.7', 'hostnames': ['seven']},
                                                  {'ip': 'fd00:190::7', 'hostnames': ['seven']}]}))
    new = P.plan_definition(cur, des, True, True, libvirt_version=9000000)
    assert [op.as_dict()['section'] for op in new.live_ops] == ['dns-host'] and not new.restart_reasons
    old = P.plan_definition(cur, des, True, True, libvirt_version=7000000)
    assert old.live_ops == [] and old.redefine
    assert old.restart_reasons == ['DNS host fd00:190::7 (seven) added: libvirt 7.0 cannot add a DNS host live '
                                   'whose hostname another record has']
    other = N.model_from_params(dict(name='n', ips=[{'address': '192.168.190.1', 'prefix': 24}],
                                     dns={'hosts': [{'ip': '192.168.190.7', 'hostnames': ['seven']},
                                                    {'ip': '192.168.190.8', 'hostnames': ['eight']}]}))
    assert P.plan_definition(cur, other, True, True, libvirt_version=7000000).live_ops
