# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lab/waits.py: wait_for returns the condition's value, or fails at the deadline naming what it waited for."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lab"))
from waits import wait_for  # noqa: E402


def test_returns_the_first_true_value():
    calls = []

    def cond():
        calls.append(1)
        return ["x"] if len(calls) == 3 else []
    assert wait_for("three calls", cond, timeout=5, every=0.01) == ["x"]
    assert len(calls) == 3


def test_fails_at_the_deadline_with_what_it_waited_for():
    t0 = time.time()
    with pytest.raises(AssertionError, match="waited 0 s for nothing to happen"):
        wait_for("nothing to happen", lambda: None, timeout=0.2, every=0.05)
    assert 0.2 <= time.time() - t0 < 2
