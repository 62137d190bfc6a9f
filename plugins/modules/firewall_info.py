#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: firewall_info
short_description: Tell which firewall is in charge of libvirt guests' packets and what cuts them off
version_added: 1.0.0
description:
  - Reads, without changing anything, every firewall a hypervisor may have at once and reports which backends hold
    rules (C(iptables-legacy), C(iptables-nft), native C(nftables) tables), which one libvirt uses (from
    C(firewall_backend) in C(/etc/libvirt/network.conf), else from where its C(LIBVIRT_*) chains or its
    C(table ip libvirt_network) are), every base chain's policy per netfilter hook, and findings.
  - "Findings, each with a stable RV(findings[].id), a severity, the evidence lines and the fix:
    C(docker-forward-drop) (Docker's chains with C(FORWARD) policy C(DROP): guests cannot forward unless
    C(DOCKER-USER) accepts them), C(forward-drop-policy) (another table's base chain on the forward hook with policy
    drop that libvirt's accept does not override: a packet must be accepted by every base chain on a hook),
    C(mixed-backends) (rules in both iptables-legacy and nf_tables: each tool shows only half),
    C(ip-forward-disabled), C(br-netfilter-bridged) (bridged guest traffic traverses iptables),
    C(rp-filter-strict), C(firewalld-running), C(firewalld-zone) (a network's bridge outside the C(libvirt) /
    C(libvirt-routed) zones), C(nft-unreadable) (no C(nft) command)."
  - Runs on the host with POSIX shell commands only, in one round trip; no Python is needed on the host (CentOS 6
    works). Needs root to read the rulesets (C(become)).
author:
  - virtops.virtnet contributors (@virtops)
options:
  networks:
    description:
      - Names of active libvirt networks to diagnose. Empty means every active network (read from libvirt's status
        files in C(/run/libvirt/network)).
      - A name that is not an active network fails the task and lists the active ones.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.ACTIONGROUP_SHELL
  - virtops.virtnet.attributes.INFO_MODULE
notes:
  - It runs C(iptables-legacy-save), C(iptables-nft-save) (or C(iptables-save) for the host's default backend),
    their IPv6 twins, C(nft list ruleset), reads C(/proc/sys) and libvirt's status files, and, when firewalld runs,
    C(firewall-cmd --state), C(--get-zones), C(--get-active-zones), C(--get-policies). Nothing is written.
  - firewalld and Docker are recognised by their processes in the host's own network namespace (and, for firewalld,
    by C(firewall-cmd --state)), so daemons of containers or other namespaces are not mistaken for the host's.
  - A host with none of C(iptables), C(iptables-legacy), C(iptables-nft), C(nft) fails with a message saying so.
seealso:
  - module: virtops.virtnet.trace_capture
  - module: virtops.virtnet.network_info
'''

EXAMPLES = r'''
- name: Which firewall drops my guests?
  virtops.virtnet.firewall_info:
  become: true
  register: fw

- name: One line per host
  ansible.builtin.debug:
    msg: "{{ fw.summary }}"

- name: Fail when something cuts the default network's guests off
  virtops.virtnet.firewall_info:
    networks: [default]
  become: true
  register: fw_default
  failed_when: fw_default.counts.error > 0
'''

RETURN = r'''
summary:
  description: One line for the host, libvirt's backend, the backends holding rules, the forward hook's policies and
    the ids of the errors and warnings.
  returned: success
  type: str
  sample: "kvm01: libvirt uses iptables (iptables-legacy); rules in iptables-legacy, iptables-nft; forward hook:
    iptables-nft filter FORWARD drop, iptables-legacy filter FORWARD accept; error: docker-forward-drop; warning:
    mixed-backends, br-netfilter-bridged"
findings:
  description: What stands in the guests' way, errors first.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Identifier of the kind of finding (see the module description), stable across
        releases so that other tools (and the trace explanation) can link to it.
      type: str
      sample: docker-forward-drop
    ref:
      description: This instance, C(id@backend:family:table:chain).
      type: str
      sample: docker-forward-drop@iptables-nft:ip:filter:FORWARD
    severity:
      description: V(error) (guests are cut off now), V(warning) (some traffic is, or will be), V(info).
      type: str
      sample: error
    title:
      description: What happens and why, in one sentence.
      type: str
    where:
      description: The table and chain concerned, C(backend), C(family), C(table), C(chain), C(hook) (the keys that
        apply).
      type: dict
      sample: {backend: iptables-nft, family: ip, table: filter, chain: FORWARD, hook: forward}
    evidence:
      description: The lines read on the host that prove it, prefixed with the command or file they come from.
      type: list
      elements: str
      sample: ["iptables-nft-save filter: :FORWARD DROP", "iptables-nft-save filter: -A FORWARD -j DOCKER-USER"]
    fix:
      description: What to do, as commands where there is one.
      type: list
      elements: str
      sample: ["iptables-nft -I DOCKER-USER -s 192.168.122.0/24 -j ACCEPT"]
counts:
  description: Number of findings per severity.
  returned: success
  type: dict
  sample: {error: 1, warning: 2, info: 0}
backends:
  description: Per backend (C(iptables-legacy), C(iptables-nft), C(nftables)) whether its tool exists
    (C(available)), the commands read, C(rules) (rules, user chains and non-ACCEPT policies; for nftables the rules
    and base chains of native tables), C(holds_rules), C(tables) and read C(errors).
  returned: success
  type: dict
libvirt:
  description: libvirt's firewall backend (C(firewall_backend), V(iptables) or V(nftables)), how it was found
    (C(source)), where its rules are (C(rules_in)), C(network_conf), libvirtd's C(version), its C(nft_tables).
  returned: success
  type: dict
  sample: {firewall_backend: iptables, source: "libvirt's rules found in iptables-legacy", rules_in: [iptables-legacy]}
networks:
  description: The active libvirt networks diagnosed, C(name), C(bridge), C(forward) mode, C(zone), C(subnets).
  returned: success
  type: list
  elements: dict
hooks:
  description: Per netfilter hook, its base chains in priority order, each with C(backend), C(family), C(table),
    C(chain), C(priority), C(policy) and the number of C(rules).
  returned: success
  type: dict
  sample:
    forward:
      - {backend: iptables-nft, family: ip, table: filter, chain: FORWARD, priority: 0, policy: drop, rules: 6}
docker:
  description: Whether Docker's chains are present, in which backends, which chains.
  returned: success
  type: dict
firewalld:
  description: Whether firewalld runs in the host's network namespace, its state, zones, active zones, policies.
  returned: success
  type: dict
sysctl:
  description: The sysctls read (C(net.ipv4.ip_forward), C(net.bridge.bridge-nf-call-*), C(net.ipv4.conf.*.rp_filter)).
  returned: success
  type: dict
iptables_default:
  description: The backend plain C(iptables) uses on the host (V(legacy) or V(nft)).
  returned: success
  type: str
'''
