#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: network_info
short_description: Describe libvirt networks, their bridge ports, DHCP leases and firewall rules
version_added: 1.0.0
description:
  - Read-only. Returns every libvirt network (or one) with its model, state, autostart,
    persistence, bridge, the bridge's ports mapped to the domain and MAC that own them, DHCP
    leases, and the firewall rules libvirt installed for it (iptables-save lines that mention
    the bridge or the subnet, and rules of nft tables named C(libvirt*)).
  - C(networks[].model) is valid input to M(virtops.virtnet.network).
author:
  - virtops.virtnet contributors (@virtops)
extends_documentation_fragment:
  - virtops.virtnet.libvirt
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.INFO_MODULE
options:
  name:
    description: Only this network. All networks when omitted.
    type: str
  firewall:
    description: Read the firewall rules (runs C(iptables-save), C(ip6tables-save) and C(nft)).
    type: bool
    default: true
seealso:
  - module: virtops.virtnet.network
'''

EXAMPLES = r'''
- name: All networks
  virtops.virtnet.network_info:
  register: info

- name: One network, no firewall
  virtops.virtnet.network_info:
    name: default
    firewall: false
  register: default_net

- name: Recreate the network elsewhere from its model
  virtops.virtnet.network: "{{ default_net.networks[0].model }}"
  delegate_to: other-hypervisor
'''

RETURN = r'''
networks:
  description: One entry per network.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Network name.
      type: str
      sample: default
    uuid:
      description: UUID.
      type: str
    model:
      description: The network's model (persistent definition); valid input to M(virtops.virtnet.network).
      type: dict
      sample: {"name": "default", "forward": "nat", "bridge": {"name": "virbr0", "stp": true, "delay": 0}}
    active:
      description: Whether the network runs.
      type: bool
    persistent:
      description: Whether the network has a persistent definition.
      type: bool
    autostart:
      description: Whether libvirt starts it at boot.
      type: bool
    xml:
      description: Persistent XML (live XML for a transient network).
      type: str
    bridge:
      description: Bridge device of the running network (or of the definition).
      type: str
      sample: virbr0
    ports:
      description: Ports of the bridge (from C(/sys/class/net/BRIDGE/brif)) with the running domain and guest MAC owning each.
      type: list
      elements: dict
      sample: [{"port": "vnet0", "mac": "fe:54:00:a4:5e:56", "domain": "guest1", "guest_mac": "52:54:00:a4:5e:56"}]
    leases:
      description: DHCP leases (C(virNetworkGetDHCPLeases)).
      type: list
      elements: dict
    firewall:
      description:
        - The firewall rules libvirt installed for the network, as rules that mention its bridge or subnets.
        - C(iptables) and C(nftables) are lists of the same shape, {backend, family, table, chain, rule, packets,
          bytes}; C(rule) is the C(-A CHAIN ...) line of C(iptables-save -c), or the nft rule text without its
          counter and handle (which nftables entries have as C(handle)).
        - C(backend) is the firewall backend libvirt uses for it, read from the host. It is C(firewall_backend) of
          C(/etc/libvirt/network.conf) (libvirt 10.4 and later; C(backend_source=network.conf)), else where its
          rules are (C(LIBVIRT_*) chains or the C(libvirt_network) nft tables; C(backend_source=rules)).
      type: dict
      sample:
        backend: nftables
        backend_source: network.conf
        iptables: []
        nftables:
          - backend: nftables
            family: ipv4
            table: libvirt_network
            chain: guest_nat
            handle: 16
            packets: 3
            bytes: 180
            rule: "meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import connect, finish
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._network_manager import NetworkInfo


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type='str', default='qemu:///system'),
            name=dict(type='str'),
            firewall=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    conn = connect(module)
    finish(module, NetworkInfo(module, conn))


if __name__ == '__main__':
    main()
