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
_COUNTERS = re.compile(r'^\[(\d+):(\d+)\]\s+')


def iptables_rules_for(save_text, bridge, cidrs, family='ipv4'):
    """Rules of ``iptables-save [-c]`` output that mention the bridge or one of the subnets:
    [{backend, family, table, chain, rule (the -A line), packets, bytes (None without -c)}]."""
    needles = [n for n in [bridge] + list(cidrs or []) if n]
    out = []
    table = None
    for line in save_text.splitlines():
        if line.startswith('*'):
            table = line[1:].strip()
            continue
        packets = nbytes = None
        m = _COUNTERS.match(line)
        if m:
            packets, nbytes = int(m.group(1)), int(m.group(2))
            line = line[m.end():]
        if not line.startswith('-A '):
            continue
        if any(_mentions(line, n) for n in needles):
            out.append({'backend': 'iptables', 'family': family, 'table': table, 'chain': line.split()[1],
                        'rule': line, 'packets': packets, 'bytes': nbytes})
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


_NFT_FAMILIES = {'ip': 'ipv4', 'ip6': 'ipv6', 'inet': 'inet', 'bridge': 'bridge', 'arp': 'arp', 'netdev': 'netdev'}
_NFT_COUNTER = re.compile(r'\s*\bcounter packets (\d+) bytes (\d+)')
_NFT_HANDLE = re.compile(r'\s*# handle (\d+)\s*$')


def nft_rules_for(ruleset_text, bridge, cidrs):
    """Rules of ``nft [-a] list table`` output that mention the bridge or one of the subnets, in the shape
    of ``iptables_rules_for``: [{backend, family, table, chain, rule, packets, bytes, handle}]; ``rule`` is the
    rule's text without its counter and handle (``ip saddr 192.168.122.0/24 iif "virbr0" accept``)."""
    needles = [n for n in [bridge] + list(cidrs or []) if n]
    out = []
    family = table = chain = None
    for line in ruleset_text.splitlines():
        text = line.strip()
        handle = None
        m = _NFT_HANDLE.search(text)
        if m:
            handle = int(m.group(1))
            text = text[:m.start()].rstrip()
        words = text.split()
        if len(words) >= 3 and words[0] == 'table':
            family, table, chain = _NFT_FAMILIES.get(words[1], words[1]), words[2], None
            continue
        if len(words) >= 2 and words[0] == 'chain':
            chain = words[1]
            continue
        if not text or text in ('{', '}') or text.startswith(('type ', 'policy ', 'comment ')):
            continue
        if not any(_mentions(text, n) or ('"%s"' % n) in text for n in needles):
            continue
        packets = nbytes = None
        c = _NFT_COUNTER.search(text)
        if c:
            packets, nbytes = int(c.group(1)), int(c.group(2))
            text = (text[:c.start()] + text[c.end():]).strip()
        out.append({'backend': 'nftables', 'family': family, 'table': table, 'chain': chain, 'rule': text,
                    'packets': packets, 'bytes': nbytes, 'handle': handle})
    return out


def libvirt_firewall_backend(conf_text):
    """``firewall_backend`` of /etc/libvirt/network.conf (libvirt >= 10.4), or None when not set."""
    for line in (conf_text or '').splitlines():
        m = re.match(r'^\s*firewall_backend\s*=\s*"([^"]*)"', line)
        if m:
            return m.group(1)
    return None
