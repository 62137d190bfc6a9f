# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the nf_trace, nf_log_entries and nf_trace_report filters."""
import os

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.virtops.virtnet.plugins.filter.nf_trace import FilterModule as TraceFilters
from ansible_collections.virtops.virtnet.plugins.filter.nf_trace_report import FilterModule as ReportFilters

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "fixtures", "trace")
F = dict(TraceFilters().filters(), **ReportFilters().filters())


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


def test_filters_are_registered():
    assert set(F) == {"nf_trace", "nf_log_entries", "nf_trace_report"}


def test_nf_trace_text_list_and_registered_result():
    text = fixture("legacy_dmesg.txt")
    from_text = F["nf_trace"](text)
    assert from_text == F["nf_trace"](text.splitlines())
    assert from_text == F["nf_trace"]({"stdout_lines": text.splitlines(), "rc": 0})
    assert from_text[0]["summary"].startswith("raw:PREROUTING policy")


def test_nf_trace_stats_and_annotation():
    result = F["nf_trace"](fixture("legacy_dmesg.txt"), stats=True, iptables_save=fixture("legacy_iptables_save.txt"))
    assert result["stats"]["trace_lines"] == len(fixture("legacy_dmesg.txt").splitlines())
    assert result["stats"]["packets"] == len(result["packets"])
    assert result["packets"][0]["hops"][-1]["rule"].endswith("-j MASQUERADE --to-ports 1024-65535")


@pytest.mark.parametrize("args,kwargs", [
    ((42,), {}), ((None,), {}), ((["ok", 3],), {}), (({"a": 1},), {}),
    (("x",), {"stats": "yes"}), (("x",), {"iptables_save": ["-A X"]}),
])
def test_nf_trace_bad_arguments(args, kwargs):
    with pytest.raises(AnsibleFilterError):
        F["nf_trace"](*args, **kwargs)


def test_nf_log_entries():
    entries = F["nf_log_entries"](fixture("log_target_dmesg.txt"))
    assert entries and entries[0]["prefix"] == "vnp-log:"
    with pytest.raises(AnsibleFilterError):
        F["nf_log_entries"](1.5)


def test_nf_trace_report():
    result = F["nf_trace"](fixture("xtables_monitor_trace.txt"), stats=True)
    text = F["nf_trace_report"](result["packets"])
    assert text.startswith("Packet 1 (id e6f601ea)")
    assert F["nf_trace_report"](result) == text
    page = F["nf_trace_report"](result["packets"], format="html", title="xt")
    assert page.startswith("<!DOCTYPE html>") and "<title>xt</title>" in page
    for bad in ("text", 3, [1, 2], {"x": 1}):
        with pytest.raises(AnsibleFilterError):
            F["nf_trace_report"](bad)
    with pytest.raises(AnsibleFilterError):
        F["nf_trace_report"](result["packets"], format="pdf")
    with pytest.raises(AnsibleFilterError):
        F["nf_trace_report"](result["packets"], title=5)
