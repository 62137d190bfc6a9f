# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt modules' results, the trace report and trace_capture's renderings are what the committed golden files say
(see golden.py; regenerate with ``.venv/bin/python tests/unit/golden/golden.py --update-golden``)."""
import json

import pytest

import golden

with open(golden.LIBVIRT_GOLDEN, encoding="utf-8") as fh:
    LIBVIRT = json.load(fh)
with open(golden.TRACE_GOLDEN, encoding="utf-8") as fh:
    TRACE = json.load(fh)
with open(golden.CAPTURE_GOLDEN, encoding="utf-8") as fh:
    CAPTURE = json.load(fh)


@pytest.fixture(scope="module")
def libvirt_now():
    return json.loads(json.dumps(golden.records()))


@pytest.fixture(scope="module")
def trace_now():
    return golden.trace_records()


@pytest.fixture(scope="module")
def capture_now():
    return golden.capture_records()


def test_same_libvirt_scenarios(libvirt_now):
    assert sorted(libvirt_now) == sorted(LIBVIRT)
    # the scenarios exercise failures, changes and no-ops of every module
    for prefix in ("network/", "network_info/", "guest_interface/"):
        runs = [v for k, v in LIBVIRT.items() if k.startswith(prefix)]
        assert any(r.get("failed") for r in runs) and any(not r.get("failed") for r in runs), prefix


@pytest.mark.parametrize("name", sorted(LIBVIRT))
def test_libvirt_module_result(libvirt_now, name):
    assert libvirt_now.get(name) == LIBVIRT[name]


def test_same_trace_fixtures(trace_now):
    assert sorted(trace_now) == sorted(TRACE)
    assert sum(v["packets"] for v in TRACE.values()) > 100


@pytest.mark.parametrize("name", sorted(TRACE))
def test_trace_report(trace_now, name):
    assert trace_now.get(name) == TRACE[name]


def test_same_capture_fixtures(capture_now):
    assert sorted(capture_now) == sorted(CAPTURE) == sorted(TRACE)
    # the renderings show NAT, replies and drops somewhere
    lines = [x for v in CAPTURE.values() for x in v["explain"] + v["paths.j2"]]
    assert any(x.startswith("NAT ") and "MASQUERADE" in x for x in lines)
    assert any(x.startswith("REPLY ") and "de-NATs" in x for x in lines)
    assert any(x.startswith("DROP ") for x in lines)


@pytest.mark.parametrize("name", sorted(CAPTURE))
def test_capture_renderings(capture_now, name):
    """trace_capture's explanation and the role's / demo's templates render the same text."""
    assert capture_now.get(name) == CAPTURE[name]
