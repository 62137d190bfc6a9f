# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.log_rule (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._rule_task import RuleTask
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import LOG_LEVELS, RULESET_SPEC, TABLES


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = dict(
        table=dict(type='str', default='filter', choices=list(TABLES)),
        chain=dict(type='str'),
        position=dict(type='str', default='append', choices=['insert', 'append']),
        prefix=dict(type='str'),
        level=dict(type='str', default='warning', choices=list(LOG_LEVELS) + [str(n) for n in sorted(LOG_LEVELS.values())]),
        **RULESET_SPEC
    )
    REQUIRED_IF = [('state', 'present', ('chain',))]

    def run_module(self, module):
        return RuleTask(module, 'log').run()
