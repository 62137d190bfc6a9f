#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: guest_interface
short_description: Ensure one network interface of a libvirt domain is present or absent
version_added: 1.0.0
description:
  - Ensures that one C(<interface>) of a libvirt domain (guest) is present with the given
    settings, or absent.
  - "Supported types: V(network) (a libvirt network, optionally a portgroup), V(bridge) (a host
    bridge, optionally an Open vSwitch one), V(direct) (macvtap on a host device) and
    V(vhostuser) (a vhost-user unix socket, for DPDK or another user-space switch)."
  - An interface is identified by its O(mac) when given, otherwise by O(type) and source
    (O(source), or O(path) for V(vhostuser)).
  - The persistent definition of the domain is always changed; when the domain is running the
    change is also applied live (hot-plug, device update, hot-unplug), see O(live).
  - Settings that are not given are left as they are on an existing interface.
author:
  - virtops.virtnet contributors (@virtops)
extends_documentation_fragment:
  - virtops.virtnet.libvirt
  - virtops.virtnet.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the interface XML of the persistent definition before and after.
options:
  domain:
    description:
      - Name of the libvirt domain.
    type: str
    required: true
    aliases: [name]
  state:
    description:
      - Whether the interface should be present or absent.
      - With V(absent), O(mac) identifies the interface; without O(mac), O(type) and the source
        do, and every other setting is ignored.
    type: str
    choices: [present, absent]
    default: present
  type:
    description:
      - Interface type. Required with O(state=present), and with O(state=absent) when O(mac)
        is not given.
    type: str
    choices: [network, bridge, direct, vhostuser]
  source:
    description:
      - For O(type=network) the libvirt network name, for O(type=bridge) the host bridge, for
        O(type=direct) the host network device the macvtap sits on (it must exist on the host).
      - Not used with O(type=vhostuser) (see O(path)).
    type: str
  portgroup:
    description:
      - Portgroup of the libvirt network (O(type=network) only).
    type: str
  path:
    description:
      - Absolute path of the vhost-user unix socket (O(type=vhostuser) only).
    type: path
  mode:
    description:
      - For O(type=direct) the macvtap mode, one of V(bridge), V(vepa), V(private),
        V(passthrough) (libvirt's default is V(vepa)).
      - For O(type=vhostuser) (required there), V(server) (QEMU creates the socket) or
        V(client) (QEMU connects to a socket the switch created).
      - Other types do not take a mode.
    type: str
  reconnect:
    description:
      - Seconds after which QEMU reconnects to a vhost-user socket whose server went away
        (O(type=vhostuser), O(mode=client) only).
    type: int
  queues:
    description:
      - Number of queues (C(<driver queues=N>)), for multiqueue virtio and vhost-user.
    type: int
  virtualport:
    description:
      - Open vSwitch virtual port (O(type=bridge) on an OVS bridge, or O(type=network)).
    type: dict
    suboptions:
      type:
        description: Virtual port type.
        type: str
        choices: [openvswitch]
        default: openvswitch
      interfaceid:
        description: OVS interface id (a UUID); libvirt generates one when not given.
        type: str
      profileid:
        description: Port profile id.
        type: str
  mac:
    description:
      - MAC address, lower or upper case, C(xx:xx:xx:xx:xx:xx); must be unicast and not used
        by another domain of the host.
      - When not given for a new interface, a random C(52:54:00:xx:xx:xx) address is picked.
    type: str
  model:
    description:
      - NIC model seen by the guest (V(virtio), V(e1000e), V(rtl8139)...).
      - A new interface gets V(virtio) when not given; an existing one keeps its model.
    type: str
  target_dev:
    description:
      - Name of the host-side device (tap or macvtap). libvirt picks C(vnetN) or C(macvtapN)
        when not given; such generated names (also in a model read back from a running domain)
        are ignored.
    type: str
  mtu:
    description: MTU of the interface.
    type: int
  link_state:
    description: Virtual link state seen by the guest.
    type: str
    choices: [up, down]
  boot_order:
    description: Boot order of the interface (network boot).
    type: int
  filterref:
    description: Libvirt network filter (nwfilter) applied to the interface.
    type: dict
    suboptions:
      filter:
        description: Name of the nwfilter, for example C(clean-traffic).
        type: str
        required: true
      parameters:
        description:
          - "Filter parameters, for example C({IP: 192.168.122.10}); a list value gives the
            parameter several times."
        type: dict
        default: {}
  bandwidth:
    description:
      - Quality of service; an empty dict removes all limits.
      - Averages and peaks in kilobytes per second, bursts in kilobytes.
    type: dict
    suboptions:
      inbound:
        description: Traffic towards the guest.
        type: dict
        suboptions:
          average: {description: Average rate., type: int}
          peak: {description: Peak rate., type: int}
          burst: {description: Burst size., type: int}
          floor: {description: Guaranteed rate (O(type=network) only)., type: int}
      outbound:
        description: Traffic from the guest.
        type: dict
        suboptions:
          average: {description: Average rate., type: int}
          peak: {description: Peak rate., type: int}
          burst: {description: Burst size., type: int}
  live:
    description:
      - V(auto) applies the change to the running domain too when it runs.
      - V(always) requires it; fails when the domain is not running or the change cannot be
        made live.
      - V(never) changes the persistent definition only.
    type: str
    choices: [auto, always, never]
    default: auto
  on_live_impossible:
    description:
      - What to do when the change cannot be made on the running domain, for example changing
        the type, model, macvtap mode or device of a running interface, or hot-plugging a
        vhost-user interface into a domain whose running memory is not shared.
      - V(config_only) changes the persistent definition only, warns, and returns
        RV(live.status=impossible); the change applies at next boot.
      - V(fail) fails and changes nothing.
      - A hot-plug or update that libvirt, QEMU or the kernel refuses for another reason (for
        example a V(passthrough) macvtap on a device that already carries another macvtap,
        as the kernel wants the device for itself) fails with its message and changes nothing,
        whatever this option says.
    type: str
    choices: [config_only, fail]
    default: config_only
  unplug_timeout:
    description:
      - Seconds to wait for a running guest to release an unplugged interface. Unplug needs the
        guest OS to answer the ACPI eject request; when it does not in time, the interface is
        removed from the configuration, stays in the running domain, and RV(live.status) is
        V(pending).
      - libvirt itself waits up to 5 seconds for the guest inside the unplug request, before
        this timeout starts.
      - A later run with O(state=absent) reports V(pending) again without a new request and
        with C(changed=false) (the request is noted in the live domain metadata).
    type: float
    default: 10
  ensure_shared_memory:
    description:
      - For O(type=vhostuser), which needs guest memory shared with the switch process.
      - When the domain has neither C(<memoryBacking><access mode='shared'/>) nor hugepages,
        V(false) fails and V(true) adds C(<access mode='shared'/>) to its configuration. That
        applies at the next boot of the domain, so a running domain gets the interface in
        its configuration only.
    type: bool
    default: false
notes:
  - "macvtap (O(type=direct)): the host cannot reach the guest over a macvtap in V(bridge) mode
    (nor in the other modes): frames from the guest go out of the source device and never up
    into the host's own stack on that device. Guests on the same device reach each other in
    V(bridge) mode; the outside network reaches them. The module warns when all interfaces of
    the guest are macvtaps. Give the guest an extra V(network) or V(bridge) interface when the
    host must talk to it."
  - V(passthrough) mode gives the whole source device to one guest; V(private) isolates guests
    on the same device from each other.
  - Source checks (bridge exists and is a bridge, macvtap device exists) read C(/sys/class/net)
    on the host and are only made when O(uri) is local.
  - Live changes libvirt can make are link state, bandwidth, filter, and the network, portgroup
    or bridge of a tap interface; everything else needs O(on_live_impossible).
seealso:
  - name: libvirt domain XML, network interfaces
    description: The C(<interface>) element this module manages.
    link: https://libvirt.org/formatdomain.html#network-interfaces
'''

EXAMPLES = r'''
- name: Guest on the default NAT network
  virtops.virtnet.guest_interface:
    domain: web1
    type: network
    source: default
    mac: "52:54:00:12:34:56"

- name: Macvtap on the host's uplink (the host cannot reach the guest over it)
  virtops.virtnet.guest_interface:
    domain: web1
    type: direct
    source: enp3s0
    mode: bridge

- name: Open vSwitch bridge with bandwidth limits
  virtops.virtnet.guest_interface:
    domain: web1
    type: bridge
    source: ovsbr0
    virtualport:
      type: openvswitch
    bandwidth:
      inbound: {average: 10000, peak: 20000, burst: 1024}
      outbound: {average: 10000}

- name: vhost-user socket for DPDK (QEMU is the server), shared memory added for next boot
  virtops.virtnet.guest_interface:
    domain: dpdk1
    type: vhostuser
    path: /var/run/vhost/dpdk1.sock
    mode: server
    queues: 2
    ensure_shared_memory: true

- name: Take the link down in the running guest and its definition
  virtops.virtnet.guest_interface:
    domain: web1
    type: network
    source: default
    mac: "52:54:00:12:34:56"
    link_state: down

- name: Remove an interface, wait at most 20 s for the guest to release it
  virtops.virtnet.guest_interface:
    domain: web1
    mac: "52:54:00:12:34:56"
    state: absent
    unplug_timeout: 20
  register: gone

- name: Tell when the guest did not release it yet
  ansible.builtin.debug:
    msg: "unplug pending: {{ gone.live.reason }}"
  when: gone.live.status == 'pending'
'''

RETURN = r'''
interface:
  description:
    - The interface as it is (or, in check mode, would be) in the persistent definition, in
      the same shape as the options of this module (it can be fed back as input).
    - With O(state=absent), the interface that was removed, or V(null) when there was none.
  returned: success
  type: dict
  sample:
    type: network
    source: default
    portgroup: null
    path: null
    mode: null
    reconnect: null
    queues: null
    virtualport: null
    mac: "52:54:00:12:34:56"
    model: virtio
    target_dev: null
    mtu: null
    link_state: null
    boot_order: null
    filterref: null
    bandwidth: {}
interrupted:
  description:
    - On failure because the connection to libvirtd was lost during a change (libvirtd killed, crashed or
      restarted), the change that was in flight; whether it happened is unknown, so C(changed) is true. Run the
      task again once libvirtd is back; it compares the live and persistent interfaces with the declared one and
      does only what is missing, so no second device with the same MAC is plugged.
  returned: failure, when libvirtd went away during a change
  type: str
  sample: hot-plugging the interface on running domain web1
changes:
  description:
    - What was (or would be) changed, in order, in the shape every module of this collection
      returns (M(virtops.virtnet.network) too), C({what, how}).
    - C(what) names the interface (by MAC) and where it changed, in the configuration of the
      domain or in the running domain, followed by the changed settings of an update.
    - C(how) is C(attach), C(update), C(detach) or C(memory_backing).
  returned: always
  type: list
  elements: dict
  contains:
    what:
      description: What changed (or would change).
      type: str
    how:
      description: How it changed.
      type: str
  sample:
    - {what: "interface 52:54:00:12:34:56 in the running domain web1: link_state", how: update}
    - {what: "interface 52:54:00:12:34:56 in the configuration of domain web1: link_state", how: update}
live:
  description: What happened in the running domain.
  returned: success
  type: dict
  contains:
    active:
      description: Whether the domain is running.
      type: bool
    status:
      description:
        - V(applied) the change was made live; V(unchanged) nothing to do live;
          V(not_running) the domain is not running; V(disabled) O(live=never);
          V(impossible) the change cannot be made live and was made in the configuration only;
          V(removed) the guest released the unplugged interface; V(pending) it did not within
          O(unplug_timeout) (removal done in the configuration only).
      type: str
    reason:
      description: Why the status is V(impossible) or V(pending).
      type: str
  sample: {active: true, status: pending, reason: "the guest did not release the device within unplug_timeout=10s ..."}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._connection import connect, finish
from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt._domain import GuestInterfaceManager


def _rate(floor=False):
    spec = dict(average=dict(type='int'), peak=dict(type='int'), burst=dict(type='int'))
    if floor:
        spec['floor'] = dict(type='int')
    return dict(type='dict', options=spec)


def main():
    argument_spec = dict(
        uri=dict(type='str', default='qemu:///system'),
        domain=dict(type='str', required=True, aliases=['name']),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        type=dict(type='str', choices=['network', 'bridge', 'direct', 'vhostuser']),
        source=dict(type='str'),
        portgroup=dict(type='str'),
        path=dict(type='path'),
        mode=dict(type='str'),
        reconnect=dict(type='int'),
        queues=dict(type='int'),
        virtualport=dict(type='dict', options=dict(
            type=dict(type='str', default='openvswitch', choices=['openvswitch']),
            interfaceid=dict(type='str'),
            profileid=dict(type='str'))),
        mac=dict(type='str'),
        model=dict(type='str'),
        target_dev=dict(type='str'),
        mtu=dict(type='int'),
        link_state=dict(type='str', choices=['up', 'down']),
        boot_order=dict(type='int'),
        filterref=dict(type='dict', options=dict(
            filter=dict(type='str', required=True),
            parameters=dict(type='dict', default={}))),
        bandwidth=dict(type='dict', options=dict(inbound=_rate(floor=True), outbound=_rate())),
        live=dict(type='str', default='auto', choices=['auto', 'always', 'never']),
        on_live_impossible=dict(type='str', default='config_only', choices=['config_only', 'fail']),
        unplug_timeout=dict(type='float', default=10),
        ensure_shared_memory=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[('state', 'present', ['type'])],
        required_one_of=[('type', 'mac')],
    )
    conn = connect(module)
    finish(module, GuestInterfaceManager(conn, module.params, check_mode=module.check_mode, diff=module._diff))


if __name__ == '__main__':
    main()
