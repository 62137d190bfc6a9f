# SPDX-License-Identifier: GPL-3.0-or-later
"""What the integration tests share (tests/integration/conftest.py and the test files import it): the
fixtures that bring a lab up and run Ansible on it, made for a persona list and a scope, and small checks.

- ``lab_fixture(personas, suffix="", scope="session", target_python=False)``: a fixture ``lab``, a ``virtlab.Lab`` with those
  personas up. Lab name from $VIRTLAB_NAME (default ``it``), ``-gwN`` under pytest-xdist, then
  ``suffix`` (a file's own lab: the name cut to 10 characters first). Down at the end of the scope
  unless VIRTLAB_KEEP=1 or it was up before (then it is left as found). ``target_python``: skip when
  $VIRTLAB_TARGET's real target Python (pytargets.py) is not built.
- ``runner_fixtures(scope)``: the fixtures ``run_module`` and ``run_playbook`` over that scope's ``lab``.
- ``ok(res)``, ``play(run_playbook, hosts, tasks)``, ``connect(lab, guest)``.
"""
import json
import os

import pytest

import matrix
import pytargets
import virtlab
from labansible import TARGET_PERSONA, module, playbook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATRIX_DIR = os.path.join(ROOT, "build", "matrix")


def lab_name(suffix=""):
    name = os.environ.get("VIRTLAB_NAME") or "it"
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # pytest -n N: one lab per worker (gw0, gw1, ...)
    if worker:
        name = "%s-%s" % (name, worker)
    return name[:10] + suffix if suffix else name


def lab_fixture(personas, suffix="", scope="session", target_python=False):
    @pytest.fixture(scope=scope, name="lab")
    def lab():
        """A virtlab.Lab with the personas up (tests/lab/labtest.py)."""
        if os.geteuid() != 0:
            pytest.skip("the lab needs root")
        if target_python and TARGET_PERSONA in pytargets.PERSONA_TARGETS:
            why = pytargets.skip_reason(pytargets.PERSONA_TARGETS[TARGET_PERSONA])
            if why:  # never fall back silently to another Python on an explicitly asked target
                pytest.skip("VIRTLAB_TARGET=%s needs its real target Python: %s" % (TARGET_PERSONA, why))
        the_lab = virtlab.Lab(lab_name(suffix))
        was_up = the_lab.is_up()
        keep = os.environ.get("VIRTLAB_KEEP") == "1"
        try:
            the_lab.up(personas=personas)
        except virtlab.LabError as exc:
            if not was_up and not keep:
                the_lab.down()
            pytest.fail("lab %s did not come up: %s" % (the_lab.name, exc))
        matrix.record_versions(the_lab, MATRIX_DIR)
        yield the_lab
        if not was_up and not keep:
            the_lab.down()
    return lab


def runner_fixtures(scope="session"):
    @pytest.fixture(scope=scope, name="run_module")
    def run_module(lab):
        """run_module(host, module, check=False, diff=False, become=False, **args) -> the result dict."""
        def _run(host, module_name, check=False, diff=False, become=False, **args):
            return module(lab, host, module_name, check=check, diff=diff, become=become, **args)
        return _run

    @pytest.fixture(scope=scope, name="run_playbook")
    def run_playbook(lab):
        """run_playbook(path_or_yaml_text, extra_vars=None, check=False, limit=None, diff=False) -> dict."""
        def _run(text_or_path, extra_vars=None, check=False, limit=None, diff=False):
            return playbook(lab, text_or_path, extra_vars=extra_vars, check=check, limit=limit, diff=diff)
        return _run
    return run_module, run_playbook


def ok(res):
    """The module result, asserted not failed."""
    assert not res["failed"], res
    return res


def play(run_playbook, hosts, tasks):
    """Run ``tasks`` ([(module, args)]) on ``hosts`` in one play, each asserted not failed on every host
    (an option called ``name``, as trace_rule's, cannot go through run_module, whose own second parameter
    is called ``name``)."""
    text = json.dumps([{"hosts": hosts, "gather_facts": False,
                        "tasks": [{"name": "t%d" % i, k: v} for i, (k, v) in enumerate(tasks)]}])
    out = run_playbook(text + "\n")
    for task in out["tasks"]:
        for host, res in task["hosts"].items():
            assert not res["failed"], (task["name"], host, res)
    return out


def connect(lab, guest, wait=3):
    """The seed's flow: a TCP connection from the guest to the uplink's listener (nc -z, ``wait`` s at
    most); the CompletedProcess, whatever its rc."""
    return lab.guest_exec(guest, ["nc", "-z", "-w", str(wait), virtlab.UPLINK_IP, str(virtlab.UPLINK_PORT)],
                          check=False)
