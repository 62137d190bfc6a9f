# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.trace_rule (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils._ruleset import RuleTask

MATCH_OPTIONS = dict(
    protocol=dict(type='str'),
    source=dict(type='str'),
    destination=dict(type='str'),
    source_port=dict(type='str'),
    destination_port=dict(type='list', elements='str'),
    in_interface=dict(type='str'),
    out_interface=dict(type='str'),
    extra=dict(type='list', elements='str'),
    rate=dict(type='int'),
    expires=dict(type='int'),
    backend=dict(type='str', default='auto', choices=['auto', 'legacy', 'nft']),
)


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        family=dict(type='str', default='ipv4', choices=['ipv4', 'ipv6', 'both']),
        chains=dict(type='list', elements='str', default=['PREROUTING'], choices=['PREROUTING', 'OUTPUT']),
        **MATCH_OPTIONS
    )

    def run_module(self, module):
        return RuleTask(module, 'trace').run()
