#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nf_log
short_description: Load and bind the kernel logger that netfilter TRACE and LOG need
version_added: 1.0.0
description:
  - Ensures, per family, that the kernel logger is loaded and bound with C(net.netfilter.nf_log.<N>)
    (2 ipv4, 10 ipv6, 7 bridge, 3 arp). TRACE uses the bound logger; without it TRACE stays silent while LOG works.
  - "Chooses module and logger from a host probe: kernels older than 3.17 (CentOS 6, 2.6.32): module and logger
    C(ipt_LOG)/C(ip6t_LOG); CentOS 7 and kernels 3.17 to 5.12: C(nf_log_ipv4)/C(nf_log_ipv6) (and C(nf_log_bridge),
    C(nf_log_arp)); 5.13 and later: module C(nf_log_syslog) providing loggers C(nf_log_ipv4)/C(nf_log_ipv6).
    A logger already registered (listed in C(/proc/net/netfilter/nf_log), for example built in) is not loaded again."
  - The sysctl is set after the module is loaded (the kernel rejects the name of an unregistered logger).
  - A binding held by another logger (for example C(nfnetlink_log) for ulogd) is reported and left alone unless
    O(force=true).
  - In a container or a non-initial network namespace, kernels 4.11 and later only log when the initial namespace has
    C(net.netfilter.nf_log_all_netns=1); the module detects this and says so (RV(netns)).
  - Runs on the host with POSIX shell commands only; no Python is needed on the host.
author:
  - virtops.virtnet contributors (@virtops)
options:
  families:
    description:
      - Families to bind a logger for.
    type: list
    elements: str
    choices: [ipv4, ipv6, bridge, arp]
    default: [ipv4, ipv6]
  state:
    description:
      - V(present) loads and binds the logger.
      - V(absent) unbinds (V(NONE)) the families bound to our logger and removes the files O(persistent) wrote.
    type: str
    choices: [present, absent]
    default: present
  persistent:
    description:
      - Also configure it for the next boot, the way the distribution does it. CentOS/RHEL 6
        C(/etc/sysconfig/modules/virtnet.modules) and a managed block in C(/etc/sysctl.conf); systemd distributions
        C(/etc/modules-load.d/virtnet.conf) and C(/etc/sysctl.d/90-virtnet.conf).
      - Files are written atomically (temporary file and rename) and only when their content changes.
    type: bool
    default: false
  all_netns:
    description:
      - Set C(net.netfilter.nf_log_all_netns=1) so that network namespaces and containers can log (kernel 4.11+).
        Only possible in the initial network namespace; from inside a namespace a warning says what to do instead.
      - With O(state=absent), V(true) sets it back to V(0).
    type: bool
    default: false
  force:
    description:
      - Bind our logger even when another logger (for example C(nfnetlink_log)) holds the binding; with O(state=absent),
        unbind whatever logger is bound.
    type: bool
    default: false
extends_documentation_fragment:
  - virtops.virtnet.attributes
  - virtops.virtnet.attributes.ACTIONGROUP_SHELL
attributes:
  check_mode:
    support: full
    details:
      - Computes every change (modules, sysctls, files); nothing is applied.
  diff_mode:
    support: full
notes:
  - Needs root on the host (C(become)). No Python is needed on the host.
seealso:
  - module: virtops.virtnet.trace_rule
  - module: virtops.virtnet.log_rule
  - module: community.general.modprobe
  - module: ansible.posix.sysctl
'''

EXAMPLES = r'''
- name: TRACE output to the kernel log for IPv4 and IPv6, also after reboot
  virtops.virtnet.nf_log:
    families: [ipv4, ipv6]
    persistent: true

- name: On the physical host, let network namespaces and containers log too
  virtops.virtnet.nf_log:
    families: [ipv4]
    all_netns: true

- name: Undo it
  virtops.virtnet.nf_log:
    families: [ipv4, ipv6]
    state: absent
'''

RETURN = r'''
chosen:
  description: Per family, the kernel module and logger chosen and why.
  returned: always
  type: dict
  sample:
    ipv4:
      module: ipt_LOG
      logger: ipt_LOG
      modprobe: true
      sysctl: net.netfilter.nf_log.2
      why: "kernel 2.6.32-754.el6.x86_64 older than 3.17 (EL6 era): the LOG targets are the loggers; ..."
families:
  description: Per family, the sysctl and its value before and after.
  returned: always
  type: dict
  sample:
    ipv4: {pf: 2, sysctl: net.netfilter.nf_log.2, before: NONE, after: nf_log_ipv4}
changes:
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["load kernel module ipt_LOG", "set net.netfilter.nf_log.2 = ipt_LOG"]
files:
  description: Persistent files written or removed.
  returned: always
  type: list
  elements: str
  sample: [/etc/modules-load.d/virtnet.conf]
netns:
  description: Network namespace situation (C(in_netns), C(nf_log_all_netns), C(needed), C(note)).
  returned: always
  type: dict
  sample: {in_netns: false, nf_log_all_netns: 1, needed: null, note: "initial network namespace; nf_log_all_netns=1"}
kernel:
  description: Kernel release of the host (from C(/proc/sys/kernel/osrelease), else C(uname -r)).
  returned: always
  type: str
  sample: 3.10.0-1160.el7.x86_64
distro:
  description: Distribution facts of the probe.
  returned: always
  type: dict
  sample: {id: centos, version: "7", major: "7", family: redhat}
probe:
  description: All host facts from the probe.
  returned: always
  type: dict
  sample: {}
'''
