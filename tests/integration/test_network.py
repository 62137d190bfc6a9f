# SPDX-License-Identifier: GPL-3.0-or-later
"""network / network_info against a lab hypervisor (real libvirtd, bridges, iptables).

Run:  VIRTLAB_NAME=net .venv/bin/python -m pytest -q tests/integration/test_network*.py
Uses debian12-1 (or the first host of $VIRTLAB_TARGET) of the session ``lab`` (conftest); every test removes the networks and guests it
creates, and the host devices below are removed after the module.
"""
import json
import re
import time

import pytest

from labansible import TARGET_HOST, playbook  # tests/lab, put on sys.path by conftest

HOST = TARGET_HOST  # debian12-1 unless VIRTLAB_TARGET names another persona
NET = 'virtops.virtnet.network'
INFO = 'virtops.virtnet.network_info'
UPLINK = '10.44.32.217'


HOST_DEVICES = ('brhost0', 'dum0', 'dum1', 'dum2')


@pytest.fixture(scope='module', autouse=True)
def host_devices(lab):
    """Host devices for the bridge / macvtap pool modes, removed again after the module."""
    for argv in (['ip', 'link', 'add', 'brhost0', 'type', 'bridge'],
                 # the lab kernel has no dummy driver: veth pairs stand for host NICs
                 ['ip', 'link', 'add', 'dum0', 'type', 'veth', 'peer', 'name', 'dum0p'],
                 ['ip', 'link', 'add', 'dum1', 'type', 'veth', 'peer', 'name', 'dum1p'],
                 ['ip', 'link', 'add', 'dum2', 'type', 'veth', 'peer', 'name', 'dum2p']):
        lab.exec(HOST, argv, check=False)
    for dev in HOST_DEVICES:
        lab.exec(HOST, ['ip', 'link', 'set', dev, 'up'], check=False)
    yield HOST_DEVICES
    for dev in HOST_DEVICES:
        lab.exec(HOST, ['ip', 'link', 'del', dev], check=False)


def run_on(lab, module, args, check=False, diff=False, play_vars=None):
    """Like the conftest's module runner, but our modules have an option called ``name``."""
    task = {'name': 'run_module', module: args, 'register': 'r'}
    play = [{'hosts': HOST, 'gather_facts': False, 'tasks': [task], 'vars': play_vars or {}}]
    out = playbook(lab, json.dumps(play, indent=1) + '\n', check=check, diff=diff)
    res = out['results'].get('run_module', {}).get(HOST)
    if res is None:
        raise AssertionError('no result (rc=%d)\n%s\n%s' % (out['rc'], out['stdout'][-3000:], out['stderr'][-3000:]))
    res.setdefault('diff', {})
    return res


@pytest.fixture(scope='module')
def run(lab):
    def _run(module=NET, check=False, diff=False, **args):
        return run_on(lab, module, args, check=check, diff=diff)
    return _run


def virsh(lab, *args):
    return lab.virsh(HOST, *args, check=False).stdout


def net_state(lab):
    """Everything a failed run must leave untouched: net-list and every network's XML."""
    names = [line.split()[0] for line in virsh(lab, 'net-list', '--all', '--name').split() if line.strip()]
    return {'list': virsh(lab, 'net-list', '--all'),
            'xml': dict((n, (virsh(lab, 'net-dumpxml', n), virsh(lab, 'net-dumpxml', '--inactive', n)))
                        for n in names)}


def ifindex(lab, dev):
    p = lab.exec(HOST, ['cat', '/sys/class/net/%s/ifindex' % dev], check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def brif(lab, bridge):
    p = lab.exec(HOST, ['ls', '/sys/class/net/%s/brif' % bridge], check=False)
    return sorted(p.stdout.split()) if p.returncode == 0 else []


def remove(run, name):
    res = run(name=name, state='absent')
    assert not res['failed'], res


def ipnet(third, dhcp_hosts=None):
    ip = {'address': '192.168.%d.1' % third, 'prefix': 24,
          'ranges': [{'start': '192.168.%d.100' % third, 'end': '192.168.%d.150' % third}]}
    if dhcp_hosts:
        ip['hosts'] = dhcp_hosts
    return ip


# ------------------------------------------------------------------------------------------
# every mode: create, start, autostart, idempotent, modify, remove
MODES = {
    'nat': dict(forward='nat', bridge={'name': 'vbn-nat'}, ips=[ipnet(161)],
                nat={'port_start': 20000, 'port_end': 30000}),
    'route': dict(forward='route', forward_dev='bond0', bridge={'name': 'vbn-route'}, ips=[ipnet(162)]),
    'open': dict(forward='open', bridge={'name': 'vbn-open'}, ips=[ipnet(163)]),
    'isolated': dict(forward='isolated', bridge={'name': 'vbn-iso'}, ips=[ipnet(164)],
                     dns={'hosts': [{'ip': '192.168.164.5', 'hostnames': ['five']}]}),
    'bridge': dict(forward='bridge', bridge={'name': 'brhost0'}),
    'macvtap-bridge': dict(forward='bridge', forward_interfaces=['dum0', 'dum1']),
    'private': dict(forward='private', forward_dev='dum0'),
    'vepa': dict(forward='vepa', forward_interfaces=['dum0', 'dum1']),
    'passthrough': dict(forward='passthrough', forward_interfaces=['dum2']),
}
LIVE_MODIFY = {
    'nat': ('ips', [ipnet(161, [{'mac': '52:54:00:16:01:01', 'ip': '192.168.161.11', 'name': 'a'}])]),
    'route': ('ips', [ipnet(162, [{'mac': '52:54:00:16:02:01', 'ip': '192.168.162.11'}])]),
    'open': ('ips', [ipnet(163, [{'mac': '52:54:00:16:03:01', 'ip': '192.168.163.11'}])]),
    'isolated': ('dns', {'hosts': [{'ip': '192.168.164.5', 'hostnames': ['five']},
                                   {'ip': '192.168.164.6', 'hostnames': ['six']}]}),
    'bridge': ('portgroups', [{'name': 'pg1', 'default': True}]),
    'macvtap-bridge': ('forward_interfaces', ['dum0', 'dum1', 'dum2']),
    'private': ('portgroups', [{'name': 'pg1'}]),
    'vepa': ('portgroups', [{'name': 'pg1'}]),
    'passthrough': ('portgroups', [{'name': 'pg1'}]),
}


@pytest.mark.parametrize('mode', sorted(MODES))
def test_mode_lifecycle(lab, run, mode):
    name = 'm-' + mode
    args = dict(MODES[mode], name=name)
    try:
        res = run(**args)
        assert not res['failed'], res
        assert res['changed'] and {'what': 'network %s' % name, 'how': 'create'} in res['changes']
        assert res['active'] is True
        assert 'Active:         yes' in virsh(lab, 'net-info', name)
        expected = 'isolated' if mode == 'isolated' else MODES[mode]['forward']
        assert res['network']['forward'] == expected

        res = run(**args)
        assert not res['failed'] and res['changed'] is False, res
        assert res['changes'] == []

        res = run(autostart=True, **args)
        assert res['changed'] and res['changes'][0]['how'] == 'autostart', res
        assert res['autostart'] is True
        res = run(autostart=True, **args)
        assert res['changed'] is False, res

        key, value = LIVE_MODIFY[mode]
        bridge = (MODES[mode].get('bridge') or {}).get('name')
        before_index = ifindex(lab, bridge) if bridge else None
        mod = dict(args, autostart=True)
        mod[key] = value
        res = run(**mod)
        assert not res['failed'], res
        assert res['changed'] and set(c['how'] for c in res['changes']) == {'live-update'}, res
        if bridge:
            assert ifindex(lab, bridge) == before_index  # no restart
        res = run(**mod)
        assert res['changed'] is False, res
        info = run(module=INFO, name=name)
        assert info['networks'][0]['autostart'] is True
        assert info['networks'][0]['model'] == res['network']
    finally:
        remove(run, name)
    assert name not in virsh(lab, 'net-list', '--all', '--name')


def test_dhcp_host_added_live_and_persistent_without_restart(lab, run):
    name = 'livedhcp'
    args = dict(name=name, bridge={'name': 'vbn-live'}, ips=[ipnet(171)])
    try:
        assert not run(**args)['failed']
        guest = lab.guest_add('nlive', HOST, network=name, kind='ns')
        index = ifindex(lab, 'vbn-live')
        ports = brif(lab, 'vbn-live')
        host = {'mac': '52:54:00:17:01:01', 'ip': '192.168.171.21', 'name': 'web'}
        args['ips'] = [ipnet(171, [host])]
        res = run(diff=True, **args)
        assert res['changed'] and res['changes'][0]['how'] == 'live-update', res
        assert res['live_updates'][0]['section'] == 'ip-dhcp-host'
        assert '192.168.171.21' in res['diff']['after'] and '192.168.171.21' not in res['diff']['before']
        for flag in ([], ['--inactive']):
            xml = virsh(lab, *(['net-dumpxml'] + flag + [name]))
            assert "mac='52:54:00:17:01:01'" in xml and "ip='192.168.171.21'" in xml, (flag, xml)
        assert ifindex(lab, 'vbn-live') == index
        assert brif(lab, 'vbn-live') == ports and guest['veth'] in ports
        # removal is live too
        args['ips'] = [ipnet(171)]
        res = run(**args)
        assert res['changes'][0]['how'] == 'live-update'
        assert '192.168.171.21' not in virsh(lab, 'net-dumpxml', name)
        assert '192.168.171.21' not in virsh(lab, 'net-dumpxml', '--inactive', name)
    finally:
        lab.guest_del('nlive')
        remove(run, name)


def test_check_mode_reports_and_changes_nothing(lab, run):
    name = 'checkm'
    args = dict(name=name, bridge={'name': 'vbn-chk'}, ips=[ipnet(172)])
    res = run(check=True, diff=True, **args)
    assert res['changed'] and [c['how'] for c in res['changes']] == ['create', 'start']
    assert name not in virsh(lab, 'net-list', '--all', '--name')
    assert "<name>checkm</name>" in res['diff']['after'] and res['diff']['before'] == ''
    try:
        run(**args)
        before = net_state(lab)
        args2 = dict(args, bridge={'name': 'vbn-chk', 'stp': False}, mtu=1400, restart='if_needed')
        res = run(check=True, diff=True, **args2)
        assert res['changed']
        hows = dict((c['what'], c['how']) for c in res['changes'])
        assert hows == {'bridge': 'redefine', 'mtu': 'redefine', 'network checkm': 'restart'}
        assert "stp='off'" in res['diff']['after'].replace('"', "'")
        assert net_state(lab) == before
        args3 = dict(args, ips=[ipnet(172, [{'mac': '52:54:00:17:02:01', 'ip': '192.168.172.9'}])])
        res = run(check=True, **args3)
        assert [c['how'] for c in res['changes']] == ['live-update']
        assert net_state(lab) == before
    finally:
        remove(run, name)


# ------------------------------------------------------------------------------------------
def _connect(lab, guest):
    code = ("import socket,sys\ns=socket.create_connection(('%s',3128),timeout=3)\n"
            "print(s.getsockname()[0]); s.close()" % UPLINK)
    return lab.guest_exec(guest, ['python3', '-c', code], check=False)


def _seen_from(lab, since):
    return [c['src'] for c in lab.uplink_connections(since=since, at_least=1) if c['dport'] == 3128]


def _bond0(lab):
    return lab.state()['hosts'][HOST]['bond0_ip']


def test_nat_forwards_and_masquerades(lab, run):
    name = 'natfwd'
    bond0 = _bond0(lab)
    try:
        assert not run(name=name, forward='nat', bridge={'name': 'vbn-natf'}, ips=[ipnet(173)],
                       nat={'port_start': 40000, 'port_end': 40100})['failed']
        g = lab.guest_add('nnat', HOST, network=name, kind='ns')
        since = time.time() - 1
        p = _connect(lab, 'nnat')
        assert p.returncode == 0, p.stderr
        srcs = _seen_from(lab, since)
        assert bond0 in srcs and g['ip'] not in srcs, srcs  # masqueraded to the host's uplink address
        ports = [c['sport'] for c in lab.uplink_connections() if c['time'] >= since and c['src'] == bond0]
        assert ports and all(40000 <= port <= 40100 for port in ports), ports  # the NAT port range
    finally:
        lab.guest_del('nnat')
        remove(run, name)


def test_routed_forwards_without_nat(lab, run):
    name = 'routefwd'
    bond0 = _bond0(lab)
    lab.uplink_exec(['ip', 'route', 'replace', '192.168.174.0/24', 'via', bond0], check=False)
    try:
        assert not run(name=name, forward='route', bridge={'name': 'vbn-routef'}, ips=[ipnet(174)])['failed']
        g = lab.guest_add('nroute', HOST, network=name, kind='ns')
        since = time.time() - 1
        p = _connect(lab, 'nroute')
        assert p.returncode == 0, p.stderr
        assert g['ip'] in _seen_from(lab, since)  # the guest's own address: not NATed
    finally:
        lab.uplink_exec(['ip', 'route', 'del', '192.168.174.0/24'], check=False)
        lab.guest_del('nroute')
        remove(run, name)


def test_isolated_does_not_forward(lab, run):
    name = 'isofwd'
    try:
        assert not run(name=name, forward='isolated', bridge={'name': 'vbn-isof'}, ips=[ipnet(175)])['failed']
        g = lab.guest_add('niso', HOST, network=name, kind='ns')
        since = time.time() - 1
        p = _connect(lab, 'niso')
        assert p.returncode != 0
        assert g['ip'] not in _seen_from(lab, since) and not _seen_from(lab, since)
    finally:
        lab.guest_del('niso')
        remove(run, name)


# ------------------------------------------------------------------------------------------
def test_restart_keeps_running_guests_on_the_bridge(lab, run):
    name = 'restartnet'
    args = dict(name=name, forward='nat', bridge={'name': 'vbn-rst'}, ips=[ipnet(176)])
    try:
        assert not run(**args)['failed']
        g1 = lab.guest_add('qrst1', HOST, network=name, kind='qemu')
        g2 = lab.guest_add('qrst2', HOST, network=name, kind='qemu')
        ports = brif(lab, 'vbn-rst')
        assert g1['tap'] in ports and g2['tap'] in ports
        before = net_state(lab)
        index = ifindex(lab, 'vbn-rst')

        changed = dict(args, bridge={'name': 'vbn-rst', 'stp': False}, mtu=1400, forward='route')
        res = run(**changed)  # restart: never (default) refuses
        assert res['failed']
        assert 'need a restart' in res['msg'] and 'bridge' in res['msg'] and 'mtu' in res['msg']
        assert 'forward' in res['msg'] and 'Nothing was changed' in res['msg']
        assert sorted(res['needs_restart']) == ['bridge', 'forward', 'mtu']
        assert net_state(lab) == before and brif(lab, 'vbn-rst') == ports

        res = run(restart='if_needed', **changed)
        assert not res['failed'], res
        assert {'what': 'network %s' % name, 'how': 'restart'} in res['changes']
        assert ifindex(lab, 'vbn-rst') != index  # it really was restarted
        after = brif(lab, 'vbn-rst')
        assert after == ports, (ports, after)
        assert res['restart']['ports_before'] == ports and res['restart']['ports_after'] == ports
        assert res['restart']['lost'] == []
        assert sorted(res['restart']['guests']) == sorted([g1['tap'], g2['tap']])
        assert "stp='off'" in virsh(lab, 'net-dumpxml', name)
        assert "<mtu size='1400'/>" in virsh(lab, 'net-dumpxml', name)
        assert res['network']['forward'] == 'route'
        info = run(module=INFO, name=name)
        mapped = dict((p['port'], p['domain']) for p in info['networks'][0]['ports'])
        assert mapped[g1['tap']] == 'qrst1' and mapped[g2['tap']] == 'qrst2'
        assert run(restart='if_needed', **changed)['changed'] is False
    finally:
        lab.guest_del('qrst1')
        lab.guest_del('qrst2')
        remove(run, name)


# ------------------------------------------------------------------------------------------
# bad input: clear message, nothing changed
BAD = [
    ('bridge name used by another network', dict(bridge={'name': 'virbr0'}, ips=[ipnet(181)]),
     'bridge name virbr0 is already used by network default'),
    ('bridge name too long', dict(bridge={'name': 'vbn-much-too-long0'}, ips=[ipnet(182)]),
     'an interface name has 1 to 15 bytes, this one has 18'),
    ('subnet overlaps another network', dict(bridge={'name': 'vbn-ovl'},
                                             ips=[{'address': '192.168.122.129', 'prefix': 25}]),
     'overlaps 192.168.122.1/24 of network default'),
    ('subnet overlaps a host route',
     dict(bridge={'name': 'vbn-ovr'}, ips=[{'address': '10.44.32.129', 'prefix': 25}]),
     'overlaps the host route 10.44.32.0/24 dev bond0'),
    ('dhcp range outside subnet', dict(bridge={'name': 'vbn-rng'}, ips=[
        {'address': '192.168.183.1', 'prefix': 24, 'ranges': [{'start': '192.168.184.2', 'end': '192.168.184.9'}]}]),
     'DHCP range 192.168.184.2-192.168.184.9 is outside the subnet'),
    ('invalid mac', dict(bridge={'name': 'vbn-mac'}, mac='52:54:00:xx:00:01', ips=[ipnet(185)]),
     'invalid MAC address'),
    ('invalid dhcp host mac', dict(bridge={'name': 'vbn-mac2'}, ips=[ipnet(186, [{'mac': '52:54:00', 'ip': '192.168.186.9'}])]),
     'invalid MAC address'),
    ('invalid address', dict(bridge={'name': 'vbn-adr'}, ips=[{'address': '192.168.300.1', 'prefix': 24}]),
     'invalid IP address'),
    ('unknown forward device', dict(forward='route', forward_dev='eth9', bridge={'name': 'vbn-dev'}, ips=[ipnet(187)]),
     'unknown forward device eth9'),
    ('unknown host bridge', dict(forward='bridge', bridge={'name': 'nosuchbr'}),
     'host bridge nosuchbr does not exist'),
    ('unknown macvtap device', dict(forward='vepa', forward_interfaces=['dum0', 'eth7']),
     'unknown forward device eth7'),
    ('bad xml', dict(xml='<network><name>x</name>'), 'invalid XML'),
    # issue 13: inputs libvirt or the kernel refused only after the network was defined, or took silently
    ('bridge name with a space', dict(bridge={'name': 'virbr 1'}, ips=[ipnet(190)]), "bridge.name 'virbr 1'"),
    ('bridge name with a slash', dict(bridge={'name': 'virbr/1'}, ips=[ipnet(190)]), 'names with "/", ":" or whitespace'),
    ('bridge name dot-dot', dict(bridge={'name': '..'}, ips=[ipnet(190)]), 'refuses "." and ".."'),
    ('bridge name non-ascii over 15 bytes', dict(bridge={'name': u'br\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9'},
                                                 ips=[ipnet(190)]), 'this one has 16'),
    ('network name with a slash', dict(name='a/b', ips=[ipnet(190)]), 'a libvirt network name cannot contain "/"'),
    ('multicast dhcp host mac', dict(bridge={'name': 'vbn-mc'}, ips=[ipnet(191, [{'mac': '01:00:5e:00:00:01',
                                                                                 'ip': '192.168.191.9'}])]),
     'ips[0].hosts[0].mac 01:00:5e:00:00:01 is a multicast address'),
    ('network address as bridge address', dict(bridge={'name': 'vbn-na'}, ips=[{'address': '192.168.168.0', 'prefix': 24}]),
     'ips[0].address 192.168.168.0 is the network address of 192.168.168.0/24'),
    ('broadcast address as bridge address', dict(bridge={'name': 'vbn-ba'},
                                                 ips=[{'address': '192.168.168.255', 'prefix': 24}]),
     'is the broadcast address of 192.168.168.0/24'),
    ('dhcp host name not a DNS name', dict(bridge={'name': 'vbn-hn'}, ips=[ipnet(192, [{
        'mac': '52:54:00:19:20:01', 'ip': '192.168.192.9', 'name': 'bad name;x'}])]),
     "ips[0].hosts[0].name 'bad name;x' is not a DNS host name"),
    ('xml external entity', dict(xml='<!DOCTYPE n [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
                                     '<network><name>&e;</name></network>'), 'external entity'),
]


@pytest.mark.parametrize('label,args,needle', BAD, ids=[b[0] for b in BAD])
def test_bad_input_changes_nothing(lab, run, label, args, needle, bad_input):
    before = net_state(lab)
    params = dict(args)
    if 'xml' not in params:
        params.setdefault('name', 'badnet')
    res = run(**params)
    assert res['failed'], res
    assert needle in res['msg'], res['msg']
    assert not res['changed'] and not res.get('applied'), res
    assert net_state(lab) == before
    bad_input('network', '%s: %s' % (label, json.dumps(params, ensure_ascii=False)), needle, res['msg'],
              'virsh net-list --all and every network XML (live and inactive)')


def test_new_network_libvirt_cannot_start_leaves_nothing(lab, run):
    """Valid input that libvirt defines and then cannot start (dnsmasq refuses an option): the definition
    is removed again, the run says changed=false, and the next run fails the same way instead of being
    stuck on a half-made network."""
    before = net_state(lab)
    args = dict(name='nostart', bridge={'name': 'vbn-ns'}, ips=[ipnet(193)], dnsmasq_options=['no-such-option=1'])
    for dummy in range(2):
        res = run(**args)
        assert res['failed'] and 'could not start new network nostart' in res['msg'], res
        assert 'definition was removed again' in res['msg'] and not res['changed'] and res['applied'] == [], res
        assert net_state(lab) == before
        assert ifindex(lab, 'vbn-ns') is None


def test_restart_into_a_definition_libvirt_cannot_start_restores_the_old_one(lab, run):
    """restart=if_needed to a definition that cannot start: the previous definition is put back and
    started, the guest's port is back on the bridge, and the result lists what was done."""
    name = 'rbk'
    args = dict(name=name, bridge={'name': 'vbn-rbk'}, ips=[ipnet(194)])
    try:
        assert not run(**args)['failed']
        lab.guest_add('grbk', HOST, network=name)
        before = net_state(lab)
        assert brif(lab, 'vbn-rbk') == ['vg-grbk']
        res = run(**dict(args, dnsmasq_options=['no-such-option=1'], restart='if_needed'))
        assert res['failed'] and 'previous definition was restored and started again' in res['msg'], res
        assert res['changed'] and 'restored the previous definition of rbk' in res['applied'], res
        assert net_state(lab)['xml'][name][1] == before['xml'][name][1]
        assert brif(lab, 'vbn-rbk') == ['vg-grbk']
        again = run(**args)
        assert not again['failed'] and not again['changed'], again
    finally:
        lab.guest_del('grbk')
        remove(run, name)


def test_bad_change_to_existing_network_changes_nothing(lab, run):
    name = 'badchg'
    args = dict(name=name, bridge={'name': 'vbn-bc'}, ips=[ipnet(188)])
    try:
        run(**args)
        before = net_state(lab)
        res = run(**dict(args, ips=[ipnet(188, [{'mac': '52:54:00:18:08:01', 'ip': '192.168.189.5'}])]))
        assert res['failed'] and 'outside the subnet' in res['msg']
        assert net_state(lab) == before
    finally:
        remove(run, name)


def test_xml_with_external_entity_is_refused(lab, run):
    """XXE: an external entity naming a file on the host is refused, not read and not a traceback.
    Under the 2.16 lane with VIRTLAB_TARGET=el7 this runs on the real Python 2.7 / lxml 4.9.4."""
    secret = '/var/lib/libvirt/xxe-secret'  # the host's private /var/lib/libvirt
    lab.exec(HOST, ['sh', '-c', 'echo xxe-canary-4711 > %s' % secret])
    before = net_state(lab)
    xml = ("<?xml version='1.0'?>\n<!DOCTYPE network [<!ENTITY e SYSTEM 'file://%s'>]>\n"
           "<network><name>xxe</name><description>&e;</description><bridge name='vbn-xxe'/></network>"
           % secret)
    for check in (True, False):
        res = run(xml=xml, check=check)
        assert res['failed'] and 'DOCTYPE' in res['msg'] and 'options xml' in res['msg'], res
        assert 'Traceback' not in str(res) and 'xxe-canary-4711' not in str(res), res
    res = run(name='xxe', extra_xml=[xml.split('\n', 1)[1]])
    assert res['failed'] and 'DOCTYPE' in res['msg'] and 'xxe-canary-4711' not in str(res), res
    assert net_state(lab) == before


def test_wrong_uri_is_a_clear_error(run):
    res = run(name='x', uri='qemu+unix:///system?socket=/nonexistent/sock')
    assert res['failed'] and 'not reachable' in res['msg'], res
    res = run(name='x', uri='nosuchdriver:///system')
    assert res['failed'] and 'URI' in res['msg'], res


def test_missing_libvirt_python_is_a_clear_error(lab):
    """A Python without libvirt-python: the host's python3 with -S (no site/dist-packages)."""
    wrapper = '/var/lib/libvirt/python3-nosite'  # the host's private /var/lib/libvirt
    lab.exec(HOST, ['sh', '-c', 'printf "#!/bin/sh\\nexec /usr/bin/python3 -S \\"\\$@\\"\\n" > %s && chmod +x %s'
                    % (wrapper, wrapper)])
    assert lab.exec(HOST, [wrapper, '-c', 'import libvirt'], check=False).returncode != 0
    before = net_state(lab)
    for module in (NET, INFO):
        res = run_on(lab, module, {'name': 'x'}, play_vars={'ansible_python_interpreter': wrapper})
        assert res['failed'] and 'libvirt-python' in res['msg'] and 'python3-libvirt' in res['msg'], res
    assert net_state(lab) == before


# ------------------------------------------------------------------------------------------
def test_network_info_output_is_valid_input(lab, run):
    info = run(module=INFO)
    assert not info['failed']
    default = [n for n in info['networks'] if n['name'] == 'default'][0]
    assert default['active'] and default['persistent'] and default['bridge'] == 'virbr0'
    fw = default['firewall']
    rules = [r['rule'] for r in fw[fw['backend']]]
    masq = 'MASQUERADE' if fw['backend'] == 'iptables' else 'masquerade to :1024-65535'
    assert any(masq in r and '192.168.122.0/24' in r for r in rules), rules
    assert all('virbr0' in r or '192.168.122.0/24' in r for r in rules)
    res = run(**default['model'])
    assert not res['failed'] and res['changed'] is False, res
    # the same model under another name/bridge/subnet creates an equivalent network
    model = json.loads(json.dumps(default['model']))
    model.update(name='copyofdefault', uuid=None, mac=None, bridge={'name': 'vbn-copy'})
    model['ips'] = [ipnet(189)]
    model = dict((k, v) for k, v in model.items() if v is not None)
    try:
        res = run(**model)
        assert res['changed'] and not res['failed'], res
        copied = run(module=INFO, name='copyofdefault')['networks'][0]
        assert run(**copied['model'])['changed'] is False
    finally:
        remove(run, 'copyofdefault')


def test_network_info_leases(lab, run):
    info = run(module=INFO, name='default')
    assert isinstance(info['networks'][0]['leases'], list)
    res = run(module=INFO, name='nosuchnet')
    assert res['failed'] and 'not found' in res['msg']


def test_dual_stack_every_live_section(lab, run):
    """IPv4+IPv6, DHCPv6 host, routes, domain, DNS forwarders/TXT/SRV/hosts, portgroups, mtu:
    created idempotently; then every live-updatable section changes at once without restart."""
    name = 'dualstack'
    args = dict(name=name, bridge={'name': 'vbn-v6'}, mtu=1450,
                domain={'name': 'lab.example', 'local_only': True},
                ips=[ipnet(190), {'address': 'fd00:190::1', 'prefix': 64,
                                  'ranges': [{'start': 'fd00:190::100', 'end': 'fd00:190::1ff'}],
                                  'hosts': [{'name': 'h6', 'ip': 'fd00:190::10'}]}],
                routes=[{'address': 'fd00:191::', 'prefix': 64, 'gateway': 'fd00:190::2'},
                        {'address': '10.191.0.0', 'netmask': '255.255.0.0', 'gateway': '192.168.190.2'}],
                dns={'forwarders': [{'addr': '192.0.2.53'}], 'txt': [{'name': 't', 'value': 'v'}],
                     'srv': [{'service': 'ldap', 'protocol': 'tcp', 'port': 389, 'target': 'h6'}],
                     'hosts': [{'ip': '192.168.190.7', 'hostnames': ['seven']}]},
                portgroups=[{'name': 'pg', 'default': True, 'bandwidth': {'inbound': {'average': 1000}}}])
    try:
        res = run(**args)
        assert not res['failed'] and res['changed'], res
        assert run(**args)['changed'] is False
        index = ifindex(lab, 'vbn-v6')
        new = json.loads(json.dumps(args))
        new['ips'][0]['hosts'] = [{'mac': '52:54:00:19:00:01', 'ip': '192.168.190.9'}]
        new['ips'][1]['hosts'] = [{'name': 'h6', 'ip': 'fd00:190::11'}]
        new['ips'][1]['ranges'].append({'start': 'fd00:190::300', 'end': 'fd00:190::3ff'})
        new['dns']['txt'] = [{'name': 't', 'value': 'w'}]
        new['dns']['srv'][0]['port'] = 636
        new['dns']['hosts'].append({'ip': 'fd00:190::7', 'hostnames': ['seven']})
        new['portgroups'] = [{'name': 'pg', 'default': True, 'bandwidth': {'inbound': {'average': 2000}}},
                             {'name': 'pg2'}]
        version = lab.exec(HOST, ['libvirtd', '--version']).stdout.split()[-1]
        before = net_state(lab)
        res = run(**new)
        if tuple(int(x) for x in version.split('.')[:2]) < (9, 0):
            # libvirt 7.0 (debian11) refuses to add live a DNS host whose hostname another record has: the
            # module sees it before touching anything and asks for the restart
            assert res['failed'] and not res['changed'] and net_state(lab) == before, res
            assert any('cannot add a DNS host live whose hostname another record has' in r
                       for r in res['needs_restart']), res
            res = run(**dict(new, restart='if_needed'))
            assert not res['failed'] and res['restart']['bridge_after'] == 'vbn-v6', (res['msg'], res)
        else:
            assert not res['failed'], (res['msg'], res)
            assert set(c['how'] for c in res['changes']) == {'live-update'}, res['changes']
            sections = set(u['section'] for u in res['live_updates'])
            assert sections == {'ip-dhcp-host', 'ip-dhcp-range', 'dns-txt', 'dns-srv', 'dns-host', 'portgroup'}
            assert ifindex(lab, 'vbn-v6') == index
        for flag in ([], ['--inactive']):
            xml = virsh(lab, *(['net-dumpxml'] + flag + [name]))
            for needle in ("ip='fd00:190::11'", "ip='192.168.190.9'", "value='w'", "port='636'",
                           "<portgroup name='pg2'", "average='2000'", "start='fd00:190::300'"):
                assert needle in xml, (flag, needle, xml)
        assert run(**new)['changed'] is False
    finally:
        remove(run, name)


def test_host_bridge_with_openvswitch_virtualport_defined(lab, run):
    """Open vSwitch is not installed in the lab: the network is defined (active=false),
    idempotent, and its virtualport/portgroups round-trip through network_info."""
    name = 'ovsnet'
    args = dict(name=name, forward='bridge', bridge={'name': 'ovsbr0'}, active=False,
                virtualport={'type': 'openvswitch'},
                portgroups=[{'name': 'vlan10', 'default': True, 'vlan': {'tags': [{'id': 10}]}},
                            {'name': 'trunk', 'vlan': {'trunk': True, 'tags': [{'id': 20}, {'id': 30}]}}])
    try:
        res = run(**args)
        assert not res['failed'] and res['changed'], res
        assert res['active'] is False
        assert "<virtualport type='openvswitch'/>" in virsh(lab, 'net-dumpxml', '--inactive', name)
        assert run(**args)['changed'] is False
        model = run(module=INFO, name=name)['networks'][0]['model']
        assert model['virtualport'] == {'type': 'openvswitch'}
        assert run(**dict(model, active=False))['changed'] is False
        # starting it needs the host bridge: refused before anything changes
        before = net_state(lab)
        res = run(**dict(args, active=True))
        assert res['failed'] and 'host bridge ovsbr0 does not exist' in res['msg']
        assert net_state(lab) == before
    finally:
        remove(run, name)


# A minimal DHCP client (DISCOVER/OFFER/REQUEST/ACK) for ns guests: the lab has no dhclient.
DHCP_CLIENT = r'''
import random, socket, struct, sys
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
xid = random.randint(1, 2 ** 31)
def pkt(kind, req=None, server=None):
    p = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4),
                    bytes(4), bytes(4), mac + bytes(10), bytes(64), bytes(128))
    p += b'\x63\x82\x53\x63' + bytes([53, 1, kind])
    if req:
        p += bytes([50, 4]) + socket.inet_aton(req)
    if server:
        p += bytes([54, 4]) + socket.inet_aton(server)
    return p + bytes([12, 5]) + b'ngdhc' + b'\xff'
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b'eth0\0')
s.bind(('', 68))
s.settimeout(10)
def recv(want):
    while True:
        data = s.recv(2048)
        if data[4:8] != struct.pack('!I', xid):
            continue
        opts, i, kind, server = data[240:], 0, None, None
        while i < len(opts) and opts[i] != 255:
            if opts[i] == 0:
                i += 1
                continue
            code, size = opts[i], opts[i + 1]
            val = opts[i + 2:i + 2 + size]
            if code == 53:
                kind = val[0]
            if code == 54:
                server = socket.inet_ntoa(val)
            i += 2 + size
        if kind == want:
            return socket.inet_ntoa(data[16:20]), server
s.sendto(pkt(1), ('255.255.255.255', 67))
offered, server = recv(2)
s.sendto(pkt(3, offered, server), ('255.255.255.255', 67))
print(recv(5)[0])
'''


def test_live_dhcp_host_is_served_and_leased(lab, run):
    """A DHCP host added live is what dnsmasq hands out, and network_info reports the lease."""
    name = 'leasenet'
    args = dict(name=name, bridge={'name': 'vbn-lease'}, ips=[ipnet(177)])
    try:
        assert not run(**args)['failed']
        g = lab.guest_add('nlease', HOST, network=name, kind='ns')
        index = ifindex(lab, 'vbn-lease')
        args['ips'] = [ipnet(177, [{'mac': g['mac'], 'ip': '192.168.177.42', 'name': 'leased'}])]
        res = run(**args)
        assert [c['how'] for c in res['changes']] == ['live-update'], res
        p = lab.guest_exec('nlease', ['python3', '-c', DHCP_CLIENT, g['mac']], check=False)
        assert p.returncode == 0 and p.stdout.strip() == '192.168.177.42', (p.stdout, p.stderr)
        assert ifindex(lab, 'vbn-lease') == index
        deadline = time.time() + 10
        leases = []
        while time.time() < deadline and not leases:
            leases = run(module=INFO, name=name, firewall=False)['networks'][0]['leases']
            time.sleep(0.5)
        assert [(entry['mac'], entry['ipaddr']) for entry in leases] == [(g['mac'], '192.168.177.42')], leases
        ports = run(module=INFO, name=name, firewall=False)['networks'][0]['ports']
        assert [p['port'] for p in ports] == [g['veth']]
    finally:
        lab.guest_del('nlease')
        remove(run, name)


def test_network_info_firewall_rules_match_the_hosts_own_listing(lab, run):
    """network_info's firewall rules for the default network are those of the backend libvirt really uses
    (nftables on el10: network.conf; iptables on the others), rule for rule with the host's own listing."""
    fw = run(module=INFO, name='default')['networks'][0]['firewall']
    conf = lab.exec(HOST, ['sh', '-c', 'cat /etc/libvirt/network.conf 2>/dev/null || true']).stdout
    if re.search(r'^\s*firewall_backend\s*=\s*"nftables"', conf, re.M):
        assert (fw['backend'], fw['backend_source']) == ('nftables', 'network.conf'), fw
        listing = lab.exec(HOST, ['nft', 'list', 'table', 'ip', 'libvirt_network']).stdout
        rules = [re.sub(r'\s*counter packets \d+ bytes \d+', '', x.strip()) for x in listing.splitlines()
                 if 'virbr0' in x or '192.168.122.0/24' in x]
        assert sorted(r['rule'] for r in fw['nftables'] if r['family'] == 'ipv4') == sorted(rules)
        assert {r['chain'] for r in fw['nftables']} >= {'guest_output', 'guest_input', 'guest_nat'}
        assert any('masquerade to :1024-65535' in r['rule'] for r in fw['nftables'] if r['chain'] == 'guest_nat')
        assert not [r for r in fw['iptables'] if r['chain'].startswith('LIBVIRT_')]
    else:
        assert fw['backend'] == 'iptables' and not fw['nftables'], fw
        listing = lab.exec(HOST, ['iptables-save']).stdout
        rules = [x for x in listing.splitlines() if x.startswith('-A ') and ('virbr0' in x or '192.168.122.0/24' in x)]
        assert sorted(r['rule'] for r in fw['iptables'] if r['family'] == 'ipv4') == sorted(rules)
        assert all(isinstance(r['packets'], int) for r in fw['iptables'])
