#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: log_rule
short_description: Add or remove tagged netfilter LOG rules in any table and chain
version_added: 1.0.0
description:
  - Adds or removes C(-j LOG) rules (C(iptables -t nat -A POSTROUTING -s 192.168.122.0/24 -j LOG)) in any table and
    chain, with an optional prefix, level, rate limit and expiry.
  - Every rule carries a comment tag C(virtnet:<name>:<hash>) so that exactly the rules of this rule set are found,
    replaced and removed. Rules of the user, of libvirt or of other tools are never touched.
  - Presence is read from C(iptables-save); all rules of one task are applied atomically with ONE
    C(iptables-restore --noflush) per address family (C(iptables-nft-restore) on nf_tables hosts).
  - Runs on the host with POSIX shell commands only; no Python is needed on the host.
  - Unlike TRACE, LOG does not depend on the C(net.netfilter.nf_log.N) binding, but it still needs a LOG target in the
    kernel; see M(virtops.virtnet.nf_log).
author:
  - virtops.virtnet contributors (@virtops)
options:
  name:
    description:
      - Identity of the rule set (letters, digits, V(_), V(.), V(-); at most 64 characters).
      - With O(state=absent), V(all) removes every rule managed by this collection in O(table).
    type: str
    required: true
  state:
    description:
      - V(present) makes the rule set exactly the rules described by the other options.
      - V(absent) removes every rule of the rule set O(name) from O(table).
    type: str
    choices: [present, absent]
    default: present
  family:
    description:
      - Address family; V(both) creates the rules with iptables and ip6tables.
    type: str
    choices: [ipv4, ipv6, both]
    default: ipv4
  table:
    description:
      - Table of the rules.
    type: str
    choices: [filter, nat, mangle, raw, security]
    default: filter
  chain:
    description:
      - Chain of the rules (built in or an existing user chain). Required with O(state=present).
    type: str
  position:
    description:
      - V(insert) puts the rules at the top of the chain, V(append) at its end.
    type: str
    choices: [insert, append]
    default: append
  prefix:
    description:
      - Log prefix (C(--log-prefix)), at most 29 characters, no quotes, backslashes or shell characters.
    type: str
  level:
    description:
      - Syslog level of the messages (C(--log-level)).
    type: str
    choices: [emerg, alert, crit, error, warning, notice, info, debug, '0', '1', '2', '3', '4', '5', '6', '7']
    default: warning
  # Type, elements, choices and defaults of the options below come from the netfilter doc fragment;
  # only the descriptions that differ for LOG rules (any table and chain) are given here.
  source_port:
    description:
      - Source port or range; needs O(protocol).
  destination_port:
    description:
      - Destination ports or ranges; one rule per item, all applied in one batch. Needs O(protocol).
  in_interface:
    description:
      - Input interface (at most 15 characters). Not valid in C(OUTPUT) and C(POSTROUTING).
  out_interface:
    description:
      - Output interface (at most 15 characters). Not valid in C(PREROUTING) and C(INPUT).
  extra:
    description:
      - Additional match words, one word per item; validated, never a shell string.
  rate:
    description:
      - Log at most this many packets per second (C(-m limit)).
  expires:
    description:
      - Lifetime in seconds; the rules stop matching at that time (C(-m time --datestop)) and a detached remover on
        the host deletes them, even if the controller has gone away. Expired rules are also purged on the next run.
      - The remover retries a failed read or restore with backoff and logs what it did (syslog tag
        C(virtnet-expire), else C(/var/tmp/virtnet-expire.log)); see M(virtops.virtnet.trace_rule).
  backend:
    description:
      - Which iptables backend to drive; V(auto) uses the one C(iptables --version) reports.
extends_documentation_fragment:
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.ACTIONGROUP_SHELL
  - virtops.virtnet.netfilter.RULESET
  - virtops.virtnet.netfilter.MATCH
  - virtops.virtnet.netfilter.LIMITS
  - virtops.virtnet.netfilter.BACKEND
notes:
  - Needs root on the host (C(become)). No Python is needed on the host.
seealso:
  - module: virtops.virtnet.trace_rule
  - module: virtops.virtnet.nf_log
'''

EXAMPLES = r'''
- name: Log what the NAT network sends out (the seed's example), at most 5 per second
  virtops.virtnet.log_rule:
    name: nat-out
    table: nat
    chain: POSTROUTING
    source: 192.168.122.0/24
    prefix: "virbr0 nat: "
    rate: 5

- name: Log new connections to the proxy for one hour, at the top of INPUT
  virtops.virtnet.log_rule:
    name: proxy-in
    chain: INPUT
    position: insert
    protocol: tcp
    destination_port: [3128]
    extra: [-m, conntrack, --ctstate, NEW]
    level: info
    expires: 3600

- name: Remove it
  virtops.virtnet.log_rule:
    name: nat-out
    table: nat
    state: absent
'''

RETURN = r'''
rules:
  description: Our rules of this rule set after the task, as C(iptables-save) lines (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - -A POSTROUTING -s 192.168.122.0/24 -m comment --comment "virtnet:nat-out:0a1b2c3d" -j LOG --log-level 4
batch:
  description: The C(iptables-restore --noflush) input per family, when something had to change.
  returned: always
  type: dict
  sample: {}
purged:
  description: Expired rules of ours (any name) removed by this run.
  returned: always
  type: list
  elements: str
  sample: []
expires_at:
  description: Epoch (host clock) at which the rules stop matching and are removed.
  returned: when O(expires) is set and rules were added
  type: int
  sample: 1767225600
replans:
  description:
    - How many times the table was read and planned again because another run of this collection (or a remover)
      changed our rules between this task's read and its apply. Runs on one host take turns (C(flock) on
      C(/var/lock/virtnet-rules.lock), 30 s at most) and each applies only to the table it planned against.
  returned: when rules were applied
  type: int
  sample: 0
removers:
  description:
    - Per address family, the pid of the detached remover that confirmed it started, or V(null) when it did not
      confirm within 5 seconds (then a warning says so).
  returned: when O(expires) is set and rules were added
  type: dict
  sample: {ipv4: 4242}
backend:
  description: The iptables backend used.
  returned: always
  type: str
  sample: legacy
table:
  description: The table of the rules.
  returned: always
  type: str
  sample: nat
probe:
  description: Host facts from the probe.
  returned: always
  type: dict
  sample:
    iptables_backend: nft
'''
