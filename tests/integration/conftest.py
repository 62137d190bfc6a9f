# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for integration tests against the virtlab hypervisor hosts (see tests/lab/README.md), made by
tests/lab/labtest.py (a test file with a lab of its own makes them there too).

- ``lab``: session-scoped ``virtlab.Lab`` with debian12-1, el7-1, el6-1 up (plus the first host
  of $VIRTLAB_TARGET, the persona the libvirt module suites run on, see labansible.TARGET_HOST). Lab name from env
  VIRTLAB_NAME (default ``it``). Torn down at session end unless VIRTLAB_KEEP=1 (or it was
  already up before the session: then it is left as found).
- ``run_module(host, module, check=False, diff=False, become=False, **args)``: ansible ad-hoc over
  real SSH, returns the module result dict for that host (always has ``failed``, ``changed``, ``msg``).
- ``run_playbook(path_or_yaml_text, extra_vars=None, check=False, limit=None, diff=False)``: returns
  ``{"rc", "stats": {host: {...}}, "plays": [...], "tasks": [{"name", "action", "hosts": {h: result}}],
  "results": {task_name: {host: result}}, "stdout", "stderr"}``.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
from labansible import TARGET_PERSONA  # noqa: E402
from labtest import MATRIX_DIR, lab_fixture, runner_fixtures  # noqa: E402
import matrix  # noqa: E402

PERSONAS = ["debian12", "el7", "el6"]
if TARGET_PERSONA not in PERSONAS:  # VIRTLAB_TARGET=el8 ...: the libvirt suites' host joins the lab
    PERSONAS.append(TARGET_PERSONA)

lab = lab_fixture(PERSONAS, target_python=True)
run_module, run_playbook = runner_fixtures("session")


@pytest.fixture
def bad_input(request):
    """``bad_input(module, case, expected, observed, unchanged)``: record one refused bad input for the
    catalogue in docs/reliability.md (tests/integration/reliability.py renders it)."""
    import reliability  # tests/integration is on sys.path under pytest's rootdir-relative imports

    def _record(module, case, expected, observed, unchanged):
        reliability.record(module, case, expected, observed, unchanged, request.node.nodeid)
    return _record


# ---- the persona x suite matrix (docs/matrix.md; tests/lab/matrix.py) -------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" or rep.skipped or rep.failed:
        rep.user_properties.append(("virtlab_host", matrix.host_of(item)))


def pytest_runtest_logreport(report):
    matrix.collect(report)


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput"):  # the xdist controller (or a plain run)
        matrix.dump(MATRIX_DIR, os.environ.get("VIRTLAB_NAME") or "it")
