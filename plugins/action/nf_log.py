# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.nf_log (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._nflog import NfLogTask


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = dict(
        families=dict(type='list', elements='str', default=['ipv4', 'ipv6'],
                      choices=['ipv4', 'ipv6', 'bridge', 'arp']),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        persistent=dict(type='bool', default=False),
        all_netns=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
    )

    def run_module(self, module):
        return NfLogTask(module).run()
