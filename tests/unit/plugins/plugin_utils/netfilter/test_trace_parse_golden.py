# SPDX-License-Identifier: GPL-3.0-or-later
"""The trace parser's outputs are byte-identical to the recorded golden digests (see trace_golden.py)."""
import json

import pytest

from ansible_collections.virtops.virtnet.plugins.plugin_utils.netfilter import _trace_parse as tp
import trace_golden

INPUTS = trace_golden.inputs()
with open(trace_golden.GOLDEN, encoding="utf-8") as fh:
    GOLDEN = json.load(fh)


def test_golden_covers_every_input():
    assert sorted(GOLDEN) == sorted(INPUTS)
    # the mutated mixes really exercise the malformed-line paths
    assert sum(tp.parse(INPUTS[name])["stats"]["malformed"] for name in INPUTS if name.startswith("mut/")) > 100


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_output_matches_golden(name):
    save = INPUTS["capture/el7_iptables_save.txt"]
    got = {label: trace_golden.digest(tp, INPUTS[name], save, kwargs) for label, kwargs in trace_golden.SETTINGS}
    assert got == GOLDEN[name]
