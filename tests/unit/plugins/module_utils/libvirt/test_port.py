# SPDX-License-Identifier: GPL-3.0-or-later
"""virtualport and bandwidth: one shape and one XML codec for networks, portgroups and guest interfaces."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
from lxml import etree

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _port as P
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import interface_from_xml, interface_to_xml
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import ModelError

VPORT = {'type': 'openvswitch', 'interfaceid': '09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f', 'profileid': 'gold'}
BW = {'inbound': {'average': 1000, 'peak': 2000, 'burst': 64, 'floor': 100}, 'outbound': {'average': 500}}


def test_network_and_interface_read_the_same_shape():
    net = N.from_xml("<network><name>n</name><forward mode='bridge'/><bridge name='ovsbr0'/>"
                     "<virtualport type='openvswitch'><parameters interfaceid='%s' profileid='gold'/></virtualport>"
                     "<bandwidth><inbound average='1000' peak='2000' burst='64' floor='100'/><outbound average='500'/>"
                     "</bandwidth></network>" % VPORT['interfaceid'])
    iface = interface_from_xml(etree.fromstring(
        "<interface type='bridge'><source bridge='ovsbr0'/><virtualport type='openvswitch'>"
        "<parameters interfaceid='%s' profileid='gold'/></virtualport><bandwidth><inbound average='1000' "
        "peak='2000' burst='64' floor='100'/><outbound average='500'/></bandwidth></interface>" % VPORT['interfaceid']))
    assert net['virtualport'] == iface['virtualport'] == VPORT
    assert net['bandwidth'] == iface['bandwidth'] == BW


def _text(elem):
    return etree.tostring(etree.fromstring(etree.tostring(elem), etree.XMLParser(remove_blank_text=True)))


def test_network_and_interface_write_the_same_xml():
    model = dict(N.empty_model(), name='n', forward='bridge', bridge={'name': 'ovsbr0'}, virtualport=VPORT, bandwidth=BW)
    net_xml = etree.fromstring(N.to_xml(N.canonical(model)))
    iface = interface_to_xml({'type': 'bridge', 'source': 'ovsbr0', 'virtualport': VPORT, 'bandwidth': BW,
                              'mac': '52:54:00:00:00:01'})
    for tag in ('virtualport', 'bandwidth'):
        assert _text(net_xml.find(tag)) == _text(iface.find(tag))


def test_older_network_form_reads_as_the_flat_one():
    older = {'type': '802.1Qbg', 'parameters': {'managerid': '11', 'typeid': '1193047', 'typeidversion': '2',
                                                'instanceid': '09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'}}
    flat = dict(older['parameters'], type='802.1Qbg')
    assert P.norm_virtualport(older) == P.norm_virtualport(flat) == flat
    assert N.canonical(dict(N.empty_model(), name='n', virtualport=older)) == \
        N.canonical(dict(N.empty_model(), name='n', virtualport=flat))


@pytest.mark.parametrize('value,needle', [
    ({'type': 'openvswitch', 'portid': 'x'}, 'virtualport: unknown key(s) portid'),
])
def test_virtualport_unknown_key(value, needle):
    with pytest.raises(ModelError, match=needle.replace('(', r'\(').replace(')', r'\)')):
        P.norm_virtualport(value)


def test_bandwidth_errors_name_the_field():
    with pytest.raises(ModelError, match='bandwidth.inbound.average must be an integer'):
        P.norm_bandwidth({'inbound': {'average': 'fast'}})
    with pytest.raises(ModelError, match='unknown direction'):
        P.norm_bandwidth({'sideways': {}})
    assert P.norm_bandwidth({'inbound': {}, 'outbound': None}) == {}
