#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: trace_rule
short_description: Add or remove tagged netfilter TRACE rules in the raw table, with rate limit and expiry
version_added: 1.0.0
description:
  - Adds or removes C(-j TRACE) rules in the C(raw) table (C(PREROUTING) and/or C(OUTPUT)) so that the kernel logs
    every rule a matching packet traverses (C(iptables -t raw -I PREROUTING -p tcp --dport 3128 -j TRACE)).
  - Every rule carries a comment tag C(virtnet:<name>:<hash>) so that exactly the rules of this rule set are found,
    replaced and removed. Rules of the user, of libvirt or of other tools are never touched.
  - Presence is read from C(iptables-save) (not C(iptables -C), which is unreliable on iptables 1.4.7) and all rules
    of one task are applied atomically with ONE C(iptables-restore --noflush) per address family, through
    C(iptables-nft-restore) on nf_tables hosts. C(-w) is used where that iptables-restore supports it (1.6.2 and later).
  - Runs on the host with POSIX shell commands only; no Python is needed on the host (CentOS 6 works from a modern
    controller with C(gather_facts=false)). Use C(become) when not connecting as root.
  - TRACE output needs a bound kernel logger; see M(virtops.virtnet.nf_log). Expired rules of ours found in the table
    are removed on every run.
  - TRACE can hurt a busy production host. Use O(rate) and O(expires) there.
  - "The remover started for O(expires): it confirms it runs in a session of its own before the task returns (the
    result's RV(removers) has its pid; SIGHUP of the ending SSH session cannot reach it). At the expiry time it reads
    the table and deletes exactly the rules of this task that carry that expiry, with C(iptables-restore --noflush
    -w). A failed read (C(iptables-save) exit status) is told apart from nothing left, and a failed read or restore
    (xtables lock still held, a concurrent C(iptables-restore) that changed the table) is retried up to 10 times
    with backoff (1, 2, 4, 8, 16, then 30 s: about 3 minutes). Every outcome is logged: to syslog with tag
    C(virtnet-expire) through C(logger) where a syslog daemon listens, otherwise as a line in
    C(/var/tmp/virtnet-expire.log) (host, table, name, expiry, what happened). If it gives up, the rules no longer
    match (C(-m time --datestop)) and the next run of this module on the host purges them."
author:
  - virtops.virtnet contributors (@virtops)
options:
  name:
    description:
      - Identity of the rule set (letters, digits, V(_), V(.), V(-); at most 64 characters).
      - With O(state=absent), V(all) removes every rule managed by this collection in the table.
    type: str
    required: true
  state:
    description:
      - V(present) makes the rule set exactly the rules described by the other options (old rules of the same
        O(name) that no longer match are replaced in the same batch).
      - V(absent) removes every rule of the rule set O(name).
    type: str
    choices: [present, absent]
    default: present
  family:
    description:
      - Address family; V(both) creates the rules with iptables and ip6tables (then O(source) and O(destination)
        cannot be used).
    type: str
    choices: [ipv4, ipv6, both]
    default: ipv4
  chains:
    description:
      - Raw table chains to trace in. TRACE only works in the raw table.
    type: list
    elements: str
    choices: [PREROUTING, OUTPUT]
    default: [PREROUTING]
extends_documentation_fragment:
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.ACTIONGROUP_SHELL
  - virtops.virtnet.netfilter.RULESET
  - virtops.virtnet.netfilter.MATCH
  - virtops.virtnet.netfilter.LIMITS
  - virtops.virtnet.netfilter.BACKEND
notes:
  - Needs root on the host (C(become)); the host needs C(iptables-save) and C(iptables-restore) (or their C(-nft)
    and C(-legacy) variants) and a POSIX C(sh). No Python is needed on the host.
  - The tag is C(virtnet:<name>:<hash>[:exp=<epoch>]) in an C(-m comment) match.
seealso:
  - module: virtops.virtnet.nf_log
  - module: virtops.virtnet.log_rule
  - module: ansible.builtin.iptables
'''

EXAMPLES = r'''
- name: Make sure TRACE output reaches the kernel log
  virtops.virtnet.nf_log:
    families: [ipv4]

- name: Trace guest connections to the proxy for 10 minutes, at most 20 packets/s
  virtops.virtnet.trace_rule:
    name: proxy
    protocol: tcp
    destination_port: [3128]
    rate: 20
    expires: 600

- name: Trace several ports of locally generated traffic in one batch
  virtops.virtnet.trace_rule:
    name: web-out
    chains: [OUTPUT]
    protocol: tcp
    destination: 10.44.32.217
    destination_port: ["80", "443", "8000:8100"]
    extra: [-m, conntrack, --ctstate, NEW]

- name: Remove the proxy trace
  virtops.virtnet.trace_rule:
    name: proxy
    state: absent

- name: Remove every TRACE rule this collection added
  virtops.virtnet.trace_rule:
    name: all
    state: absent
'''

RETURN = r'''
rules:
  description: Our rules of this rule set after the task, as C(iptables-save) lines (predicted in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - -A PREROUTING -p tcp -m tcp --dport 3128 -m comment --comment "virtnet:proxy:1f2e3d4c" -j TRACE
batch:
  description: The C(iptables-restore --noflush) input per family, when something had to change.
  returned: always
  type: dict
  sample:
    ipv4:
      - "*raw"
      - -I PREROUTING 1 -p tcp -m tcp --dport 3128 -m comment --comment virtnet:proxy:1f2e3d4c -j TRACE
      - COMMIT
purged:
  description: Expired rules of ours (any name) that were removed by this run.
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
    - Per address family, the pid of the detached remover that confirmed it started (in its own session), or
      V(null) when it did not confirm within 5 seconds (then a warning says so).
  returned: when O(expires) is set and rules were added
  type: dict
  sample: {ipv4: 4242}
backend:
  description: The iptables backend used.
  returned: always
  type: str
  sample: nft
table:
  description: The table (always V(raw) here).
  returned: always
  type: str
  sample: raw
probe:
  description: Host facts from the probe (kernel, distro, iptables version and backend, tools, nf_log bindings).
  returned: always
  type: dict
  sample:
    kernel: 3.10.0-1160.el7.x86_64
    iptables_version: 1.4.21
    iptables_backend: legacy
'''
