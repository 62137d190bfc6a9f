# SPDX-License-Identifier: GPL-3.0-or-later
"""Interface model: XML <-> model round trips, normalisation, validation, comparison."""
import pytest
from lxml import etree

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import (
    InterfaceModelError, canonical_interface, domain_interfaces, find_interface_elements,
    interface_differences, interface_from_xml, interface_matches, interface_to_string,
    interface_to_xml, normalize_mac, random_mac, validate_interface, INTERFACE_KEYS)

# The seed's examples (test data).
SEED_MACVTAP = """<interface type='direct'>
      <mac address='52:54:00:26:71:4b'/>
      <source dev='enp3s0' mode='bridge'/>
      <target dev='macvtap0'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>"""
SEED_VHOSTUSER = """<interface type='vhostuser'>
    <mac address='52:54:00:3b:83:1a'/>
    <source type='unix' path='/tmp/vhost1.sock' mode='server'/>
    <model type='virtio'/>
  </interface>"""

FULL_MODELS = [
    {'type': 'network', 'source': 'default', 'portgroup': 'web', 'mac': '52:54:00:00:00:01',
     'model': 'e1000e', 'target_dev': 'tap-web', 'mtu': 1400, 'link_state': 'down',
     'boot_order': 2, 'bandwidth': {'inbound': {'average': 1000, 'peak': 2000, 'burst': 512,
                                                'floor': 100},
                                    'outbound': {'average': 300}},
     'filterref': {'filter': 'clean-traffic', 'parameters': {'IP': '192.168.122.9'}}},
    {'type': 'bridge', 'source': 'ovsbr0', 'mac': '52:54:00:00:00:02', 'model': 'virtio',
     'virtualport': {'type': 'openvswitch', 'interfaceid': '09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f',
                     'profileid': None}, 'queues': 4},
    {'type': 'direct', 'source': 'eth1', 'mode': 'passthrough', 'mac': '52:54:00:00:00:03',
     'model': 'virtio'},
    {'type': 'vhostuser', 'path': '/run/vhost/a.sock', 'mode': 'client', 'reconnect': 10,
     'queues': 2, 'mac': '52:54:00:00:00:04', 'model': 'virtio',
     'filterref': {'filter': 'f', 'parameters': {'IP': ['10.0.0.2', '10.0.0.1'], 'MAC': 'x'}}},
]


def test_seed_macvtap_reads():
    m = interface_from_xml(SEED_MACVTAP)
    assert m['type'] == 'direct' and m['source'] == 'enp3s0' and m['mode'] == 'bridge'
    assert m['mac'] == '52:54:00:26:71:4b' and m['target_dev'] == 'macvtap0'
    assert m['model'] == 'virtio' and m['alias'] == 'net0' and m['address']['slot'] == '0x03'


def test_seed_vhostuser_reads():
    m = interface_from_xml(SEED_VHOSTUSER)
    assert (m['type'], m['path'], m['mode'], m['source']) == ('vhostuser', '/tmp/vhost1.sock', 'server', None)
    assert m['reconnect'] is None


@pytest.mark.parametrize('model', FULL_MODELS, ids=lambda m: m['type'])
def test_round_trip(model):
    elem = interface_to_xml(model)
    back = interface_from_xml(interface_to_string(elem))
    assert interface_matches(model, back), interface_differences(model, back)
    # and again: building from what was read gives the same XML
    again = interface_to_xml(dict((k, back[k]) for k in INTERFACE_KEYS))
    assert interface_to_string(again) == interface_to_string(elem)


@pytest.mark.parametrize('xml', [SEED_MACVTAP, SEED_VHOSTUSER])
def test_xml_round_trip_keeps_modelled_content(xml):
    m = interface_from_xml(xml)
    m2 = interface_from_xml(interface_to_xml(m))
    for k in INTERFACE_KEYS:
        assert m[k] == m2[k], k


def test_default_model_virtio_on_build():
    elem = interface_to_xml({'type': 'network', 'source': 'default'})
    assert elem.find('model').get('type') == 'virtio'


def test_vhostuser_xml_shape():
    elem = interface_to_xml(FULL_MODELS[3])
    src = elem.find('source')
    assert src.attrib == {'type': 'unix', 'path': '/run/vhost/a.sock', 'mode': 'client'}
    assert src.find('reconnect').attrib == {'enabled': 'yes', 'timeout': '10'}
    assert elem.find('driver').get('queues') == '2'


def test_virtualport_xml_shape():
    elem = interface_to_xml(FULL_MODELS[1])
    vp = elem.find('virtualport')
    assert vp.get('type') == 'openvswitch'
    assert vp.find('parameters').get('interfaceid').startswith('09b11c53')


def test_base_keeps_unmodelled_children():
    base = etree.fromstring(SEED_MACVTAP)
    new = interface_to_xml({'link_state': 'down'}, base=base)
    assert new.find('address') is not None and new.find('alias') is not None
    assert new.find('link').get('state') == 'down'
    assert base.find('link') is None  # base untouched


def test_type_change_replaces_source():
    base = etree.fromstring(SEED_MACVTAP)
    new = interface_to_xml({'type': 'network', 'source': 'default'}, base=base, keys=['type', 'source'])
    assert new.get('type') == 'network'
    assert new.find('source').attrib == {'network': 'default'}


def test_unset_key_removes_element():
    base = interface_to_xml(FULL_MODELS[0])
    new = interface_to_xml({'bandwidth': {}, 'filterref': None, 'mtu': None}, base=base,
                           keys=['bandwidth', 'filterref', 'mtu'])
    assert new.find('bandwidth') is None and new.find('filterref') is None and new.find('mtu') is None


@pytest.mark.parametrize('raw,norm', [
    ('52:54:00:AB:cd:0F', '52:54:00:ab:cd:0f'),
    ('52:54:0:1:2:3', '52:54:00:01:02:03'),
])
def test_normalize_mac(raw, norm):
    assert normalize_mac(raw) == norm


@pytest.mark.parametrize('bad', ['52:54:00:12:34', 'zz:54:00:12:34:56', '52-54-00-12-34-56',
                                 '52:54:00:12:34:56:78', '', '01:00:5e:00:00:01'])
def test_malformed_mac(bad):
    with pytest.raises(InterfaceModelError) as exc:
        normalize_mac(bad)
    assert 'MAC' in str(exc.value)


def test_random_mac_is_qemu_range_and_free():
    taken = set('52:54:00:00:00:%02x' % i for i in range(10))
    mac = random_mac(taken)
    assert mac.startswith('52:54:00:') and mac not in taken and normalize_mac(mac) == mac


@pytest.mark.parametrize('model,needle', [
    ({'type': 'macvlan', 'source': 'x'}, 'unsupported interface type'),
    ({'type': 'network', 'source': 'default', 'mode': 'bridge'}, 'not valid for an interface of type network'),
    ({'type': 'bridge', 'source': 'br0', 'mode': 'server'}, 'not valid for an interface of type bridge'),
    ({'type': 'direct', 'source': 'eth0', 'mode': 'server'}, "mode 'server' is not valid for type direct"),
    ({'type': 'vhostuser', 'path': '/a.sock', 'mode': 'bridge'}, "mode 'bridge' is not valid for type vhostuser"),
    ({'type': 'vhostuser', 'path': 'relative.sock', 'mode': 'server'}, 'not absolute'),
    ({'type': 'vhostuser', 'mode': 'server'}, 'needs path'),
    ({'type': 'vhostuser', 'path': '/a', 'mode': 'server', 'reconnect': 3}, 'only valid with vhostuser mode client'),
    ({'type': 'network'}, 'needs source'),
    ({'type': 'direct', 'source': 'eth0', 'portgroup': 'x'}, 'portgroup is only valid'),
    ({'type': 'direct', 'source': 'eth0', 'virtualport': {'type': 'openvswitch'}}, 'virtualport is only valid'),
    ({'type': 'network', 'source': 'n', 'path': '/x'}, 'path is only valid'),
    ({'type': 'network', 'source': 'n', 'mtu': 10}, 'mtu must be between'),
    ({'type': 'network', 'source': 'n', 'queues': 0}, 'queues must be between'),
    ({'type': 'network', 'source': 'n', 'target_dev': 'a' * 16}, 'not a valid host device name'),
    ({'type': 'network', 'source': 'n', 'bandwidth': {'inbound': {'avg': 1}}}, 'unknown field'),
])
def test_validation_errors(model, needle):
    with pytest.raises(InterfaceModelError) as exc:
        validate_interface(model)
    assert needle in str(exc.value)


@pytest.mark.parametrize('model', FULL_MODELS, ids=lambda m: m['type'])
def test_validation_accepts(model):
    assert validate_interface(model)['type'] == model['type']


def test_differences_only_keys_set():
    cur = interface_from_xml(SEED_MACVTAP)
    assert interface_differences({'type': 'direct', 'source': 'enp3s0'}, cur) == []
    diffs = interface_differences({'type': 'direct', 'source': 'enp3s0', 'mode': 'vepa',
                                   'mac': '52:54:00:26:71:4B'}, cur)
    assert diffs == [{'key': 'mode', 'before': 'bridge', 'after': 'vepa'}]


def test_differences_bandwidth_empty_means_none():
    cur = interface_from_xml(interface_to_xml(FULL_MODELS[0]))
    diffs = interface_differences({'bandwidth': {'inbound': None, 'outbound': None}}, cur)
    assert [d['key'] for d in diffs] == ['bandwidth']
    assert diffs[0]['after'] == {}


def test_differences_filterref_parameter_order():
    cur = interface_from_xml(interface_to_xml(FULL_MODELS[3]))
    want = {'filterref': {'filter': 'f', 'parameters': {'MAC': 'x', 'IP': ['10.0.0.1', '10.0.0.2']}}}
    assert interface_matches(want, cur)


def test_virtualport_without_interfaceid_matches_generated():
    cur = interface_from_xml(interface_to_xml(FULL_MODELS[1]))
    assert interface_matches({'virtualport': {'type': 'openvswitch', 'interfaceid': None}}, cur)
    assert not interface_matches({'virtualport': {'type': 'openvswitch', 'interfaceid': 'other'}}, cur)


def test_canonical_interface_complete():
    c = canonical_interface({'type': 'network', 'source': 'default', 'mac': '52:54:00:AA:00:01', 'mtu': '1500'})
    assert set(INTERFACE_KEYS) <= set(c)
    assert c['mac'] == '52:54:00:aa:00:01' and c['mtu'] == 1500 and c['bandwidth'] == {}


DOMAIN = """<domain type='qemu'><name>g</name><devices>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:02'/><source network='other'/></interface>
  <interface type='direct'><mac address='52:54:00:00:00:03'/><source dev='eth0' mode='vepa'/></interface>
  <interface type='vhostuser'><mac address='52:54:00:00:00:04'/><source type='unix' path='/s' mode='client'/></interface>
</devices></domain>"""


def test_domain_interfaces_and_identification():
    root = etree.fromstring(DOMAIN)
    assert [m['type'] for m in domain_interfaces(root)] == ['network', 'network', 'direct', 'vhostuser']
    assert len(find_interface_elements(root, {'mac': '52:54:00:00:00:02'})) == 1
    by_src = find_interface_elements(root, {'type': 'network', 'source': 'default'})
    assert [m['mac'] for _e, m in by_src] == ['52:54:00:00:00:01']
    assert find_interface_elements(root, {'type': 'vhostuser', 'path': '/s'})[0][1]['mode'] == 'client'
    assert find_interface_elements(root, {'type': 'direct', 'source': 'eth1'}) == []
    # MAC wins over type + source
    assert find_interface_elements(root, {'mac': '52:54:00:00:00:03', 'type': 'network',
                                          'source': 'default'})[0][1]['type'] == 'direct'


def test_direct_default_mode_is_vepa():
    m = interface_from_xml("<interface type='direct'><source dev='eth0'/></interface>")
    assert m['mode'] == 'vepa'
