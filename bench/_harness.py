# SPDX-License-Identifier: GPL-3.0-or-later
"""Side-by-side benchmark harness.

A benchmark compares two tools doing the same work in the same run: ``ours`` and ``theirs``
(the tool a user would pick instead). Each step runs both sides ``runs`` times, alternating
so that drift in the machine hits both equally, and reports medians, the ratio
``theirs / ours`` (> 1 means we are faster) and any per-step facts the benchmark records
(task counts, whether a change went live, guests detached...). Results go to
``bench/results/<name>.json``.

Usage::

    bench = Bench("trace_rule", runs=5)
    step = bench.step("add 50 rules", ours=lambda: ..., theirs=lambda: ..., setup=..., goal=10)
    bench.note("add 50 rules", tasks_ours=1, tasks_theirs=50)
    bench.write()

A side callable may return a dict: its keys are recorded per run (e.g. ``{"tasks": 3}``).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable, Optional

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclass
class Step:
    name: str
    goal: Optional[float] = None
    ours: list = field(default_factory=list)
    theirs: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @property
    def median_ours(self):
        return statistics.median(self.ours) if self.ours else None

    @property
    def median_theirs(self):
        return statistics.median(self.theirs) if self.theirs else None

    @property
    def ratio(self):
        if not self.ours or not self.theirs or not self.median_ours:
            return None
        return self.median_theirs / self.median_ours

    def as_dict(self):
        return {
            "step": self.name,
            "runs": max(len(self.ours), len(self.theirs)),
            "ours_s": self.ours,
            "theirs_s": self.theirs,
            "median_ours_s": self.median_ours,
            "median_theirs_s": self.median_theirs,
            "ratio_theirs_over_ours": self.ratio,
            "goal_ratio": self.goal,
            "goal_met": None if self.goal is None or self.ratio is None else self.ratio >= self.goal,
            "facts": self.facts,
        }


def timed(fn: Callable[[], object]):
    """Run ``fn`` and return (seconds, its result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def peak_memory(fn: Callable[[], object]):
    """Run ``fn`` under tracemalloc; return (peak bytes of Python allocations, result)."""
    tracemalloc.start()
    try:
        result = fn()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


class Bench:
    def __init__(self, name: str, runs: int = 5):
        self.name = name
        self.runs = int(os.environ.get("BENCH_RUNS", runs))
        self.steps: list[Step] = []
        self.meta = {
            "benchmark": name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "kernel": platform.release()},
        }

    def step(self, name, ours, theirs=None, setup=None, goal=None, runs=None):
        """Time ``ours`` and ``theirs`` alternately; ``setup()`` runs before every side."""
        step = Step(name=name, goal=goal)
        for dummy in range(runs or self.runs):
            for side, fn in (("ours", ours), ("theirs", theirs)):
                if fn is None:
                    continue
                if setup is not None:
                    setup(side)
                seconds, result = timed(fn)
                getattr(step, side).append(round(seconds, 6))
                if isinstance(result, dict):
                    for key, value in result.items():
                        step.facts.setdefault("%s_%s" % (side, key), []).append(value)
        self.steps.append(step)
        return step

    def note(self, step_name, **facts):
        for step in self.steps:
            if step.name == step_name:
                step.facts.update(facts)
                return step
        raise KeyError(step_name)

    def report(self):
        lines = ["benchmark %s (%d runs, medians)" % (self.name, self.runs)]
        for s in self.steps:
            ratio = "n/a" if s.ratio is None else "%.1fx" % s.ratio
            goal = "" if s.goal is None else "  goal >= %sx: %s" % (
                s.goal, "met" if s.ratio is not None and s.ratio >= s.goal else "NOT met")
            theirs = "" if s.median_theirs is None else "  theirs %.3fs" % s.median_theirs
            lines.append("  %-36s ours %.3fs%s  ratio %s%s" % (s.name, s.median_ours or 0, theirs, ratio, goal))
        return "\n".join(lines)

    def write(self, extra=None):
        os.makedirs(RESULTS, exist_ok=True)
        data = dict(self.meta, steps=[s.as_dict() for s in self.steps])
        if extra:
            data.update(extra)
        path = os.path.join(RESULTS, "%s.json" % self.name)
        with open(path, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
        print(self.report())
        print("results: %s" % path)
        return path
