# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.trace_rule (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._rule_task import RuleTask
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._ruleset import RULESET_SPEC, TRACE_CHAINS


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = dict(
        chains=dict(type='list', elements='str', default=['PREROUTING'], choices=list(TRACE_CHAINS)),
        **RULESET_SPEC
    )

    def run_module(self, module):
        return RuleTask(module, 'trace').run()
