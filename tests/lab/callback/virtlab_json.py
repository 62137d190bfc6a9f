# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only stdout callback: one JSON document with every task's per-host result and the stats.

ansible-core has no built-in json callback (it lives in ansible.posix, which the lab does not
require). Shape follows ansible.posix.json: {"plays": [{"play": {...}, "tasks": [{"task":
{"name"}, "hosts": {host: result}}]}], "stats": {host: {ok, changed, failures, unreachable,
skipped, rescued, ignored}}}. Unreachable results carry "unreachable": true.
"""
from __future__ import annotations

import json

from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: virtlab_json
type: stdout
short_description: virtlab test helper, JSON output
description: Prints one JSON document with per-task, per-host results (tests only).
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "virtlab_json"

    def __init__(self, display=None):
        super().__init__(display)
        self.results = []
        self._tasks = {}

    def v2_playbook_on_play_start(self, play):
        self.results.append({"play": {"name": to_text(play.get_name()), "id": to_text(play._uuid)},
                             "tasks": []})

    def _task_entry(self, task):
        key = to_text(task._uuid)
        if key not in self._tasks:
            entry = {"task": {"name": to_text(task.get_name()), "id": key,
                              "action": to_text(task.action)}, "hosts": {}}
            self._tasks[key] = entry
            if not self.results:
                self.results.append({"play": {"name": "", "id": ""}, "tasks": []})
            self.results[-1]["tasks"].append(entry)
        return self._tasks[key]

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_entry(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_entry(task)

    def _record(self, result, **extra):
        entry = self._task_entry(result._task)
        res = dict(result._result)
        res.update(extra)
        res["action"] = to_text(result._task.action)
        entry["hosts"][to_text(result._host.get_name())] = res

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True, failed=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {}
        for h in sorted(stats.processed.keys()):
            s = stats.summarize(h)
            summary[h] = {k: s.get(k, 0) for k in ("ok", "changed", "failures", "unreachable",
                                                   "skipped", "rescued", "ignored")}
        self._display.display(json.dumps({"plays": self.results, "stats": summary},
                                         cls=AnsibleJSONEncoder, indent=1, sort_keys=True))
