# -*- coding: utf-8 -*-
# Copyright (c) virtops.virtnet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin for virtops.virtnet.trace_capture (POSIX shell on the host, no Python needed)."""

from __future__ import annotations

from ansible_collections.virtops.virtnet.plugins.plugin_utils._action_module import ActionModuleBase
from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter._capture_task import (
    CAPTURE_REQUIRED_IF, CAPTURE_SPEC, CaptureTask)


class ActionModule(ActionModuleBase):
    ARGUMENT_SPEC = CAPTURE_SPEC
    REQUIRED_IF = CAPTURE_REQUIRED_IF

    def run_module(self, module):
        return CaptureTask(module).run()
