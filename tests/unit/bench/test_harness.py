# SPDX-License-Identifier: GPL-3.0-or-later
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))

import _harness  # noqa: E402


def test_step_ratio_and_json(tmp_path, monkeypatch):
    monkeypatch.setattr(_harness, "RESULTS", str(tmp_path))
    bench = _harness.Bench("demo", runs=3)
    calls = []

    def setup(side):
        calls.append(side)

    step = bench.step("sleep", ours=lambda: time.sleep(0.001), theirs=lambda: (time.sleep(0.02), {"tasks": 2})[1],
                      setup=setup, goal=2)
    assert calls == ["ours", "theirs"] * 3  # alternating, setup before each side
    assert len(step.ours) == len(step.theirs) == 3
    assert step.ratio > 2
    bench.note("sleep", tasks_ours=1)
    data = json.load(open(bench.write()))
    row = data["steps"][0]
    assert row["goal_met"] is True
    assert row["facts"]["theirs_tasks"] == [2, 2, 2]
    assert row["facts"]["tasks_ours"] == 1


def test_peak_memory_measures_allocation():
    peak, result = _harness.peak_memory(lambda: len(bytearray(5 * 1024 * 1024)))
    assert result == 5 * 1024 * 1024
    assert peak >= 5 * 1024 * 1024
