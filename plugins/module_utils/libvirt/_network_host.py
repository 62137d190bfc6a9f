# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the hypervisor has around a libvirt network (PRIVATE: not a public API).

Host links (/sys/class/net), bridge ports (/sys/class/net/BR/brif), host routes
(/proc/net/route, /proc/net/ipv6_route), running domains' interfaces on a network, and the
firewall rules libvirt installed for a network. Readers take the paths as arguments so that
unit tests can point them at fixture files.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import struct

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import (
    bits, int_to_ip, parse_xml)

try:
    from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import domain_interfaces
    HAS_INTERFACE_MODEL = True
except ImportError:  # pragma: no cover - the interface model is part of the collection
    domain_interfaces = None
    HAS_INTERFACE_MODEL = False

SYS_NET = '/sys/class/net'
VIR_DOMAIN_XML_INACTIVE = 2


def host_links(sys_net=SYS_NET):
    try:
        return sorted(os.listdir(sys_net))
    except OSError:
        return []


def bridge_ports(bridge, sys_net=SYS_NET):
    """Ports of a Linux bridge, or [] when it is not a bridge / does not exist."""
    if not bridge:
        return []
    try:
        return sorted(os.listdir(os.path.join(sys_net, bridge, 'brif')))
    except OSError:
        return []


def link_ifindex(dev, sys_net=SYS_NET):
    try:
        with open(os.path.join(sys_net, dev, 'ifindex')) as fh:
            return int(fh.read().strip())
    except (OSError, IOError, ValueError):
        return None


def link_mac(dev, sys_net=SYS_NET):
    try:
        with open(os.path.join(sys_net, dev, 'address')) as fh:
            return fh.read().strip().lower()
    except (OSError, IOError):
        return None


def _le32_to_int(hexstr):
    return struct.unpack('<I', struct.pack('>I', int(hexstr, 16)))[0]


def parse_proc_route(text):
    """/proc/net/route -> [{'dev', 'family', 'first', 'prefix', 'cidr'}] (IPv4, main table)."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dev, dest, mask = fields[0], _le32_to_int(fields[1]), _le32_to_int(fields[7])
        prefix = bin(mask).count('1')
        routes.append({'dev': dev, 'family': 'ipv4', 'first': dest & mask, 'prefix': prefix,
                       'cidr': '%s/%d' % (int_to_ip('ipv4', dest & mask), prefix)})
    return routes


def parse_proc_ipv6_route(text):
    """/proc/net/ipv6_route -> same shape as parse_proc_route (IPv6)."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        dest = int(fields[0], 16)
        prefix = int(fields[1], 16)
        dev = fields[9]
        routes.append({'dev': dev, 'family': 'ipv6', 'first': dest, 'prefix': prefix,
                       'cidr': '%s/%d' % (int_to_ip('ipv6', dest), prefix)})
    return routes


def host_routes(route_path='/proc/net/route', route6_path='/proc/net/ipv6_route'):
    routes = []
    for path, parser in ((route_path, parse_proc_route), (route6_path, parse_proc_ipv6_route)):
        try:
            with open(path) as fh:
                routes.extend(parser(fh.read()))
        except (OSError, IOError):
            continue
    return routes


def route_range(route):
    width = bits(route['family'])
    size = 1 << (width - route['prefix'])
    return (route['family'], route['first'], route['first'] + size - 1)


def relevant_routes(routes, own_bridge=None):
    """Routes a new subnet must not overlap: not default, not host-local, not our own bridge."""
    out = []
    for rt in routes:
        if rt['prefix'] == 0 or rt['dev'] in ('lo', own_bridge):
            continue
        if rt['family'] == 'ipv6':
            if rt['prefix'] == 128 or rt['first'] >> 120 == 0xff or rt['first'] >> 118 == 0x3fa:
                continue  # host addresses, multicast, link-local fe80::/10
        out.append(rt)
    return out


def _fallback_interfaces(domain_xml):
    """Tiny local parser used only when _interface.py is not available."""
    root = parse_xml(domain_xml)
    out = []
    for iface in root.findall('./devices/interface'):
        src = iface.find('source')
        tgt = iface.find('target')
        mac = iface.find('mac')
        out.append({'type': iface.get('type'),
                    'source': (src.get('network') or src.get('bridge') or src.get('dev')) if src is not None else None,
                    'target_dev': tgt.get('dev') if tgt is not None else None,
                    'mac': mac.get('address').lower() if mac is not None and mac.get('address') else None})
    return out


def describe_domain_interfaces(domain_xml):
    if HAS_INTERFACE_MODEL:
        return domain_interfaces(domain_xml)
    return _fallback_interfaces(domain_xml)  # pragma: no cover


def running_guest_ports(conn, network_name, bridge):
    """{tap: {'domain', 'mac', 'type', 'source'}} for running domains' interfaces on the
    network (type network with this source) or on its bridge (type bridge)."""
    ports = {}
    try:
        domains = conn.listAllDomains(1)  # VIR_CONNECT_LIST_DOMAINS_ACTIVE
    except Exception:
        return ports
    for dom in domains:
        try:
            xml = dom.XMLDesc(0)
        except Exception:
            continue
        for iface in describe_domain_interfaces(xml):
            on_net = ((iface.get('type') == 'network' and iface.get('source') == network_name)
                      or (bridge and iface.get('type') == 'bridge' and iface.get('source') == bridge))
            if on_net and iface.get('target_dev'):
                ports[iface['target_dev']] = {'domain': dom.name(), 'mac': iface.get('mac'),
                                              'type': iface.get('type'), 'source': iface.get('source')}
    return ports


# --------------------------------------------------------------------------------------------
# Firewall rules libvirt installed for a network
def iptables_rules_for(save_text, bridge, cidrs):
    """Lines of iptables-save output that mention the bridge or one of the subnets."""
    needles = [n for n in [bridge] + list(cidrs or []) if n]
    out = []
    table = None
    for line in save_text.splitlines():
        if line.startswith('*'):
            table = line[1:].strip()
            continue
        if not line.startswith('-A '):
            continue
        if any(_mentions(line, n) for n in needles):
            out.append({'table': table, 'rule': line})
    return out


def _mentions(line, needle):
    return re.search(r'(^|[\s"!])%s($|[\s"])' % re.escape(needle), line) is not None


def nft_tables(list_text):
    """Names of nft tables whose name contains 'libvirt' from ``nft list tables`` output."""
    out = []
    for line in list_text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == 'table' and 'libvirt' in fields[2]:
            out.append('%s %s' % (fields[1], fields[2]))
    return out


def nft_rules_for(ruleset_text, bridge, cidrs):
    needles = [n for n in [bridge] + list(cidrs or []) if n]
    out = []
    table = None
    for line in ruleset_text.splitlines():
        stripped = line.strip()
        if stripped.startswith('table '):
            table = stripped[len('table '):].rstrip(' {')
            continue
        if any(n in stripped for n in needles):
            out.append({'table': table, 'rule': stripped})
    return out
