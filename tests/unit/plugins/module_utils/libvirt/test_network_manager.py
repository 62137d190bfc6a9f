# SPDX-License-Identifier: GPL-3.0-or-later
"""NetworkManager against a fake libvirt connection and a fake host (no libvirtd, no root)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import types

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import LibvirtError, finish
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._host import HostView
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network_manager as M
from ansible_collections.virtops.virtnet.plugins.modules import network as network_module
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import parse_xml, etree

DEFAULT = """<network><name>default</name><uuid>0e6f7d0c-0000-4000-8000-000000000001</uuid>
<forward mode='nat'/><bridge name='virbr0' stp='on' delay='0'/><mac address='52:54:00:00:00:01'/>
<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>
</network>"""


class Exit(Exception):
    def __init__(self, failed, kwargs):
        super(Exit, self).__init__(kwargs.get('msg'))
        self.failed = failed
        self.result = kwargs


class FakeNet(object):
    def __init__(self, conn, xml, active=False):
        self.conn = conn
        self.xml = xml
        self.live = xml if active else None
        self._autostart = False
        self.calls = []

    def name(self):
        return N.from_xml(self.xml)['name']

    def XMLDesc(self, flags=0):
        return self.xml if flags or self.live is None else self.live

    def isActive(self):
        return self.live is not None

    def isPersistent(self):
        return True

    def autostart(self):
        return self._autostart

    def setAutostart(self, value):
        self.calls.append(('autostart', value))
        self._autostart = bool(value)

    def create(self):
        self.calls.append(('create',))
        self.live = self.xml

    def destroy(self):
        self.calls.append(('destroy',))
        self.live = None

    def undefine(self):
        self.calls.append(('undefine',))
        self.conn.nets.remove(self)

    def update(self, command, section, parent, xml, flags):
        self.calls.append(('update', command, section, parent, xml, flags))
        if (command, section) == (3, 4):  # add-last ip-dhcp-host: what libvirt does, minimal
            for attr in ('xml', 'live'):
                root = parse_xml(getattr(self, attr))
                root.findall('ip')[max(parent, 0)].find('dhcp').append(parse_xml(xml))
                setattr(self, attr, etree.tostring(root, encoding='unicode'))


class FakeConn(object):
    def __init__(self):
        self.nets = [FakeNet(self, DEFAULT, active=True)]
        self.defined = []

    def listAllNetworks(self, flags=0):
        return list(self.nets)

    def listAllDomains(self, flags=0):
        return []

    def networkDefineXML(self, xml):
        self.defined.append(xml)
        name = N.from_xml(xml)['name']
        for net in self.nets:
            if net.name() == name:
                net.xml = xml
                return net
        net = FakeNet(self, xml)
        self.nets.append(net)
        return net


def fake_host(links=('lo', 'eth0', 'bond0', 'virbr0'), routes=None):
    host = HostView(sys_net='/nonexistent')
    host.host_links = lambda: sorted(links)
    host.host_routes = lambda: routes if routes is not None else [
        {'dev': 'bond0', 'family': 'ipv4', 'first': 0x0a2c2000, 'prefix': 24, 'cidr': '10.44.32.0/24'},
        {'dev': 'virbr0', 'family': 'ipv4', 'first': 0xc0a87a00, 'prefix': 24, 'cidr': '192.168.122.0/24'}]
    host.bridge_ports = lambda br: []
    host.running_guest_ports = lambda conn, name, br: {}
    return host


def run(conn, check=False, diff=False, host=None, **params):
    validated = ArgumentSpecValidator(network_module.argument_spec()).validate(params)
    assert not validated.error_messages, validated.error_messages
    module = types.SimpleNamespace(params=validated.validated_parameters, check_mode=check, _diff=diff,
                                   warnings=[])

    def fail_json(**kw):
        raise Exit(True, kw)

    def exit_json(**kw):
        raise Exit(False, kw)

    module.fail_json = fail_json
    module.exit_json = exit_json
    module.warn = module.warnings.append
    module.run_command = lambda argv: (0, '', '')
    with pytest.raises(Exit) as exc:
        finish(module, M.NetworkManager(module, conn, host=host or fake_host()))
    exc.value.result['warnings'] = module.warnings
    return exc.value


NEW = dict(name='lab', bridge={'name': 'virbr10'},
           ips=[{'address': '192.168.100.1', 'prefix': 24,
                 'ranges': [{'start': '192.168.100.10', 'end': '192.168.100.20'}]}])


def test_create_then_unchanged():
    conn = FakeConn()
    res = run(conn, **NEW)
    assert not res.failed and [c['how'] for c in res.result['changes']] == ['create', 'start']
    assert conn.nets[-1].isActive()
    res = run(conn, **NEW)
    assert not res.failed and res.result['changed'] is False


def test_check_mode_touches_nothing_and_diffs():
    conn = FakeConn()
    res = run(conn, check=True, diff=True, **NEW)
    assert res.result['changed'] and len(conn.nets) == 1 and not conn.defined
    assert res.result['diff']['before'] == '' and '<name>lab</name>' in res.result['diff']['after']


def test_live_update_flags_and_no_redefine():
    conn = FakeConn()
    run(conn, **NEW)
    conn.defined = []
    params = dict(NEW)
    params['ips'] = [dict(NEW['ips'][0], hosts=[{'mac': '52:54:00:00:00:09', 'ip': '192.168.100.9'}])]
    res = run(conn, **params)
    assert [c['how'] for c in res.result['changes']] == ['live-update']
    net = conn.nets[-1]
    upd = [c for c in net.calls if c[0] == 'update']
    assert upd and upd[0][1:4] == (3, 4, 0) and upd[0][5] == 3  # add-last, ip-dhcp-host, ips[0], live|config
    assert not conn.defined


def test_restart_refused_then_done():
    conn = FakeConn()
    run(conn, **NEW)
    params = dict(NEW, mtu=9000)
    res = run(conn, **params)
    assert res.failed and res.result['needs_restart'] == ['mtu'] and 'restart=if_needed' in res.result['msg']
    res = run(conn, restart='if_needed', **params)
    assert not res.failed
    calls = [c[0] for c in conn.nets[-1].calls]
    assert calls[-2:] == ['destroy', 'create']
    assert res.result['restart']['lost'] == []


@pytest.mark.parametrize('params,needle', [
    (dict(NEW, bridge={'name': 'virbr0'}), 'already used by network default'),
    (dict(NEW, ips=[{'address': '192.168.122.201', 'prefix': 30}]), 'overlaps 192.168.122.1/24 of network default'),
    (dict(NEW, ips=[{'address': '10.44.32.77', 'prefix': 28}]), 'host route 10.44.32.0/24 dev bond0'),
    (dict(NEW, forward='route', forward_dev='eth5'), 'unknown forward device eth5'),
    (dict(NEW, bridge={'name': 'eth0'}), 'already exists on the host'),
])
def test_conflicts(params, needle):
    conn = FakeConn()
    res = run(conn, **params)
    assert res.failed and needle in res.result['msg'] and 'Nothing was changed' in res.result['msg']
    assert len(conn.nets) == 1 and not conn.defined


def test_inactive_definition_only_warns():
    conn = FakeConn()
    params = dict(NEW)
    params.update(forward='route', forward_dev='eth5', ips=[{'address': '192.168.122.201', 'prefix': 30}], active=False)
    res = run(conn, **params)
    assert not res.failed
    assert any('eth5' in w for w in res.result['warnings'])
    assert any('cannot be active at the same time' in w for w in res.result['warnings'])


def test_absent():
    conn = FakeConn()
    run(conn, **NEW)
    res = run(conn, name='lab', state='absent')
    assert [c['how'] for c in res.result['changes']] == ['stop', 'undefine']
    assert [n.name() for n in conn.nets] == ['default']
    assert run(conn, name='lab', state='absent').result['changed'] is False


@pytest.mark.parametrize('change', [
    dict(mtu=9000, restart='if_needed'),
    dict(ips=[dict(NEW['ips'][0], hosts=[{'mac': '52:54:00:00:00:09', 'ip': '192.168.100.9'}])]),
    dict(active=False, autostart=True),
])
def test_check_mode_reports_exactly_what_the_run_does(change):
    conn = FakeConn()
    run(conn, **NEW)
    params = dict(NEW, **change)
    predicted = run(conn, check=True, **params).result
    done = run(conn, **params).result
    assert predicted['changes'] == done['changes'] and predicted['changed'] is True
    assert N.canonical(N.from_xml(predicted['xml'])) == N.canonical(N.from_xml(done['xml']))
    assert run(conn, **params).result['changed'] is False


def test_start_puts_running_guests_orphaned_taps_back():
    """A network stopped under running guests (libvirtd killed during a restart): starting it puts their
    taps back on its bridge, says so in changes (check mode too) and in reattached."""
    conn = FakeConn()
    conn.nets.append(FakeNet(conn, N.to_xml(N.model_from_params(dict(
        ArgumentSpecValidator(network_module.argument_spec()).validate(dict(NEW)).validated_parameters)))))
    host = fake_host(links=('lo', 'eth0', 'bond0', 'virbr0', 'vnet3', 'vnet4'))
    host.running_guest_ports = lambda c, name, br: (
        {'vnet3': {'domain': 'q1'}, 'vnet4': {'domain': 'q2'}, 'vnet9': {'domain': 'gone'}} if name == 'lab' else {})
    checked = run(conn, check=True, host=host, **NEW)
    assert {'what': 'ports of running guests: vnet3, vnet4', 'how': 'reattach'} in checked.result['changes']
    commands = []
    module_run = []

    def record(argv):
        commands.append(argv)
        return (0, '', '')
    validated = ArgumentSpecValidator(network_module.argument_spec()).validate(dict(NEW)).validated_parameters
    module = types.SimpleNamespace(params=validated, check_mode=False, _diff=False, warnings=[], run_command=record)

    def done(**kw):
        module_run.append(kw)
        raise Exit(False, kw)
    module.fail_json = module.exit_json = done
    module.warn = module.warnings.append
    with pytest.raises(Exit):
        finish(module, M.NetworkManager(module, conn, host=host))
    res = module_run[0]
    assert not res.get('failed') and res['reattached'] == ['vnet3', 'vnet4'], res
    assert ['ip', 'link', 'set', 'dev', 'vnet3', 'master', 'virbr10'] in commands, commands


class LostConnection(LibvirtError):
    """What libvirt-python raises when libvirtd dies during a call (code 38 VIR_ERR_SYSTEM_ERROR, RPC)."""

    def get_error_code(self):
        return 38

    def get_error_domain(self):
        return 7

    def get_error_message(self):
        return 'End of file while reading data: Input/output error'


def test_libvirtd_dying_during_the_restart_is_reported(monkeypatch):
    """net.destroy() cut by libvirtd's death: the run fails, names the step in flight (outcome unknown,
    changed: true) and says what a re-run does; no traceback, no 'nothing was changed'."""
    conn = FakeConn()
    net = conn.nets[0]

    def destroy():
        raise LostConnection()
    net.destroy = destroy
    res = run(conn, name='default', bridge={'name': 'virbr0'}, mtu=1400, restart='if_needed',
              ips=[{'address': '192.168.122.1', 'prefix': 24,
                    'ranges': [{'start': '192.168.122.2', 'end': '192.168.122.254'}]}])
    assert res.failed and res.result['changed'] is True, res.result
    assert res.result['interrupted'] == 'stopping network default for the restart', res.result
    msg = res.result['msg']
    assert msg.startswith('lost the connection to libvirtd while stopping network default for the restart'), msg
    assert 'nothing was changed' not in msg.lower() and 'run the task again' in msg, msg
    assert 'exception' not in res.result
