# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Plan a network change before touching anything (PRIVATE: not a public API).

``plan_definition(current, desired, active)`` compares two models (canonical form) and decides,
difference by difference, how each one reaches the host:

- ``live-update``: through ``virNetworkUpdate`` on the live network *and* the persistent
  definition at once (DHCP hosts and ranges, DNS hosts/TXT/SRV records, portgroups, forward
  interfaces of a pool): no restart, guests keep their link;
- ``redefine``: a new persistent definition; when the network is running this also needs a
  ``restart`` (destroy + start), which the module only does with ``restart: if_needed``.

Pure Python: no libvirt import (numbers below are libvirt's stable ABI values).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._network import (
    canonical, dhcp_host_element, dhcp_range_element, dns_host_element, dns_txt_element,
    dns_srv_element, portgroup_element, element_text, MODEL_KEYS)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import etree
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import (
    VIR_NETWORK_UPDATE_COMMAND_MODIFY as CMD_MODIFY,
    VIR_NETWORK_UPDATE_COMMAND_DELETE as CMD_DELETE,
    VIR_NETWORK_UPDATE_COMMAND_ADD_LAST as CMD_ADD_LAST,
    VIR_NETWORK_SECTION_IP_DHCP_HOST as SECTION_IP_DHCP_HOST,
    VIR_NETWORK_SECTION_IP_DHCP_RANGE as SECTION_IP_DHCP_RANGE,
    VIR_NETWORK_SECTION_FORWARD_INTERFACE as SECTION_FORWARD_INTERFACE,
    VIR_NETWORK_SECTION_PORTGROUP as SECTION_PORTGROUP,
    VIR_NETWORK_SECTION_DNS_HOST as SECTION_DNS_HOST,
    VIR_NETWORK_SECTION_DNS_TXT as SECTION_DNS_TXT,
    VIR_NETWORK_SECTION_DNS_SRV as SECTION_DNS_SRV,
)

SECTION_NAMES = {
    SECTION_IP_DHCP_HOST: 'ip-dhcp-host',
    SECTION_IP_DHCP_RANGE: 'ip-dhcp-range',
    SECTION_FORWARD_INTERFACE: 'forward-interface',
    SECTION_PORTGROUP: 'portgroup',
    SECTION_DNS_HOST: 'dns-host',
    SECTION_DNS_TXT: 'dns-txt',
    SECTION_DNS_SRV: 'dns-srv',
}
COMMAND_NAMES = {CMD_MODIFY: 'modify', CMD_DELETE: 'delete', CMD_ADD_LAST: 'add-last'}


class LiveOp(object):
    """One virNetworkUpdate call."""

    def __init__(self, command, section, parent_index, xml, what):
        self.command = command
        self.section = section
        self.parent_index = parent_index
        self.xml = xml
        self.what = what

    def as_dict(self):
        return {'command': COMMAND_NAMES[self.command], 'section': SECTION_NAMES[self.section],
                'parent_index': self.parent_index, 'xml': self.xml, 'what': self.what}

    def __repr__(self):
        return 'LiveOp(%r)' % (self.as_dict(),)


class Plan(object):
    def __init__(self):
        self.changes = []          # [{'what': ..., 'how': ...}]
        self.live_ops = []         # [LiveOp]
        self.redefine = False
        self.restart_reasons = []  # what needs the restart of the running network

    def add(self, what, how):
        self.changes.append({'what': what, 'how': how})

    @property
    def changed(self):
        return bool(self.changes)


def _key(item):
    return repr(sorted(item.items())) if isinstance(item, dict) else repr(item)


def _diff_lists(old, new):
    """Items removed from ``old`` and added in ``new`` (order ignored, duplicates respected)."""
    old_keys = [_key(i) for i in old]
    new_keys = [_key(i) for i in new]
    removed = [i for i, k in zip(old, old_keys) if k not in new_keys]
    added = [i for i, k in zip(new, new_keys) if k not in old_keys]
    return removed, added


def _strip_live(m):
    """The model without the parts virNetworkUpdate can change."""
    m = copy.deepcopy(m)
    for ip in m.get('ips') or []:
        if ip.get('dhcp'):
            ip['hosts'] = None
            ip['ranges'] = None
    dns = m.get('dns')
    if dns:
        dns = dict((k, v) for k, v in dns.items() if k not in ('hosts', 'txt', 'srv'))
        m['dns'] = dns or None
    m['portgroups'] = None
    ifaces = m.get('forward_interfaces') or []
    if len(ifaces) > 1 or (ifaces and m.get('forward_dev') and ifaces[0] == m.get('forward_dev')):
        # the first interface mirrors forward dev; the rest of the pool can change live
        m['forward_interfaces'] = ifaces[:1]
    return m


def _describe_host(host):
    return ' '.join('%s=%s' % (k, host[k]) for k in ('mac', 'id', 'name', 'ip') if host.get(k))


def live_ops(cur, des):
    """virNetworkUpdate calls turning canonical ``cur`` into canonical ``des`` (same structure)."""
    ops = []
    deletes, adds = [], []
    for idx, (cip, dip) in enumerate(zip(cur.get('ips') or [], des.get('ips') or [])):
        removed, added = _diff_lists(cip.get('hosts') or [], dip.get('hosts') or [])
        where = 'ips[%d] (%s)' % (idx, dip.get('address'))
        for host in removed:
            deletes.append(LiveOp(CMD_DELETE, SECTION_IP_DHCP_HOST, idx, element_text(dhcp_host_element(host)),
                                  'DHCP host %s removed from %s' % (_describe_host(host), where)))
        for host in added:
            adds.append(LiveOp(CMD_ADD_LAST, SECTION_IP_DHCP_HOST, idx, element_text(dhcp_host_element(host)),
                               'DHCP host %s added to %s' % (_describe_host(host), where)))
        removed, added = _diff_lists(cip.get('ranges') or [], dip.get('ranges') or [])
        for rng in removed:
            deletes.append(LiveOp(CMD_DELETE, SECTION_IP_DHCP_RANGE, idx, element_text(dhcp_range_element(rng)),
                                  'DHCP range %s-%s removed from %s' % (rng['start'], rng['end'], where)))
        for rng in added:
            adds.append(LiveOp(CMD_ADD_LAST, SECTION_IP_DHCP_RANGE, idx, element_text(dhcp_range_element(rng)),
                               'DHCP range %s-%s added to %s' % (rng['start'], rng['end'], where)))
    cdns = cur.get('dns') or {}
    ddns = des.get('dns') or {}
    for key, section, build, label in (
            ('hosts', SECTION_DNS_HOST, dns_host_element, lambda h: 'DNS host %s (%s)' % (h['ip'], ', '.join(h.get('hostnames') or []))),
            ('txt', SECTION_DNS_TXT, dns_txt_element, lambda t: 'DNS TXT %s' % t.get('name')),
            ('srv', SECTION_DNS_SRV, dns_srv_element, lambda s: 'DNS SRV %s/%s' % (s.get('service'), s.get('protocol')))):
        removed, added = _diff_lists(cdns.get(key) or [], ddns.get(key) or [])
        for item in removed:
            deletes.append(LiveOp(CMD_DELETE, section, -1, element_text(build(item)), '%s removed' % label(item)))
        for item in added:
            adds.append(LiveOp(CMD_ADD_LAST, section, -1, element_text(build(item)), '%s added' % label(item)))
    cpg = dict((p['name'], p) for p in cur.get('portgroups') or [])
    dpg = dict((p['name'], p) for p in des.get('portgroups') or [])
    for name in sorted(cpg):
        if name not in dpg:
            deletes.append(LiveOp(CMD_DELETE, SECTION_PORTGROUP, -1, element_text(portgroup_element(cpg[name])),
                                  'portgroup %s removed' % name))
        elif _key(cpg[name]) != _key(dpg[name]):
            ops.append(LiveOp(CMD_MODIFY, SECTION_PORTGROUP, -1, element_text(portgroup_element(dpg[name])),
                              'portgroup %s modified' % name))
    for name in sorted(dpg):
        if name not in cpg:
            adds.append(LiveOp(CMD_ADD_LAST, SECTION_PORTGROUP, -1, element_text(portgroup_element(dpg[name])),
                               'portgroup %s added' % name))
    cif = (cur.get('forward_interfaces') or [])[1:]
    dif = (des.get('forward_interfaces') or [])[1:]
    for dev in cif:
        if dev not in dif:
            deletes.append(LiveOp(CMD_DELETE, SECTION_FORWARD_INTERFACE, -1, _iface_xml(dev),
                                  'forward interface %s removed' % dev))
    for dev in dif:
        if dev not in cif:
            adds.append(LiveOp(CMD_ADD_LAST, SECTION_FORWARD_INTERFACE, -1, _iface_xml(dev),
                               'forward interface %s added' % dev))
    return deletes + ops + adds


def _iface_xml(dev):
    elem = etree.Element('interface')
    elem.set('dev', dev)
    return element_text(elem)


def differing_keys(a, b):
    return [k for k in MODEL_KEYS if a.get(k) != b.get(k)]


# libvirt before 9.0 (seen on 7.0, Debian 11) refuses to add a DNS host live when another <host> record
# of the network has one of its hostnames ("there is already at least one DNS HOST record with a
# matching field"); 9.0 and 11.3 accept it.  Such a change goes through a restart there.
DNS_HOST_SHARED_NAME_LIVE = 9000000


def _refused_live(ops, des, libvirt_version):
    """What of ``ops`` this libvirt refuses to apply live (reasons), judged before anything is touched."""
    if not libvirt_version or libvirt_version >= DNS_HOST_SHARED_NAME_LIVE:
        return []
    reasons = []
    hosts = (des.get('dns') or {}).get('hosts') or []
    for op in ops:
        if op.section != SECTION_DNS_HOST or op.command != CMD_ADD_LAST:
            continue
        elem = etree.fromstring(op.xml)
        mine = set(elem.xpath('hostname/text()'))
        others = [h for h in hosts if h.get('ip') != elem.get('ip')]
        if any(mine & set(h.get('hostnames') or []) for h in others):
            reasons.append('%s: libvirt %d.%d cannot add a DNS host live whose hostname another record has'
                           % (op.what, libvirt_version // 1000000, libvirt_version // 1000 % 1000))
    return reasons


def plan_definition(current, desired, active, will_be_active, libvirt_version=None):
    """Plan the definition part of a change.

    ``current``: model of the persistent definition (None: not defined);
    ``desired``: the declared model; ``active``: the network runs now;
    ``will_be_active``: it must run afterwards; ``libvirt_version``: virConnectGetLibVersion()
    (None: assume the newest), for what older libvirt refuses to do live.
    """
    plan = Plan()
    if current is None:
        plan.redefine = True
        plan.add('network %s' % desired.get('name'), 'create')
        return plan
    cur = canonical(current, declared=desired)
    des = canonical(desired, declared=desired)
    if cur == des:
        return plan
    structural = differing_keys(_strip_live(cur), _strip_live(des))
    if structural:
        plan.redefine = True
        for key in structural:
            plan.add(key, 'redefine')
        if active and will_be_active:
            plan.restart_reasons = list(structural)
            plan.add('network %s' % desired.get('name'), 'restart')
        return plan
    ops = live_ops(cur, des)
    refused = _refused_live(ops, des, libvirt_version) if active and will_be_active else []
    if refused:
        plan.redefine = True
        for op in ops:
            plan.add(op.what, 'redefine')
        plan.restart_reasons = refused
        plan.add('network %s' % desired.get('name'), 'restart')
        return plan
    if active and will_be_active:
        plan.live_ops = ops
        for op in ops:
            plan.add(op.what, 'live-update')
    else:
        plan.redefine = True
        for op in ops:
            plan.add(op.what, 'redefine')
    return plan
