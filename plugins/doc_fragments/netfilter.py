# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by the netfilter modules (named sub-fragments).

    The argument specs that go with them live in plugins/plugin_utils/netfilter/_ruleset.py
    (MATCH_SPEC, LIMITS_SPEC, BACKEND_SPEC). A module may override the description of an
    option for its own context; type, elements, choices and defaults come from here.
    """

    # Nothing at the top level: use the named sub-fragments.
    DOCUMENTATION = r'''
options: {}
'''

    # Tagged rule sets (trace_rule, log_rule): planned as one batch, so check mode and diff are full.
    RULESET = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - Computes the batch and the diff; nothing is applied.
  diff_mode:
    support: full
'''

    # Match options of a rule (iptables matches).
    MATCH = r'''
options:
  protocol:
    description:
      - Protocol name (V(tcp), V(udp), V(icmp), V(icmpv6), V(sctp)...) or number 0-255.
    type: str
  source:
    description:
      - Source address or CIDR network (validated; of the same family as O(family)).
    type: str
  destination:
    description:
      - Destination address or CIDR network (validated; of the same family as O(family)).
    type: str
  source_port:
    description:
      - Source port or range (V(1024:65535)); needs O(protocol).
    type: str
  destination_port:
    description:
      - Destination ports or ranges (V(8000:8100)); one rule per item, all applied in one batch. Needs O(protocol).
    type: list
    elements: str
  in_interface:
    description:
      - Input interface (at most 15 characters; V(+) suffix as wildcard). Not valid in C(OUTPUT).
    type: str
  out_interface:
    description:
      - Output interface (at most 15 characters; V(+) suffix as wildcard). Only valid in C(OUTPUT).
    type: str
  extra:
    description:
      - Additional match words, one word per item (for example V([-m, conntrack, --ctstate, NEW])).
      - "Each word is validated (letters, digits and C(_ . , : / = + @ % ! -)); commands, targets, tables and
        comments cannot be set this way. It is never a shell string."
    type: list
    elements: str
'''

    # Rate limit and expiry of a rule.
    LIMITS = r'''
options:
  rate:
    description:
      - Match at most this many packets per second (C(-m limit --limit N/second)).
    type: int
  expires:
    description:
      - Lifetime in seconds (1 to 30 days). The rule stops matching by itself at that time
        (C(-m time --datestop), UTC) and a detached remover started on the host deletes exactly these rules then,
        even if the controller has gone away. Expired rules of ours are also purged on the next run.
      - Re-running the task while the rules are still there keeps them (and their expiry) unchanged.
    type: int
'''

    # iptables backend selection.
    BACKEND = r'''
options:
  backend:
    description:
      - Which iptables backend to drive. V(auto) uses the one C(iptables --version) reports.
      - V(legacy) uses C(iptables-legacy-save/-restore) when present, otherwise plain C(iptables-save/-restore);
        V(nft) uses C(iptables-nft-save/-restore).
    type: str
    choices: [auto, legacy, nft]
    default: auto
'''
