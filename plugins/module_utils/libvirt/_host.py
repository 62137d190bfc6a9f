# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The host view: what the hypervisor has around libvirt (PRIVATE: not a public API).

``HostView`` is the one reader of the host itself for every manager of the libvirt half: links
and devices (/sys/class/net), bridge ports (/sys/class/net/BR/brif), host routes
(/proc/net/route, /proc/net/ipv6_route) and the running domains' interfaces on a network. Unit
tests give the managers a subclass with fixed answers. The pure parsers beside it (routes, the
firewall rules libvirt installed for a network) take text, so that tests feed them fixtures.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import struct

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import (
    LibvirtError, VIR_CONNECT_LIST_DOMAINS_ACTIVE)
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._interface import domain_interfaces
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._xml import bits, int_to_ip

SYS_NET = '/sys/class/net'


class HostView(object):
    """What the managers read from the hypervisor (see the module docstring)."""

    def __init__(self, sys_net=SYS_NET, route_path='/proc/net/route', route6_path='/proc/net/ipv6_route'):
        self.sys_net = sys_net
        self.route_paths = ((route_path, parse_proc_route), (route6_path, parse_proc_ipv6_route))

    def host_links(self):
        """Names of the host's network devices, sorted."""
        try:
            return sorted(os.listdir(self.sys_net))
        except OSError:
            return []

    def netdev_exists(self, name):
        return os.path.exists(os.path.join(self.sys_net, name))

    def is_linux_bridge(self, name):
        return os.path.isdir(os.path.join(self.sys_net, name, 'bridge'))

    def bridge_ports(self, bridge):
        """Ports of a Linux bridge, or [] when it is not a bridge / does not exist."""
        if not bridge:
            return []
        try:
            return sorted(os.listdir(os.path.join(self.sys_net, bridge, 'brif')))
        except OSError:
            return []

    def link_mac(self, dev):
        try:
            with open(os.path.join(self.sys_net, dev, 'address')) as fh:
                return fh.read().strip().lower()
        except (OSError, IOError):
            return None

    def host_routes(self):
        routes = []
        for path, parser in self.route_paths:
            try:
                with open(path) as fh:
                    routes.extend(parser(fh.read()))
            except (OSError, IOError):
                continue
        return routes

    def running_guest_ports(self, conn, network_name, bridge):
        """{tap: {'domain', 'mac', 'type', 'source'}} for running domains' interfaces on the
        network (type network with this source) or on its bridge (type bridge)."""
        ports = {}
        try:
            domains = conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except LibvirtError:
            return ports
        for dom in domains:
            try:
                xml = dom.XMLDesc(0)
            except LibvirtError:
                continue  # stopped meanwhile
            for iface in domain_interfaces(xml):
                on_net = ((iface.get('type') == 'network' and iface.get('source') == network_name)
                          or (bridge and iface.get('type') == 'bridge' and iface.get('source') == bridge))
                if on_net and iface.get('target_dev'):
                    ports[iface['target_dev']] = {'domain': dom.name(), 'mac': iface.get('mac'),
                                                  'type': iface.get('type'), 'source': iface.get('source')}
        return ports


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
