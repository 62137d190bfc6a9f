# SPDX-License-Identifier: GPL-3.0-or-later
"""GuestInterfaceManager (_domain.py) against a fake libvirt connection: planning, live/config
split, policies, unplug wait, shared memory, errors."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from lxml import etree

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _domain as D
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import LibvirtError
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._host import HostView
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import interface_from_xml

LIVE, CONFIG = D.VIR_DOMAIN_AFFECT_LIVE, D.VIR_DOMAIN_AFFECT_CONFIG

DOM_XML = """<domain type='qemu'><name>%s</name><memory unit='KiB'>65536</memory>%s<devices>
<emulator>/usr/bin/qemu-system-x86_64</emulator>%s</devices></domain>"""


class FakeError(LibvirtError):
    def __init__(self, msg, code=1):
        super(FakeError, self).__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return str(self)


def _root(xml):
    return etree.fromstring(xml)


def _by_mac(root, mac):
    for e in root.findall('./devices/interface'):
        if interface_from_xml(e)['mac'] == mac:
            return e
    return None


class FakeDomain:
    def __init__(self, name, ifaces='', running=False, memory=''):
        self._name = name
        self.config = _root(DOM_XML % (name, memory, ifaces))
        self.live = _root(DOM_XML % (name, memory, ifaces)) if running else None
        self.calls = []
        self.unplug_completes = False
        self.refuse_update = None
        self.refuse_attach = None
        self.meta = None

    def name(self):
        return self._name

    def isActive(self):
        return self.live is not None

    def XMLDesc(self, flags):
        root = self.config if (flags & D.VIR_DOMAIN_XML_INACTIVE or self.live is None) else self.live
        return etree.tostring(root).decode()

    def _targets(self, flags):
        out = []
        if flags & LIVE:
            out.append(self.live)
        if flags & CONFIG:
            out.append(self.config)
        return out

    def attachDeviceFlags(self, xml, flags):
        self.calls.append(('attach', flags))
        if self.refuse_attach and flags & LIVE:
            raise FakeError(self.refuse_attach)
        for root in self._targets(flags):
            root.find('devices').append(_root(xml))

    def updateDeviceFlags(self, xml, flags):
        self.calls.append(('update', flags))
        if self.refuse_update and flags & LIVE:
            raise FakeError(self.refuse_update, code=D.VIR_ERR_OPERATION_UNSUPPORTED)
        new = _root(xml)
        mac = interface_from_xml(new)['mac']
        for root in self._targets(flags):
            old = _by_mac(root, mac)
            root.find('devices').replace(old, new)

    def detachDeviceFlags(self, xml, flags):
        self.calls.append(('detach', flags))
        mac = interface_from_xml(_root(xml))['mac']
        if flags & CONFIG:
            self.config.find('devices').remove(_by_mac(self.config, mac))
        if flags & LIVE and self.unplug_completes:
            self.live.find('devices').remove(_by_mac(self.live, mac))

    def metadata(self, typ, uri, flags):
        if self.meta is None:
            raise FakeError('no metadata', code=80)
        return self.meta

    def setMetadata(self, typ, xml, key, uri, flags):
        self.meta = xml


class FakeNetwork:
    def __init__(self, name, active=True):
        self._name, self._active = name, active

    def name(self):
        return self._name

    def isActive(self):
        return self._active


class FakeConn:
    def __init__(self, *domains):
        self.domains = dict((d.name(), d) for d in domains)
        self.networks = {'default': FakeNetwork('default')}
        self.defined = []

    def lookupByName(self, name):
        if name not in self.domains:
            raise FakeError("Domain not found: no domain with matching name '%s'" % name, code=42)
        return self.domains[name]

    def listAllDomains(self, flags):
        return list(self.domains.values())

    def networkLookupByName(self, name):
        if name not in self.networks:
            raise FakeError("Network not found: no network with matching name '%s'" % name, code=43)
        return self.networks[name]

    def listAllNetworks(self, flags):
        return list(self.networks.values())

    def defineXML(self, xml):
        self.defined.append(xml)
        root = _root(xml)
        self.domains[root.findtext('name')].config = root


class FakeHost(HostView):
    def __init__(self):
        self.devs = {'eth0': False, 'br0': True, 'veth0': False}

    def netdev_exists(self, name):
        return name in self.devs

    def is_linux_bridge(self, name):
        return self.devs.get(name, False)

    def host_links(self):
        return sorted(self.devs)


class Clock:
    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def sleep(self, s):
        self.now += s


def run(conn, check_mode=False, clock=None, **params):
    params.setdefault('state', 'present')
    params.setdefault('live', 'auto')
    params.setdefault('on_live_impossible', 'config_only')
    params.setdefault('unplug_timeout', 2)
    params.setdefault('uri', 'qemu:///system')
    clock = clock or Clock()
    mgr = D.GuestInterfaceManager(conn, params, check_mode=check_mode, host=FakeHost(),
                                  sleep=clock.sleep, clock=clock.time)
    return mgr.run()


NET_IF = "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/><model type='virtio'/></interface>"


def test_add_to_stopped_domain_then_idempotent():
    dom = FakeDomain('g')
    conn = FakeConn(dom)
    res = run(conn, domain='g', type='network', source='default')
    assert res['changed'] and res['live']['status'] == 'not_running'
    assert dom.calls == [('attach', CONFIG)]
    mac = res['interface']['mac']
    assert mac.startswith('52:54:00:') and res['interface']['model'] == 'virtio'
    assert res['diff']['before'] == '' and mac in res['diff']['after']
    again = run(conn, domain='g', type='network', source='default')
    assert not again['changed'] and again['interface']['mac'] == mac


def test_check_mode_touches_nothing():
    dom = FakeDomain('g', running=True)
    res = run(FakeConn(dom), check_mode=True, domain='g', type='network', source='default', mac='52:54:00:AA:BB:CC')
    assert res['changed'] and dom.calls == []
    assert res['changes'] == [
        {'what': 'interface 52:54:00:aa:bb:cc in the configuration of domain g', 'how': 'attach'},
        {'what': 'interface 52:54:00:aa:bb:cc in the running domain g', 'how': 'attach'}]
    assert res['interface']['mac'] == '52:54:00:aa:bb:cc'


def test_running_attach_live_first():
    dom = FakeDomain('g', running=True)
    res = run(FakeConn(dom), domain='g', type='network', source='default', mac='52:54:00:00:00:09')
    assert dom.calls == [('attach', LIVE), ('attach', CONFIG)]
    assert res['live']['status'] == 'applied'
    assert _by_mac(dom.live, '52:54:00:00:00:09') is not None


def test_live_update_link_state():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    res = run(FakeConn(dom), domain='g', type='network', source='default', mac='52:54:00:00:00:01', link_state='down')
    assert dom.calls == [('update', LIVE), ('update', CONFIG)]
    assert res['live']['status'] == 'applied' and res['interface']['link_state'] == 'down'
    assert res['changes'][0] == {'what': 'interface 52:54:00:00:00:01 in the configuration of domain g: link_state',
                                 'how': 'update'}


def test_live_impossible_config_only_warns():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    res = run(FakeConn(dom), domain='g', type='network', source='default', mac='52:54:00:00:00:01', model='e1000')
    assert dom.calls == [('update', CONFIG)]
    assert res['live']['status'] == 'impossible' and 'model' in res['live']['reason']
    assert any('next boot' in w for w in res['warnings'])


def test_live_impossible_fail_changes_nothing():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    with pytest.raises(D.GuestInterfaceError) as exc:
        run(FakeConn(dom), domain='g', type='direct', source='eth0', mode='bridge',
            mac='52:54:00:00:00:01', on_live_impossible='fail')
    assert 'cannot apply the change to running domain g' in exc.value.msg and 'type' in exc.value.msg
    assert dom.calls == []


def test_network_to_bridge_type_change_is_live():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    res = run(FakeConn(dom), domain='g', type='bridge', source='br0', mac='52:54:00:00:00:01')
    assert res['live']['status'] == 'applied' and dom.calls == [('update', LIVE), ('update', CONFIG)]


def test_libvirt_refuses_live_update():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    dom.refuse_update = 'Operation not supported: cannot change link state'
    res = run(FakeConn(dom), domain='g', type='network', source='default', mac='52:54:00:00:00:01', link_state='down')
    assert res['live']['status'] == 'impossible' and 'refused' in res['live']['reason']
    assert ['running domain' in c['what'] for c in res['changes']] == [False]


def test_hotplug_error_fails_nothing_changed():
    dom = FakeDomain('g', running=True)
    dom.refuse_attach = 'error creating macvtap interface macvtap3@eth0: Invalid argument'
    params = dict(domain='g', state='present', type='direct', source='eth0', mode='passthrough', live='auto',
                  uri='qemu:///system')
    mgr = D.GuestInterfaceManager(FakeConn(dom), params, host=FakeHost())
    with pytest.raises(D.GuestInterfaceError) as exc:
        mgr.run()
    assert 'Invalid argument' in exc.value.msg and 'nothing was changed' in exc.value.msg
    assert mgr.changes == [] and dom.calls == [('attach', LIVE)]


@pytest.mark.parametrize('live,status', [('never', 'disabled'), ('auto', 'not_running')])
def test_live_policies(live, status):
    res = run(FakeConn(FakeDomain('g')), domain='g', type='network', source='default', live=live)
    assert res['live']['status'] == status


def test_live_always_needs_running():
    with pytest.raises(D.GuestInterfaceError) as exc:
        run(FakeConn(FakeDomain('g')), domain='g', type='network', source='default', live='always')
    assert 'not running' in exc.value.msg


def test_unplug_completes():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    dom.unplug_completes = True
    res = run(FakeConn(dom), domain='g', mac='52:54:00:00:00:01', state='absent')
    assert res['live']['status'] == 'removed' and res['changed']
    assert dom.calls == [('detach', LIVE), ('detach', CONFIG)]


def test_unplug_pending_bounded_then_rerun_unchanged():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    conn = FakeConn(dom)
    clock = Clock()
    res = run(conn, clock=clock, domain='g', mac='52:54:00:00:00:01', state='absent', unplug_timeout=3)
    assert res['changed'] and res['live']['status'] == 'pending'
    assert 3 <= clock.now < 4
    assert _by_mac(dom.config, '52:54:00:00:00:01') is None
    assert '52:54:00:00:00:01' in dom.meta
    again = run(conn, domain='g', mac='52:54:00:00:00:01', state='absent')
    assert not again['changed'] and again['live']['status'] == 'pending'
    assert dom.calls == [('detach', LIVE), ('detach', CONFIG)]  # nothing asked again


def test_absent_nothing_there():
    res = run(FakeConn(FakeDomain('g')), domain='g', type='network', source='default', state='absent')
    assert not res['changed'] and res['interface'] is None


def test_absent_by_type_and_source():
    dom = FakeDomain('g', ifaces=NET_IF)
    res = run(FakeConn(dom), domain='g', type='network', source='default', state='absent')
    assert res['changed'] and res['interface']['mac'] == '52:54:00:00:00:01'
    assert '52:54:00:00:00:01' in res['diff']['before'] and res['diff']['after'] == ''


def test_ambiguous_without_mac():
    dom = FakeDomain('g', ifaces=NET_IF + NET_IF.replace(':01', ':02'))
    with pytest.raises(D.GuestInterfaceError) as exc:
        run(FakeConn(dom), domain='g', type='network', source='default', link_state='down')
    assert 'give mac to pick one' in exc.value.msg


@pytest.mark.parametrize('params,needle', [
    (dict(domain='nope', type='network', source='default'), 'domain nope not found (defined domains: g, other)'),
    (dict(type='network', source='nonet'), 'unknown network nonet (libvirt networks: default)'),
    (dict(type='bridge', source='nobr'), 'unknown bridge nobr (host bridges: br0)'),
    (dict(type='bridge', source='eth0'), 'not a Linux bridge'),
    (dict(type='direct', source='nodev', mode='bridge'), 'macvtap source device nodev does not exist'),
    (dict(type='network', source='default', mac='52:54:00:00:00:1'), None),
    (dict(type='network', source='default', mac='52:54:00:00:00'), 'malformed MAC'),
    (dict(type='network', source='default', mac='52:54:00:00:00:77'), 'duplicate MAC address 52:54:00:00:00:77: already used by domain other'),
    (dict(type='vhostuser', path='sock', mode='client'), 'not absolute'),
    (dict(type='vhostuser', path='/run/s.sock', mode='client'), 'needs shared guest memory'),
    (dict(type='bridge', source='br0', mode='vepa'), 'not valid for an interface of type bridge'),
    (dict(type='direct', source='eth0', mode='client'), "mode 'client' is not valid for type direct"),
])
def test_errors_change_nothing(params, needle):
    dom = FakeDomain('g')
    other = FakeDomain('other', ifaces=NET_IF.replace(':01', ':77'))
    conn = FakeConn(dom, other)
    params = dict(params)
    params.setdefault('domain', 'g')
    if needle is None:
        assert run(conn, **params)['changed']
        return
    with pytest.raises(D.GuestInterfaceError) as exc:
        run(conn, **params)
    assert needle in exc.value.msg
    assert dom.calls == [] and conn.defined == []


def test_remote_uri_skips_host_checks():
    res = run(FakeConn(FakeDomain('g')), domain='g', type='direct', source='nodev', mode='vepa',
              uri='qemu+ssh://root@far/system')
    assert res['changed']


def test_vhostuser_ensure_shared_memory_stopped():
    dom = FakeDomain('g')
    conn = FakeConn(dom)
    res = run(conn, domain='g', type='vhostuser', path='/run/s.sock', mode='server', ensure_shared_memory=True)
    assert res['changed'] and len(conn.defined) == 1
    assert dom.config.find('./memoryBacking/access').get('mode') == 'shared'
    assert res['changes'][0]['how'] == 'memory_backing'
    again = run(conn, domain='g', type='vhostuser', path='/run/s.sock', mode='server', ensure_shared_memory=True)
    assert not again['changed']


def test_vhostuser_hugepages_is_shared_enough():
    dom = FakeDomain('g', memory='<memoryBacking><hugepages/></memoryBacking>')
    res = run(FakeConn(dom), domain='g', type='vhostuser', path='/run/s.sock', mode='client', reconnect=3)
    assert res['changed'] and res['interface']['reconnect'] == 3


def test_vhostuser_running_without_live_shared_memory_is_config_only():
    dom = FakeDomain('g', running=True)
    res = run(FakeConn(dom), domain='g', type='vhostuser', path='/run/s.sock', mode='server', ensure_shared_memory=True)
    assert res['live']['status'] == 'impossible' and 'shared memory' in res['live']['reason']
    assert dom.calls == [('attach', CONFIG)]


def test_direct_only_warning():
    res = run(FakeConn(FakeDomain('g')), domain='g', type='direct', source='eth0', mode='bridge')
    assert any('cannot reach the guest' in w for w in res['warnings'])
    res = run(FakeConn(FakeDomain('h', ifaces=NET_IF)), domain='h', type='direct', source='eth0', mode='bridge')
    assert not any('cannot reach the guest' in w for w in res['warnings'])


def test_inactive_network_warns():
    conn = FakeConn(FakeDomain('g'))
    conn.networks['iso'] = FakeNetwork('iso', active=False)
    res = run(conn, domain='g', type='network', source='iso')
    assert any('not active' in w for w in res['warnings'])


def test_update_keeps_address_and_unknown_children():
    iface = NET_IF.replace('</interface>', "<rom enabled='no'/><address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></interface>")
    dom = FakeDomain('g', ifaces=iface)
    run(FakeConn(dom), domain='g', type='network', source='default', mac='52:54:00:00:00:01', mtu=1400)
    elem = _by_mac(dom.config, '52:54:00:00:00:01')
    assert elem.find('address').get('slot') == '0x05' and elem.find('rom') is not None
    assert elem.find('mtu').get('size') == '1400'


def test_add_shared_memory_placement():
    root = _root(DOM_XML % ('g', "<currentMemory unit='KiB'>65536</currentMemory>", ''))
    D.add_shared_memory(root)
    tags = [e.tag for e in root]
    assert tags.index('memoryBacking') == tags.index('currentMemory') + 1
    assert D.has_shared_memory(root)
    numa = _root("<domain><cpu><numa><cell id='0' memAccess='shared'/></numa></cpu></domain>")
    assert D.has_shared_memory(numa)


def test_present_while_unplug_pending_says_so():
    dom = FakeDomain('g', ifaces=NET_IF, running=True)
    conn = FakeConn(dom)
    run(conn, domain='g', mac='52:54:00:00:00:01', state='absent', unplug_timeout=0)
    res = run(conn, domain='g', type='network', source='default', mac='52:54:00:00:00:01')
    assert res['changed'] and res['live']['status'] == 'pending'
    assert ['running domain' in c['what'] for c in res['changes']] == [False]


def test_absent_vhostuser_by_path_without_mode():
    ifaces = ("<interface type='vhostuser'><mac address='52:54:00:00:00:05'/>"
              "<source type='unix' path='/run/s.sock' mode='server'/></interface>")
    dom = FakeDomain('g', ifaces=ifaces)
    res = run(FakeConn(dom), domain='g', type='vhostuser', path='/run/s.sock', state='absent')
    assert res['changed'] and dom.calls == [('detach', CONFIG)]
    with pytest.raises(D.GuestInterfaceError) as exc:
        run(FakeConn(dom), domain='g', type='vhostuser', path='rel.sock', state='absent')
    assert 'not absolute' in exc.value.msg


def test_returned_interface_has_only_option_keys():
    from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import INTERFACE_KEYS
    res = run(FakeConn(FakeDomain('g', ifaces=NET_IF)), domain='g', type='network', source='default')
    assert sorted(res['interface']) == sorted(INTERFACE_KEYS)


def test_hotplug_cut_by_libvirtd_death_says_so():
    """libvirtd killed during the hot-plug (End of file on the RPC socket): the outcome is unknown, so the
    message says what was in flight and what a re-run does, never 'nothing was changed'."""
    dom = FakeDomain('g', running=True)
    dom.refuse_attach = 'End of file while reading data: Input/output error'
    params = dict(domain='g', state='present', type='network', source='default', live='auto', uri='qemu:///system')
    mgr = D.GuestInterfaceManager(FakeConn(dom), params, host=FakeHost())
    with pytest.raises(D.GuestInterfaceError) as exc:
        mgr.run()
    msg = exc.value.msg
    assert 'lost the connection to libvirtd while hot-plugging the interface on running domain g' in msg, msg
    assert 'nothing was changed' not in msg and 'run the task again' in msg, msg
    assert exc.value.result['changed'] is True and exc.value.result['interrupted'].startswith('hot-plugging')
