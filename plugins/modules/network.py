#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: network
short_description: Declare a libvirt network and converge the host to it
version_added: 1.0.0
description:
  - Declares one libvirt virtual network (NAT, routed, open, isolated, host bridge, macvtap
    pool, hostdev pool) and converges the hypervisor to it.
  - The declaration (structured options or raw O(xml)) and libvirt's definition are compared
    as models, not strings, so values libvirt adds (uuid, generated MAC, bridge name, stp/delay
    defaults, attribute order) never cause a change.
  - Changes are planned before anything is touched. What libvirt can change on a running
    network (DHCP hosts and ranges, DNS hosts, TXT and SRV records, portgroups, interfaces of a
    device pool) is applied live through C(virNetworkUpdate) to the running network and the
    persistent definition at once. Anything else needs a restart of a running network, done
    only with O(restart=if_needed); afterwards every port the bridge had (guest taps) is put
    back on the bridge.
  - Conflicts are caught before anything changes - bridge name used by another network or
    longer than 15 characters, subnet overlapping another running network or a host route,
    DHCP range or host outside the subnet, invalid MAC or address, unknown forward device.
author:
  - virtops.virtnet contributors (@virtops)
extends_documentation_fragment:
  - virtops.virtnet.libvirt
  - virtops.virtnet.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports exactly the changes that would be made (RV(changes)).
  diff_mode:
    support: full
    details:
      - Before and after persistent XML of the network.
options:
  name:
    description:
      - Network name. Required unless O(xml) has a C(<name>).
    type: str
  state:
    description:
      - V(present) defines the network, V(absent) stops and undefines it.
    type: str
    choices: [present, absent]
    default: present
  active:
    description:
      - Whether the network runs.
    type: bool
    default: true
  autostart:
    description:
      - Whether libvirt starts the network at boot. Unchanged when omitted.
    type: bool
  restart:
    description:
      - What to do when a running network needs a restart to apply the change.
      - V(never) refuses and lists what needs the restart; nothing is changed.
      - V(if_needed) restarts the network and puts every port (guest tap) back on the bridge.
    type: str
    choices: [never, if_needed]
    default: never
  xml:
    description:
      - Full network XML instead of the structured options. It goes through the same model,
        so idempotence and live updates work the same way.
    type: str
  forward:
    description:
      - Forward mode. V(isolated) means no C(<forward>) element.
      - V(bridge) uses an existing host bridge (O(bridge.name)) or, with O(forward_dev) or
        O(forward_interfaces), a macvtap bridge pool.
      - Defaults to V(nat) when the structured form is used.
    type: str
    choices: [nat, route, open, isolated, bridge, private, vepa, passthrough, hostdev]
  forward_dev:
    description: Host device the traffic leaves through (C(<forward dev=>)).
    type: str
  forward_interfaces:
    description: Pool of host devices for V(bridge), V(private), V(vepa), V(passthrough) modes.
    type: list
    elements: str
  forward_pf:
    description: SR-IOV physical function whose virtual functions form the pool.
    type: str
  forward_addresses:
    description: PCI addresses of a V(hostdev)/V(passthrough) pool.
    type: list
    elements: dict
    suboptions:
      type:
        description: Address type.
        type: str
      domain:
        description: PCI domain.
        type: str
      bus:
        description: PCI bus.
        type: str
      slot:
        description: PCI slot.
        type: str
      function:
        description: PCI function.
        type: str
  forward_managed:
    description: C(managed) attribute of a V(hostdev) pool.
    type: bool
  forward_driver:
    description: Driver name of a V(hostdev) pool (for example V(vfio)).
    type: str
  nat:
    description: NAT address and port ranges (forward V(nat)).
    type: dict
    suboptions:
      address_start:
        description: First public IPv4 address used for masquerading.
        type: str
      address_end:
        description: Last public IPv4 address used for masquerading.
        type: str
      port_start:
        description: First source port (libvirt's default range is 1024-65535).
        type: int
      port_end:
        description: Last source port.
        type: int
      ipv6:
        description: Also masquerade IPv6.
        type: bool
  bridge:
    description: The network's bridge.
    type: dict
    suboptions:
      name:
        description:
          - Bridge device name (at most 15 characters). libvirt picks C(virbrN) when omitted.
          - For O(forward=bridge), an existing host bridge.
        type: str
      stp:
        description: Spanning tree (libvirt's default is on).
        type: bool
      delay:
        description: Forward delay in seconds (libvirt's default is 0).
        type: int
      mac_table_manager:
        description: C(macTableManager) (V(kernel) or V(libvirt)).
        type: str
      zone:
        description: firewalld zone.
        type: str
  mtu:
    description: MTU of the bridge.
    type: int
  mac:
    description: MAC address of the bridge. libvirt generates one when omitted.
    type: str
  domain:
    description: DNS domain of the network.
    type: dict
    suboptions:
      name:
        description: Domain name.
        type: str
      local_only:
        description: Answer queries for the domain locally only.
        type: bool
      register:
        description: Register the domain with the host's resolver (systemd-resolved).
        type: bool
  ipv6:
    description: Allow guest-to-guest IPv6 on a network without IPv6 addresses.
    type: bool
  trust_guest_rx_filters:
    description: Trust guests' RX filter changes (macvtap).
    type: bool
  port_isolated:
    description: Isolate guest ports from each other.
    type: bool
  ips:
    description: IPv4 and IPv6 addresses of the bridge, with DHCP.
    type: list
    elements: dict
    suboptions:
      address:
        description: Address of the host on the network.
        type: str
        required: true
      prefix:
        description: Prefix length.
        type: int
      netmask:
        description: IPv4 netmask (alternative to O(ips[].prefix)).
        type: str
      family:
        description: Address family (detected from the address when omitted).
        type: str
        choices: [ipv4, ipv6]
      local_ptr:
        description: Answer reverse lookups for the subnet locally.
        type: bool
      dhcp:
        description: Keep a C(<dhcp>) element even without ranges or hosts.
        type: bool
      ranges:
        description: DHCP ranges.
        type: list
        elements: dict
        suboptions:
          start:
            description: First address.
            type: str
            required: true
          end:
            description: Last address.
            type: str
            required: true
          lease_expiry:
            description: Lease time (0 means infinite).
            type: int
          lease_unit:
            description: Unit of O(ips[].ranges[].lease_expiry).
            type: str
            choices: [seconds, minutes, hours]
      hosts:
        description: Static DHCP hosts.
        type: list
        elements: dict
        suboptions:
          mac:
            description: Guest MAC address (IPv4).
            type: str
          id:
            description: DHCPv6 client id (IPv6).
            type: str
          name:
            description: Host name.
            type: str
          ip:
            description: Fixed address.
            type: str
          lease_expiry:
            description: Lease time (0 means infinite).
            type: int
          lease_unit:
            description: Unit of O(ips[].hosts[].lease_expiry).
            type: str
            choices: [seconds, minutes, hours]
      tftp_root:
        description: TFTP root served by dnsmasq.
        type: str
      bootp_file:
        description: BOOTP/PXE file name.
        type: str
      bootp_server:
        description: BOOTP server.
        type: str
  dns:
    description: DNS served by dnsmasq on the network.
    type: dict
    suboptions:
      enable:
        description: Whether dnsmasq serves DNS (libvirt's default is yes).
        type: bool
      forward_plain_names:
        description: Forward names without a domain to the host's resolver.
        type: bool
      forwarders:
        description: Upstream DNS servers, optionally per domain.
        type: list
        elements: dict
        suboptions:
          addr:
            description: Server address.
            type: str
          domain:
            description: Only for this domain.
            type: str
      hosts:
        description: DNS host records.
        type: list
        elements: dict
        suboptions:
          ip:
            description: Address.
            type: str
            required: true
          hostnames:
            description: Names for the address.
            type: list
            elements: str
            required: true
      txt:
        description: TXT records.
        type: list
        elements: dict
        suboptions:
          name:
            description: Record name.
            type: str
            required: true
          value:
            description: Record value.
            type: str
      srv:
        description: SRV records.
        type: list
        elements: dict
        suboptions:
          service:
            description: Service name.
            type: str
            required: true
          protocol:
            description: Protocol (tcp, udp).
            type: str
            required: true
          domain:
            description: Domain.
            type: str
          target:
            description: Target host.
            type: str
          port:
            description: Port.
            type: int
          priority:
            description: Priority.
            type: int
          weight:
            description: Weight.
            type: int
  routes:
    description: Static routes the host adds towards the network.
    type: list
    elements: dict
    suboptions:
      address:
        description: Destination network.
        type: str
        required: true
      prefix:
        description: Destination prefix length.
        type: int
      netmask:
        description: IPv4 netmask (alternative to prefix).
        type: str
      gateway:
        description: Gateway on the network.
        type: str
        required: true
      family:
        description: Address family.
        type: str
        choices: [ipv4, ipv6]
      metric:
        description: Route metric.
        type: int
  virtualport:
    description:
      - Virtual port of the network (for example V(openvswitch) on a host bridge), in the shape
        M(virtops.virtnet.guest_interface) uses too; the attributes of C(<parameters>) are keys of
        their own.
    type: dict
    suboptions:
      type:
        description: C(openvswitch), C(802.1Qbg), C(802.1Qbh).
        type: str
      interfaceid:
        description: C(interfaceid) parameter (Open vSwitch).
        type: str
      profileid:
        description: C(profileid) parameter (Open vSwitch, 802.1Qbh).
        type: str
      managerid:
        description: C(managerid) parameter (802.1Qbg).
        type: str
      typeid:
        description: C(typeid) parameter (802.1Qbg).
        type: str
      typeidversion:
        description: C(typeidversion) parameter (802.1Qbg).
        type: str
      instanceid:
        description: C(instanceid) parameter (802.1Qbg).
        type: str
      parameters:
        description:
          - The older form of the keys above, as one dict (for example with the key C(profileid)); read
            as if its keys were given beside O(virtualport.type). Results always use the keys above.
        type: dict
  vlan:
    description: VLAN tags of the network.
    type: dict
    suboptions:
      trunk:
        description: Trunk mode.
        type: bool
      tags:
        description: Tags.
        type: list
        elements: dict
        suboptions:
          id:
            description: VLAN id.
            type: int
            required: true
          native_mode:
            description: V(tagged) or V(untagged).
            type: str
  bandwidth:
    description: Quality of service of the whole network (C(inbound)/C(outbound) dicts of average, peak, burst, floor).
    type: dict
  portgroups:
    description: Portgroups.
    type: list
    elements: dict
    suboptions:
      name:
        description: Portgroup name.
        type: str
        required: true
      default:
        description: Used by interfaces that name no portgroup.
        type: bool
      trust_guest_rx_filters:
        description: Trust guests' RX filter changes.
        type: bool
      vlan:
        description: VLAN of the portgroup (same shape as O(vlan)).
        type: dict
      virtualport:
        description: Virtual port of the portgroup (same shape as O(virtualport)).
        type: dict
      bandwidth:
        description: Bandwidth of the portgroup (same shape as O(bandwidth)).
        type: dict
  metadata:
    description: Inner XML of C(<metadata>), kept as given.
    type: str
  dnsmasq_options:
    description: Extra dnsmasq options (C(dnsmasq:options)).
    type: list
    elements: str
  extra_xml:
    description: Other top-level elements, as XML strings, for anything not modelled.
    type: list
    elements: str
  uuid:
    description: UUID of the network; ignored when comparing (libvirt keeps the existing one).
    type: str
notes:
  - A running network whose definition changes in a way C(virNetworkUpdate) cannot apply needs
    a restart. With O(restart=if_needed) the module records the bridge's ports and the running
    guests' taps on it, restarts the network and puts back any port libvirt did not reattach
    (RV(restart)).
  - libvirt itself does not put the guests' taps back on the bridge when a network is
    destroyed and started again (verified with libvirt 9.0 on Debian 12, where the new bridge starts
    with no ports), hence the re-attachment with C(ip link set DEV master BRIDGE).
  - The output of M(virtops.virtnet.network_info) for a network (C(networks[].model)) is valid
    input to this module.
  - O(forward_dev) and O(forward_interfaces) must exist on the host when O(active=true); with
    O(active=false) a missing device is only a warning.
seealso:
  - module: virtops.virtnet.network_info
  - name: libvirt network XML format
    description: The XML this module writes.
    link: https://libvirt.org/formatnetwork.html
'''

EXAMPLES = r'''
- name: NAT network with DHCP and a static host
  virtops.virtnet.network:
    name: lab-nat
    forward: nat
    bridge:
      name: virbr10
    ips:
      - address: 192.168.100.1
        prefix: 24
        ranges:
          - start: 192.168.100.100
            end: 192.168.100.199
        hosts:
          - mac: "52:54:00:00:10:01"
            ip: 192.168.100.10
            name: web1
    autostart: true

- name: Routed network; an stp change restarts it and keeps guests on the bridge
  virtops.virtnet.network:
    name: lab-routed
    forward: route
    forward_dev: bond0
    bridge:
      name: virbr11
      stp: false
    ips:
      - address: 10.10.11.1
        prefix: 24
    restart: if_needed

- name: Isolated network
  virtops.virtnet.network:
    name: lab-isolated
    forward: isolated
    ips:
      - address: 192.168.101.1
        netmask: 255.255.255.0

- name: Existing host bridge with Open vSwitch
  virtops.virtnet.network:
    name: ovs
    forward: bridge
    bridge:
      name: ovsbr0
    virtualport:
      type: openvswitch

- name: macvtap pool (VEPA)
  virtops.virtnet.network:
    name: vepa
    forward: vepa
    forward_interfaces: [eth1, eth2]

- name: From raw XML
  virtops.virtnet.network:
    xml: "{{ lookup('file', 'net.xml') }}"

- name: Copy a network from network_info's output
  virtops.virtnet.network: "{{ info.networks[0].model }}"

- name: Remove
  virtops.virtnet.network:
    name: lab-nat
    state: absent
'''

RETURN = r'''
network:
  description: The network's model after the run (same shape as C(network_info)'s C(networks[].model); valid input to this module).
  returned: when state=present
  type: dict
  sample: {"name": "lab-nat", "forward": "nat", "bridge": {"name": "virbr10", "stp": true, "delay": 0}}
xml:
  description: Persistent XML of the network after the run (in check mode, the XML that would be defined).
  returned: when state=present
  type: str
changes:
  description:
    - What changed (or would change) and how, in the shape every module of this collection returns
      (M(virtops.virtnet.guest_interface) too), C({what, how}).
    - C(how) is one of C(create), C(live-update), C(redefine), C(restart), C(start), C(stop),
      C(autostart), C(undefine).
  returned: always
  type: list
  elements: dict
  sample: [{"what": "DHCP host mac=52:54:00:00:10:02 ip=192.168.100.11 added to ips[0] (192.168.100.1)", "how": "live-update"}]
live_updates:
  description: The C(virNetworkUpdate) calls made (or planned in check mode).
  returned: when live updates were planned
  type: list
  elements: dict
needs_restart:
  description: What needs a restart of the running network (when the module refused).
  returned: on failure because a restart is needed
  type: list
  elements: str
applied:
  description:
    - On failure, what had really been done on the host before the error, in order (empty when nothing was;
      then C(changed) is false). A new network that libvirt cannot start is undefined again; a restart into a
      definition that cannot start restores and restarts the previous one, and both show here.
  returned: failure
  type: list
  elements: str
  sample: [stopped network web for the restart, redefined network web, restored the previous definition of web]
restart:
  description: Bridge ports before and after a restart, and the ports put back on the bridge.
  returned: when the network was restarted
  type: dict
reattached:
  description:
    - When an inactive network was started, the running guests' tap devices that were on no bridge (the network
      had been stopped under them, for example by libvirtd dying in the middle of a restart) and were put back on
      its bridge. Check mode lists them in RV(changes) with C(how=reattach).
  returned: when an inactive network was started
  type: list
  elements: str
  sample: [vnet0, vnet1]
interrupted:
  description:
    - On failure because the connection to libvirtd was lost (libvirtd killed, crashed or restarted during a call),
      the step that was in flight; whether it happened is unknown, so C(changed) is true. Run the task again once
      libvirtd is back; it converges from whatever libvirt has then. V(null) when the connection was lost while
      reading.
  returned: failure, when libvirtd went away
  type: str
  sample: stopping network web for the restart
active:
  description: Whether the network runs after the run.
  returned: when state=present
  type: bool
autostart:
  description: Whether the network starts at boot.
  returned: when state=present
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import connect, finish
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._network_manager import NetworkManager
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._port import VIRTUALPORT_PARAMETERS


def _vlan_spec():
    return dict(type='dict', options=dict(
        trunk=dict(type='bool'),
        tags=dict(type='list', elements='dict', options=dict(
            id=dict(type='int', required=True),
            native_mode=dict(type='str'),
        )),
    ))


def _virtualport_spec():
    options = dict((key, dict(type='str')) for key in VIRTUALPORT_PARAMETERS)
    options.update(type=dict(type='str'), parameters=dict(type='dict'))
    return dict(type='dict', options=options)


def _lease_opts(extra):
    extra.update(lease_expiry=dict(type='int'),
                 lease_unit=dict(type='str', choices=['seconds', 'minutes', 'hours']))
    return extra


def argument_spec():
    return dict(
        uri=dict(type='str', default='qemu:///system'),
        name=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        active=dict(type='bool', default=True),
        autostart=dict(type='bool'),
        restart=dict(type='str', default='never', choices=['never', 'if_needed']),
        xml=dict(type='str'),
        uuid=dict(type='str'),
        forward=dict(type='str', choices=['nat', 'route', 'open', 'isolated', 'bridge', 'private',
                                          'vepa', 'passthrough', 'hostdev']),
        forward_dev=dict(type='str'),
        forward_interfaces=dict(type='list', elements='str'),
        forward_pf=dict(type='str'),
        forward_addresses=dict(type='list', elements='dict', options=dict(
            type=dict(type='str'), domain=dict(type='str'), bus=dict(type='str'),
            slot=dict(type='str'), function=dict(type='str'))),
        forward_managed=dict(type='bool'),
        forward_driver=dict(type='str'),
        nat=dict(type='dict', options=dict(
            address_start=dict(type='str'), address_end=dict(type='str'),
            port_start=dict(type='int'), port_end=dict(type='int'), ipv6=dict(type='bool'))),
        bridge=dict(type='dict', options=dict(
            name=dict(type='str'), stp=dict(type='bool'), delay=dict(type='int'),
            mac_table_manager=dict(type='str'), zone=dict(type='str'))),
        mtu=dict(type='int'),
        mac=dict(type='str'),
        domain=dict(type='dict', options=dict(
            name=dict(type='str'), local_only=dict(type='bool'), register=dict(type='bool'))),
        ipv6=dict(type='bool'),
        trust_guest_rx_filters=dict(type='bool'),
        port_isolated=dict(type='bool'),
        ips=dict(type='list', elements='dict', options=dict(
            address=dict(type='str', required=True),
            prefix=dict(type='int'),
            netmask=dict(type='str'),
            family=dict(type='str', choices=['ipv4', 'ipv6']),
            local_ptr=dict(type='bool'),
            dhcp=dict(type='bool'),
            ranges=dict(type='list', elements='dict', options=_lease_opts(dict(
                start=dict(type='str', required=True), end=dict(type='str', required=True)))),
            hosts=dict(type='list', elements='dict', options=_lease_opts(dict(
                mac=dict(type='str'), id=dict(type='str'), name=dict(type='str'), ip=dict(type='str')))),
            tftp_root=dict(type='str'),
            bootp_file=dict(type='str'),
            bootp_server=dict(type='str'),
        ), mutually_exclusive=[['prefix', 'netmask']]),
        dns=dict(type='dict', options=dict(
            enable=dict(type='bool'),
            forward_plain_names=dict(type='bool'),
            forwarders=dict(type='list', elements='dict', options=dict(
                addr=dict(type='str'), domain=dict(type='str'))),
            hosts=dict(type='list', elements='dict', options=dict(
                ip=dict(type='str', required=True),
                hostnames=dict(type='list', elements='str', required=True))),
            txt=dict(type='list', elements='dict', options=dict(
                name=dict(type='str', required=True), value=dict(type='str'))),
            srv=dict(type='list', elements='dict', options=dict(
                service=dict(type='str', required=True), protocol=dict(type='str', required=True),
                domain=dict(type='str'), target=dict(type='str'), port=dict(type='int'),
                priority=dict(type='int'), weight=dict(type='int'))),
        )),
        routes=dict(type='list', elements='dict', options=dict(
            address=dict(type='str', required=True), prefix=dict(type='int'),
            netmask=dict(type='str'), gateway=dict(type='str', required=True),
            family=dict(type='str', choices=['ipv4', 'ipv6']), metric=dict(type='int'))),
        virtualport=_virtualport_spec(),
        vlan=_vlan_spec(),
        bandwidth=dict(type='dict'),
        portgroups=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            default=dict(type='bool'),
            trust_guest_rx_filters=dict(type='bool'),
            vlan=dict(type='dict'),
            virtualport=dict(type='dict'),
            bandwidth=dict(type='dict'),
        )),
        metadata=dict(type='str'),
        dnsmasq_options=dict(type='list', elements='str'),
        extra_xml=dict(type='list', elements='str'),
    )


STRUCTURED = ('forward', 'forward_dev', 'forward_interfaces', 'forward_pf', 'forward_addresses',
              'forward_managed', 'forward_driver', 'nat', 'bridge', 'mtu', 'mac', 'domain', 'ipv6',
              'trust_guest_rx_filters', 'port_isolated', 'ips', 'dns', 'routes', 'virtualport',
              'vlan', 'bandwidth', 'portgroups', 'metadata', 'dnsmasq_options', 'extra_xml')


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[['xml', s] for s in STRUCTURED],
        required_one_of=[['name', 'xml']],
        supports_check_mode=True,
    )
    conn = connect(module)
    finish(module, NetworkManager(module, conn))


if __name__ == '__main__':
    main()
